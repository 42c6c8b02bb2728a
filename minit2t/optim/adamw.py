"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, as torch.optim.AdamW.

Per parameter p with gradient g, at step t (lr, betas (b1, b2), eps, wd from its group):
    p   <- p * (1 - lr * wd)                          decay, outside the adaptive update
    m   <- b1 * m + (1 - b1) * g                      first moment
    v   <- b2 * v + (1 - b2) * g * g                  second moment
    p   <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
All arrays keep the parameter's shape and dtype; p.data is updated in place.
"""
import math

import numpy as np

from minit2t.optim.optimizer import Optimizer


class AdamW(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_options(self, group):
        lr, betas, eps, wd = group["lr"], tuple(group["betas"]), group["eps"], group["weight_decay"]
        if not lr >= 0.0:
            raise ValueError(f"AdamW: lr must be >= 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamW: betas must be two numbers in [0, 1), got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"AdamW: eps must be >= 0, got {eps}")
        if not wd >= 0.0:
            raise ValueError(f"AdamW: weight_decay must be >= 0, got {wd}")
        group["betas"] = betas

    def _update(self, p, grad, group, state):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        t, m, v, x = state["step"], state["exp_avg"], state["exp_avg_sq"], p.data
        x *= 1.0 - lr * wd
        m += (grad - m) * (1.0 - b1)                      # m = b1 m + (1 - b1) g, as torch's lerp
        v *= b2
        v += grad * grad * (1.0 - b2)
        step_size = lr / (1.0 - b1 ** t)
        denom = np.sqrt(v) / math.sqrt(1.0 - b2 ** t) + eps
        x -= step_size * (m / denom)
