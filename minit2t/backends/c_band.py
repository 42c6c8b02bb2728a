"""The C backend's band products (ops.BandDot, ops.BandMix: local attention and Scatterbrain's
sparse part), the same math as minit2t/ops/band.py on the band kernels of cext/band.c.

Legend: B batch, T tokens, d width, w window. float32 runs in C; any other dtype runs the
reference op (ctx.in_c records which). Under autocast (ctx.bf16) the operands and the
incoming gradient are rounded to bf16 first (minit2t.amp.operands) and the float32 kernels
multiply them.
"""
import numpy as np

from minit2t import ops
from minit2t.amp import operands
from minit2t.backends import c_kernels as ck


class BandDot(ops.BandDot):
    @staticmethod
    def forward(ctx, a, b, window):
        ctx.in_c = a.dtype == b.dtype == np.float32
        if not ctx.in_c:
            return ops.BandDot.forward(ctx, a, b, window)
        a, b = operands(ctx, a, b)                                    # bf16 under autocast
        ctx.save_for_backward(a, b)
        return ck.band_dot(a, b, window)                              # (B, T, w)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c:
            return ops.BandDot.backward(ctx, g)
        a, b = ctx.saved
        g = operands(ctx, g)
        return ck.band_mix(g, b), ck.band_mix_t(g, a)                 # (B, T, d) each


class BandMix(ops.BandMix):
    @staticmethod
    def forward(ctx, p, v):
        ctx.in_c = p.dtype == v.dtype == np.float32
        if not ctx.in_c:
            return ops.BandMix.forward(ctx, p, v)
        p, v = operands(ctx, p, v)                                    # bf16 under autocast
        ctx.save_for_backward(p, v)
        return ck.band_mix(p, v)                                      # (B, T, d)

    @staticmethod
    def backward(ctx, g):
        if not ctx.in_c:
            return ops.BandMix.backward(ctx, g)
        p, v = ctx.saved
        g = operands(ctx, g)
        return ck.band_dot(g, v, p.shape[-1]), ck.band_mix_t(p, g)    # (B, T, w), (B, T, d)
