"""The NumPy backend: the readable reference for every kernel.

Legend: B batch, C channels, H/W height/width, k kernel, s stride,
p padding, L number of sliding windows (Ho * Wo).
"""
import numpy as np

from minit2t.backends._checks import check_fold, check_matmul, check_unfold

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
