"""The C backend's fused kernels: GELU, layer norm and softmax (forward and
backward), the linear forward with its bias inside the GEMM, and the strided
copy, from cext/fused.c, cext/gemm.c and their fast versions.

Legend: "..." any leading dims, R rows, D the normalised (last) dim, N the
softmax dim, Din/Dout linear features.

Each runs in C for float32 and returns the NumPy reference's result for
anything else (float64, mixed dtypes, empty arrays); the argument checks are
the reference's (_checks), so both raise the same errors. Inputs are passed
by their strides when their rows have a unit column stride, else copied.
These functions are part of minit2t.backends.c_backend (imported there).
"""
import numpy as np

from minit2t.backends import numpy_backend as _reference
from minit2t.backends._cmem import contiguous, ffi, lib, pool, ptr, strides, usable
from minit2t.backends._checks import (check_copy, check_layer_norm, check_layer_norm_backward, check_linear,
                                      check_same_shape)


def _all_f32(*arrays):
    return all(a.dtype == np.float32 for a in arrays)


def _rows(x):
    """x (..., D) as (R, D) with unit column stride (a view when possible) and its row stride."""
    x2 = usable(x.reshape(-1, x.shape[-1]))
    if x2.strides[1] != x2.itemsize:
        x2 = contiguous(x2)
    return x2, x2.strides[0] // x2.itemsize


COPY_MIN = 1 << 15          # smaller copies: NumPy's loop costs less than a C call


def empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array; from 1 MiB, a recycled buffer of the output pool."""
    return pool.empty(tuple(shape), dtype)


def copy_into(dst, src):
    """dst[...] = src, same shape, any strides (a layout change, or a fill from a broadcast)."""
    dst, src = np.asarray(dst), np.asarray(src)
    check_copy(dst, src)
    ok = (_all_f32(dst, src) and dst.size >= COPY_MIN and dst.ndim <= 8 and dst.flags.aligned
          and src.flags.aligned and not np.may_share_memory(dst, src))
    if not ok:
        return _reference.copy_into(dst, src)
    dims = range(dst.ndim)
    lib.copy_strided(ptr(src), strides(src, dims), ptr(dst), strides(dst, dims),
                     ffi.new("int64_t[]", dst.shape), dst.ndim)
    return dst


def _matmul(a, b):
    from minit2t.backends.c_backend import matmul          # c_backend imports this module
    return matmul(a, b)


def linear_forward(x, weight, bias=None):
    """x (R, Din) @ weight.T + bias (Dout,) -> (R, Dout): the bias added in the GEMM."""
    x, weight = np.asarray(x), np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    r, dout = check_linear(x, weight, bias)
    if bias is None or not _all_f32(x, weight, bias):
        return _reference.linear_forward(x, weight, bias) if bias is not None else _matmul(x, weight.T)
    x, w, b = usable(x), usable(weight.T), contiguous(bias)        # w (Din, Dout), a view
    out = pool.empty((1, r, dout))
    if out.size:
        lib.sgemm_bias(1, r, dout, x.shape[1], ptr(x), strides(x, (None, 0, 1)), ptr(w),
                       strides(w, (None, 0, 1)), ptr(b), ptr(out), strides(out, (0, 1)))
    return out[0]


def gelu_forward(x):
    """x (...) -> x * Phi(x)."""
    x = np.asarray(x)
    check_same_shape("gelu", x=x)
    if x.dtype != np.float32:
        return _reference.gelu_forward(x)
    x = contiguous(x)
    y = pool.empty(x.shape)
    if x.size:
        lib.gelu_forward(ptr(x), ptr(y), x.size)
    return y


def gelu_backward(g, x):
    """g, x (...) -> g * (Phi(x) + x * phi(x))."""
    g, x = np.asarray(g), np.asarray(x)
    check_same_shape("gelu_backward", g=g, x=x)
    if not _all_f32(g, x):
        return _reference.gelu_backward(g, x)
    g, x = contiguous(g), contiguous(x)
    gx = pool.empty(x.shape)
    if x.size:
        lib.gelu_backward(ptr(g), ptr(x), ptr(gx), x.size)
    return gx


def layer_norm_forward(x, weight, bias, eps):
    """x (..., D) -> y (..., D), mean (...), rstd (...)."""
    x, weight, bias = np.asarray(x), np.asarray(weight), np.asarray(bias)
    check_layer_norm(x, weight, bias, eps)
    if not _all_f32(x, weight, bias) or x.size == 0:
        return _reference.layer_norm_forward(x, weight, bias, eps)
    (x2, sx), d = _rows(x), x.shape[-1]
    w, b = contiguous(weight), contiguous(bias)
    y = pool.empty(x.shape)
    mean, rstd = np.empty(x.shape[:-1], np.float32), np.empty(x.shape[:-1], np.float32)
    lib.layer_norm_forward(ptr(x2), sx, ptr(w), ptr(b), float(eps), ptr(y),
                           ptr(mean), ptr(rstd), x2.shape[0], d)
    return y, mean, rstd


def layer_norm_backward(g, x, weight, mean, rstd):
    """g, x (..., D) -> gx (..., D), gweight (D,), gbias (D,)."""
    g, x, weight = np.asarray(g), np.asarray(x), np.asarray(weight)
    mean, rstd = np.asarray(mean), np.asarray(rstd)
    check_layer_norm_backward(g, x, weight, mean, rstd)
    if not _all_f32(g, x, weight, mean, rstd) or x.size == 0:
        return _reference.layer_norm_backward(g, x, weight, mean, rstd)
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
    if x.dtype != np.float32 or x.size == 0:
        return _reference.softmax_forward(x)
    x = contiguous(x)
    y = pool.empty(x.shape)
    lib.softmax_forward(ptr(x), ptr(y), x.size // x.shape[-1], x.shape[-1])
    return y


def softmax_backward(g, y):
    """g, y (..., N) -> y * (g - sum(g * y)) along the last dim."""
    g, y = np.asarray(g), np.asarray(y)
    check_same_shape("softmax_backward", g=g, y=y)
    if not _all_f32(g, y) or y.size == 0:
        return _reference.softmax_backward(g, y)
    g, y = contiguous(g), contiguous(y)
    gx = pool.empty(y.shape)
    lib.softmax_backward(ptr(g), ptr(y), ptr(gx), y.size // y.shape[-1], y.shape[-1])
    return gx
