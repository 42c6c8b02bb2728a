"""The base of every op: a forward and a backward over ndarrays, sharing a context.

An op is a subclass of Function with two static methods side by side:

    forward(ctx, *arrays, **options)  -> ndarray
    backward(ctx, grad_out)           -> one gradient (or None) per input array

An op with several outputs (Split) returns a tuple of ndarrays from forward
and takes one gradient per output in backward(ctx, *grads_out); an output
that received no gradient gets zeros there.

`ctx` is the only state an op keeps between the two: forward saves what
backward needs on it (ctx.save_for_backward(...), or plain attributes).
Function.apply runs forward on the tensors' data and, when a gradient is
wanted, links the result to its inputs so Tensor.backward can walk back.
"""
import numpy as np

from minit2t import grad_mode


class Context:
    """What one application of an op remembers for its backward."""

    def __init__(self, fn):
        self.fn = fn              # the Function subclass that made the output
        self.inputs = ()          # the input tensors (set only when tracked)
        self.saved = ()
        self.n_outputs = 1        # > 1 for ops whose forward returns a tuple

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def needs_input_grad(self, i):
        """Whether input i wants a gradient (backward may return None for it otherwise)."""
        return i < len(self.inputs) and self.inputs[i].requires_grad


class Function:
    @staticmethod
    def forward(ctx, *arrays, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        from minit2t.tensor import Tensor
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TypeError(f"{cls.__name__} expects Tensor inputs, got {type(t).__name__}")
        ctx = Context(cls)
        out = cls.forward(ctx, *(t.data for t in inputs), **options)
        track = grad_mode.is_enabled() and any(t.requires_grad for t in inputs)
        if track:
            ctx.inputs = inputs
        if isinstance(out, tuple):                                  # several outputs
            ctx.n_outputs = len(out)
            return tuple(_wrap(Tensor, o, ctx if track else None, slot) for slot, o in enumerate(out))
        return _wrap(Tensor, out, ctx if track else None, 0)


def _wrap(cls, array, ctx, slot):
    """A result tensor; tracked results remember their op (ctx) and which output they are."""
    t = cls._wrap(array, requires_grad=ctx is not None)
    t._ctx, t._slot = ctx, slot
    return t


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting (the backward of every binary op)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))                   # drop leading dims
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)                   # size-1 dims
    return grad.reshape(shape)


def contiguous(x):
    """x when C-contiguous, else a C-contiguous copy made by the active backend's
    copy kernel (the C backend's copies strided layouts on all threads)."""
    if x.flags.c_contiguous:
        return x
    from minit2t.backends import kernel
    return kernel("copy_into")(np.empty(x.shape, x.dtype), x)


def empty_like(a, dtype=None):
    """An uninitialised array of a's shape (and dtype, unless given), laid out in memory as `a`
    is (a permuted view gets a permuted buffer), from the active backend (the C backend
    recycles large ones)."""
    from minit2t.backends import kernel
    order = sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))       # outermost first
    buf = kernel("empty")(tuple(a.shape[i] for i in order), dtype or a.dtype)
    return buf.transpose(np.argsort(order))


def reshape(x, shape):
    """x.reshape(shape): a view when x's strides allow one, else a copy through contiguous()."""
    try:
        return np.reshape(x, shape, copy=False)
    except ValueError:
        return contiguous(x).reshape(shape)


def as_dtype(x, dtype):
    """x as an ndarray of `dtype` (no copy when it already is)."""
    return np.asarray(x, dtype=dtype)
