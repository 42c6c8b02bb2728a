"""Layer normalisation over the last dimension, as one op with its backward.

Legend: D normalised (last) dimension; "..." any leading dims.
A backend may replace this op with a faster one (minit2t.backends).
"""
import numbers

import numpy as np

from minit2t.ops.function import Function


class LayerNorm(Function):
    """y = xhat * weight + bias, xhat = (x - mean) / sqrt(var + eps), statistics over the last dim.

    Backward, with gxhat = g * weight (all means over the last dim):
        gx = (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)) / sqrt(var + eps)
        gweight = sum of g * xhat over the leading dims, gbias = sum of g"""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        check(x, weight, bias, eps)
        mean = x.mean(axis=-1, keepdims=True)                          # (..., 1)
        xc = x - mean                                                  # (..., D)
        rstd = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)   # (..., 1)
        xhat = xc * rstd                                               # (..., D)
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias                                    # (..., D)

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        lead = tuple(range(g.ndim - 1))
        gxhat = g * weight                                             # (..., D)
        gx = gxhat - gxhat.mean(axis=-1, keepdims=True) - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True)
        return gx * rstd, (g * xhat).sum(axis=lead), g.sum(axis=lead)  # (..., D), (D,), (D,)


def check(x, weight, bias, eps):
    """x (..., D) with D >= 1, weight and bias (D,), eps a number >= 0 (shared with the backends)."""
    D = x.shape[-1] if x.ndim else None
    if weight.shape != (D,) or bias.shape != (D,):
        raise ValueError(f"layer_norm: weight and bias must be ({D},) for input {x.shape}, "
                         f"got {weight.shape} and {bias.shape}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"layer_norm expects eps as a number >= 0; got {eps!r}")
