"""The ops on every backend, one suite: the seam (implementation(op)), each op that a
backend may replace against torch (forward and backward, float32 and float64), special
values against the mathematics, and bad input refused with the same message everywhere.

A backend that cannot load here is skipped with its reason.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minit2t as mt
import minit2t.backends as backends
import minit2t.nn.functional as F
import torch_approx as ta
from helpers import F64, check_against_torch, on_backend, reference
from minit2t import ops
from strategies import make_array


@pytest.fixture(scope="module")
def c():
    try:
        return backends.get_backend("c")
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))


def _gelu_math(v):
    """x * Phi(x) in double precision from math.erfc: the value float32 should round to."""
    return 0.5 * v * math.erfc(-v / math.sqrt(2)) if math.isfinite(v) else v


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_special_values(backend):
    """Against the mathematics, not one vector path of torch (whose vectorised GELU returns
    nan at +inf on AVX-512 machines): GELU(+inf) = inf; -inf gives nan, IEEE's -inf * 0."""
    x = np.array([0.0, -0.0, np.inf, np.nan, 1e30, -1e30, 20.0, -20.0, 1e-30, -1e-30, 3.0, -3.0], np.float32)
    want = np.array([_gelu_math(float(v)) for v in x]).astype(np.float32)
    with on_backend(backend), np.errstate(invalid="ignore", over="ignore"):
        y = F.gelu(mt.tensor(x)).data
        yinf = F.gelu(mt.tensor(np.array([-np.inf], np.float32))).data
        np.testing.assert_allclose(y, want, rtol=2e-7, atol=0)
        assert np.array_equal(np.signbit(y[:2]), [False, True])     # gelu(-0) = -0
        assert np.isnan(yinf[0])
        rows = np.array([[-np.inf, 0.0, 1.0, -np.inf], [1e30, 1e30, -1e30, 0.0]], np.float32)
        e = math.e
        want_rows = [[0, 1 / (1 + e), e / (1 + e), 0], [0.5, 0.5, 0, 0]]
        np.testing.assert_allclose(F.softmax(mt.tensor(rows)).data, want_rows, rtol=1e-6, atol=0)
        flat = mt.tensor(np.full((3, 5), 2.5, np.float32))                # var 0: y = bias
        y = F.layer_norm(flat, mt.tensor(np.ones(5, np.float32)), mt.tensor(np.arange(5, dtype=np.float32)))
        np.testing.assert_allclose(y.data, np.broadcast_to(np.arange(5.0), (3, 5)), atol=1e-6)







@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("call, error, match", [
    (lambda: F.layer_norm(mt.tensor(np.ones((2, 3), np.float32)), mt.tensor(np.ones(3, np.float32)),
                          mt.tensor(np.ones(3, np.float32)), eps=-1.0), ValueError, "eps"),
    (lambda: ops.LayerNorm.apply(mt.tensor(np.ones((2, 3), np.float32)), mt.tensor(np.ones(4, np.float32)),
                                 mt.tensor(np.ones(3, np.float32))), ValueError, r"\(3,\)"),
    (lambda: F.softmax(mt.tensor(np.ones((2, 3), np.float32)), axis=2), ValueError, "axis 2"),
    (lambda: ops.Linear.apply(mt.tensor(np.ones((2, 3), np.float32)), mt.tensor(np.ones((4, 5), np.float32))),
     ValueError, r"\(2, 3\) and \(4, 5\)"),
    (lambda: F.attention(mt.tensor(np.ones((2, 5, 30), np.float32)), 4, 0.5), ValueError,
     r"^attention expects qkv of shape \(B, N, 3\*D\) with D divisible by num_heads=4, got \(2, 5, 30\)$"),
    (lambda: F.attention(mt.tensor(np.ones((2, 5, 24), np.float32)), 2, float("nan")), ValueError,
     "^attention expects scale a finite real number, got nan$"),
    (lambda: mt.cat([mt.tensor(np.ones((2, 3), np.float32)), mt.tensor(np.ones((3, 3), np.float32))], axis=1),
     ValueError, r"^concatenate along axis 1: shapes \(2, 3\) and \(3, 3\) must agree on every other axis$"),
    (lambda: mt.cat([mt.tensor(np.ones((2, 3), np.float32))], axis=2), ValueError, "axis 2 is out of range"),
])
def test_ops_refuse_bad_input_on_every_backend(backend, call, error, match):
    with on_backend(backend), pytest.raises(error, match=match):
        call()


def test_the_seam_replaces_whole_ops(c, monkeypatch):
    """implementation(op) is the active backend's version; apply runs its forward and backward."""
    from minit2t.backends import c_ops
    monkeypatch.setattr(backends, "_active", backends.get_backend("c"))
    assert backends.implementation(ops.LayerNorm) is c_ops.LayerNorm
    assert backends.implementation(ops.Mul) is ops.Mul                 # not replaced: the reference
    x = mt.tensor(np.array([[-1.0, 0.5, 2.0]], np.float32), requires_grad=True)
    y = F.gelu(x)
    assert y._ctx.fn is c_ops.GELU
    monkeypatch.setattr(backends, "_active", backends.get_backend("numpy"))
    assert backends.implementation(ops.LayerNorm) is ops.LayerNorm
    y.sum().backward()                                                 # the C backward, as recorded
    _, (want,) = reference(ops.GELU, x.data, grad=np.ones((1, 3), np.float32))
    np.testing.assert_allclose(x.grad, want, rtol=1e-6)


# ---- the ops on the active backend, against torch ----------------------------------

def _linear_t(x, w, b=None):
    return TF.linear(x, w, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["bias", "no_bias", "vector", "strided"])
def test_linear_op_against_torch(dtype, case):
    x = make_array(1, (2, 5, 7) if case != "vector" else (7,), dtype)
    if case == "strided":
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)   # a transposed view
    w, b = make_array(2, (4, 7), dtype), make_array(3, (4,), dtype)
    arrays = [x, w] if case == "no_bias" else [x, w, b]
    rtol, atol = F64 if dtype == np.float64 else (1e-5, 1e-6)
    check_against_torch(F.linear, _linear_t, arrays, rtol, atol)


def test_linear_op_skips_gradients_nobody_wants():
    x = mt.tensor(make_array(4, (3, 6), np.float32))                  # no grad for x
    w = mt.tensor(make_array(5, (2, 6), np.float32), requires_grad=True)
    b = mt.tensor(make_array(6, (2,), np.float32))                    # a frozen bias
    F.linear(x, w, b).sum().backward()
    assert x.grad is None and b.grad is None
    np.testing.assert_allclose(w.grad, np.broadcast_to(x.data.sum(0), (2, 6)), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(Dout, Din\)"):
        F.linear(x, mt.tensor(np.ones(6, np.float32)))


def _split_use_two(t):
    q, _, v = t.split([2, 3, 4], axis=-1)              # the middle piece gets no gradient
    return q.sum(-1, keepdims=True) * v


def _split_t(t):
    q, _, v = torch.split(t, [2, 3, 4], dim=-1)
    return q.sum(-1, keepdim=True) * v


def _attention_t(qkv, h=2, scale=0.3):
    """Multi-head attention from the packed qkv (B, N, 3*D): per head softmax(q k^T * scale) v, side by side."""
    B, N, D3 = qkv.shape
    q, k, v = qkv.reshape(B, N, 3, h, D3 // (3 * h)).permute(2, 0, 3, 1, 4)   # (B, h, N, d) each
    return ta.exact(q, k, v, scale).transpose(1, 2).reshape(B, N, D3 // 3)  # (B, N, D)


REPLACED = {   # every op a backend replaces: (minit2t, torch, input shapes)
    "gelu": (F.gelu, TF.gelu, [(3, 4, 9)]),
    "softmax_axis1": (lambda t: t.softmax(1), lambda t: t.softmax(1), [(3, 4, 9)]),
    "softmax": (lambda t: t.softmax(-1), lambda t: t.softmax(-1), [(3, 4, 9)]),
    "layer_norm": (lambda t, w, b: F.layer_norm(t, w, b), lambda t, w, b: TF.layer_norm(t, (9,), w, b),
                   [(3, 4, 9), (9,), (9,)]),
    "linear": (F.linear, TF.linear, [(3, 4, 9), (5, 9), (5,)]),
    "linear_no_bias": (F.linear, TF.linear, [(3, 4, 9), (5, 9)]),
    "linear_gelu": (F.linear_gelu, lambda x, w, b: TF.gelu(TF.linear(x, w, b)), [(3, 4, 9), (5, 9), (5,)]),
    "linear_gelu_no_bias": (F.linear_gelu, lambda x, w: TF.gelu(TF.linear(x, w)), [(3, 4, 9), (5, 9)]),
    # past the reference's tiny products: the C kernels' blocks, edges and epilogue
    "linear_gelu_blocked": (F.linear_gelu, lambda x, w, b: TF.gelu(TF.linear(x, w, b)),
                            [(2, 70, 40), (150, 40), (150,)]),
    "linear_add": (F.linear_add, lambda x, w, b, r: r + TF.linear(x, w, b), [(3, 4, 9), (5, 9), (5,), (3, 4, 5)]),
    "linear_add_blocked": (F.linear_add, lambda x, w, b, r: r + TF.linear(x, w, b),
                           [(2, 70, 40), (150, 40), (150,), (2, 70, 150)]),
    "matmul_batched": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4, 9), (2, 3, 9, 5)]),
    "matmul_broadcast": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4, 9), (9, 5)]),
    "matmul_transposed": (lambda q, k: q @ k.transpose(-2, -1), lambda q, k: q @ k.transpose(-2, -1),
                          [(2, 3, 4, 9), (2, 3, 6, 9)]),
    "getitem": (lambda t: t[:, 1:3] * 2, lambda t: t[:, 1:3] * 2, [(3, 4, 9)]),
    "getitem_array": (lambda t: t[:, [0, 2, 2]], lambda t: t[:, [0, 2, 2]], [(3, 4, 9)]),
    "split": (_split_use_two, _split_t, [(3, 4, 9)]),
    "reshape": (lambda t: t.transpose(1, 2).reshape(3, -1), lambda t: t.transpose(1, 2).reshape(3, -1), [(3, 4, 9)]),
    "unfold": (lambda t: F.unfold(t, 3, 2, 1), lambda t: TF.unfold(t, 3, stride=2, padding=1), [(2, 3, 7, 6)]),
    "fold": (lambda t: F.fold(t, (7, 6), 3, 2, 1), lambda t: TF.fold(t, (7, 6), 3, stride=2, padding=1),
             [(2, 27, 12)]),
    "band_dot": (lambda a, b: ops.BandDot.apply(a, b, window=5), lambda a, b: ta.band_dot(a, b, 5),
                 [(2, 11, 9), (2, 11, 9)]),
    "band_mix": (ops.BandMix.apply, ta.band_mix, [(2, 11, 4), (2, 11, 9)]),
    "attention": (lambda qkv: F.attention(qkv, 2, 0.3), _attention_t, [(2, 7, 24)]),
    "add": (lambda a, b: a + b, lambda a, b: a + b, [(3, 130, 200), (3, 130, 200)]),   # >= 2^16: C's
    "add_broadcast": (lambda a, b: a + b, lambda a, b: a + b, [(3, 130, 200), (200,)]),
    "concat": (lambda a, b: mt.cat([a, b], axis=-2), lambda a, b: torch.cat([a, b], -2), [(3, 4, 9), (3, 2, 9)]),
    "concat_pooled": (lambda a, b: mt.cat([a, b], axis=1), lambda a, b: torch.cat([a, b], 1),    # >= 1 MiB
                      [(2, 300, 500), (2, 100, 500)]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(REPLACED))
@pytest.mark.parametrize("backend", ["numpy", "c", "opencl"])
def test_replaced_ops_against_torch(backend, name, dtype):
    """One suite over every backend: each op that a backend may replace, forward and backward."""
    mt_fn, torch_fn, shapes = REPLACED[name]
    arrays = [make_array(7 + i, shape, dtype, noncontiguous=len(shape) > 2) * 2 for i, shape in enumerate(shapes)]
    rtol, atol = F64 if dtype == np.float64 else (1e-5, 1e-6)
    with on_backend(backend):
        check_against_torch(mt_fn, torch_fn, arrays, rtol, atol)
