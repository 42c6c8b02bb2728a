"""The fused kernels (GELU, layer norm, softmax, the GEMM with a bias) and the Linear op.

Every C version (the reference loops and each fast ISA this CPU runs) is
checked against the NumPy reference evaluated in float64, and the backend
functions also against torch: forward and backward, odd sizes (around the
vector widths, the GELU work blocks and the layer-norm row chunks),
non-contiguous inputs, special values, the float64 fallback and bad input.

Legend: R rows, D layer-norm width, N softmax width, n elements.
"""
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import minit2t as mt
import minit2t.backends as backends
import minit2t.nn.functional as F
from helpers import F64, assert_close, check_against_torch
from strategies import fused_shapes, gemm_cases, make_array, seeds

REF = backends.get_backend("numpy")


@pytest.fixture(scope="module")
def c():
    try:
        return backends.get_backend("c")
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))


def levels(c):
    """'ref' and the fast ISAs this CPU runs, as the suffixes of the C names."""
    fast = [name for name, lvl in (("avx2", 1), ("avx512", 2)) if c.lib.minit2t_cpu_isa() >= lvl]
    return ["ref"] + fast


def f32(seed, shape, scale=1.0):
    return (make_array(seed, shape) * scale).astype(np.float32)


def out(shape):
    return np.full(shape, np.nan, np.float32)


def _ln_atol(g, w, rstd):
    """Float32 rounding of g * w, amplified by rstd: gx's absolute error scale (a row
    of D = 1, or of equal values, has var 0 and rstd = 1 / sqrt(eps) ~ 316)."""
    return 1e-6 * max(1.0, float(np.max(rstd, initial=0))) * max(1.0, float(np.max(np.abs(g * w), initial=0)))


# ---- each ISA level against the float64 reference -------------------------------

@pytest.mark.parametrize("n", [1, 7, 8, 9, 17, 4096 + 13])
def test_gelu_every_level(c, n):
    x = np.concatenate([np.linspace(-14, 14, 41), f32(n, n, 3.0)])[:max(n, 41)].astype(np.float32)
    g = f32(n + 1, x.shape)
    want = REF.gelu_forward(x.astype(np.float64))
    want_g = REF.gelu_backward(g.astype(np.float64), x.astype(np.float64))
    for level in levels(c):
        y, gx = out(x.shape), out(x.shape)
        getattr(c.lib, "gelu_forward_" + level)(c._ptr(x), c._ptr(y), x.size)
        getattr(c.lib, "gelu_backward_" + level)(c._ptr(g), c._ptr(x), c._ptr(gx), x.size)
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-37, err_msg=level)
        np.testing.assert_allclose(gx, want_g, rtol=1e-6, atol=1e-6, err_msg=level)


@pytest.mark.parametrize("r, d", [(1, 1), (5, 7), (33, 8), (40, 27), (70, 33), (3, 130)])
def test_layer_norm_every_level(c, r, d):
    wide = f32(r * d, (r, d + 5), 2.0) + 0.5
    x = wide[:, 2:d + 2]                                            # (R, D), row stride D + 5
    g = f32(r + d, (r, d))
    w, b = f32(1, d), f32(2, d)
    want = REF.layer_norm_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1e-5)
    for level in levels(c):
        y, mean, rstd = out((r, d)), out(r), out(r)
        getattr(c.lib, "layer_norm_forward_" + level)(c._ptr(x), d + 5, c._ptr(w), c._ptr(b), 1e-5, c._ptr(y),
                                                      c._ptr(mean), c._ptr(rstd), r, d)
        for got, ref in zip((y, mean, rstd), want):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=level)
        want_b = REF.layer_norm_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                         mean.astype(np.float64), rstd.astype(np.float64))
        gx, gw, gb = out((r, d)), out(d), out(d)
        getattr(c.lib, "layer_norm_backward_" + level)(c._ptr(g), d, c._ptr(x), d + 5, c._ptr(w), c._ptr(mean),
                                                       c._ptr(rstd), c._ptr(gx), c._ptr(gw), c._ptr(gb), r, d)
        for what, got, ref in zip(("gx", "gw", "gb"), (gx, gw, gb), want_b):
            assert_close(got, ref, 1e-5, _ln_atol(g, w, rstd), f"{level} {what}")


@pytest.mark.parametrize("r, n", [(1, 1), (3, 7), (4, 8), (5, 9), (9, 65), (2, 130)])
def test_softmax_every_level(c, r, n):
    x, g = f32(r * n, (r, n), 4.0), f32(r + n, (r, n))
    x[0, 0] = -np.inf if n > 1 else x[0, 0]                          # a masked entry
    want = REF.softmax_forward(x.astype(np.float64))
    want_g = REF.softmax_backward(g.astype(np.float64), want)
    for level in levels(c):
        y, gx = out((r, n)), out((r, n))
        getattr(c.lib, "softmax_forward_" + level)(c._ptr(x), c._ptr(y), r, n)
        getattr(c.lib, "softmax_backward_" + level)(c._ptr(g), c._ptr(y), c._ptr(gx), r, n)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7, err_msg=level)
        np.testing.assert_allclose(gx, want_g, rtol=1e-5, atol=1e-6, err_msg=level)


@given(case=gemm_cases(), seed=seeds)
def test_sgemm_bias_every_level(c, case, seed):
    a, b = case
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    bt, m, k, n = max(a3.shape[0], b3.shape[0]), a.shape[-2], a.shape[-1], b.shape[-1]
    bias = f32(seed, n)
    want = np.matmul(a3.astype(np.float64), b3.astype(np.float64)) + bias    # (Bt, M, N)
    sa = c._strides(a3, (0 if a3.shape[0] > 1 else None, 1, 2))
    sb = c._strides(b3, (0 if b3.shape[0] > 1 else None, 1, 2))
    for level in levels(c):
        got = out((bt, m, n))
        getattr(c.lib, "sgemm_bias_" + level)(bt, m, n, k, c._ptr(a3), sa, c._ptr(b3), sb, c._ptr(bias),
                                              c._ptr(got), c._strides(got, (0, 1)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=4e-6 * (k + 1), err_msg=level)


@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=5).map(tuple), seed=seeds,
       fill=st.booleans())
def test_copy_strided_every_level(c, shape, seed, fill):
    rng = np.random.default_rng(seed)
    big = f32(seed, tuple(2 * n + 1 for n in shape))
    steps = tuple(int(rng.choice([1, 2, -1])) for _ in shape)
    src = big[tuple(slice(None, None, st_) for st_ in steps)][tuple(slice(0, n) for n in shape)]
    perm = rng.permutation(len(shape))
    src = np.broadcast_to(np.float32(2.5), shape) if fill else src.transpose(perm).transpose(np.argsort(perm))
    dst_base = out(tuple(np.array(shape)[perm]))                    # dst laid out in another order
    for level in levels(c):
        dst = dst_base.copy().transpose(np.argsort(perm))
        getattr(c.lib, "copy_strided_" + level)(c._ptr(src), c._strides(src, range(src.ndim)), c._ptr(dst),
                                                c._strides(dst, range(dst.ndim)), c.ffi.new("int64_t[]", shape),
                                                len(shape))
        np.testing.assert_array_equal(dst, src, err_msg=level)


def test_c_copy_into(c):
    a = f32(3, (64, 65, 3, 4, 32))
    src = a.transpose(2, 0, 3, 1, 4)[1]                              # the q of a permuted qkv
    dst = c.copy_into(np.empty(src.shape, np.float32), src)
    np.testing.assert_array_equal(dst, src)
    grad = np.zeros_like(a.transpose(2, 0, 3, 1, 4))
    c.copy_into(grad[2], dst)                                        # a scatter into a strided view
    np.testing.assert_array_equal(grad[2], src)
    assert not grad[:2].any()
    np.testing.assert_array_equal(c.copy_into(np.empty((3, 4)), src[0, 0, :3, :4].astype(np.float64)),
                                  src[0, 0, :3, :4])                 # float64: the reference
    x = f32(4, (200, 300))
    want = x[:, 1:].copy()
    c.copy_into(x[:, :-1], x[:, 1:])                                 # overlapping: NumPy's copy
    np.testing.assert_array_equal(x[:, :-1], want)
    with pytest.raises(ValueError, match="one shape"):
        c.copy_into(np.empty((2, 3), np.float32), np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="writeable"):
        c.copy_into(np.broadcast_to(np.float32(0), (4,)), np.ones(4, np.float32))


# ---- the backend functions: C against the reference and torch ----------------------

@pytest.mark.parametrize("r, din, dout", [(1, 1, 1), (37, 5, 17), (300, 130, 70), (9, 700, 33)])
def test_c_linear_forward_matches_reference_and_torch(c, r, din, dout):
    x = make_array(r, (r, din + 3), np.float32)[:, 1:din + 1]              # rows strided
    w, b = f32(din, (dout, din)), f32(dout, dout)
    want = REF.linear_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    got = c.linear_forward(x, w, b)
    assert got.shape == (r, dout) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=4e-6 * (din + 1))
    np.testing.assert_allclose(got, TF.linear(*map(torch.from_numpy, (np.ascontiguousarray(x), w, b))).numpy(),
                               rtol=1e-5, atol=4e-6 * (din + 1))
    np.testing.assert_allclose(c.linear_forward(x, w), want - b, rtol=1e-5, atol=4e-6 * (din + 1))
    np.testing.assert_array_equal(c.linear_forward(x.astype(np.float64), w, b),
                                  REF.linear_forward(x.astype(np.float64), w, b))



@given(shape=fused_shapes(), seed=seeds, nc=st.booleans())
def test_c_functions_match_reference_and_torch(c, shape, seed, nc):
    x = make_array(seed, shape, np.float32, noncontiguous=nc) * np.float32(3)
    g = make_array(seed + 1, shape, np.float32, noncontiguous=nc)
    w, b = f32(seed + 2, shape[-1]), f32(seed + 3, shape[-1])
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    tx, tg = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(g))

    y = c.gelu_forward(x)
    np.testing.assert_allclose(y, REF.gelu_forward(x64), rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(y, TF.gelu(tx).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.gelu_backward(g, x), REF.gelu_backward(g64, x64), rtol=1e-6, atol=1e-6)

    s = c.softmax_forward(x)
    np.testing.assert_allclose(s, torch.softmax(tx, -1).numpy(), rtol=1e-5, atol=1e-7)
    assert_close(c.softmax_backward(g, s), REF.softmax_backward(g64, s.astype(np.float64)), 1e-5, 1e-7, "softmax")

    y, mean, rstd = c.layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_allclose(y, TF.layer_norm(tx, shape[-1:], torch.from_numpy(w), torch.from_numpy(b)).numpy(),
                               rtol=1e-4, atol=1e-4)
    grads = c.layer_norm_backward(g, x, w, mean, rstd)
    want = REF.layer_norm_backward(g64, x64, w.astype(np.float64), mean.astype(np.float64),
                                   rstd.astype(np.float64))
    for what, got, ref in zip(("gx", "gw", "gb"), grads, want):
        assert got.shape == ref.shape and got.dtype == np.float32
        assert_close(got, ref, 1e-5, _ln_atol(g, w, rstd), what)


def test_c_float64_and_mixed_run_the_reference(c):
    x, g, w, b = f32(0, (4, 9)), f32(1, (4, 9)), f32(2, 9), f32(3, 9)
    x64 = x.astype(np.float64)
    assert c.gelu_forward(x64).dtype == np.float64
    np.testing.assert_array_equal(c.gelu_forward(x64), REF.gelu_forward(x64))
    np.testing.assert_array_equal(c.gelu_backward(g, x64), REF.gelu_backward(g, x64))
    np.testing.assert_array_equal(c.softmax_forward(x64), REF.softmax_forward(x64))
    for got, ref in zip(c.layer_norm_forward(x, w.astype(np.float64), b, 1e-5),
                        REF.layer_norm_forward(x, w.astype(np.float64), b, 1e-5)):
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)


def test_special_values(c):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 20.0, -20.0, 1e-30], np.float32)
    with np.errstate(invalid="ignore"):                             # -inf * Phi(-inf) = nan, as torch
        ref = REF.gelu_forward(x)
    for y in (c.gelu_forward(x), ref):
        np.testing.assert_array_equal(y, TF.gelu(torch.from_numpy(x)).numpy())
    rows = np.array([[-np.inf, 0.0, 1.0, -np.inf], [1e30, 1e30, -1e30, 0.0]], np.float32)
    np.testing.assert_allclose(c.softmax_forward(rows), torch.softmax(torch.from_numpy(rows), -1).numpy(),
                               rtol=1e-6, atol=0)
    flat = np.full((3, 5), 2.5, np.float32)                        # var 0: y = bias
    y, _, rstd = c.layer_norm_forward(flat, np.ones(5, np.float32), np.arange(5, dtype=np.float32), 1e-5)
    np.testing.assert_allclose(y, np.broadcast_to(np.arange(5.0), (3, 5)), atol=1e-6)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(1e-5), rtol=1e-6)


@pytest.mark.parametrize("name", ["numpy", "c"])
@pytest.mark.parametrize("call, error, match", [
    (lambda be: be.gelu_forward(np.ones(3, np.int32)), TypeError, "int32"),
    (lambda be: be.gelu_forward(np.float32(1.0)), ValueError, "shape ()"),
    (lambda be: be.gelu_backward(np.ones(3, np.float32), np.ones(4, np.float32)), ValueError, r"\(3,\).*\(4,\)"),
    (lambda be: be.softmax_backward(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)), ValueError, "y"),
    (lambda be: be.layer_norm_forward(np.ones((2, 3), np.float32), np.ones(4, np.float32),
                                      np.ones(3, np.float32), 1e-5), ValueError, r"weight of shape \(3,\)"),
    (lambda be: be.layer_norm_forward(np.ones((2, 3), np.float32), np.ones(3, np.float32),
                                      np.ones(3, np.float32), -1.0), ValueError, "eps"),
    (lambda be: be.layer_norm_backward(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32),
                                       np.ones(3, np.float32), np.ones(3, np.float32), np.ones(2, np.float32)),
     ValueError, r"mean of shape \(2,\)"),
    (lambda be: be.linear_forward(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)), ValueError, "Din=3"),
    (lambda be: be.linear_forward(np.ones((2, 3), np.float32), np.ones(3, np.float32)), ValueError, "2-D"),
    (lambda be: be.linear_forward(np.ones((2, 3), np.float32), np.ones((4, 3), np.float32),
                                  np.ones(3, np.float32)), ValueError, r"bias of shape \(4,\)"),
    (lambda be: be.linear_forward(np.ones((2, 3), np.int64), np.ones((4, 3), np.float32)), TypeError, "int64"),
])
def test_bad_input_raises(name, call, error, match):
    with pytest.raises(error, match=match):
        call(backends.get_backend(name))


def test_kernel_lookup_falls_back_to_the_reference(c, monkeypatch):
    monkeypatch.setattr(backends, "_active", c)
    assert backends.kernel("layer_norm_backward") is c.layer_norm_backward
    bare = types.SimpleNamespace(name="bare", matmul=REF.matmul)    # a backend with no fused kernels
    monkeypatch.setattr(backends, "_active", bare)
    assert backends.kernel("gelu_forward") is REF.gelu_forward
    y = F.gelu(mt.tensor(np.array([-1.0, 0.5], np.float32)))
    np.testing.assert_allclose(y.data, TF.gelu(torch.tensor([-1.0, 0.5])).numpy(), rtol=1e-6)


def test_c_results_do_not_depend_on_threads(c):
    x, g = f32(5, (300, 70), 2.0), f32(6, (300, 70))
    w, b = f32(7, 70), f32(8, 70)
    a, bm = f32(9, (3000, 50)).T, f32(10, (3000, 70))              # K = 3000: several K blocks
    before = backends.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            backends.set_num_threads(n)
            _, mean, rstd = c.layer_norm_forward(x, w, b, 1e-5)
            runs.append(c.layer_norm_backward(g, x, w, mean, rstd) +
                        (c.gelu_forward(x), c.linear_forward(g, x[:50], w[:50]), c.matmul(a, bm)))
    finally:
        backends.set_num_threads(before)
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(runs[0][-1], a.astype(np.float64) @ bm, rtol=1e-4, atol=1e-3)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_fused_ops_against_torch(backend, dtype):
    try:
        previous = backends.get_backend()
        backends.set_backend(backend)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))
    rtol, atol = F64 if dtype == np.float64 else (1e-5, 1e-6)
    try:
        x = make_array(7, (3, 4, 9), dtype, noncontiguous=True) * 2
        w, b = make_array(8, (9,), dtype), make_array(9, (9,), dtype)
        check_against_torch(F.gelu, TF.gelu, [x], rtol, atol)
        check_against_torch(lambda t: t.softmax(1), lambda t: t.softmax(1), [x], rtol, atol)
        check_against_torch(lambda t: t.softmax(-1), lambda t: t.softmax(-1), [x], rtol, atol)
        check_against_torch(lambda t, w, b: F.layer_norm(t, w, b), lambda t, w, b: TF.layer_norm(t, (9,), w, b),
                            [x, w, b], rtol, atol)
    finally:
        backends.set_backend(previous.name)
