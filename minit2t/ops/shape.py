"""Ops that move values around without arithmetic: reshape, permute, indexing,
split, concatenate, expand. Each backward routes the gradient back.

A backend may replace any of these ops with a faster one (minit2t.backends).
"""
import numpy as np

from minit2t.ops.function import Function, unbroadcast


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return np.reshape(a, shape)                   # a view when a's strides allow one
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} "
                             f"({a.size} elements) into {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return (np.reshape(g, ctx.shape),)


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


class GetItem(Function):
    """a[index] for basic slicing and integer-array indexing; the gradient is zero
    outside the selected elements, and repeated indices add up."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.index, ctx.shape = index, a.shape
        return np.asarray(a[index])

    @staticmethod
    def backward(ctx, g):
        grad = np.zeros(ctx.shape, g.dtype)
        if _has_array_index(ctx.index):
            np.add.at(grad, ctx.index, g)                 # repeated indices accumulate
        else:
            grad[ctx.index] = g
        return (grad,)


class Split(Function):
    """a cut along `axis` into pieces of `sizes`: an op with one output per piece.

    Its backward puts the pieces' gradients side by side again (zeros for a piece
    that got none): one array, where q, k, v = qkv[0], qkv[1], qkv[2] through
    GetItem would make a zero-padded full-size gradient per piece and add them."""

    @staticmethod
    def forward(ctx, a, sizes, axis):
        if not 0 <= axis < a.ndim or sum(sizes) != a.shape[axis] or min(sizes, default=0) < 0:
            raise ValueError(f"split: sizes {list(sizes)} along axis {axis} do not cut shape {a.shape}")
        ctx.axis, ctx.sizes, ctx.shape = axis, sizes, a.shape
        return tuple(np.split(a, np.cumsum(sizes)[:-1], axis=axis))

    @staticmethod
    def backward(ctx, *grads):
        dtype = next(g.dtype for g in grads if g is not None)
        shape = lambda n: ctx.shape[:ctx.axis] + (n,) + ctx.shape[ctx.axis + 1:]
        pieces = [np.zeros(shape(n), dtype) if g is None else g for g, n in zip(grads, ctx.sizes)]
        return (np.concatenate(pieces, axis=ctx.axis),)


def _has_array_index(index):
    index = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (list, np.ndarray)) for i in index)


def concat_setup(ctx, arrays, axis):
    """Checks the arrays (check_concat), keeps on ctx what the backward splits by (ctx.axis, ctx.bounds);
    returns the output's shape."""
    ctx.axis = axis = check_concat(arrays, axis)
    ctx.bounds = np.cumsum([x.shape[axis] for x in arrays])[:-1]
    shape = list(arrays[0].shape)
    shape[axis] = sum(x.shape[axis] for x in arrays)
    return tuple(shape)


def check_concat(arrays, axis):
    """The axis as a non-negative int; ValueError unless the arrays agree on every other axis."""
    ref = arrays[0]
    if not -ref.ndim <= axis < ref.ndim:
        raise ValueError(f"concatenate: axis {axis} is out of range for shape {ref.shape}")
    axis = axis % ref.ndim
    for x in arrays[1:]:
        if x.ndim != ref.ndim or any(x.shape[i] != ref.shape[i] for i in range(x.ndim) if i != axis):
            raise ValueError(f"concatenate along axis {axis}: shapes {ref.shape} and {x.shape} "
                             "must agree on every other axis")
    return axis


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        concat_setup(ctx, arrays, axis)
        return np.concatenate(arrays, axis=ctx.axis)

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
