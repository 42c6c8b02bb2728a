"""Stochastic gradient descent with momentum, as torch.optim.SGD.

Per parameter p with gradient g (lr, momentum mu, dampening d, weight_decay wd from its group):
    g   <- g + wd * p                                 L2 penalty, coupled (unlike AdamW)
    buf <- g on the first step, else mu * buf + (1 - d) * g
    g   <- g + mu * buf if nesterov else buf          (only when mu > 0)
    p   <- p - lr * g
"""
import numpy as np

from minit2t.optim.optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay))

    def _check_options(self, group):
        for key in ("lr", "momentum", "weight_decay"):
            if not group[key] >= 0.0:
                raise ValueError(f"SGD: {key} must be >= 0, got {group[key]}")
        if group["nesterov"] and (group["momentum"] <= 0.0 or group["dampening"] != 0.0):
            raise ValueError(f"SGD: nesterov needs momentum > 0 and dampening 0, got momentum "
                             f"{group['momentum']} and dampening {group['dampening']}")

    def _update(self, p, grad, group, state):
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0.0:
            grad = grad + wd * p.data
        if mu != 0.0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = np.array(grad, copy=True)
            else:
                buf = state["momentum_buffer"]
                buf *= mu
                buf += (1.0 - group["dampening"]) * grad
            buf = state["momentum_buffer"]
            grad = grad + mu * buf if group["nesterov"] else buf
        p.data -= lr * grad
