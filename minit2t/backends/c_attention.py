"""The C backend's Attention (ops.Attention): the same math as minit2t/ops/attention.py.

Legend: B batch, N tokens, h heads, d head dim, D = h * d; Bh = B * h heads in all.

Two ways to run it, both on the C kernels:
  - fused (cext/attention.c): one kernel per head, products, softmax and mix in cache,
    q, k, v read where the qkv Linear wrote them and the gradient written back packed;
    threads take whole heads, so it needs at least as many heads as threads;
  - composed, for fewer heads than threads (one image through a one-head T2T layer): the
    products as batched GEMMs and the softmax as its row kernel, each on every thread.
Under no_grad the fused forward writes no probabilities at all (one head's in scratch).
Under autocast (ctx.bf16) the fused kernels round the products' operands to bf16 as the
reference op does; the composed way, for so few heads, runs the reference op itself.
"""
import numpy as np

from minit2t import grad_mode, ops
from minit2t.backends import c_kernels as ck
from minit2t.backends._cmem import lib, pool
from minit2t.ops.attention import check_attention, split_heads


class Attention(ops.Attention):
    @staticmethod
    def forward(ctx, qkv, num_heads, scale, key_bias=None):
        ctx.in_c = qkv.dtype == np.float32
        if not ctx.in_c:
            return ops.Attention.forward(ctx, qkv, num_heads, scale, key_bias)
        num_heads, scale = check_attention(qkv, num_heads, scale, key_bias)
        ctx.num_heads, ctx.scale = num_heads, scale
        ctx.composed = qkv.shape[0] * num_heads < lib.minit2t_get_num_threads()
        if ctx.composed and ctx.bf16:
            ctx.in_c = False
            return ops.Attention.forward(ctx, qkv, num_heads, scale, key_bias)
        if ctx.composed:
            return _composed_forward(ctx, qkv, num_heads, scale, key_bias)
        keep = grad_mode.is_enabled()                                 # no_grad: P never written
        out, p = ck.attention_forward(qkv, num_heads, scale, keep, key_bias, ctx.bf16)   # (B, N, D), (B, h, N, Np)
        ctx.save_for_backward(qkv, p)
        return out

    @staticmethod
    def backward(ctx, g):                                            # (B, N, D)
        if not ctx.in_c:
            return ops.Attention.backward(ctx, g)
        if ctx.composed:
            return (_composed_backward(ctx, g),)
        qkv, p = ctx.saved
        return (ck.attention_backward(g, qkv, p, ctx.scale, ctx.bf16),)   # (B, N, 3*D)


def _heads3(x):                                                      # (B, h, N, d) any strides
    """x as a (Bh, N, d) copy of its own (the C copy kernel), never a view of x."""
    return ck.copy_contiguous(x).reshape((-1,) + x.shape[2:])        # (Bh, N, d)


def _composed_forward(ctx, qkv, h, scale, key_bias):                 # (B, N, 3*D)
    B, N = qkv.shape[:2]
    q, k, v = (_heads3(t) for t in split_heads(qkv, h))              # (Bh, N, d) each
    q *= np.float32(scale)                                           # our copy: the scale once, here
    s = ck.matmul(q, k.transpose(0, 2, 1))                           # (Bh, N, N)
    if key_bias is not None:
        s.reshape(B, h, N, N)[...] += key_bias[:, None, None, :]     # every query's score of key j
    p = ck.softmax_forward(s)                                        # (Bh, N, N)
    ctx.save_for_backward(q, k, v, p)
    o = ck.matmul(p, v).reshape(B, h, N, -1)                         # (B, h, N, d)
    out = pool.empty((B, N, h, o.shape[-1]))                         # (B, N, h, d)
    ck.copy_into(out.transpose(0, 2, 1, 3), o)
    return out.reshape(B, N, -1)                                     # (B, N, D)


def _composed_backward(ctx, g):                                      # (B, N, D)
    q, k, v, p = ctx.saved                                           # q already scaled
    B, N, D = g.shape
    h = ctx.num_heads
    go = _heads3(g.reshape(B, N, h, D // h).transpose(0, 2, 1, 3))   # (Bh, N, d)
    gs = ck.softmax_backward(ck.matmul(go, v.transpose(0, 2, 1)), p)  # (Bh, N, N) gS / scale
    gq = ck.matmul(gs, k)                                            # (Bh, N, d)
    gq *= np.float32(ctx.scale)                                      # gq = gS k * scale
    grads = (gq, ck.matmul(gs.transpose(0, 2, 1), q), ck.matmul(p.transpose(0, 2, 1), go))
    gqkv = pool.empty((B, N, 3, h, D // h))                          # (B, N, 3, h, d)
    for part, grad in enumerate(grads):                              # gq, gk, gv (Bh, N, d)
        ck.copy_into(gqkv[:, :, part].transpose(0, 2, 1, 3), grad.reshape(B, h, N, -1))
    return gqkv.reshape(B, N, 3 * D)                                 # (B, N, 3*D)
