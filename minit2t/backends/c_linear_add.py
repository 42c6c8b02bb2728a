"""The C backend's LinearAdd (ops.LinearAdd): the product on the C GEMM with the residual added as
its epilogue (cext/gemm.c sgemm_bias_add, cext/gemm_bf16.c sgemm_bf16_add): each block of
x @ weight^T + bias gets its block of the residual added as soon as it is done, while it is in
cache, where Linear then Add would write the product out and read it back. The values are those of
c_ops.Linear then c_ops.Add, forward and backward, bit for bit.

Legend: R rows, Din/Dout features, "..." leading dims.
"""
import numpy as np

from minit2t import ops
from minit2t.backends import c_kernels as ck
from minit2t.backends._cmem import contiguous, lib, pool, ptr, strides
from minit2t.backends.c_ops import Linear, _f32, reshape
from minit2t.ops import linear


def linear_add_forward(x, weight, bias, residual, bf16=False):
    """x (R, Din), weight (Dout, Din), bias (Dout,), residual (R, Dout) -> residual + x @ weight.T
    + bias (R, Dout), a new array. bf16: the product as sgemm_bf16's (x and weight rounded to
    bfloat16 as they are packed)."""
    residual = np.asarray(residual)
    x, w, b, r, dout = ck.linear_operands("linear_add_forward", x, weight, np.asarray(bias), residual)
    if residual.shape != (r, dout):
        raise ValueError(f"linear_add_forward expects residual ({r}, {dout}) for x {x.shape} and "
                         f"weight {np.shape(weight)}, got {residual.shape}")
    res = contiguous(residual)
    out = pool.empty((1, r, dout))
    if out.size:
        gemm = lib.sgemm_bf16_add if bf16 else lib.sgemm_bias_add
        gemm(*ck.gemm_head(x, w), ptr(b), ptr(res), strides(res, (None, 0)), ptr(out), strides(out, (0, 1)))
    return out[0]


class LinearAdd(ops.LinearAdd):
    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.in_c = _f32(x, weight, bias, residual)
        if not ctx.in_c:
            return ops.LinearAdd.forward(ctx, x, weight, bias, residual)
        linear.check(x, weight, bias)
        linear.check_residual(residual, x, weight)
        x2 = reshape(x, (-1, x.shape[-1]))                                # (R, Din)
        r2 = reshape(residual, (-1, weight.shape[0]))                     # (R, Dout)
        y = linear_add_forward(x2, weight, bias, r2, ctx.bf16)            # (R, Dout)
        ctx.save_for_backward(x2, weight)
        ctx.shape = x.shape
        return y.reshape(residual.shape)                                  # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c:
            return ops.LinearAdd.backward(ctx, g)
        return Linear.backward(ctx, g) + (g,)                             # gx, gw, gb, gr
