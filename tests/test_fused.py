"""The C backend's fused kernels (GELU, layer norm, softmax, the GEMM with a bias, the
strided copy, the band products, attention) and its ops' float64 fallback (c_ops); the ops on every backend are in
test_backend_ops.py.

Every C version (the reference loops and each fast ISA this CPU runs) is
checked against the reference ops of minit2t/ops evaluated in float64, and the
kernel functions also against torch: forward and backward, odd sizes (around
the vector widths, the GELU work blocks and the layer-norm row chunks),
non-contiguous inputs, the float64 fallback of the ops and bad input.

Legend: R rows, D layer-norm width, N softmax width, n elements.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import minit2t as mt
import minit2t.backends as backends
from helpers import assert_close, reference, relative_error
from minit2t import ops
from minit2t.ops.function import Context
from strategies import fused_shapes, gemm_cases, make_array, seeds


@pytest.fixture(scope="module")
def c():
    """The C backend's kernels (c_kernels: also its lib, ffi, ptr and strides)."""
    try:
        backends.get_backend("c")
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))
    from minit2t.backends import c_kernels
    return c_kernels


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
    want, (want_g,) = reference(ops.GELU, x, grad=g)
    for level in levels(c):
        y, gx = out(x.shape), out(x.shape)
        getattr(c.lib, "gelu_forward_" + level)(c.ptr(x), c.ptr(y), x.size)
        getattr(c.lib, "gelu_backward_" + level)(c.ptr(g), c.ptr(x), c.ptr(gx), x.size)
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-37, err_msg=level)
        np.testing.assert_allclose(gx, want_g, rtol=1e-6, atol=1e-6, err_msg=level)


@pytest.mark.parametrize("r, d", [(1, 1), (5, 7), (33, 8), (40, 27), (70, 33), (3, 130)])
def test_layer_norm_every_level(c, r, d):
    wide = f32(r * d, (r, d + 5), 2.0) + 0.5
    x = wide[:, 2:d + 2]                                            # (R, D), row stride D + 5
    g = f32(r + d, (r, d))
    w, b = f32(1, d), f32(2, d)
    x64 = x.astype(np.float64)
    want_y, want_b = reference(ops.LayerNorm, x, w, b, grad=g, eps=1e-5)
    want = want_y, x64.mean(-1), 1 / np.sqrt(x64.var(-1) + 1e-5)              # y, mean, rstd
    for level in levels(c):
        y, mean, rstd = out((r, d)), out(r), out(r)
        getattr(c.lib, "layer_norm_forward_" + level)(c.ptr(x), d + 5, c.ptr(w), c.ptr(b), 1e-5, c.ptr(y),
                                                      c.ptr(mean), c.ptr(rstd), r, d)
        for got, ref in zip((y, mean, rstd), want):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=level)
        gx, gw, gb = out((r, d)), out(d), out(d)
        getattr(c.lib, "layer_norm_backward_" + level)(c.ptr(g), d, c.ptr(x), d + 5, c.ptr(w), c.ptr(mean),
                                                       c.ptr(rstd), c.ptr(gx), c.ptr(gw), c.ptr(gb), r, d)
        for what, got, ref in zip(("gx", "gw", "gb"), (gx, gw, gb), want_b):
            assert_close(got, ref, 1e-5, _ln_atol(g, w, rstd), f"{level} {what}")


@pytest.mark.parametrize("r, n", [(1, 1), (3, 7), (4, 8), (5, 9), (9, 65), (2, 130)])
def test_softmax_every_level(c, r, n):
    x, g = f32(r * n, (r, n), 4.0), f32(r + n, (r, n))
    x[0, 0] = -np.inf if n > 1 else x[0, 0]                          # a masked entry
    want, (want_g,) = reference(ops.Softmax, x, grad=g)
    for level in levels(c):
        y, gx = out((r, n)), out((r, n))
        getattr(c.lib, "softmax_forward_" + level)(c.ptr(x), c.ptr(y), r, n)
        getattr(c.lib, "softmax_backward_" + level)(c.ptr(g), c.ptr(y), c.ptr(gx), r, n)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7, err_msg=level)
        np.testing.assert_allclose(gx, want_g, rtol=1e-5, atol=1e-6, err_msg=level)


@pytest.mark.parametrize("n", [5, 16, 37])
def test_softmax_special_rows_every_level(c, n):
    """The exp of a score less its row's maximum (vexp_nonpos) at the edges: a NaN, +inf, every entry
    -inf, -inf entries, entries 200 below the maximum (their exp is 0 in float32): NaN rows where the
    reference has them, exact zeros where it has zeros."""
    x = f32(n, (6, n), 4.0)
    x[0, 1], x[1, 2], x[2, :] = np.nan, np.inf, -np.inf
    x[3, ::2] = -np.inf
    x[4, 1:] = x[4, 0] - 200.0
    x[5, :] = -3e38                                                   # finite, all equal
    with np.errstate(invalid="ignore"):
        want = reference(ops.Softmax, x)
    for level in levels(c):
        y = out(x.shape)
        getattr(c.lib, "softmax_forward_" + level)(c.ptr(x), c.ptr(y), *x.shape)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7, err_msg=level)
        assert (y[3, ::2] == 0).all() and (y[4, 1:] == 0).all(), level


@pytest.mark.parametrize("B, T, d, w", [(1, 1, 1, 1), (2, 7, 3, 4), (1, 5, 17, 9), (2, 40, 64, 49),
                                        (1, 30, 33, 16), (2, 6, 8, 0), (1, 3, 9, 20)])
def test_band_every_level(c, B, T, d, w):
    """band_dot / band_mix / band_mix_t: the reference ops' forward and backward (ops.band)."""
    a, b, p = f32(T, (B, T, d)), f32(T + 1, (B, T, d)), f32(T + 2, (B, T, w))
    want_s, (want_ga, want_gb) = reference(ops.BandDot, a, b, grad=p, window=w)   # ga = mix(p, b), gb = mix_t(p, a)
    for level in levels(c):
        s, ga, gb = out((B, T, w)), out((B, T, d)), out((B, T, d))
        getattr(c.lib, "band_dot_" + level)(c.ptr(a), c.ptr(b), c.ptr(s), B, T, d, w)
        getattr(c.lib, "band_mix_" + level)(c.ptr(p), c.ptr(b), c.ptr(ga), B, T, d, w)
        getattr(c.lib, "band_mix_t_" + level)(c.ptr(p), c.ptr(a), c.ptr(gb), B, T, d, w)
        for what, got, ref in (("dot", s, want_s), ("mix", ga, want_ga), ("mix_t", gb, want_gb)):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=f"{level} {what}")


@pytest.mark.parametrize("n", [1, 7, 16, 17, 16 * 4096 + 13, 3 * 16 * 4096])
def test_add_every_level(c, n):
    """add_arrays: a + b exactly (one rounding per element, as NumPy's), across thread blocks."""
    a, b = f32(n, n), f32(n + 1, n)
    for level in levels(c):
        y = out(n)
        getattr(c.lib, "add_arrays_" + level)(c.ptr(a), c.ptr(b), c.ptr(y), n)
        np.testing.assert_array_equal(y, a + b, err_msg=level)


def _on_line(n, offset):
    """n NaNs starting `offset` floats past a 64-byte boundary."""
    raw = np.full(n + 32, np.nan, np.float32)
    start = -raw.ctypes.data % 64 // 4 + offset
    return raw[start:start + n]


@pytest.mark.parametrize("offset", [0, 1])
def test_streamed_outputs_every_level(c, offset):
    """Outputs of 4 MiB and more that start on a 64-byte line (offset 0) are written by streaming stores
    (fused_fast.c), the others (offset 1) by plain ones: the sum, GELU and layer norm give the same values
    either way, through the thread blocks, the last partial block and the masked tail."""
    r, d = 8195, 128                                                 # 4.2 MB of rows
    n = r * d + 13                                                   # and a tail past whole vectors
    a, b = f32(1, n, 3.0), f32(2, n)
    x, w, bias = a[:r * d].reshape(r, d), f32(3, d), f32(4, d)
    want_gelu, want_ln = reference(ops.GELU, a), reference(ops.LayerNorm, x, w, bias, eps=1e-5)
    assert n * 4 >= 4 << 20
    for level in levels(c):
        y = _on_line(n, offset)
        getattr(c.lib, "add_arrays_" + level)(c.ptr(a), c.ptr(b), c.ptr(y), n)
        np.testing.assert_array_equal(y, a + b, err_msg=level)
        y = _on_line(n, offset)
        getattr(c.lib, "gelu_forward_" + level)(c.ptr(a), c.ptr(y), n)
        np.testing.assert_allclose(y, want_gelu, rtol=1e-6, atol=1e-37, err_msg=level)
        y, mean, rstd = _on_line(r * d, offset).reshape(r, d), out(r), out(r)
        getattr(c.lib, "layer_norm_forward_" + level)(c.ptr(x), d, c.ptr(w), c.ptr(bias), 1e-5, c.ptr(y),
                                                      c.ptr(mean), c.ptr(rstd), r, d)
        np.testing.assert_allclose(y, want_ln, rtol=1e-5, atol=1e-5, err_msg=level)


@pytest.mark.parametrize("r, d", [(1, 1), (0, 5), (31, 7), (33, 16), (65, 17), (1000, 64), (8320, 130)])
def test_sum_rows_every_level(c, r, d):
    """sum_rows: the rows' sum (Linear's bias gradient), across row chunks, vector runs and tails, from a
    strided view too."""
    x = f32(r + d, (r, d + 3), 2.0)[:, 2:2 + d]                   # row stride d + 3
    want = x.astype(np.float64).sum(axis=0)
    tol = 1e-6 * max(1.0, float(np.abs(x).sum(axis=0).max(initial=0)))
    for level in levels(c):
        y = out(d)
        getattr(c.lib, "sum_rows_" + level)(c.ffi.cast("float *", x.ctypes.data), d + 3, c.ptr(y), r, d)
        np.testing.assert_allclose(y, want, rtol=0, atol=tol, err_msg=level)
    np.testing.assert_allclose(c.sum_rows(x.reshape(1, r, d)), want, rtol=0, atol=tol)


@pytest.mark.parametrize("B, N, h, d", [(1, 1, 1, 1), (2, 7, 2, 5), (2, 65, 4, 32), (1, 33, 3, 17),
                                        (1, 130, 1, 48), (2, 16, 2, 16), (2, 5, 1, 0), (2, 0, 2, 4)])
def test_attention_every_level(c, B, N, h, d):
    """attention_forward / _backward: the reference op's output, probabilities and gradient
    (ops.Attention), at sizes around the vector widths and register tiles, with a tail of
    columns (N, d not multiples of 8 or 16) and of rows. P's rows are padded with zeros to
    Np = attention_row(N), a multiple of 16; a forward without P (NULL) gives the same output."""
    qkv, g, scale = f32(N, (B, N, 3 * h * d), 2.0), f32(N + 1, (B, N, h * d)), 0.3
    want, (want_g,) = reference(ops.Attention, qkv, grad=g, num_heads=h, scale=scale)
    ctx = Context(ops.Attention)
    ops.Attention.forward(ctx, qkv.astype(np.float64), num_heads=h, scale=scale)
    Np = c.lib.attention_row(N)
    assert Np % 16 == 0 and N <= Np < N + 16
    want_p = np.zeros((B, h, N, Np))
    want_p[..., :N] = ctx.saved[1]
    for level in levels(c):
        o, o2, p, gqkv = out((B, N, h * d)), out((B, N, h * d)), out((B, h, N, Np)), out((B, N, 3 * h * d))
        forward, backward = (getattr(c.lib, f"attention_{way}_{level}") for way in ("forward", "backward"))
        assert forward(c.ptr(qkv), c.ffi.NULL, c.ptr(o), c.ptr(p), B, N, h, d, scale, 0) == 0
        assert forward(c.ptr(qkv), c.ffi.NULL, c.ptr(o2), c.ffi.NULL, B, N, h, d, scale, 0) == 0
        assert backward(c.ptr(qkv), c.ptr(p), c.ptr(g), c.ptr(gqkv), B, N, h, d, scale, 0) == 0
        for what, got, ref in (("out", o, want), ("out without P", o2, want), ("p", p, want_p),
                               ("gqkv", gqkv, want_g)):
            assert_close(got, ref, 2e-6, 1e-6, f"{level} {what}")      # norm-wise; float32 sums of N terms
        assert not p[..., N:].any(), f"{level}: P's padding is not zero"


@pytest.mark.parametrize("B, N, h, d", [(1, 1, 1, 1), (2, 7, 2, 5), (2, 33, 4, 32), (1, 17, 1, 16)])
def test_attention_key_bias_every_level(c, B, N, h, d):
    """attention_forward with kbias (B, N), ToMe's log sizes: the reference op's output and P."""
    qkv, scale = f32(N, (B, N, 3 * h * d), 2.0), 0.3
    kbias = np.log(np.random.default_rng(N).integers(1, 9, (B, N))).astype(np.float32)
    ctx = Context(ops.Attention)
    want = ops.Attention.forward(ctx, qkv.astype(np.float64), num_heads=h, scale=scale,
                                 key_bias=kbias.astype(np.float64))
    Np = c.lib.attention_row(N)
    want_p = np.zeros((B, h, N, Np))
    want_p[..., :N] = ctx.saved[1]
    for level in levels(c):
        o, o2, p = out((B, N, h * d)), out((B, N, h * d)), out((B, h, N, Np))
        forward = getattr(c.lib, "attention_forward_" + level)
        assert forward(c.ptr(qkv), c.ptr(kbias), c.ptr(o), c.ptr(p), B, N, h, d, scale, 0) == 0
        assert forward(c.ptr(qkv), c.ptr(kbias), c.ptr(o2), c.ffi.NULL, B, N, h, d, scale, 0) == 0
        for what, got, ref in (("out", o, want), ("out without P", o2, want), ("p", p, want_p)):
            assert_close(got, ref, 2e-6, 1e-6, f"{level} {what}")


@pytest.mark.parametrize("B, N, h, d", [(1, 1, 1, 1), (2, 7, 2, 5), (2, 65, 4, 32), (1, 33, 3, 17),
                                        (2, 16, 2, 16)])
def test_attention_bf16_every_level(c, B, N, h, d):
    """attention_forward / _backward with bf16 = 1: the reference op under mt.autocast, run in
    float32 (its products on the rounded operands). The rounding is the same everywhere; what
    differs is the order of the sums (the references sum in double), and a P or gS within that
    round-off of a bf16 rounding boundary rounds to the other side, moving by 2^-8 of itself.
    gS = P (gP - rowsum) cancels, so its round-off, and its flips, are the larger: up to ~1e-4
    norm-wise in gqkv (measured 5e-5 at 2 x 65 x 4 x 32), hence 5e-4. A kernel that forgot to
    round its operands is off by 5e-3 to 1e-2 there, far outside."""
    qkv, g, scale = f32(N, (B, N, 3 * h * d), 2.0), f32(N + 1, (B, N, h * d)), 0.3
    with mt.autocast("bfloat16"):
        ctx = Context(ops.Attention)
    want = ops.Attention.forward(ctx, qkv, num_heads=h, scale=scale)
    (want_g,) = ops.Attention.backward(ctx, g)
    Np = c.lib.attention_row(N)
    want_p = np.zeros((B, h, N, Np), np.float32)
    want_p[..., :N] = ctx.saved[1]
    plain = out((B, N, h * d))
    assert c.lib.attention_forward_ref(c.ptr(qkv), c.ffi.NULL, c.ptr(plain), c.ffi.NULL, B, N, h, d, scale, 0) == 0
    for level in levels(c):
        o, p, gqkv = out((B, N, h * d)), out((B, h, N, Np)), out((B, N, 3 * h * d))
        forward, backward = (getattr(c.lib, f"attention_{way}_{level}") for way in ("forward", "backward"))
        assert forward(c.ptr(qkv), c.ffi.NULL, c.ptr(o), c.ptr(p), B, N, h, d, scale, 1) == 0
        assert backward(c.ptr(qkv), c.ptr(p), c.ptr(g), c.ptr(gqkv), B, N, h, d, scale, 1) == 0
        for what, got, ref in (("out", o, want), ("p", p, want_p), ("gqkv", gqkv, want_g)):
            assert_close(got, ref, 5e-4, 1e-6, f"{level} bf16 {what}")
        assert np.array_equal(p, mt.amp.to_bf16(p)), f"{level}: P is not kept in bf16"
    if N * d > 8:                                      # the rounding shows: off float32 by ~2^-9
        assert relative_error(plain, want) > 1e-3


def _sgemm_views_every_level(c, a, b):
    """sgemm at every ISA level on a 2-D view a (passed by its first element and strides) and b."""
    (m, k), n = a.shape, b.shape[1]
    want = a.astype(np.float64) @ b
    for level in levels(c):
        got = out((1, m, n))
        getattr(c.lib, "sgemm_" + level)(1, m, n, k, c.ffi.cast("float *", a.ctypes.data),
                                         c.strides(a, (None, 0, 1)), c.ptr(b), c.strides(b, (None, 0, 1)),
                                         c.ptr(got), c.strides(got, (0, 1)))
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=4e-6 * (k + 1), err_msg=level)


@pytest.mark.parametrize("r, dout, din, cut", [(600, 130, 70, 130), (300, 12, 33, 10), (300, 6, 20, 5),
                                                (9000, 384, 128, 384), (257, 128, 5, 127)])
def test_sgemm_transposed_a_every_level(c, r, dout, din, cut):
    """A weight gradient g^T x: A = g^T is read in place (rows contiguous, column stride dout), its
    last rows (M not a multiple of the micro-tile) packed; a view cut short of g's rows ends where
    the array does, so no read may pass it."""
    g, x = f32(r, (r, dout)), f32(r + 1, (r, din))
    _sgemm_views_every_level(c, g[:, :cut].T, x)                    # A (cut, r), strides (1, dout)


@pytest.mark.parametrize("m, k, n", [(150, 129, 100), (13, 7, 97), (24, 520, 65), (301, 27, 384),
                                     (40, 300, 130), (20, 509, 40)])
def test_sgemm_packed_rows_every_level(c, m, k, n):
    """A with contiguous columns against a wide B, or with rows 2 KB apart (k = 509, every ISA): its rows
    are packed through register transposes, 8 columns at a time and then the last k % 8 (in every K
    block), and its last rows (m not a multiple of the micro-tile) one float at a time. A is a column
    slice that ends where its array does, so no read may pass it."""
    _sgemm_views_every_level(c, f32(m, (m, k + 3))[:, 3:], f32(m + 1, (k, n)))   # A's row stride k + 3


@pytest.mark.parametrize("m, k, n, bias", [(8203, 64, 130, True), (16141, 520, 130, False)])
def test_sgemm_streamed_c_every_level(c, m, k, n, bias):
    """A C of 4 MB and more on 64-byte lines is written by streaming stores in its last K block (after
    an ordinary one when k = 520 is two; each thread's slice of rows still 4 MB): the same products,
    the bias, the tiles cut by M's and N's edges. Against float64, at the fast levels."""
    a, b, bv = f32(m, (m, k)), f32(m + 1, (k, n)), f32(m + 2, n)
    want = a.astype(np.float64) @ b + (bv if bias else 0.0)
    n16 = (n + 15) // 16 * 16                                        # rows on 64-byte lines
    for level in levels(c)[1:]:
        lines = _on_line(m * n16, 0).reshape(m, n16)
        got = lines[:, :n]
        assert got.ctypes.data % 64 == 0 and got.nbytes >= 4 << 20
        args = [1, m, n, k, c.ptr(a), c.strides(a, (None, 0, 1)), c.ptr(b), c.strides(b, (None, 0, 1))]
        name = ("sgemm_bias_" if bias else "sgemm_") + level
        getattr(c.lib, name)(*args, *([c.ptr(bv)] if bias else []), c.ffi.cast("float *", got.ctypes.data),
                             c.strides(got[None], (0, 1)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=4e-6 * (k + 1), err_msg=level)
        assert np.isnan(lines[:, n:]).all(), level                   # nothing past n


@given(case=gemm_cases(), seed=seeds)
def test_sgemm_bias_every_level(c, case, seed):
    a, b = case
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    bt, m, k, n = max(a3.shape[0], b3.shape[0]), a.shape[-2], a.shape[-1], b.shape[-1]
    bias = f32(seed, n)
    want = np.matmul(a3.astype(np.float64), b3.astype(np.float64)) + bias    # (Bt, M, N)
    sa = c.strides(a3, (0 if a3.shape[0] > 1 else None, 1, 2))
    sb = c.strides(b3, (0 if b3.shape[0] > 1 else None, 1, 2))
    for level in levels(c):
        got = out((bt, m, n))
        getattr(c.lib, "sgemm_bias_" + level)(bt, m, n, k, c.ptr(a3), sa, c.ptr(b3), sb, c.ptr(bias),
                                              c.ptr(got), c.strides(got, (0, 1)))
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
        getattr(c.lib, "copy_strided_" + level)(c.ptr(src), c.strides(src, range(src.ndim)), c.ptr(dst),
                                                c.strides(dst, range(dst.ndim)), c.ffi.new("int64_t[]", shape),
                                                len(shape))
        np.testing.assert_array_equal(dst, src, err_msg=level)


@pytest.mark.parametrize("outer, ni, nj", [(1, 8, 8), (3, 7, 9), (2, 9, 8), (2, 17, 31), (128, 64, 36), (4, 27, 16)])
def test_copy_transposed_every_level(c, outer, ni, nj):
    """A transpose (src contiguous along dst's next-to-last dim) takes the 8 x 8 register tiles,
    with scalar edges; src with a stepped last dim, dst a view with longer rows."""
    big = f32(ni + nj, (outer, 2 * nj, ni))
    src = big[:, ::-2].transpose(0, 2, 1)                           # (outer, ni, nj): i stride 1, j stride -2 ni
    dst_big = out((outer, ni, nj + 5))
    dst = dst_big[:, :, 3:3 + nj]                                   # row stride nj + 5
    for level in levels(c):
        dst[...] = np.nan
        getattr(c.lib, "copy_strided_" + level)(c.ffi.cast("float *", src.ctypes.data), c.strides(src, range(3)),
                                                c.ffi.cast("float *", dst.ctypes.data), c.strides(dst, range(3)),
                                                c.ffi.new("int64_t[]", src.shape), 3)
        np.testing.assert_array_equal(dst, src, err_msg=level)
        assert np.isnan(dst_big[:, :, :3]).all() and np.isnan(dst_big[:, :, 3 + nj:]).all(), level


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


# ---- the kernel functions: C against the reference and torch -----------------------

@pytest.mark.parametrize("r, din, dout", [(1, 1, 1), (37, 5, 17), (300, 130, 70), (9, 700, 33)])
def test_c_linear_forward_matches_reference_and_torch(c, r, din, dout):
    x = make_array(r, (r, din + 3), np.float32)[:, 1:din + 1]              # rows strided
    w, b = f32(din, (dout, din)), f32(dout, dout)
    want = reference(ops.Linear, x, w, b)
    got = c.linear_forward(x, w, b)
    assert got.shape == (r, dout) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=4e-6 * (din + 1))
    np.testing.assert_allclose(got, TF.linear(*map(torch.from_numpy, (np.ascontiguousarray(x), w, b))).numpy(),
                               rtol=1e-5, atol=4e-6 * (din + 1))


@given(shape=fused_shapes(), seed=seeds, nc=st.booleans())
def test_c_functions_match_reference_and_torch(c, shape, seed, nc):
    x = make_array(seed, shape, np.float32, noncontiguous=nc) * np.float32(3)
    g = make_array(seed + 1, shape, np.float32, noncontiguous=nc)
    w, b = f32(seed + 2, shape[-1]), f32(seed + 3, shape[-1])
    tx = torch.from_numpy(np.ascontiguousarray(x))

    y = c.gelu_forward(x)
    want, (want_g,) = reference(ops.GELU, x, grad=g)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(y, TF.gelu(tx).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.gelu_backward(g, x), want_g, rtol=1e-6, atol=1e-6)

    s = c.softmax_forward(x)
    np.testing.assert_allclose(s, torch.softmax(tx, -1).numpy(), rtol=1e-5, atol=1e-7)
    _, (want_g,) = reference(ops.Softmax, x, grad=g)
    assert_close(c.softmax_backward(g, s), want_g, 1e-5, 1e-7, "softmax")

    y, mean, rstd = c.layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_allclose(y, TF.layer_norm(tx, shape[-1:], torch.from_numpy(w), torch.from_numpy(b)).numpy(),
                               rtol=1e-4, atol=1e-4)
    grads = c.layer_norm_backward(g, x, w, mean, rstd)
    _, want = reference(ops.LayerNorm, x, w, b, grad=g, eps=1e-5)
    for what, got, ref in zip(("gx", "gw", "gb"), grads, want):
        assert got.shape == ref.shape and got.dtype == np.float32
        assert_close(got, ref, 1e-5, _ln_atol(g, w, rstd), what)


def test_c_ops_send_float64_and_mixed_to_the_reference(c):
    from minit2t.backends import c_ops
    x, w, b = f32(0, (4, 9)), f32(2, 9), f32(3, 9)
    x64 = x.astype(np.float64)
    cases = [(ops.GELU, (x64,), {}), (ops.Softmax, (x64,), {"axis": 0}),
             (ops.LayerNorm, (x, w.astype(np.float64), b), {"eps": 1e-5}), (ops.Linear, (x64, w[None], b[:1]), {})]
    for op, arrays, options in cases:
        fast, ref = Context(c_ops.OPS[op]), Context(op)
        got, want = c_ops.OPS[op].forward(fast, *arrays, **options), op.forward(ref, *arrays, **options)
        assert got.dtype == want.dtype == np.float64, op.__name__
        np.testing.assert_array_equal(got, want, err_msg=op.__name__)
        gy = np.ones_like(want)
        for gf, gr in zip(c_ops.OPS[op].backward(fast, gy), op.backward(ref, gy)):
            np.testing.assert_array_equal(gf, gr, err_msg=op.__name__)
    with pytest.raises(TypeError, match="float32"):
        c.gelu_forward(x64)                                         # the kernels themselves: float32 only


@pytest.mark.parametrize("call, error, match", [
    (lambda c: c.gelu_forward(np.ones(3, np.int32)), TypeError, "int32"),
    (lambda c: c.gelu_forward(np.float32(1.0)), ValueError, "shape ()"),
    (lambda c: c.gelu_backward(np.ones(3, np.float32), np.ones(4, np.float32)), ValueError, r"\(3,\).*\(4,\)"),
    (lambda c: c.softmax_backward(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)), ValueError, "y"),
    (lambda c: c.layer_norm_forward(np.ones((2, 3), np.float32), np.ones(4, np.float32),
                                    np.ones(3, np.float32), 1e-5), ValueError, r"weight of shape \(3,\)"),
    (lambda c: c.layer_norm_forward(np.ones((2, 3), np.float32), np.ones(3, np.float32),
                                    np.ones(3, np.float32), -1.0), ValueError, "eps"),
    (lambda c: c.layer_norm_backward(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32),
                                     np.ones(3, np.float32), np.ones(3, np.float32), np.ones(2, np.float32)),
     ValueError, r"mean of shape \(2,\)"),
    (lambda c: c.linear_forward(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32), None), ValueError, "Din=3"),
    (lambda c: c.linear_forward(np.ones((2, 3), np.float32), np.ones(3, np.float32), None), ValueError, "2-D"),
    (lambda c: c.linear_forward(np.ones((2, 3), np.float32), np.ones((4, 3), np.float32),
                                np.ones(3, np.float32)), ValueError, r"bias of shape \(4,\)"),
    (lambda c: c.linear_forward(np.ones((2, 3), np.int64), np.ones((4, 3), np.float32), None), TypeError, "int64"),
    (lambda c: c.band_dot(np.ones((2, 3, 4), np.float32), np.ones((2, 3, 5), np.float32), 3), ValueError, "same shape"),
    (lambda c: c.band_mix(np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32)), ValueError, "same"),
    (lambda c: c.band_mix_t(np.ones((3, 4), np.float32), np.ones((2, 4, 5), np.float32)), ValueError, r"\(B, T, w\)"),
    (lambda c: c.band_dot(np.ones((2, 3, 4), np.float64), np.ones((2, 3, 4), np.float64), 3), TypeError, "float32"),
    (lambda c: c.sum_rows(np.ones((2, 3), np.float64)), TypeError, "float32"),
    (lambda c: c.sum_rows(np.float32(1.0)), ValueError, "at least one dim"),
    (lambda c: c.attention_forward(np.ones((2, 3, 12), np.float32), 3, 0.5), ValueError, "divisible by num_heads=3"),
    (lambda c: c.attention_forward(np.ones((2, 3, 12), np.float32), 2, float("nan")), ValueError, "finite"),
    (lambda c: c.attention_forward(np.ones((2, 3, 12), np.float64), 2, 0.5), TypeError, "float32"),
    (lambda c: c.attention_backward(np.ones((2, 3, 5), np.float32), np.ones((2, 3, 12), np.float32),
                                    np.ones((2, 2, 3, 16), np.float32), 0.5), ValueError, r"g \(2, 3, 4\)"),
    (lambda c: c.attention_backward(np.ones((2, 3, 4), np.float32), np.ones((2, 3, 12), np.float32),
                                    np.ones((2, 2, 3, 3), np.float32), 0.5), ValueError, r"p \(2, h, 3, 16\)"),
])
def test_c_kernels_refuse_bad_input(c, call, error, match):
    with pytest.raises(error, match=match):
        call(c)
def test_c_results_do_not_depend_on_threads(c):
    from minit2t.backends.c_linear_add import linear_add_forward
    x, g = f32(5, (300, 70), 2.0), f32(6, (300, 70))
    w, b = f32(7, 70), f32(8, 70)
    a, bm = f32(9, (3000, 50)).T, f32(10, (3000, 70))              # K = 3000: several K blocks
    qkv = f32(11, (16, 65, 3 * 64))                                # 32 heads of N = 65, d = 32
    before = backends.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            backends.set_num_threads(n)
            _, mean, rstd = c.layer_norm_forward(x, w, b, 1e-5)
            o, p = c.attention_forward(qkv, 2, 0.3)
            image = f32(13, (4, 9, 9, 32)).transpose(0, 3, 1, 2)    # channels last: the tokens' soft split
            cols = c.unfold(image, 3, 2, 1)                           # (4, 288, 25), tokens-major
            runs.append(c.layer_norm_backward(g, x, w, mean, rstd) +
                        (c.gelu_forward(x), c.sum_rows(f32(12, (8320, 70))), c.linear_forward(g, x[:50], w[:50]), o, p,
                         c.attention_backward(o, qkv, p, 0.3),
                         linear_add_forward(bm, bm[:40, :70], w[:40], f32(14, (3000, 40))), cols,
                         c.fold((cols.transpose(0, 2, 1) * 0.5).transpose(0, 2, 1), (9, 9), 3, 2, 1),
                         c.matmul(a, bm)))
    finally:
        backends.set_num_threads(before)
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(runs[0][-1], a.astype(np.float64) @ bm, rtol=1e-4, atol=1e-3)


def test_c_attention_under_no_grad_keeps_no_probabilities(c, monkeypatch):
    """Under no_grad the C Attention asks the kernel for no P (inference writes none) and
    returns what the tracked forward returns."""
    import minit2t as mt
    qkv = f32(3, (2, 9, 24))
    kept = []
    real = c.attention_forward
    monkeypatch.setattr(c, "attention_forward", lambda *a: kept.append(a[3]) or real(*a))   # keep
    before = backends.get_backend().name
    backends.set_backend("c")
    try:
        tracked = mt.nn.functional.attention(mt.tensor(qkv, requires_grad=True), 2, 0.4)
        with mt.no_grad():
            plain = mt.nn.functional.attention(mt.tensor(qkv), 2, 0.4)
    finally:
        backends.set_backend(before)
    assert kept == [True, False]
    np.testing.assert_array_equal(plain.data, tracked.data)


@pytest.mark.parametrize("B, h, key_bias", [(1, 1, False), (1, 1, True), (3, 2, True)])
def test_c_attention_fused_and_composed_agree_with_the_reference(c, B, h, key_bias):
    """c_attention runs heads on the fused kernel when there are at least as many as threads, and
    as batched GEMMs + the softmax kernel otherwise (one image through a one-head layer): both give
    the reference op's output and gradient, and leave qkv as it was."""
    import minit2t as mt
    N, d = 19, 6
    qkv, g = f32(B, (B, N, 3 * h * d)), f32(B + 1, (B, N, h * d))
    bias = np.log(np.arange(1, B * N + 1, dtype=np.float32).reshape(B, N)) if key_bias else None
    want, (want_g,) = reference(ops.Attention, qkv, grad=g, num_heads=h, scale=0.3,
                                **({"key_bias": bias.astype(np.float64)} if key_bias else {}))
    before, threads = backends.get_backend().name, backends.get_num_threads()
    backends.set_backend("c")
    try:
        for n in (1, 2, 8):                                           # 8 threads: always composed here
            backends.set_num_threads(n)
            t, kept = mt.tensor(qkv.copy(), requires_grad=True), qkv.copy()
            y = mt.nn.functional.attention(t, h, 0.3, key_bias=bias)
            assert y._ctx.composed == (B * h < n)
            y.backward(g)
            assert_close(y.data, want, 2e-6, 1e-6, f"{n} threads: out")
            assert_close(t.grad, want_g, 2e-6, 1e-6, f"{n} threads: gqkv")
            np.testing.assert_array_equal(t.data, kept)
    finally:
        backends.set_backend(before)
        backends.set_num_threads(threads)


# ---- ToMe's matching (cext/match.c) ----------------------------------------------------

def _keys(seed, B, h, N, d):
    """Keys (B, h, N, d) as the attention has them: a strided view into a packed qkv (B, N, 3 h d)."""
    qkv = f32(seed, (B, N, 3 * h * d))
    return qkv[:, :, h * d:2 * h * d].reshape(B, N, h, d).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("B, h, N, d, r", [(3, 4, 65, 32, 16), (2, 2, 7, 5, 3), (1, 1, 2, 3, 0), (4, 3, 64, 17, 31),
                                           (2, 4, 197, 64, 8), (2, 1, 3, 1, 1)])
def test_tome_match_every_level_gives_the_reference_slots(c, B, h, N, d, r):
    """tome_match_{ref, avx2, avx512} on the strided keys, and on a contiguous copy, give the
    slots of ops.ToMeMatch's NumPy reference (float64 scores: no near-tie flips between them)."""
    k = _keys(B + N, B, h, N, d)
    want = ops.ToMeMatch.forward(None, k.astype(np.float64), r)
    for level in levels(c):
        for keys in (k, np.ascontiguousarray(k)):
            slot = np.full((B, N), -7, np.int64)
            sb, sh, sn, _ = (s // 4 for s in keys.strides)
            status = getattr(c.lib, f"tome_match_{level}")(
                c.ffi.cast("float *", keys.ctypes.data), c.ffi.cast("int64_t *", slot.ctypes.data), B, h, N, d,
                sb, sh, sn, r)
            assert status == 0
            np.testing.assert_array_equal(slot, want, err_msg=level)
    assert sorted(set(want[0])) == list(range(N - r))                 # N - r output tokens, each used


def test_tome_match_ranks_nan_as_numpy_does(c):
    """A token whose keys hold a NaN has NaN similarities: the reference never merges it (NumPy sorts
    NaN last); the kernel does the same, and the other tokens' slots agree."""
    from minit2t.backends.c_match import tome_match
    k = np.ascontiguousarray(_keys(5, 2, 2, 21, 4))
    k[0, :, 4, 1] = np.nan                                            # A token 2 of image 0
    k[1, 0, 7, 0] = np.nan                                            # B token 3 of image 1
    np.testing.assert_array_equal(tome_match(k, 6), ops.ToMeMatch.forward(None, k, 6))


def test_tome_match_op_runs_in_c_for_float32_and_refuses_bad_input(c, monkeypatch):
    from minit2t.backends import c_match
    monkeypatch.setattr(backends, "_active", backends.get_backend("c"))
    assert backends.implementation(ops.ToMeMatch) is c_match.ToMeMatch
    calls = []
    real = c_match.tome_match
    monkeypatch.setattr(c_match, "tome_match", lambda k, r: calls.append(k.dtype) or real(k, r))
    k = _keys(3, 2, 4, 33, 8)
    np.testing.assert_array_equal(ops.ToMeMatch.compute(k, 5), ops.ToMeMatch.forward(None, k.astype(np.float64), 5))
    ops.ToMeMatch.compute(k.astype(np.float64), 5)                    # float64: the reference
    assert calls == [np.float32]
    for bad, words in ((lambda: ops.ToMeMatch.compute(k, 17), "0 to 16 pairs of 33 tokens, got r=17"),
                       (lambda: ops.ToMeMatch.compute(k[0], 2), r"keys \(B, h, N, d\) of floats, got float32 \(4, 33, 8\)")):
        with pytest.raises(ValueError, match=words):
            bad()
