"""Layer normalisation over the last dimension, as one op with its backward.

Legend: D normalised (last) dimension; "..." any leading dims.
"""
import numpy as np

from minit2t.ops.function import Function


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over the last dim."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        D = x.shape[-1]
        if weight.shape != (D,) or bias.shape != (D,):
            raise ValueError(f"layer_norm: weight and bias must be ({D},) for input {x.shape}, "
                             f"got {weight.shape} and {bias.shape}")
        mu = x.mean(axis=-1, keepdims=True)                          # (..., 1)
        xc = x - mu                                                  # (..., D)
        var = (xc * xc).mean(axis=-1, keepdims=True)                 # (..., 1)
        rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = xc * rstd                                             # (..., D)
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        lead = tuple(range(g.ndim - 1))
        gb = g.sum(axis=lead)                                        # (D,)
        gw = (g * xhat).sum(axis=lead)                               # (D,)
        gxhat = g * weight                                           # (..., D)
        gx = rstd * (gxhat - gxhat.mean(axis=-1, keepdims=True)
                     - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True))
        return gx, gw, gb
