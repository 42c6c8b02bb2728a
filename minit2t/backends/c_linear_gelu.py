"""The C backend's LinearGELU (ops.LinearGELU): the product on the C GEMM with GELU as its
epilogue (cext/gemm.c sgemm_bias_gelu, cext/gemm_bf16.c sgemm_bf16_gelu): each block of
h = x @ weight^T + bias goes through GELU as soon as it is done, while it is in cache, where
Linear then GELU would write h out and read it back. The backward's GELU also sums its rows for
the bias gradient as it goes (cext/fused.c gelu_backward_sum), where Linear's backward would read
them again. The values are those of c_ops.Linear then c_ops.GELU, forward and backward, bit for bit.

Legend: R rows, Din/Dout features, "..." leading dims. Training keeps h for the backward (a
second output); under no_grad GELU overwrites h in place.
"""
import numpy as np

from minit2t import grad_mode, ops
from minit2t.backends import c_kernels as ck
from minit2t.backends._checks import check_same_shape
from minit2t.backends._cmem import contiguous, ffi, lib, pool, ptr, strides
from minit2t.backends.c_ops import Linear, _f32, reshape
from minit2t.ops import linear


def linear_gelu_forward(x, weight, bias, bf16=False, keep=True):
    """x (R, Din), weight (Dout, Din), bias (Dout,) or None -> (h, a), both (R, Dout):
    h = x @ weight.T + bias, a = gelu(h); without keep h is None (GELU wrote over it).
    bf16: the product as sgemm_bf16's (x and weight rounded to bfloat16 as they are packed)."""
    x, w, bias, r, dout = ck.linear_operands("linear_gelu_forward", x, weight, bias)   # w (Din, Dout)
    h = pool.empty((1, r, dout))
    a = pool.empty((1, r, dout)) if keep else h
    if h.size:
        gemm = lib.sgemm_bf16_gelu if bf16 else lib.sgemm_bias_gelu
        gemm(*ck.gemm_head(x, w), ffi.NULL if bias is None else ptr(bias), ptr(h), strides(h, (0, 1)),
             ptr(a), strides(a, (0, 1)))
    return (h[0] if keep else None), a[0]


def gelu_backward_sum(g, h):
    """g, h (R, Dout) float32 -> gh = g * GELU'(h) (R, Dout) and its column sums (Dout,), as
    c_kernels.gelu_backward then sum_rows, bit for bit."""
    g, h = contiguous(np.asarray(g)), contiguous(np.asarray(h))
    check_same_shape("gelu_backward_sum", g=g, h=h)
    gh, sums = pool.empty(h.shape), np.empty(h.shape[-1], np.float32)
    if h.size and lib.gelu_backward_sum(ptr(g), ptr(h), ptr(gh), ptr(sums), h.shape[0], h.shape[1]):
        raise MemoryError(f"gelu_backward_sum: no memory for the partial sums of {h.shape}")
    if not h.size:
        sums[:] = 0.0
    return gh, sums


class LinearGELU(ops.LinearGELU):
    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.in_c = _f32(x, weight) and (bias is None or bias.dtype == np.float32)
        if not ctx.in_c:
            return ops.LinearGELU.forward(ctx, x, weight, bias)
        linear.check(x, weight, bias)
        x2 = reshape(x, (-1, x.shape[-1]))                                # (R, Din)
        h, a = linear_gelu_forward(x2, weight, bias, ctx.bf16, keep=grad_mode.is_enabled())  # (R, Dout) each
        ctx.save_for_backward(x2, weight)
        ctx.shape, ctx.h = x.shape, h
        return a.reshape(x.shape[:-1] + (weight.shape[0],))              # (..., Dout)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c or g.dtype != np.float32:
            return ops.LinearGELU.backward(ctx, g)
        g2 = reshape(g, ctx.h.shape)                                      # (R, Dout)
        if ctx.needs_input_grad(2):
            gh, gb = gelu_backward_sum(g2, ctx.h)                         # (R, Dout), (Dout,)
        else:                                                             # no bias, or a frozen one
            gh, gb = ck.gelu_backward(g2, ctx.h), None
        return Linear.grads(ctx, gh, gb)                                  # gx, gw, gb
