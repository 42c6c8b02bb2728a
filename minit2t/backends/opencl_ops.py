"""The OpenCL backend's versions of MatMul, Linear, Unfold and Fold: the same math
as minit2t/ops, with the products and the windows computed by the OpenCL kernels
(opencl_kernels.matmul, unfold, fold: float32 on the device, float64 in NumPy).

Legend: M/K/N matrix sides, Bt flattened batch, R rows, Din/Dout linear features,
"..." batch dims. Each class replaces the op it subclasses (opencl_backend.OPS).
Under autocast (ctx.bf16) the operands are rounded to bf16 on the host first
(minit2t.amp.operands, as the reference ops do); the kernels sum in float32.
"""
import numpy as np

from minit2t import ops
from minit2t.amp import operands
from minit2t.backends import opencl_kernels as ocl
from minit2t.ops import conv, linear, matmul


def mm(a, b):
    """a (..., M, K) @ b (..., K, N) -> (..., M, N) as one 2-D or 3-D kernel call."""
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.ndim == 2:                                                 # weights: batch folded into rows
        return ocl.matmul(a.reshape(-1, K), b).reshape(a.shape[:-1] + (N,))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a3 = np.broadcast_to(a, batch + (M, K)).reshape(-1, M, K)       # (Bt, M, K)
    b3 = np.broadcast_to(b, batch + (K, N)).reshape(-1, K, N)       # (Bt, K, N)
    return ocl.matmul(a3, b3).reshape(batch + (M, N))                   # (..., M, N)


class MatMul(ops.MatMul):
    @staticmethod
    def forward(ctx, a, b):
        ctx.on_device = a.ndim >= 2 and b.ndim >= 2
        if not ctx.on_device:
            return ops.MatMul.forward(ctx, a, b)
        matmul.check(a, b, (a.shape, b.shape))
        a, b = operands(ctx, a, b)                                  # bf16 under autocast
        ctx.save_for_backward(a, b)
        return mm(a, b)

    @staticmethod
    def backward(ctx, g):
        if not ctx.on_device:
            return ops.MatMul.backward(ctx, g)
        a, b = ctx.saved
        g = operands(ctx, g)
        ga = ops.unbroadcast(mm(g, np.swapaxes(b, -1, -2)), a.shape) if ctx.needs_input_grad(0) else None
        gb = ops.unbroadcast(mm(np.swapaxes(a, -1, -2), g), b.shape) if ctx.needs_input_grad(1) else None
        return ga, gb


class Linear(ops.Linear):
    @staticmethod
    def forward(ctx, x, weight, bias=None):
        linear.check(x, weight, bias)
        x2 = x.reshape(-1, x.shape[-1])                                   # (R, Din)
        x2, weight = operands(ctx, x2, weight)                            # bf16 under autocast
        y = mm(x2, weight.T)                                              # (R, Dout)
        ctx.save_for_backward(x2, weight)
        ctx.shape = x.shape
        y = y if bias is None else y + bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))              # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        x2, weight = ctx.saved
        g2 = g.reshape(-1, weight.shape[0])                               # (R, Dout)
        gb = g2.sum(axis=0) if ctx.needs_input_grad(2) else None          # (Dout,)
        g2 = operands(ctx, g2)                                            # bf16 under autocast
        gx = mm(g2, weight).reshape(ctx.shape) if ctx.needs_input_grad(0) else None
        gw = mm(g2.T, x2) if ctx.needs_input_grad(1) else None            # (Dout, Din)
        return gx, gw, gb


class Unfold(ops.Unfold):
    @staticmethod
    def forward(ctx, x, kernel_size, stride=1, padding=0):
        k, s, p = conv.check_unfold(x, kernel_size, stride, padding)
        ctx.args = x.shape[2:] + (k, s, p)
        return ocl.unfold(x, k, s, p)                                       # (B, C*k*k, L)

    @staticmethod
    def backward(ctx, g):
        H, W, k, s, p = ctx.args
        return (ocl.fold(g, (H, W), k, s, p),)                              # (B, C, H, W)


class Fold(ops.Fold):
    @staticmethod
    def forward(ctx, cols, output_size, kernel_size, stride=1, padding=0):
        H, W, k, s, p = conv.check_fold(cols, output_size, kernel_size, stride, padding)
        ctx.args = k, s, p
        return ocl.fold(cols, (H, W), k, s, p)                              # (B, C, H, W)

    @staticmethod
    def backward(ctx, g):
        return (ocl.unfold(g, *ctx.args),)                                  # (B, C*k*k, L)


OPS = {ops.MatMul: MatMul, ops.Linear: Linear, ops.Unfold: Unfold, ops.Fold: Fold}
