"""The base of every op: a forward and a backward over ndarrays, sharing a context.

An op is a subclass of Function with two static methods side by side:

    forward(ctx, *arrays, **options)  -> ndarray
    backward(ctx, grad_out)           -> one gradient (or None) per input array

An op with several outputs (Split) returns a tuple of ndarrays from forward
and takes one gradient per output in backward(ctx, *grads_out); an output
that received no gradient passes None there.

`ctx` is the only state an op keeps between the two: forward saves what
backward needs on it (ctx.save_for_backward(...), or plain attributes).
Function.apply runs forward on the tensors' data and, when a gradient is
wanted, links the result to its inputs so Tensor.backward can walk back.

The seam: apply asks the active backend for its version of the op
(minit2t.backends.implementation). The NumPy code in ops/ is the reference;
a backend may replace a whole op, forward and backward together, with a
faster one (the C backend's are in minit2t/backends/c_ops.py).
"""
from minit2t import amp, grad_mode
from minit2t.backends import implementation


class Context:
    """What one application of an op remembers for its backward."""

    def __init__(self, fn):
        self.fn = fn              # the class whose forward ran, so its backward runs too
        self.inputs = ()          # the input tensors (set only when tracked)
        self.saved = ()
        self.n_outputs = 1        # > 1 for ops whose forward returns a tuple
        self.bf16 = amp.bf16_enabled()   # under autocast: products take bf16 operands (amp.operands)

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
        ctx = Context(implementation(cls))                         # this op, or a backend's version
        out = ctx.fn.forward(ctx, *(t.data for t in inputs), **options)
        outs = out if isinstance(out, tuple) else (out,)           # ops with several outputs: a tuple
        ctx.n_outputs = len(outs)
        if grad_mode.is_enabled() and any(t.requires_grad for t in inputs):
            ctx.inputs = inputs
        else:
            ctx = None                                             # nothing to backpropagate to
        results = tuple(Tensor._result(o, ctx, slot) for slot, o in enumerate(outs))
        return results if isinstance(out, tuple) else results[0]

    @classmethod
    def compute(cls, *arrays, **options):
        """The op's forward on plain arrays, outside any graph (the active backend's version)."""
        fn = implementation(cls)
        return fn.forward(Context(fn), *arrays, **options)


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
