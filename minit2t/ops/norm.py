"""Layer normalisation over the last dimension, as one op with its backward.

Legend: D normalised (last) dimension; "..." any leading dims.
"""
from minit2t.backends import kernel
from minit2t.ops.function import Function


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over the last dim.

    Runs the active backend's fused kernel (minit2t.backends.kernel); the
    backward recomputes xhat from x and the saved mean and rstd (...)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        D = x.shape[-1] if x.ndim else None
        if weight.shape != (D,) or bias.shape != (D,):
            raise ValueError(f"layer_norm: weight and bias must be ({D},) for input {x.shape}, "
                             f"got {weight.shape} and {bias.shape}")
        y, mean, rstd = kernel("layer_norm_forward")(x, weight, bias, eps)   # (..., D), (...), (...)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved
        return kernel("layer_norm_backward")(g, x, weight, mean, rstd)     # (..., D), (D,), (D,)
