"""Softmax, log-softmax, exact GELU and dropout, each with its backward."""
import numpy as np

from minit2t.ops.function import Function
from minit2t.ops.special import erf


class Softmax(Function):
    """exp(a - max) / sum(exp(a - max)) along `axis` (stable)."""

    @staticmethod
    def forward(ctx, a, axis=-1):
        e = np.exp(a - a.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return (y * (g - (g * y).sum(axis=ctx.axis, keepdims=True)),)


class LogSoftmax(Function):
    """a - logsumexp(a) along `axis` (stable)."""

    @staticmethod
    def forward(ctx, a, axis=-1):
        shifted = a - a.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return (g - np.exp(y) * g.sum(axis=ctx.axis, keepdims=True),)


class GELU(Function):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))."""

    @staticmethod
    def forward(ctx, a):
        cdf = 0.5 * (1.0 + erf(a * np.sqrt(0.5)))
        ctx.save_for_backward(a, cdf)
        return (a * cdf).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        a, cdf = ctx.saved
        pdf = np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)            # phi(x)
        return ((g * (cdf + a * pdf)).astype(a.dtype, copy=False),)


class Dropout(Function):
    """Zero each element with probability p, scale the rest by 1/(1-p)."""

    @staticmethod
    def forward(ctx, a, p, rng):
        keep = rng.random(a.shape) >= p
        mask = keep.astype(a.dtype) / a.dtype.type(1.0 - p)
        ctx.save_for_backward(mask)
        return a * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved
        return (g * mask,)
