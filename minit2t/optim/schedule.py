"""Learning-rate schedule (linear warm-up, then cosine decay) and gradient-norm clipping.

WarmupCosine sets every group's "lr" from its base lr b (the lr it had when the
schedule was made) at step t = 0, 1, 2, ... (one .step() per batch or per epoch):
    t <  W:       lr = s + (b - s) * t / W                       linear warm-up from s
    W <= t <= T:  lr = m + (b - m) * (1 + cos(pi * (t - W) / (T - W))) / 2
    t >  T:       lr = m
with W = warmup_steps, T = total_steps, s = warmup_start_lr, m = min_lr.
"""
import math

import numpy as np

from minit2t.tensor import Tensor


class WarmupCosine:
    def __init__(self, optimizer, warmup_steps, total_steps, min_lr=0.0, warmup_start_lr=0.0):
        if not (isinstance(warmup_steps, (int, np.integer)) and isinstance(total_steps, (int, np.integer))):
            raise TypeError(f"WarmupCosine: warmup_steps and total_steps must be ints, got "
                            f"{type(warmup_steps).__name__} and {type(total_steps).__name__}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"WarmupCosine: need 0 <= warmup_steps < total_steps, got "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        if not (min_lr >= 0.0 and warmup_start_lr >= 0.0):
            raise ValueError(f"WarmupCosine: min_lr and warmup_start_lr must be >= 0, got {min_lr}, "
                             f"{warmup_start_lr}")
        self.optimizer = optimizer
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.min_lr, self.warmup_start_lr = float(min_lr), float(warmup_start_lr)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def lr_at(self, step, base_lr):
        """The learning rate at `step` for a group whose base lr is `base_lr`."""
        W, T = self.warmup_steps, self.total_steps
        if step < W:
            return self.warmup_start_lr + (base_lr - self.warmup_start_lr) * step / W
        if step > T:
            return self.min_lr
        progress = (step - W) / (T - W)
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self):
        self.last_step += 1
        self._apply()

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_step, base)

    def state_dict(self):
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs), "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "min_lr": self.min_lr, "warmup_start_lr": self.warmup_start_lr}

    def load_state_dict(self, state):
        base_lrs = [float(b) for b in np.asarray(state["base_lrs"]).reshape(-1)]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"WarmupCosine.load_state_dict: {len(base_lrs)} base lrs saved, "
                             f"{len(self.optimizer.param_groups)} parameter groups here")
        self.base_lrs = base_lrs
        self.warmup_steps, self.total_steps = int(state["warmup_steps"]), int(state["total_steps"])
        self.min_lr, self.warmup_start_lr = float(state["min_lr"]), float(state["warmup_start_lr"])
        self.last_step = int(state["last_step"])
        self._apply()


def clip_grad_norm(params, max_norm, norm_type=2.0):
    """Scale the gradients so their joint norm is at most max_norm; return the norm before clipping.

    As torch.nn.utils.clip_grad_norm_: the norm of the per-parameter norms, gradients
    multiplied by min(1, max_norm / (norm + 1e-6)); parameters without a gradient are skipped.
    A non-finite norm (inf/nan gradients) is returned as it is and the gradients are left unscaled.
    """
    params = [params] if isinstance(params, Tensor) else list(params)
    norm_type = float(norm_type)
    if not (max_norm >= 0.0 and norm_type > 0.0):
        raise ValueError(f"clip_grad_norm: need max_norm >= 0 and norm_type > 0, got {max_norm}, {norm_type}")
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0.0
    norms = np.array([_norm(np.asarray(p.grad), norm_type) for p in with_grad])
    total = float(_norm(norms, norm_type))
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:                                    # scaling by 1 would change nothing
        for p in with_grad:
            p.grad = (p.grad * coef).astype(p.grad.dtype, copy=False)
    return total


def _norm(x, norm_type):
    """The norm of x's elements, accumulated in float64 (blocks of float32 summed in float64)."""
    x = x.reshape(-1)
    if math.isinf(norm_type):
        return float(np.abs(x).max(initial=0.0))
    if norm_type == 2.0:
        if x.dtype == np.float64:
            return math.sqrt(float(np.dot(x, x)))
        blocks = [x[i:i + 4096] for i in range(0, x.size, 4096)]
        return math.sqrt(math.fsum(float(np.dot(b, b)) for b in blocks))
    return float(np.sum(np.abs(x.astype(np.float64)) ** norm_type) ** (1.0 / norm_type))
