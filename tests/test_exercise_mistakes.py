"""The exercises added for the notebooks' build cells: a plausible mistake in each is caught, and check()
says which output is off, where (the index, for a schedule the step) and by how much.

The wrong solutions are the right ones of tests/exercise_solutions.py with one thing changed.
Legend: as in minit2t/exercises/.
"""
import math

import numpy as np

import exercise_solutions as sol
from exercise_solutions import failure
from minit2t import exercises as ex


def test_backprop_overwriting_where_paths_meet():
    msg = failure("backprop", lambda L, *leaves: sol.backprop(L, *leaves, add=lambda old, g: g))
    assert "output g" in msg and "max abs error" in msg and "L () = Sum(" in msg and "x (" in msg


def test_backprop_in_the_order_the_ops_were_met_not_topological():
    def wrong(L, *leaves):                                                 # breadth-first: a tensor may be
        grads, queue = {id(L): np.ones_like(L.data)}, [L]                 # passed on before all its uses
        while queue:
            t = queue.pop(0)
            if t._ctx is not None:
                for inp, g in zip(t._ctx.inputs, t._ctx.fn.backward(t._ctx, grads[id(t)])):
                    grads[id(inp)] = grads.get(id(inp), 0) + g
                    queue.append(inp)
        return tuple(grads[id(leaf)] for leaf in leaves)
    assert "max abs error" in failure("backprop", wrong)


def test_restructurize_reshaped_without_the_transpose():
    msg = failure("restructurize", lambda x, side: x.reshape(x.shape[0], x.shape[2], side, side))
    assert "output image: max abs error" in msg and "at index" in msg
    assert "the right values in the wrong places" in msg and "side=" in msg


def test_prm_exp_without_the_sqrt_m():
    msg = failure("prm_exp", lambda x, w: sol.prm_exp(x, w) * math.sqrt(w.shape[0]))
    assert "output phi: max abs error" in msg and "off by a factor of" in msg
    factor = float(msg.split("off by a factor of ")[1])
    m = int(msg.split("w (")[1].split(",")[0])
    assert math.isclose(factor, math.sqrt(m), rel_tol=1e-5) and m > 1      # case 0 (m = 1) passed


def test_prm_exp_without_the_norm_term():
    msg = failure("prm_exp", lambda x, w: np.exp(x @ w.T) / math.sqrt(w.shape[0]))
    assert "output phi: max abs error" in msg and "relative error" in msg and "hint" not in msg


def test_sinusoid_in_halves_not_interleaved():
    def wrong(n_position, d_hid):
        table = sol.sinusoid_table(n_position, d_hid)
        return np.concatenate([table[..., 0::2], table[..., 1::2]], axis=-1)
    msg = failure("sinusoid_table", wrong)
    assert "output table: max abs error" in msg and "the right values in the wrong places" in msg


def test_sinusoid_in_float64_names_the_dtype():
    msg = failure("sinusoid_table", lambda n, d: sol.sinusoid_table(n, d).astype(np.float64))
    assert "output table: dtype float64, expected float32" in msg


def test_sinusoid_with_a_rate_per_feature_not_per_pair():
    def wrong(n_position, d_hid):
        angles = np.arange(n_position)[:, None] / 10000 ** (2 * np.arange(d_hid) / d_hid)
        table = np.where(np.arange(d_hid) % 2 == 0, np.sin(angles), np.cos(angles))
        return table[None].astype(np.float32)
    assert "output table: max abs error" in failure("sinusoid_table", wrong)


def test_cross_entropy_not_divided_by_the_batch():
    msg = failure("cross_entropy_backward", lambda z, y, eps: sol.cross_entropy_backward(z, y, eps) * len(y))
    B = int(msg.split("logits (")[1].split(",")[0])
    assert "output glogits" in msg and f"off by a factor of {B}" in msg and B > 1


def test_cross_entropy_ignoring_label_smoothing():
    msg = failure("cross_entropy_backward", lambda z, y, eps: sol.cross_entropy_backward(z, y, 0.0))
    eps = float(msg.split("label_smoothing=")[1].split(")")[0])
    assert eps > 0 and "output glogits: max abs error" in msg and "at index" in msg


def test_adamw_with_l2_decay_in_the_gradient():
    def wrong(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):          # Adam + L2, not AdamW
        return sol.adamw_step(p, g + weight_decay * p, m, v, t, lr, beta1, beta2, eps, 0.0)
    msg = failure("adamw_step", wrong)
    wd = float(msg.split("weight_decay=")[1].split(")")[0])
    assert wd > 0 and msg.split(": ", 1)[1].startswith("output p: max abs error")


def test_adamw_without_bias_correction():
    def wrong(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
        p = p * (1 - lr * weight_decay)
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        return p - lr * m / (np.sqrt(v) + eps), m, v
    assert "output p: max abs error" in failure("adamw_step", wrong)


def test_adamw_moments_swapped():
    msg = failure("adamw_step", lambda *args: (lambda p, m, v: (p, v, m))(*sol.adamw_step(*args)))
    assert "output m" in msg and "matches the expected v (outputs swapped?)" in msg


def test_warmup_cosine_gives_the_step_where_the_warmup_ends_too_late():
    def wrong(step, base_lr, warmup_steps, total_steps, min_lr, warmup_start_lr):
        if step <= warmup_steps and warmup_steps > 0:                     # one step too many of warm-up
            return warmup_start_lr + (base_lr - warmup_start_lr) * step / (warmup_steps + 1)
        return sol.warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr, warmup_start_lr)
    msg = failure("warmup_cosine", wrong)
    W = int(msg.split("warmup_steps=")[1].split(",")[0])
    assert "output lrs: max abs error" in msg and W > 0
    first_bad = int(msg.split("at index (")[1].split(",")[0])
    assert 1 <= first_bad <= W                                            # the index is a step of the warm-up


def test_warmup_cosine_ending_at_zero_not_min_lr():
    def wrong(step, base_lr, warmup_steps, total_steps, min_lr, warmup_start_lr):
        return sol.warmup_cosine(step, base_lr, warmup_steps, total_steps, 0.0, warmup_start_lr)
    msg = failure("warmup_cosine", wrong)
    T = int(msg.split("total_steps=")[1].split(",")[0])
    assert f"at index ({T + 2},)" in msg or f"at index ({T + 1},)" in msg or f"at index ({T},)" in msg


def test_t2t_module_with_a_restructurization_that_only_reshapes():
    def wrong(x, weights, splits):
        return sol.t2t_module(x, weights, splits,
                              restructure=lambda out, side: out.reshape(out.shape[0], out.shape[2], side, side))
    msg = failure("t2t_module", wrong)
    assert "output tokens: max abs error" in msg and "weights (a dict of 24 arrays)" in msg and "splits=(" in msg


def test_t2t_module_with_the_scale_of_the_token_width():
    real = sol.t2t_attention

    def wrong(x, weights, splits):
        try:                                                              # E ** -0.5 in place of Din ** -0.5
            sol.t2t_attention = lambda x_, wqkv, wproj, bproj, scale: real(x_, wqkv, wproj, bproj,
                                                                           wproj.shape[0] ** -0.5)
            return sol.t2t_module(x, weights, splits)
        finally:
            sol.t2t_attention = real
    assert "output tokens: max abs error" in failure("t2t_module", wrong)


def test_the_new_statements_name_their_shapes():
    for name, shapes in [("restructurize", ["(B, T, E)", "(B, E, side, side)"]), ("prm_exp", ["(B, T, m)", "(m, E)"]),
                         ("sinusoid_table", ["(1, n_position, d_hid)"]), ("cross_entropy_backward", ["(B, C)"]),
                         ("t2t_module", ["(B, N, D)"]), ("adamw_step", ["(...)"])]:
        assert all(s in ex.describe(name) for s in shapes), name
