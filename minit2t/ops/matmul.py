"""Matrix multiply, 2-D and batched, with broadcast batch dims (torch.matmul's semantics).

Legend: M rows of a, K shared dim, N columns of b, "..." batch dims (broadcast).
    out = a @ b        (..., M, K) @ (..., K, N) -> (..., M, N)
    ga  = g @ b^T      summed over the batch dims that a was broadcast along
    gb  = a^T @ g      likewise for b
Under autocast (minit2t.amp) a, b and g are rounded to bf16 before each product.
A backend may replace this op with a faster one (minit2t.backends).
"""
import numpy as np

from minit2t.amp import operands
from minit2t.ops.function import Function, unbroadcast


def check(a, b, given):
    """a (..., M, K) and b (..., K, N) after 1-D operands were lifted to 2-D; `given`: the
    shapes the caller passed, for the message."""
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: expected (..., M, K) @ (..., K, N), got {given[0]} @ {given[1]}")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of {a.shape} and {b.shape} do not broadcast") from None


class MatMul(Function):
    """a @ b. A 1-D a is a row (1, K), a 1-D b a column (K, 1), dropped again from the result."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.vector, given = (a.ndim == 1, b.ndim == 1), (a.shape, b.shape)
        a = a[None, :] if a.ndim == 1 else a                        # (1, K)
        b = b[:, None] if b.ndim == 1 else b                        # (K, 1)
        check(a, b, given)
        a, b = operands(ctx, a, b)                                  # bf16 under autocast
        ctx.save_for_backward(a, b)
        out = np.matmul(a, b)                                       # (..., M, N)
        out = out[..., 0, :] if ctx.vector[0] else out              # (..., N) for a 1-D a
        return out[..., 0] if ctx.vector[1] else out                # (..., M) for a 1-D b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        g = operands(ctx, g)                                        # bf16 under autocast
        g = g[..., None] if ctx.vector[1] else g                    # (..., M, 1)
        g = g[..., None, :] if ctx.vector[0] else g                 # (..., 1, N)
        ga = gb = None
        if ctx.needs_input_grad(0):
            ga = unbroadcast(g @ np.swapaxes(b, -1, -2), a.shape)   # (..., M, K)
            ga = ga[0] if ctx.vector[0] else ga                     # (K,)
        if ctx.needs_input_grad(1):
            gb = unbroadcast(np.swapaxes(a, -1, -2) @ g, b.shape)   # (..., K, N)
            gb = gb[:, 0] if ctx.vector[1] else gb                  # (K,)
        return ga, gb
