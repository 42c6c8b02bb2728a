"""The NumPy backend: the readable reference for every kernel.

Legend: B batch, C channels, H/W height/width, k kernel, s stride,
p padding, L number of sliding windows (Ho * Wo).
"""
import numpy as np

from minit2t.backends._checks import (check_copy, check_fold, check_layer_norm, check_layer_norm_backward,
                                      check_linear, check_matmul, check_same_shape, check_unfold)
from minit2t.ops.special import normal_cdf, normal_pdf

name = "numpy"


def matmul(a, b):
    """a (M, K) @ b (K, N) -> (M, N), or batched (Bt, M, K) @ (Bt, K, N)."""
    a, b = np.asarray(a), np.asarray(b)
    check_matmul(a, b)
    return np.matmul(a, b)


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def unfold(x, kernel_size, stride, padding):
    """Sliding k x k windows of x as columns (im2col)."""
    x = np.asarray(x)
    k, s, p, Ho, Wo = check_unfold(x, kernel_size, stride, padding)
    B, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))             # (B, C, H+2p, W+2p)
    cols = np.empty((B, C, k, k, Ho, Wo), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + s * Ho:s, j:j + s * Wo:s]  # (B, C, Ho, Wo)
    return cols.reshape(B, C * k * k, Ho * Wo)                     # (B, C*k*k, L)


def fold(cols, output_size, kernel_size, stride, padding):
    """Adjoint of unfold: sum every column back onto its window (col2im)."""
    cols = np.asarray(cols)
    k, s, p, H, W, _ = check_fold(cols, output_size, kernel_size, stride, padding)
    B, Ckk, L = cols.shape
    C = Ckk // (k * k)
    Ho, Wo = _out_size(H, k, s, p), _out_size(W, k, s, p)
    cols = cols.reshape(B, C, k, k, Ho, Wo)                        # (B, C, k, k, Ho, Wo)
    xp = np.zeros((B, C, H + 2 * p, W + 2 * p), dtype=cols.dtype)  # (B, C, H+2p, W+2p)
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += cols[:, :, i, j]
    return xp[:, :, p:p + H, p:p + W]                              # (B, C, H, W)


# ---- fused kernels: the references of the C backend's ---------------------------
# Legend: "..." any leading dims, D the normalised (last) dim, N the softmax dim.
# Each works in its inputs' float dtype; the ops reach them through
# minit2t.backends.kernel(name) when the active backend has no version of its own.

def empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array (the C backend recycles large ones)."""
    return np.empty(shape, dtype)


def copy_into(dst, src):
    """dst[...] = src for arrays of one shape, any layouts (a layout change); returns dst."""
    dst, src = np.asarray(dst), np.asarray(src)
    check_copy(dst, src)
    np.copyto(dst, src)
    return dst


def linear_forward(x, weight, bias=None):
    """x (R, Din) @ weight.T (Din, Dout) + bias (Dout,) -> (R, Dout)."""
    x, weight = np.asarray(x), np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    check_linear(x, weight, bias)
    y = x @ weight.T                                               # (R, Dout)
    return y if bias is None else y + bias


def gelu_forward(x):
    """Exact GELU: x (...) -> x * Phi(x), Phi the standard normal CDF."""
    x = np.asarray(x)
    check_same_shape("gelu", x=x)
    return x * normal_cdf(x)


def gelu_backward(g, x):
    """g, x (...) -> g * (Phi(x) + x * phi(x)), phi the standard normal density."""
    g, x = np.asarray(g), np.asarray(x)
    check_same_shape("gelu_backward", g=g, x=x)
    dy = x * normal_pdf(x)
    dy += normal_cdf(x)
    return g * dy


def layer_norm_forward(x, weight, bias, eps):
    """x (..., D) -> y = (x - mean) * rstd * weight + bias (..., D), mean (...), rstd (...)."""
    x, weight, bias = np.asarray(x), np.asarray(weight), np.asarray(bias)
    check_layer_norm(x, weight, bias, eps)
    mean = x.mean(axis=-1, keepdims=True)                          # (..., 1)
    y = x - mean                                                   # (..., D)
    rstd = 1 / np.sqrt(np.mean(y * y, axis=-1, keepdims=True) + eps)
    y *= rstd
    y = y * weight                                                 # may promote
    y += bias
    return y, mean[..., 0], rstd[..., 0]


def layer_norm_backward(g, x, weight, mean, rstd):
    """g, x (..., D) -> gx (..., D), gweight (D,), gbias (D,)."""
    g, x, weight = np.asarray(g), np.asarray(x), np.asarray(weight)
    mean, rstd = np.asarray(mean), np.asarray(rstd)
    check_layer_norm_backward(g, x, weight, mean, rstd)
    lead = tuple(range(g.ndim - 1))
    xhat = (x - mean[..., None]) * rstd[..., None]                 # (..., D)
    gw = (g * xhat).sum(axis=lead)                                 # (D,)
    gb = g.sum(axis=lead)                                          # (D,)
    gxhat = g * weight                                             # (..., D)
    gx = gxhat - gxhat.mean(axis=-1, keepdims=True)
    gx -= xhat * (gxhat * xhat).mean(axis=-1, keepdims=True)
    gx *= rstd[..., None]
    return gx, gw, gb


def softmax_forward(x):
    """x (..., N) -> exp(x - max) / sum(exp(x - max)) along the last dim."""
    x = np.asarray(x)
    check_same_shape("softmax", x=x)
    y = np.exp(x - x.max(axis=-1, keepdims=True))
    y /= y.sum(axis=-1, keepdims=True)
    return y


def softmax_backward(g, y):
    """g, y (..., N) -> y * (g - sum(g * y)) along the last dim."""
    g, y = np.asarray(g), np.asarray(y)
    check_same_shape("softmax_backward", g=g, y=y)
    return y * (g - (g * y).sum(axis=-1, keepdims=True))
