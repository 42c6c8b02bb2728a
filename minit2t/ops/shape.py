"""Ops that move values around without arithmetic: reshape, permute,
indexing, concatenate, expand. Each backward routes the gradient back."""
import numpy as np

from minit2t.backends import kernel
from minit2t.ops.function import Function, contiguous, empty_like, reshape, unbroadcast


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return reshape(a, shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} "
                             f"({a.size} elements) into {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return (reshape(g, ctx.shape),)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, axes):
        if sorted(int(x) % max(a.ndim, 1) for x in axes) != list(range(a.ndim)):
            raise ValueError(f"permute needs a permutation of {a.ndim} axes, got {tuple(axes)}")
        ctx.axes = tuple(axes)
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        return (np.transpose(g, np.argsort([x % g.ndim for x in ctx.axes])),)


def _has_array_index(index):
    index = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (list, np.ndarray)) for i in index)


class GetItem(Function):
    """a[index] for basic slicing and integer-array indexing.

    The gradient is laid out in memory as `a` is (a permuted view gets a
    permuted gradient), so the ops before it get it back contiguous."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.index = index
        ctx.save_for_backward(a)                  # a view of the input: its shape and layout
        out = a[index]
        return contiguous(out) if isinstance(out, np.ndarray) else np.asarray(out)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        grad = empty_like(a, g.dtype)              # a's shape and memory order
        grad.fill(0)
        if _has_array_index(ctx.index):
            np.add.at(grad, ctx.index, g)          # repeated indices accumulate
            return (grad,)
        region = grad[ctx.index]                   # basic indexing: a view, or a scalar
        if isinstance(region, np.ndarray):
            kernel("copy_into")(region, np.broadcast_to(g, region.shape))
        else:
            grad[ctx.index] = g
        return (grad,)


class Split(Function):
    """a cut along `axis` into pieces of `sizes`: an op with one output per piece.

    Its backward writes every piece's gradient into one array laid out as `a`
    is, with no zero-padded full-size gradient per piece to add up (which is
    what q, k, v = qkv[0], qkv[1], qkv[2] through GetItem would cost)."""

    @staticmethod
    def forward(ctx, a, sizes, axis):
        if not 0 <= axis < a.ndim or sum(sizes) != a.shape[axis] or min(sizes, default=0) < 0:
            raise ValueError(f"split: sizes {list(sizes)} along axis {axis} do not cut shape {a.shape}")
        ctx.axis, ctx.bounds = axis, np.cumsum((0,) + tuple(sizes))
        ctx.save_for_backward(a)                  # a view of the input: its shape and layout
        return tuple(contiguous(a[_along(axis, lo, hi)]) for lo, hi in zip(ctx.bounds[:-1], ctx.bounds[1:]))

    @staticmethod
    def backward(ctx, *grads):
        (a,) = ctx.saved
        grad = empty_like(a)                       # a's shape and memory order
        for g, lo, hi in zip(grads, ctx.bounds[:-1], ctx.bounds[1:]):
            region = grad[_along(ctx.axis, lo, hi)]          # a view into grad
            if g is None:
                region[...] = 0
            else:
                kernel("copy_into")(region, g)
        return (grad,)


def _along(axis, lo, hi):
    """The index a[..., lo:hi, ...] with the slice at `axis`."""
    return (slice(None),) * axis + (slice(int(lo), int(hi)),)


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ref = arrays[0]
        if not -ref.ndim <= axis < ref.ndim:
            raise ValueError(f"concatenate: axis {axis} is out of range for shape {ref.shape}")
        axis = axis % ref.ndim
        for x in arrays[1:]:
            if x.ndim != ref.ndim or any(x.shape[i] != ref.shape[i] for i in range(x.ndim) if i != axis):
                raise ValueError(f"concatenate along axis {axis}: shapes {ref.shape} and {x.shape} "
                                 "must agree on every other axis")
        ctx.axis = axis
        ctx.bounds = np.cumsum([x.shape[axis] for x in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.bounds, axis=ctx.axis))


class Expand(Function):
    """Broadcast a to `shape` (no copy in forward); backward sums back."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"cannot expand a tensor of shape {a.shape} to {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return (unbroadcast(g, ctx.shape),)
