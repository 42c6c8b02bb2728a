"""Softmax, log-softmax, exact GELU and dropout, each with its backward.

Legend: "..." any dims; the softmax runs along `axis`.
A backend may replace any of these ops with a faster one (minit2t.backends).
"""
import numpy as np

from minit2t.ops.function import Function
from minit2t.ops.special import normal_cdf, normal_pdf


def check_axis(a, axis, what):
    if not -a.ndim <= axis < max(a.ndim, 1):
        raise ValueError(f"{what}: axis {axis} is out of range for shape {a.shape}")


class Softmax(Function):
    """y = exp(a - max) / sum(exp(a - max)) along `axis` (stable); ga = y * (g - sum(g * y))."""

    @staticmethod
    def forward(ctx, a, axis=-1):
        check_axis(a, axis, "softmax")
        y = np.exp(a - a.max(axis=axis, keepdims=True))
        y /= y.sum(axis=axis, keepdims=True)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return (y * (g - (g * y).sum(axis=ctx.axis, keepdims=True)),)


class LogSoftmax(Function):
    """y = a - logsumexp(a) along `axis` (stable); ga = g - softmax(a) * sum(g)."""

    @staticmethod
    def forward(ctx, a, axis=-1):
        check_axis(a, axis, "log_softmax")
        shifted = a - a.max(axis=axis, keepdims=True)
        y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return (g - np.exp(y) * g.sum(axis=ctx.axis, keepdims=True),)


def gelu(a):
    """Exact GELU, a * Phi(a), Phi the standard normal CDF."""
    return a * normal_cdf(a)


def gelu_grad(g, a):
    """g * GELU'(a) = g * (Phi(a) + a * phi(a)), phi the standard normal density."""
    return g * (normal_cdf(a) + a * normal_pdf(a))


class GELU(Function):
    """Exact GELU: y = a * Phi(a), Phi the standard normal CDF; ga = g * (Phi(a) + a * phi(a))."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return gelu(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return (gelu_grad(g, a),)


class Dropout(Function):
    """Zero each element with probability p, scale the rest by 1 / (1 - p)."""

    @staticmethod
    def forward(ctx, a, p, rng):
        mask = (rng.random(a.shape, dtype=a.dtype) >= p) / a.dtype.type(1 - p)   # 0 or 1 / (1 - p)
        ctx.save_for_backward(mask)
        return a * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved
        return (g * mask,)
