"""The Tensor: an ndarray, the op that produced it, and its gradient.

Arithmetic on tensors goes through the ops in minit2t/ops; each result
remembers its op's context (`_ctx`) so `backward()` can walk the graph in
reverse topological order, calling every op's backward and accumulating
gradients into the leaves' `.grad`.
"""
import numpy as np

from minit2t import ops

_FLOATS = (np.float32, np.float64)


def _to_array(data, dtype=None):
    """An ndarray for `data`: lists and scalars become float32, arrays keep their dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        data = np.asarray(data)
        if data.dtype == np.float16:
            return data.astype(np.float32)
        return data
    arr = np.asarray(data)
    return arr.astype(np.float32) if arr.dtype.kind in "fb" or arr.dtype == object else arr


class Tensor:
    """An ndarray (`.data`) with autograd. Its attributes are NumPy's: shape, ndim, dtype, and `size`, the
    element count (an int, as ndarray.size; minit2t counts parameters with it). PyTorch's spellings that
    do not clash are here too: numel(), dim(), view, argmax(dim=), dim= / keepdim= for axis= / keepdims=.
    PyTorch's t.size() / t.size(d) is t.torch_size() / t.torch_size(d); calling t.size says so in one line."""
    __array_priority__ = 100          # ndarray <op> Tensor defers to Tensor
    _slot = 0                         # which output of its op (ops with several outputs)

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.type not in _FLOATS:
            raise TypeError(f"only float32/float64 tensors can require grad, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._ctx = None

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        t = cls.__new__(Tensor)
        t.data, t.requires_grad, t.grad, t._ctx = np.asarray(array), requires_grad, None, None
        return t

    @classmethod
    def _result(cls, array, ctx, slot):
        """Output `slot` of an op; a tracked one remembers the op's context (ctx, else None)."""
        t = cls._wrap(array, requires_grad=ctx is not None)
        t._ctx, t._slot = ctx, slot
        return t

    # ---- plain attributes -------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: _Count(self.data.size))
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{grad})"

    def numpy(self):
        return self.data

    def numel(self): return int(self.data.size)                # PyTorch's name for NumPy's size
    def dim(self): return self.ndim                             # PyTorch's name for NumPy's ndim

    def torch_size(self, dim=None):
        """PyTorch's t.size(): the shape, or with `dim` that axis's length (negative counts from the end)."""
        if dim is None:
            return self.shape
        if not -self.ndim <= dim < self.ndim:
            raise IndexError(f"torch_size: axis {dim} is out of range for shape {self.shape}")
        return self.shape[dim]

    def argmax(self, dim=None, keepdim=False, *, axis=None):
        """The indices of the largest values along dim (None: of the flattened tensor), as an int64 ndarray.

        PyTorch returns a tensor without grad; here an ndarray, since indices carry no gradient and a Tensor
        has no ==, so `(logits.argmax(dim=1) == labels).mean()` computes the accuracy as NumPy would."""
        axis = _either("argmax", "axis", axis, dim)
        return np.asarray(np.argmax(self.data, axis=axis, keepdims=bool(keepdim)), dtype=np.int64)

    def item(self):
        return self.data.item()

    def detach(self):
        return Tensor._wrap(self.data)

    def astype(self, dtype):
        if np.dtype(dtype).type not in _FLOATS:
            return Tensor._wrap(self.data.astype(dtype))
        return ops.Cast.apply(self, dtype=np.dtype(dtype))

    def requires_grad_(self, flag=True):
        self.requires_grad = bool(flag)
        return self

    # ---- backward ---------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's .grad that requires it."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was built under no_grad)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar, got shape {self.shape}")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward(): gradient shape {grad.shape} != tensor shape {self.shape}")
        if self._ctx is None:
            return self._accumulate(grad)
        pending = {self._ctx: {self._slot: grad}}          # op -> {which output: its gradient}
        for ctx in self._ops_last_first():
            outs = pending.pop(ctx, None)
            if outs is None:
                continue                                   # no gradient reached this op
            if ctx.saved is None:
                raise RuntimeError("backward() through a graph that was already freed; "
                                   "pass retain_graph=True to the first backward()")
            in_grads = ctx.fn.backward(ctx, *(outs.get(i) for i in range(ctx.n_outputs)))
            for inp, g in zip(ctx.inputs, in_grads):
                if g is not None and inp.requires_grad:
                    inp._pass_back(np.asarray(g, dtype=inp.dtype), pending)
            if not retain_graph:
                ctx.saved = None

    def _pass_back(self, g, pending):
        """A gradient for this tensor: into .grad for a leaf, else onto its op's list."""
        if self._ctx is None:
            return self._accumulate(g)
        outs = pending.setdefault(self._ctx, {})                 # a second use: the sum, by the Add op
        outs[self._slot] = g if self._slot not in outs else ops.Add.compute(outs[self._slot], g)

    def _accumulate(self, g):
        self.grad = g.copy() if self.grad is None else self.grad + g

    def _ops_last_first(self):
        """The ops of the graph, each after every op that used one of its outputs."""
        order, seen, stack = [], set(), [(self._ctx, False)]
        while stack:
            ctx, done = stack.pop()
            if done:
                order.append(ctx)                          # after every op that it feeds
                continue
            if ctx in seen:
                continue
            seen.add(ctx)
            stack.append((ctx, True))
            stack.extend((t._ctx, False) for t in ctx.inputs if t._ctx is not None and t._ctx not in seen)
        return reversed(order)

    # ---- operators --------------------------------------------------------
    def _lift(self, other):
        """A Python number or array as a constant tensor of this tensor's dtype."""
        if isinstance(other, Tensor):
            return other
        arr = np.asarray(other)
        dtype = self.dtype if self.dtype.kind == "f" or arr.dtype.kind in "biu" else np.float32
        return Tensor._wrap(arr.astype(dtype) if arr.dtype.kind in "biuf" else arr)

    def __add__(self, o): return ops.Add.apply(self, self._lift(o))
    def __radd__(self, o): return ops.Add.apply(self._lift(o), self)
    def __sub__(self, o): return ops.Sub.apply(self, self._lift(o))
    def __rsub__(self, o): return ops.Sub.apply(self._lift(o), self)
    def __mul__(self, o): return ops.Mul.apply(self, self._lift(o))
    def __rmul__(self, o): return ops.Mul.apply(self._lift(o), self)
    def __truediv__(self, o): return ops.Div.apply(self, self._lift(o))
    def __rtruediv__(self, o): return ops.Div.apply(self._lift(o), self)
    def __neg__(self): return ops.Neg.apply(self)
    def __matmul__(self, o): return ops.MatMul.apply(self, self._lift(o))
    def __rmatmul__(self, o): return ops.MatMul.apply(self._lift(o), self)
    def __getitem__(self, index): return ops.GetItem.apply(self, index=_index(index))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            return (exponent * self.log()).exp()
        return ops.Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):
        return (self * float(np.log(base))).exp()

    # ---- math ---------------------------------------------------------------
    def exp(self): return ops.Exp.apply(self)
    def log(self): return ops.Log.apply(self)
    def sqrt(self): return ops.Sqrt.apply(self)
    def tanh(self): return ops.Tanh.apply(self)
    def erf(self): return ops.Erf.apply(self)
    def matmul(self, o): return self @ o

    # Reductions and softmax take NumPy's axis= / keepdims= or PyTorch's dim= / keepdim=, not both.
    # max(dim=...) returns the values only (NumPy's max), not PyTorch's (values, indices): see argmax.
    def sum(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return ops.Sum.apply(self, **_reduce_args("sum", axis, keepdims, dim, keepdim))

    def mean(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return ops.Mean.apply(self, **_reduce_args("mean", axis, keepdims, dim, keepdim))

    def max(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return ops.Max.apply(self, **_reduce_args("max", axis, keepdims, dim, keepdim))

    def softmax(self, axis=None, *, dim=None):
        return ops.Softmax.apply(self, axis=_either("softmax", "axis", axis, dim, default=-1))

    def log_softmax(self, axis=None, *, dim=None):
        return ops.LogSoftmax.apply(self, axis=_either("log_softmax", "axis", axis, dim, default=-1))

    # ---- shapes -------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.Reshape.apply(self, shape=tuple(shape))

    def view(self, *shape):
        """PyTorch's view: here reshape (NumPy's view when the strides allow one, else a copy; with no
        in-place tensor ops in minit2t the difference cannot show)."""
        return self.reshape(*shape)

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return ops.Permute.apply(self, axes=tuple(axes))

    def transpose(self, a=-2, b=-1):
        """Swap two axes (the last two by default)."""
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return self.permute(axes)

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.ndim))))

    def expand(self, *shape):
        """Broadcast to `shape`; -1 keeps a dimension's size (as torch.expand)."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        lead = len(shape) - self.ndim
        if any(s == -1 for s in shape[:lead]):
            raise ValueError(f"expand: -1 is not allowed for the new leading dims of {tuple(shape)}")
        full = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        return ops.Expand.apply(self, shape=full)

    def split(self, sizes, axis=-1):
        """Pieces of `sizes` along axis (an int: equal pieces of that size)."""
        n = self.shape[axis]
        if isinstance(sizes, int):
            sizes = [sizes] * (n // sizes) + ([n % sizes] if n % sizes else [])
        if sum(sizes) != n:
            raise ValueError(f"split sizes {list(sizes)} do not add up to {n} (axis {axis} of {self.shape})")
        return list(ops.Split.apply(self, sizes=tuple(int(n) for n in sizes), axis=axis % self.ndim))

    def unbind(self, axis=0):
        """The slices along axis, that axis removed: qkv.unbind(0) -> q, k, v."""
        axis = axis % self.ndim
        shape = self.shape[:axis] + self.shape[axis + 1:]
        return [piece.reshape(shape) for piece in self.split(1, axis)]


class _Count(int):
    """Tensor.size: NumPy's element count, an int; called as PyTorch's t.size(), it says what to write."""

    def __call__(self, *dim):
        raise TypeError(f"Tensor.size is NumPy's element count ({int(self)}), not PyTorch's size(): "
                        f"write t.shape or t.torch_size() for the shape, t.shape[d] or t.torch_size(d) for one axis")


def _either(method, name, numpy_value, torch_value, default=None):
    """The one given of a NumPy argument (axis, keepdims) and its PyTorch name (dim, keepdim); both: TypeError."""
    torch_name = {"axis": "dim", "keepdims": "keepdim"}[name]
    if torch_value is not None and numpy_value is not None:
        raise TypeError(f"Tensor.{method}: {torch_name}= is PyTorch's name for {name}=; give one, not both")
    given = numpy_value if torch_value is None else torch_value
    return default if given is None else given


def _reduce_args(method, axis, keepdims, dim, keepdim):
    return dict(axis=_either(method, "axis", axis, dim), keepdims=bool(_either(method, "keepdims", keepdims, keepdim)))


def _index(index):
    """Tensors used as indices become their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index
