"""Matrix multiply, 2-D and batched with broadcast batch dims, on the active backend.

Legend: M rows of a, K shared dim, N columns of b, Bt flattened batch.
The backend sees only 2-D (M, K) @ (K, N) and 3-D (Bt, M, K) @ (Bt, K, N).
"""
import numpy as np

from minit2t.backends import get_backend
from minit2t.ops.function import Function, contiguous, reshape, unbroadcast


def _mm(a, b):
    """a (..., M, K) @ b (..., K, N) -> (..., M, N) through the backend."""
    be = get_backend()
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.ndim == 2:                                                # weights: fold batch into rows
        out = be.matmul(reshape(a, (-1, K)), b)                    # (B*M, N)
        return out.reshape(a.shape[:-1] + (N,))                    # (..., M, N)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a3 = reshape(np.broadcast_to(a, batch + (M, K)), (-1, M, K))   # (Bt, M, K)
    b3 = reshape(np.broadcast_to(b, batch + (K, N)), (-1, K, N))   # (Bt, K, N)
    return be.matmul(a3, b3).reshape(batch + (M, N))               # (..., M, N)


def _check(a, b, sa, sb):
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: expected (..., M, K) @ (..., K, N), got {sa} @ {sb}")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of {a.shape} and {b.shape} do not broadcast") from None


class MatMul(Function):
    """a @ b. 1-D operands are treated as a row (a) or a column (b), as in torch."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        a2 = a[None, :] if a.ndim == 1 else a                       # (1, K)
        b2 = b[:, None] if b.ndim == 1 else b                       # (K, 1)
        _check(a2, b2, a.shape, b.shape)
        ctx.save_for_backward(a2, b2)
        out = _mm(a2, b2)
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        sa, sb = ctx.shapes
        if len(sb) == 1:
            g = g[..., None]
        if len(sa) == 1:
            g = g[..., None, :]
        if g.ndim > 3:
            g = contiguous(g)                                       # once, not once per product
        ga = gb = None
        if ctx.needs_input_grad(0):
            ga = _mm(g, np.swapaxes(b, -1, -2))                     # (..., M, K)
            ga = unbroadcast(ga, a.shape).reshape(sa)
        if ctx.needs_input_grad(1):
            if b.ndim == 2:
                gb = _mm(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, b.shape[1]))  # (K, N)
            elif _is_transposed(b) and a.shape[:-2] == b.shape[:-2]:
                gb = np.swapaxes(_mm(np.swapaxes(g, -1, -2), a), -1, -2)  # (..., K, N) laid out as b
            else:
                gb = _mm(np.swapaxes(a, -1, -2), g)                 # (..., K, N)
            gb = unbroadcast(gb, b.shape).reshape(sb)
        return ga, gb


def _is_transposed(b):
    """b (..., K, N) is the transpose of a C-contiguous (..., N, K), as k.transpose(-2, -1) is:
    its gradient is then computed as (g^T a)^T, which the transpose's backward gets back
    C-contiguous (no strided copy there)."""
    k, n = b.shape[-2:]
    return k > 1 and n > 1 and b.strides[-2] == b.itemsize and b.strides[-1] == k * b.itemsize
