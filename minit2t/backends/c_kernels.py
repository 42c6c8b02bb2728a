"""The C backend's kernels, from cext/ through cffi; the ops of c_ops call them,
and the math they compute is the NumPy reference's in minit2t/ops.

    matmul, unfold, fold          the GEMM and im2col (float32 in C, float64 in NumPy)
    linear_forward                the GEMM with the bias added as each tile is written
    linear_operands, gemm_head    a Linear's checked operands, and the GEMM's first arguments for them
    gelu_*, layer_norm_*, softmax_*   fused forward and backward, float32 only
    add                           a + b of one shape (the residual sums), float32 only
    sum_rows                      the sum of the rows (Linear's bias gradient), float32 only
    band_dot, band_mix, band_mix_t    the band products of ops.band, float32 only
    attention_forward, attention_backward   ops.Attention, one head per work item, float32 only
    copy_into, copy_contiguous, empty   the strided copy on every thread; a pooled buffer

Legend: Bt matrices in a batch, M/K/N matrix sides, B batch, C channels, H/W
height/width, k kernel, s stride, p padding, L = Ho * Wo windows, "..." any
leading dims, R rows, D the normalised (last) dim, N the softmax dim; in attention
B batch, N tokens, h heads, d = D / h.

Shapes are checked first (_checks, ops.conv). The fused kernels take float32
only (TypeError otherwise: the ops send other dtypes to the reference). Views
are passed by their strides, with no copy, unless a stride is not a whole
number of floats (or, past the GEMM, the innermost stride is not 1).
Outputs come from a pool of recycled buffers (_cmem).
"""
import numpy as np

from minit2t.backends._cmem import contiguous, ffi, lib, pool, ptr, strides, usable
from minit2t.backends._checks import (check_copy, check_layer_norm, check_layer_norm_backward, check_linear,
                                      check_matmul, check_same_shape)
from minit2t.ops import attention, band, conv


def _all_f32(*arrays):
    return all(a.dtype == np.float32 for a in arrays)


def _float32(what, *arrays):
    if not _all_f32(*arrays):
        got = ", ".join(str(a.dtype) for a in arrays)
        raise TypeError(f"{what}: the C kernels take float32 arrays; got {got}")


# ---- GEMM and im2col: float32 in C, float64 in NumPy -----------------------------

def matmul(a, b, bf16=False):
    """a (M, K) @ b (K, N) -> (M, N); batched (Bt, M, K) @ (Bt, K, N) -> (Bt, M, N).
    bf16: the bf16 GEMM (float32 operands rounded to bfloat16 as they are packed, float32
    sums); float64 operands are never rounded."""
    a, b = np.asarray(a), np.asarray(b)
    shape = check_matmul(a, b)
    if a.dtype != np.float32 or b.dtype != np.float32:
        return np.matmul(a, b)               # float64: NumPy (the kernels are float32)
    a, b = usable(a), usable(b)
    if a.ndim == 3 and b.ndim == 2 and a.size and a.strides[0] == a.shape[1] * a.strides[1]:
        flat = a.reshape(-1, a.shape[2])     # (Bt*M, K), a view: one GEMM
        return _gemm(flat, b, (1, flat.shape[0], b.shape[1]), bf16).reshape(shape)
    bt = shape[0] if len(shape) == 3 else 1
    return _gemm(a, b, (bt,) + shape[-2:], bf16).reshape(shape)


def _gemm(a, b, shape, bf16=False):
    """C (Bt, M, N) = a @ b with a, b 2-D or 3-D (batch 1 broadcast); bf16: by sgemm_bf16."""
    bt, m, n = shape
    out = pool.empty(shape)
    if out.size:
        sa = strides(a, (0 if a.ndim == 3 and a.shape[0] > 1 else None, -2, -1))
        sb = strides(b, (0 if b.ndim == 3 and b.shape[0] > 1 else None, -2, -1))
        sc = strides(out, (0, 1))
        if bf16:
            lib.sgemm_bf16(bt, m, n, a.shape[-1], ptr(a), sa, ptr(b), sb, ffi.NULL, ptr(out), sc)
        else:
            lib.sgemm(bt, m, n, a.shape[-1], ptr(a), sa, ptr(b), sb, ptr(out), sc)
    return out


def unfold(x, kernel_size, stride, padding):
    """x (B, C, H, W) -> cols (B, C*k*k, L). A channels-last x (a T2T layer's tokens seen as an
    image: x.strides[1] is one float) gives cols as a view of a tokens-major (B, L, C*k*k) array,
    which cols.transpose(1, 2) (the soft split's tokens) finds contiguous; otherwise cols is
    contiguous."""
    x = np.asarray(x)
    k, s, p = conv.check_unfold(x, kernel_size, stride, padding)
    if x.dtype != np.float32:
        return conv.unfold(x, k, s, p)       # float64: the reference
    nb, nc, h, w = x.shape
    ho, wo = conv.windows(h, w, k, s, p)
    if _channels_last(x):                    # straight into the tokens' layout, x read in place
        x = usable(x)
        cols = pool.empty((nb, ho * wo, nc * k * k))           # (B, L, C*k*k)
        if cols.size:
            lib.unfold_tokens(ptr(x), strides(x, range(4)), ptr(cols), nb, nc, h, w, k, s, p)
        return cols.transpose(0, 2, 1)                         # (B, C*k*k, L)
    x = usable(x) if x.strides[3] == x.itemsize else copy_contiguous(x)    # the fast path: unit column stride
    cols = pool.empty((nb, nc * k * k, ho * wo))           # (B, C*k*k, L)
    if cols.size:
        lib.unfold(ptr(x), strides(x, range(4)), ptr(cols), nb, nc, h, w, k, s, p)
    return cols


def _channels_last(x):
    """x (B, C, H, W) laid out (B, H, W, C) in memory, C > 1 and H*W > 1."""
    nb, nc, h, w = x.shape
    return nc > 1 and h * w > 1 and x.strides[1] == x.itemsize and x.strides[3] == nc * x.itemsize \
        and x.strides[2] == w * x.strides[3]


def fold(cols, output_size, kernel_size, stride, padding):
    """cols (B, C*k*k, L) -> x (B, C, H, W), overlapping windows summed. Tokens-major cols (the
    gradient of unfold's tokens-major view: cols.strides[1] is one float) give x as a view of a
    channels-last (B, H, W, C) array, read in place; otherwise x is contiguous."""
    cols = np.asarray(cols)
    h, w, k, s, p = conv.check_fold(cols, output_size, kernel_size, stride, padding)
    if cols.dtype != np.float32:
        return conv.fold(cols, h, w, k, s, p)    # float64: the reference
    nb, nc = cols.shape[0], cols.shape[1] // (k * k)
    if cols.shape[1] > 1 and cols.shape[2] > 1 and cols.strides[1] == cols.itemsize:
        tokens = cols.transpose(0, 2, 1)                       # (B, L, C*k*k), in place when it can be
        tokens = usable(tokens) if tokens.flags.c_contiguous else copy_contiguous(tokens)
        x = pool.empty((nb, h, w, nc))                         # (B, H, W, C)
        if x.size:
            lib.fold_tokens(ptr(tokens), ptr(x), strides(x, (0, 3, 1, 2)), nb, nc, h, w, k, s, p)
        return x.transpose(0, 3, 1, 2)                         # (B, C, H, W)
    cols = usable(cols) if cols.strides[2] == cols.itemsize else copy_contiguous(cols)   # likewise
    x = pool.empty((nb, nc, h, w))                         # (B, C, H, W)
    if x.size:
        lib.fold(ptr(cols), strides(cols, range(3)), ptr(x), nb, nc, h, w, k, s, p)
    return x


# ---- the fused kernels: float32 only --------------------------------------------

def _rows(x):
    """x (..., D) as (R, D) with unit column stride (a view when possible) and its row stride."""
    try:
        x2 = usable(np.reshape(x, (-1, x.shape[-1]), copy=False))
    except ValueError:                       # no view (the T2T layers' transposed tokens): copy on every thread
        x2 = copy_contiguous(x).reshape(-1, x.shape[-1])
    if x2.strides[1] != x2.itemsize:
        x2 = copy_contiguous(x2)
    return x2, x2.strides[0] // x2.itemsize


def copy_contiguous(x):
    """A C-contiguous copy of x, always a new one, in a pooled buffer, by the C copy kernel."""
    return copy_into(pool.empty(x.shape, x.dtype), x)


COPY_MIN = 1 << 15          # smaller copies: NumPy's loop costs less than a C call


def empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array; from 1 MiB, a recycled buffer of the output pool."""
    return pool.empty(tuple(shape), dtype)


def copy_into(dst, src):
    """dst[...] = src, same shape, any strides (a layout change, or a fill from a broadcast).
    float32 copies from COPY_MIN elements run in C on every thread; the rest is np.copyto."""
    dst, src = np.asarray(dst), np.asarray(src)
    check_copy(dst, src)
    ok = (_all_f32(dst, src) and dst.size >= COPY_MIN and dst.ndim <= 8 and dst.flags.aligned
          and src.flags.aligned and not np.may_share_memory(dst, src))
    if not ok:
        np.copyto(dst, src)
        return dst
    dims = range(dst.ndim)
    lib.copy_strided(ptr(src), strides(src, dims), ptr(dst), strides(dst, dims),
                     ffi.new("int64_t[]", dst.shape), dst.ndim)
    return dst


def linear_operands(what, x, weight, bias, *more):
    """x (R, Din), weight (Dout, Din), bias (Dout,) or None, checked (with `more` arrays: float32)
    for the C GEMM of `what` -> (x, w, bias, R, Dout): x and bias as the kernels read them (bias None
    stays None), w = weight.T (Din, Dout), a view. Shared by the Linear kernels (linear_forward,
    c_linear_gelu, c_linear_add)."""
    x, weight = np.asarray(x), np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    r, dout = check_linear(x, weight, bias)
    _float32(what, x, weight, *(() if bias is None else (bias,)), *more)
    return usable(x), usable(weight.T), (None if bias is None else contiguous(bias)), r, dout


def gemm_head(x, w):
    """The first arguments of sgemm and its twins for one product x (R, K) @ w (K, N): 1, R, N, K,
    then x and w with their strides (pointers into x and w: the caller holds them)."""
    return 1, x.shape[0], w.shape[1], x.shape[1], ptr(x), strides(x, (None, 0, 1)), ptr(w), strides(w, (None, 0, 1))


def linear_forward(x, weight, bias, bf16=False):
    """x (R, Din) @ weight.T + bias (Dout,) -> (R, Dout): the bias added in the GEMM.
    bf16: by sgemm_bf16 (x and weight rounded to bfloat16 as they are packed, float32 sums;
    the bias as it is)."""
    x, w, b, r, dout = linear_operands("linear_forward", x, weight, np.asarray(bias))
    out = pool.empty((1, r, dout))
    if out.size:
        gemm = lib.sgemm_bf16 if bf16 else lib.sgemm_bias
        gemm(*gemm_head(x, w), ptr(b), ptr(out), strides(out, (0, 1)))
    return out[0]


def _elementwise(kernel, what, **arrays):
    """kernel(inputs..., out, n) over float32 arrays of one shape (checked, named as in the
    messages), into a pooled buffer of that shape."""
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    check_same_shape(what, **arrays)
    _float32(what, *arrays.values())
    inputs = [contiguous(a) for a in arrays.values()]
    out = pool.empty(inputs[0].shape)
    if out.size:
        kernel(*(ptr(a) for a in inputs), ptr(out), out.size)
    return out


def add(a, b):
    """a, b (...) of one shape -> a + b, on every thread, into a pooled buffer."""
    return _elementwise(lib.add_arrays, "add", a=a, b=b)


def sum_rows(x):
    """x (..., D) float32 -> (D,), the sum over every leading index (Linear's bias gradient), on
    every thread, in an order that does not depend on the thread count."""
    x = np.asarray(x)
    _float32("sum_rows", x)
    if x.ndim == 0:
        raise ValueError("sum_rows expects an array of at least one dim, got a scalar")
    (x2, sx), d = _rows(x), x.shape[-1]
    out = np.empty(d, np.float32)
    if out.size:
        lib.sum_rows(ptr(x2), sx, ptr(out), x2.shape[0], d)
    return out


def gelu_forward(x):
    """x (...) -> x * Phi(x)."""
    return _elementwise(lib.gelu_forward, "gelu", x=x)


def gelu_backward(g, x):
    """g, x (...) -> g * (Phi(x) + x * phi(x))."""
    return _elementwise(lib.gelu_backward, "gelu_backward", g=g, x=x)


def layer_norm_forward(x, weight, bias, eps):
    """x (..., D) -> y (..., D), mean (...), rstd (...) = 1 / sqrt(var + eps)."""
    x, weight, bias = np.asarray(x), np.asarray(weight), np.asarray(bias)
    check_layer_norm(x, weight, bias, eps)
    _float32("layer_norm", x, weight, bias)
    (x2, sx), d = _rows(x), x.shape[-1]
    w, b = contiguous(weight), contiguous(bias)
    y = pool.empty(x.shape)
    mean, rstd = np.empty(x.shape[:-1], np.float32), np.empty(x.shape[:-1], np.float32)
    if x.size:
        lib.layer_norm_forward(ptr(x2), sx, ptr(w), ptr(b), float(eps), ptr(y),
                               ptr(mean), ptr(rstd), x2.shape[0], d)
    return y, mean, rstd


def layer_norm_backward(g, x, weight, mean, rstd):
    """g, x (..., D) -> gx (..., D), gweight (D,), gbias (D,)."""
    g, x, weight = np.asarray(g), np.asarray(x), np.asarray(weight)
    mean, rstd = np.asarray(mean), np.asarray(rstd)
    check_layer_norm_backward(g, x, weight, mean, rstd)
    _float32("layer_norm_backward", g, x, weight, mean, rstd)
    if x.size == 0:
        return np.zeros_like(x), np.zeros_like(weight), np.zeros_like(weight)
    (g2, sg), (x2, sx), d = _rows(g), _rows(x), x.shape[-1]
    w = contiguous(weight)
    mean, rstd = contiguous(mean.reshape(-1)), contiguous(rstd.reshape(-1))
    gx = pool.empty(x.shape)
    gw, gb = np.empty(d, np.float32), np.empty(d, np.float32)
    lib.layer_norm_backward(ptr(g2), sg, ptr(x2), sx, ptr(w), ptr(mean), ptr(rstd),
                            ptr(gx), ptr(gw), ptr(gb), x2.shape[0], d)
    return gx, gw, gb


def softmax_forward(x):
    """x (..., N) -> softmax along the last dim."""
    x = np.asarray(x)
    check_same_shape("softmax", x=x)
    _float32("softmax", x)
    x = contiguous(x)
    y = pool.empty(x.shape)
    if x.size:
        lib.softmax_forward(ptr(x), ptr(y), x.size // x.shape[-1], x.shape[-1])
    return y


def softmax_backward(g, y):
    """g, y (..., N) -> y * (g - sum(g * y)) along the last dim."""
    g, y = np.asarray(g), np.asarray(y)
    check_same_shape("softmax_backward", g=g, y=y)
    _float32("softmax_backward", g, y)
    g, y = contiguous(g), contiguous(y)
    gx = pool.empty(y.shape)
    if y.size:
        lib.softmax_backward(ptr(g), ptr(y), ptr(gx), y.size // y.shape[-1], y.shape[-1])
    return gx


def band_dot(a, b, w):
    """a, b (B, T, d) -> (B, T, w): a_i . b_{i+o_s} on the band of w keys (ops.band)."""
    a, b = np.asarray(a), np.asarray(b)
    w = band.check_band("band_dot", w, a=a, b=b)
    _float32("band_dot", a, b)
    return _band(lib.band_dot, a, b, a.shape[:2] + (w,), a.shape[-1], w)


def band_mix(p, v):
    """p (B, T, w), v (B, T, d) -> (B, T, d): sum_s p[i, s] v_{i+o_s}."""
    p, v = np.asarray(p), np.asarray(v)
    band.check_band("band_mix", None, p=p, v=v)
    _float32("band_mix", p, v)
    return _band(lib.band_mix, p, v, v.shape, v.shape[-1], p.shape[-1])


def band_mix_t(p, a):
    """p (B, T, w), a (B, T, d) -> (B, T, d): key j collects p[i, s] a_i from each query i = j - o_s."""
    p, a = np.asarray(p), np.asarray(a)
    band.check_band("band_mix_t", None, p=p, a=a)
    _float32("band_mix_t", p, a)
    return _band(lib.band_mix_t, p, a, a.shape, a.shape[-1], p.shape[-1])


def _band(kernel, x, y, out_shape, d, w):
    x, y = contiguous(x), contiguous(y)
    out = pool.empty(out_shape)                                   # (B, T, w) or (B, T, d)
    if out.size:
        kernel(ptr(x), ptr(y), ptr(out), out_shape[0], out_shape[1], d, w)
    return out


def attention_forward(qkv, num_heads, scale, keep=True, key_bias=None, bf16=False):
    """qkv (B, N, 3*D) -> out (B, N, D) and, with keep, p (B, h, N, Np): softmax(q k^T * scale
    + key_bias) v per head, key_bias (B, N) or None. p's rows are padded with zeros to Np
    (attention_row: N rounded up to 16 floats), the layout attention_backward reads; without
    keep (inference) p is None and never written. bf16: the products' operands rounded to
    bfloat16 (ops.Attention under autocast)."""
    qkv = np.asarray(qkv)
    num_heads, scale = attention.check_attention(qkv, num_heads, scale, key_bias)
    _float32("attention_forward", qkv)
    qkv = contiguous(qkv)
    kb = ffi.NULL if key_bias is None else ptr(contiguous(key_bias))
    B, N, D = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    out = pool.empty((B, N, D))
    p = pool.empty((B, num_heads, N, lib.attention_row(N))) if keep else None
    if B * N and lib.attention_forward(ptr(qkv), kb, ptr(out), ptr(p) if keep else ffi.NULL, B, N,
                                       num_heads, D // num_heads, scale, int(bool(bf16))):
        raise MemoryError(f"attention_forward: no working memory for one head of {N} tokens")
    return out, p


def attention_backward(g, qkv, p, scale, bf16=False):
    """g (B, N, D), qkv (B, N, 3*D), p (B, h, N, Np) from attention_forward -> gqkv (B, N, 3*D);
    bf16 as in attention_forward (the forward's own)."""
    g, qkv, p = np.asarray(g), np.asarray(qkv), np.asarray(p)
    h = p.shape[1] if p.ndim == 4 else 0
    attention.check_attention(qkv, h, scale)
    B, N, D3 = qkv.shape
    Np = lib.attention_row(N)
    if g.shape != (B, N, D3 // 3) or p.shape != (B, h, N, Np):
        raise ValueError(f"attention_backward expects g ({B}, {N}, {D3 // 3}) and p ({B}, h, {N}, {Np}) "
                         f"for qkv {qkv.shape}; got g {g.shape}, p {p.shape}")
    _float32("attention_backward", g, qkv, p)
    g, qkv, p = contiguous(g), contiguous(qkv), contiguous(p)
    gqkv = pool.empty(qkv.shape)
    if gqkv.size and lib.attention_backward(ptr(qkv), ptr(p), ptr(g), ptr(gqkv), B, N, h, D3 // 3 // h, scale,
                                             int(bool(bf16))):
        raise MemoryError(f"attention_backward: no working memory for one head of {N} tokens")
    return gqkv
