"""Exercises on training: one AdamW step, and the learning-rate schedule (linear warm-up, then cosine).

Legend: "..." a parameter's shape (any), t the step number (1 at the first step), W warmup_steps,
T total_steps. The references are minit2t.optim's AdamW and WarmupCosine, run on one parameter.
"""
import numpy as np

from minit2t.exercises.core import array, exercise, lead, side
from minit2t.nn.module import Parameter
from minit2t.optim.adamw import AdamW
from minit2t.optim.schedule import WarmupCosine
from minit2t.optim.sgd import SGD


def _adamw_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    param = Parameter(np.array(p, dtype=np.float64))
    opt = AdamW([param], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    opt.state[param] = dict(step=t - 1, exp_avg=np.array(m, dtype=np.float64),
                            exp_avg_sq=np.array(v, dtype=np.float64))   # as after step t - 1
    param.grad = np.array(g, dtype=np.float64)
    opt.step()
    state = opt.state[param]
    return param.data, state["exp_avg"], state["exp_avg_sq"]


@exercise("adamw_step", """adamw_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay) -> (p, m, v)
One AdamW step (minit2t.optim.AdamW, as torch.optim.AdamW) for one parameter p (...) with gradient
g (...). m and v (...) are the first and second moments after step t - 1 (zeros before the first step),
t >= 1 the number of this step, lr, beta1, beta2, eps, weight_decay floats. The decay is decoupled:
p shrinks by the factor (1 - lr * weight_decay), apart from the gradient; the update divides the
bias-corrected m by sqrt(bias-corrected v) + eps. Return the new p, m and v (new arrays, or the same
ones updated in place).""", ("p", "m", "v"), _adamw_step, (AdamW._update,),
          ("Three things happen: the decay p *= 1 - lr * weight_decay (no gradient in it); the moments "
           "m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g * g; a step along m / sqrt(v), both "
           "corrected for their zero start.",
           "mhat = m / (1 - beta1 ** t), vhat = v / (1 - beta2 ** t); p = p - lr * mhat / (np.sqrt(vhat) + eps), "
           "with the new m and v and the already decayed p; eps outside the square root."))
def _draw_adamw(rng, i):
    shape = lead(rng, i) + (side(rng, i, 1, 6),)
    t = 1 if i == 0 else int(rng.integers(1, 30))
    first = t == 1                                                    # the moments start at zero
    m = np.zeros(shape) if first else array(rng, shape, 0.1)
    v = np.zeros(shape) if first else array(rng, shape, 0.1) ** 2
    return dict(p=array(rng, shape), g=array(rng, shape), m=m, v=v, t=t,
                lr=float(rng.choice([1e-3, 0.05, 0.5])), beta1=float(rng.choice([0.9, 0.8])),
                beta2=float(rng.choice([0.999, 0.95])), eps=float(rng.choice([1e-8, 1e-3])),
                weight_decay=0.0 if i == 0 else float(rng.choice([0.0, 0.05, 0.3])))


def _warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr, warmup_start_lr):
    opt = SGD([Parameter(np.zeros(1))], lr=base_lr)
    return WarmupCosine(opt, warmup_steps, total_steps, min_lr, warmup_start_lr).lr_at(step, base_lr)


def _every_step(fn, args):
    """fn's lr at steps 0 .. total_steps + 2, as one array: an error's index is its step."""
    lrs = [fn(t, *args.values()) for t in range(args["total_steps"] + 3)]
    return None if any(lr is None for lr in lrs) else np.array(lrs, dtype=np.float64)


@exercise("warmup_cosine", """warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr, warmup_start_lr) -> lr
The learning rate of minit2t.optim.WarmupCosine at step t = step (an int >= 0), with b = base_lr,
W = warmup_steps, T = total_steps (0 <= W < T), m = min_lr, s = warmup_start_lr:
  t < W:       a straight line from s (at t = 0) towards b (reached at t = W)
  W <= t <= T: a half cosine from b (t = W) down to m (t = T)
  t > T:       m
Return lr, a float. check() calls it at every step 0 .. T + 2 of each drawn schedule and compares the
list: an error's index is its step.""", ("lrs",), _warmup_cosine, (WarmupCosine.lr_at,),
          ("Three pieces: s + (b - s) * t / W during the warm-up; a cosine that is b at t = W and m at t = T; "
           "m after T. Mind which piece owns t = W and t = T.",
           "For W <= t <= T: m + (b - m) * (1 + cos(pi * (t - W) / (T - W))) / 2, with math.cos; "
           "for t < W: s + (b - s) * t / W; for t > T: m."),
          call=_every_step)
def _draw_warmup_cosine(rng, i):
    W = 0 if i == 0 else int(rng.integers(0, 6))
    T = W + 1 if i == 0 else W + int(rng.integers(1, 13))
    base = float(rng.choice([1.0, 5e-4, rng.random()]))
    return dict(base_lr=base, warmup_steps=W, total_steps=T,
                min_lr=0.0 if i == 0 else float(rng.choice([0.0, base * rng.random() / 10])),
                warmup_start_lr=0.0 if i == 0 else float(rng.choice([0.0, base * rng.random() / 10])))
