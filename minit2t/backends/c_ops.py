"""The C backend's versions of the ops: the same math as minit2t/ops, on the C kernels.

Each class below replaces the op it subclasses, forward and backward together,
when the C backend is active (c_backend.OPS). float32 inputs run in C; any other
dtype runs the reference op itself (ctx.in_c records which, for the backward).

What the C versions add, all of it memory layout, none of it math:
  - outputs and gradients come from the backend's pool of recycled buffers (_cmem);
    a broadcasting Add and Concat are NumPy's own, into such a buffer (a fresh one
    costs a page fault every 4 KiB);
  - layout changes (a strided view made contiguous, a piece of a gradient written
    into its place) are the C copy kernel on every thread, not NumPy's one-thread copy;
  - Linear adds its bias inside the GEMM;
  - MatMul computes the gradient of a transposed operand (k.transpose(-2, -1) in
    attention) transposed, so that the transpose's backward gets it back contiguous;
  - GetItem and Split return contiguous pieces and write their gradients into one
    buffer laid out as their input is;
  - Attention (c_attention.py) reads q, k, v where the qkv Linear wrote them and writes
    its gradient back packed, one head per work item (cext/attention.c); the band
    products are in c_band.py, ToMe's matching (one kernel call for the batch) in c_match.py.
Under autocast (ctx.bf16) Linear and MatMul run the bf16 GEMM (cext/gemm_bf16.c: the
rounding of the operands in its packing), Attention the fused kernels' bf16 mode; the band
products round their operands (minit2t.amp.to_bf16) and run the float32 kernels.
Legend: M/K/N matrix sides, R rows, Din/Dout linear features, "..." leading dims.
"""
import numpy as np

from minit2t import ops
from minit2t.backends import c_kernels as ck
from minit2t.backends.c_attention import Attention
from minit2t.backends.c_band import BandDot, BandMix
from minit2t.backends.c_match import ToMeMatch
from minit2t.ops import activation, conv, linear, matmul, norm, shape


def _f32(*arrays):
    return all(a.dtype == np.float32 for a in arrays)


def contiguous(x):
    """x when C-contiguous, else a C-contiguous copy by the C copy kernel."""
    return x if x.flags.c_contiguous else ck.copy_contiguous(x)


def reshape(x, shape):
    """x.reshape(shape): a view when x's strides allow one, else a copy through contiguous()."""
    try:
        return np.reshape(x, shape, copy=False)
    except ValueError:
        return contiguous(x).reshape(shape)


def empty_like(a, dtype=None):
    """An uninitialised pooled array of a's shape, laid out in memory as a is."""
    order = sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))       # outermost first
    buf = ck.empty(tuple(a.shape[i] for i in order), dtype or a.dtype)
    return buf.transpose(np.argsort(order))


def mm(a, b, bf16=False):
    """a (..., M, K) @ b (..., K, N) -> (..., M, N) on the C GEMM (2-D or 3-D calls); bf16:
    the bf16 GEMM (operands rounded, float32 sums)."""
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.ndim == 2:                                                # weights: fold batch into rows
        return ck.matmul(reshape(a, (-1, K)), b, bf16=bf16).reshape(a.shape[:-1] + (N,))   # (..., M, N)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a3 = reshape(np.broadcast_to(a, batch + (M, K)), (-1, M, K))   # (Bt, M, K)
    b3 = reshape(np.broadcast_to(b, batch + (K, N)), (-1, K, N))   # (Bt, K, N)
    return ck.matmul(a3, b3, bf16=bf16).reshape(batch + (M, N))        # (..., M, N)


class MatMul(ops.MatMul):
    @staticmethod
    def forward(ctx, a, b):
        ctx.in_c = _f32(a, b) and a.ndim >= 2 and b.ndim >= 2
        if not ctx.in_c:
            return ops.MatMul.forward(ctx, a, b)
        matmul.check(a, b, (a.shape, b.shape))
        ctx.save_for_backward(a, b)
        return mm(a, b, ctx.bf16)                                   # (..., M, N)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c:
            return ops.MatMul.backward(ctx, g)
        a, b = ctx.saved
        g = contiguous(g) if g.ndim > 3 else g                      # once, not once per product
        ga = gb = None
        if ctx.needs_input_grad(0):
            ga = ops.unbroadcast(mm(g, np.swapaxes(b, -1, -2), ctx.bf16), a.shape)   # (..., M, K)
        if ctx.needs_input_grad(1):
            if b.ndim == 2:
                gb = mm(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, b.shape[1]), ctx.bf16)   # (K, N)
            elif _is_transposed(b) and a.shape[:-2] == b.shape[:-2]:
                gb = np.swapaxes(mm(np.swapaxes(g, -1, -2), a, ctx.bf16), -1, -2)  # (..., K, N) as b
            else:
                gb = mm(np.swapaxes(a, -1, -2), g, ctx.bf16)        # (..., K, N)
            gb = ops.unbroadcast(gb, b.shape)
        return ga, gb


def _is_transposed(b):
    """b (..., K, N) is the transpose of a C-contiguous (..., N, K), as k.transpose(-2, -1) is."""
    k, n = b.shape[-2:]
    return k > 1 and n > 1 and b.strides[-2] == b.itemsize and b.strides[-1] == k * b.itemsize


class Linear(ops.Linear):
    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.in_c = _f32(x, weight) and (bias is None or bias.dtype == np.float32)
        if not ctx.in_c:
            return ops.Linear.forward(ctx, x, weight, bias)
        linear.check(x, weight, bias)
        x2 = reshape(x, (-1, x.shape[-1]))                                # (R, Din)
        y = (mm(x2, weight.T, ctx.bf16) if bias is None                # (R, Dout)
             else ck.linear_forward(x2, weight, bias, bf16=ctx.bf16))
        ctx.save_for_backward(x2, weight)
        ctx.shape = x.shape
        return y.reshape(x.shape[:-1] + (weight.shape[0],))              # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c:
            return ops.Linear.backward(ctx, g)
        g2 = reshape(g, (-1, ctx.saved[1].shape[0]))                     # (R, Dout)
        gb = ck.sum_rows(g2) if ctx.needs_input_grad(2) else None         # (Dout,)
        return Linear.grads(ctx, g2, gb)

    @staticmethod
    def grads(ctx, g2, gb):
        """gx, gw from g2 (R, Dout) and the forward's saved x2, weight; gb given (Dout,) or None."""
        x2, weight = ctx.saved
        gx = mm(g2, weight, ctx.bf16).reshape(ctx.shape) if ctx.needs_input_grad(0) else None
        gw = mm(g2.T, x2, ctx.bf16) if ctx.needs_input_grad(1) else None  # (Dout, Din)
        return gx, gw, gb


class LayerNorm(ops.LayerNorm):
    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        ctx.in_c = _f32(x, weight, bias) and x.size > 0
        if not ctx.in_c:
            return ops.LayerNorm.forward(ctx, x, weight, bias, eps)
        norm.check(x, weight, bias, eps)
        y, mean, rstd = ck.layer_norm_forward(x, weight, bias, eps)       # (..., D), (...), (...)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c or g.dtype != np.float32:
            return ops.LayerNorm.backward(ctx, g)
        return ck.layer_norm_backward(g, *ctx.saved)                      # (..., D), (D,), (D,)


class Softmax(ops.Softmax):
    @staticmethod
    def forward(ctx, a, axis=-1):
        ctx.in_c = a.dtype == np.float32 and a.size > 0 and a.ndim > 0
        if not ctx.in_c:
            return ops.Softmax.forward(ctx, a, axis)
        activation.check_axis(a, axis, "softmax")
        ctx.axis = axis
        y = np.moveaxis(ck.softmax_forward(np.moveaxis(a, axis, -1)), -1, axis)   # the kernel: (..., N)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c:
            return ops.Softmax.backward(ctx, g)
        (y,) = ctx.saved
        last = lambda t: np.moveaxis(t, ctx.axis, -1)               # (..., N)
        return (np.moveaxis(ck.softmax_backward(last(g), last(y)), -1, ctx.axis),)


class Add(ops.Add):
    """a + b on every thread into a pooled buffer when both are float32 of one shape and large
    enough to be worth a thread (a residual sum); a large float32 sum that broadcasts (a position
    embedding added) is NumPy's, into a pooled buffer; anything else is the reference's."""

    @staticmethod
    def forward(ctx, a, b):
        if not (_f32(a, b) and max(a.size, b.size) >= 1 << 16):
            return ops.Add.forward(ctx, a, b)
        ctx.shapes = a.shape, b.shape                                 # the reference's backward
        if a.shape == b.shape:
            return ck.add(a, b)
        return np.add(a, b, out=ck.empty(np.broadcast_shapes(a.shape, b.shape)))


class Concat(shape.Concat):
    """The reference's concatenation, into a pooled buffer when float32 (no fresh pages)."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        if not _f32(*arrays):
            return shape.Concat.forward(ctx, *arrays, axis=axis)
        out_shape = shape.concat_setup(ctx, arrays, axis)
        return np.concatenate(arrays, axis=ctx.axis, out=ck.empty(out_shape))


class GELU(ops.GELU):
    @staticmethod
    def forward(ctx, a):
        ctx.in_c = a.dtype == np.float32 and a.ndim > 0
        if not ctx.in_c:
            return ops.GELU.forward(ctx, a)
        ctx.save_for_backward(a)
        return ck.gelu_forward(a)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c or g.dtype != np.float32:
            return ops.GELU.backward(ctx, g)
        return (ck.gelu_backward(g, ctx.saved[0]),)


class Reshape(ops.Reshape):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return reshape(a, shape)
        except ValueError:
            return ops.Reshape.forward(ctx, a, shape)               # its error message

    @staticmethod
    def backward(ctx, g):
        return (reshape(g, ctx.shape),)


class GetItem(ops.GetItem):
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
        if shape._has_array_index(ctx.index):
            np.add.at(grad, ctx.index, g)          # repeated indices accumulate
            return (grad,)
        region = grad[ctx.index]                   # basic indexing: a view, or a scalar
        if isinstance(region, np.ndarray):
            ck.copy_into(region, np.broadcast_to(g, region.shape))
        else:
            grad[ctx.index] = g
        return (grad,)


class Split(ops.Split):
    @staticmethod
    def forward(ctx, a, sizes, axis):
        pieces = ops.Split.forward(ctx, a, sizes, axis)             # views, checked
        ctx.save_for_backward(a)                   # a view of the input: its shape and layout
        return tuple(contiguous(p) for p in pieces)

    @staticmethod
    def backward(ctx, *grads):
        (a,) = ctx.saved
        grad = empty_like(a, next(g.dtype for g in grads if g is not None))   # laid out as a
        bounds = np.cumsum((0,) + tuple(ctx.sizes))
        for g, lo, hi in zip(grads, bounds[:-1], bounds[1:]):
            region = grad[(slice(None),) * ctx.axis + (slice(int(lo), int(hi)),)]   # a view into grad
            if g is None:
                region[...] = 0
            else:
                ck.copy_into(region, g)
        return (grad,)


class Unfold(ops.Unfold):
    @staticmethod
    def forward(ctx, x, kernel_size, stride=1, padding=0):
        k, s, p = conv.check_unfold(x, kernel_size, stride, padding)
        ctx.args = x.shape[2:] + (k, s, p)
        return ck.unfold(x, k, s, p)                                  # (B, C*k*k, L)

    @staticmethod
    def backward(ctx, g):
        H, W, k, s, p = ctx.args
        return (ck.fold(g, (H, W), k, s, p),)                         # (B, C, H, W)


class Fold(ops.Fold):
    @staticmethod
    def forward(ctx, cols, output_size, kernel_size, stride=1, padding=0):
        H, W, k, s, p = conv.check_fold(cols, output_size, kernel_size, stride, padding)
        ctx.args = k, s, p
        return ck.fold(cols, (H, W), k, s, p)                         # (B, C, H, W)

    @staticmethod
    def backward(ctx, g):
        return (ck.unfold(g, *ctx.args),)                             # (B, C*k*k, L)


OPS = {ops.Add: Add, ops.Concat: Concat, ops.MatMul: MatMul, ops.Linear: Linear, ops.LayerNorm: LayerNorm,
       ops.Softmax: Softmax, ops.GELU: GELU, ops.Reshape: Reshape, ops.GetItem: GetItem, ops.Split: Split,
       ops.Unfold: Unfold, ops.Fold: Fold, ops.BandDot: BandDot, ops.BandMix: BandMix,
       ops.Attention: Attention, ops.ToMeMatch: ToMeMatch}
