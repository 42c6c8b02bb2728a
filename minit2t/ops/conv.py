"""unfold (im2col) and its adjoint fold (col2im): the soft split of T2T-ViT.

Legend: B batch, C channels, H/W image size, k kernel, s stride,
p padding, Ho/Wo the grid of windows, L = Ho * Wo sliding windows.
Semantics of torch.nn.functional unfold/fold: <unfold(x), y> = <x, fold(y)>,
so each is the other's backward.
A backend may replace these ops with faster ones (minit2t.backends).
"""
import numbers

import numpy as np

from minit2t.ops.function import Function


def unfold(x, k, s, p):
    """Every k x k window of x (B, C, H, W) as a column: (B, C*k*k, L)."""
    B, C, H, W = x.shape
    Ho, Wo = windows(H, W, k, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))                # (B, C, H+2p, W+2p)
    cols = np.empty((B, C, k, k, Ho, Wo), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + s * Ho:s, j:j + s * Wo:s]   # (B, C, Ho, Wo)
    return cols.reshape(B, C * k * k, Ho * Wo)                     # (B, C*k*k, L)


def fold(cols, H, W, k, s, p):
    """Adjoint of unfold: every column (B, C*k*k, L) summed back onto its window -> (B, C, H, W)."""
    B, Ckk, L = cols.shape
    Ho, Wo = windows(H, W, k, s, p)
    cols = cols.reshape(B, Ckk // (k * k), k, k, Ho, Wo)           # (B, C, k, k, Ho, Wo)
    xp = np.zeros((B, Ckk // (k * k), H + 2 * p, W + 2 * p), dtype=cols.dtype)   # (B, C, H+2p, W+2p)
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += cols[:, :, i, j]
    return xp[:, :, p:p + H, p:p + W]                              # (B, C, H, W)


class Unfold(Function):
    """(B, C, H, W) -> (B, C*k*k, L); backward: fold."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=1, padding=0):
        k, s, p = check_unfold(x, kernel_size, stride, padding)
        ctx.args = x.shape[2:] + (k, s, p)
        return unfold(x, k, s, p)                                  # (B, C*k*k, L)

    @staticmethod
    def backward(ctx, g):
        return (fold(g, *ctx.args),)                               # (B, C, H, W)


class Fold(Function):
    """(B, C*k*k, L) -> (B, C, H, W), overlapping windows summed; backward: unfold."""

    @staticmethod
    def forward(ctx, cols, output_size, kernel_size, stride=1, padding=0):
        H, W, k, s, p = check_fold(cols, output_size, kernel_size, stride, padding)
        ctx.args = k, s, p
        return fold(cols, H, W, k, s, p)                           # (B, C, H, W)

    @staticmethod
    def backward(ctx, g):
        return (unfold(g, *ctx.args),)                             # (B, C*k*k, L)


# ---- argument checks (shared with the backends) ---------------------------------

def windows(H, W, k, s, p):
    """The grid of windows (Ho, Wo) of a k x k window at stride s over the padded image."""
    if H + 2 * p < k or W + 2 * p < k:
        raise ValueError(f"kernel_size {k} is larger than the padded input: "
                         f"(H+2p, W+2p) = ({H + 2 * p}, {W + 2 * p}) with p={p}")
    return (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1


def _int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")
    return int(value)


def _window(kernel_size, stride, padding):
    return _int("kernel_size", kernel_size, 1), _int("stride", stride, 1), _int("padding", padding, 0)


def _float(what, x):
    if x.dtype.kind != "f":
        raise TypeError(f"{what} expects a floating-point array (float32 or float64); got dtype {x.dtype}")


def check_unfold(x, kernel_size, stride, padding):
    """x (B, C, H, W) -> (k, s, p), checked."""
    k, s, p = _window(kernel_size, stride, padding)
    if x.ndim != 4:
        raise ValueError(f"unfold expects x of shape (B, C, H, W); got shape {x.shape}")
    _float("unfold", x)
    windows(x.shape[2], x.shape[3], k, s, p)
    return k, s, p


def check_fold(cols, output_size, kernel_size, stride, padding):
    """cols (B, C*k*k, L), output_size (H, W) -> (H, W, k, s, p), checked."""
    k, s, p = _window(kernel_size, stride, padding)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise TypeError(f"fold expects output_size as a pair (H, W); got {output_size!r}")
    H, W = _int("output_size[0]", output_size[0], 0), _int("output_size[1]", output_size[1], 0)
    if cols.ndim != 3:
        raise ValueError(f"fold expects cols of shape (B, C*k*k, L); got shape {cols.shape}")
    _float("fold", cols)
    Ho, Wo = windows(H, W, k, s, p)
    if cols.shape[1] % (k * k) != 0 or cols.shape[2] != Ho * Wo:
        raise ValueError(f"fold expects cols of shape (B, C*{k * k}, {Ho * Wo}) for output_size ({H}, {W}), "
                         f"k={k}, s={s}, p={p}; got {cols.shape}")
    return H, W, k, s, p
