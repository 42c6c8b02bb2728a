"""Reductions over axes: sum, mean, max (keepdims or not)."""
import numpy as np

from minit2t.ops.function import Function


def _normalize_axes(axis, ndim):
    """axis (None, int or tuple) as a sorted tuple of non-negative ints, checked."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(out)))


def _expand_back(g, shape, axes, keepdims):
    """Put reduced axes back as size 1 so g broadcasts against the input."""
    if not keepdims:
        g = np.expand_dims(g, axes) if axes else g
    return g


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes = _normalize_axes(axis, a.ndim)
        ctx.shape, ctx.keepdims = a.shape, keepdims
        return np.sum(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand_back(g, ctx.shape, ctx.axes, ctx.keepdims)
        return (np.broadcast_to(g, ctx.shape).copy(),)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes = _normalize_axes(axis, a.ndim)
        ctx.shape, ctx.keepdims = a.shape, keepdims
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes])) if a.ndim else 1
        return np.mean(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand_back(g, ctx.shape, ctx.axes, ctx.keepdims)
        return (np.broadcast_to(g / ctx.count, ctx.shape).copy(),)


class Max(Function):
    """Max over axes; the gradient is shared equally among tied maxima."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if a.size == 0:
            raise ValueError(f"max of an empty tensor of shape {a.shape}")
        ctx.axes = _normalize_axes(axis, a.ndim)
        ctx.keepdims = keepdims
        out = np.max(a, axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(a, out)
        return out if keepdims else np.squeeze(out, axis=ctx.axes)

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved
        g = _expand_back(g, a.shape, ctx.axes, ctx.keepdims)
        mask = (a == out).astype(a.dtype)
        mask /= mask.sum(axis=ctx.axes, keepdims=True)
        return (mask * g,)
