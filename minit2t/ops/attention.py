"""Multi-head attention as one op: softmax(q k^T * scale) v for every head, from the packed qkv.

Legend: B batch, N tokens, h heads, d head dim, D = h * d width.
qkv (B, N, 3*D) is what nn.Attention's qkv Linear returns: qkv.reshape(B, N, 3, h, d) holds
q, k and v at index 0, 1 and 2 of its third axis. Per head:

    S = q k^T * scale (+ key_bias)      P = softmax(S) over the keys      O = P v
    out (B, N, D): the heads' O side by side, head hh in columns hh*d .. (hh+1)*d - 1

and back, from gO (the head's columns of g):

    gv = P^T gO      gP = gO v^T      gS = P * (gP - sum_m(gP * P))
    gq = gS k * scale      gk = gS^T q * scale

key_bias (B, N), optional, is added to every query's score of key j (ToMe's proportional
attention adds log size_j); it is a constant: no gradient flows to it. The gradient comes back
packed as qkv was. Only qkv and P (B, h, N, N) are kept for the backward. P is never handed
out: a layer that shows or changes the probabilities (a hook on its softmax, dropout on them)
composes matmul and softmax instead.
Under autocast (minit2t.amp) the operands of every product are bf16: qkv and g rounded
once, P rounded after the softmax (and kept so for the backward, as torch keeps it), gS
rounded before its two products; the softmax and its backward run in float32.
A backend may replace this op with a faster one (minit2t.backends).
"""
import math
import numbers

import numpy as np

from minit2t.amp import operands
from minit2t.ops.function import Function


def split_heads(qkv, num_heads):                                     # (B, N, 3*D)
    """q, k, v (B, h, N, d) each, views of qkv where its layout allows."""
    B, N, D3 = qkv.shape
    parts = qkv.reshape(B, N, 3, num_heads, D3 // (3 * num_heads))  # (B, N, 3, h, d)
    return parts.transpose(2, 0, 3, 1, 4)                           # (3, B, h, N, d)


def merge_heads(a):                                                  # (B, h, N, d)
    """The heads side by side: (B, N, h*d)."""
    B, h, N, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, N, h * d)             # (B, N, D)


def softmax_rows(s):                                                 # (..., N)
    """softmax over the last axis, in place, after subtracting each row's max (none for N = 0)."""
    s -= s.max(axis=-1, keepdims=True, initial=-np.inf)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


class Attention(Function):
    """qkv (B, N, 3*D) -> (B, N, D): the heads' softmax(q k^T * scale) v, concatenated."""

    @staticmethod
    def forward(ctx, qkv, num_heads, scale, key_bias=None):
        num_heads, scale = check_attention(qkv, num_heads, scale, key_bias)   # a float keeps qkv's dtype
        qkv = operands(ctx, qkv)                                    # bf16 under autocast
        q, k, v = split_heads(qkv, num_heads)                       # (B, h, N, d) each
        s = (q @ k.swapaxes(-1, -2)) * scale                        # (B, h, N, N)
        if key_bias is not None:
            s += key_bias[:, None, None, :]                         # (B, 1, 1, N) on every row
        p = operands(ctx, softmax_rows(s))                          # (B, h, N, N)
        ctx.num_heads, ctx.scale = num_heads, scale
        ctx.save_for_backward(qkv, p)
        return merge_heads(p @ v)                                   # (B, N, D)

    @staticmethod
    def backward(ctx, g):                                            # (B, N, D)
        qkv, p = ctx.saved
        g = operands(ctx, g)                                        # bf16 under autocast
        h, (B, N, D) = ctx.num_heads, g.shape
        q, k, v = split_heads(qkv, h)                               # (B, h, N, d) each
        go = g.reshape(B, N, h, D // h).transpose(0, 2, 1, 3)       # (B, h, N, d)
        gp = go @ v.swapaxes(-1, -2)                                # (B, h, N, N)
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))        # (B, h, N, N)
        gs = operands(ctx, gs)                                      # bf16 under autocast
        gqkv = np.empty(qkv.shape, dtype=p.dtype)                   # (B, N, 3*D)
        gq, gk, gv = split_heads(gqkv, h)                           # (B, h, N, d) views of it
        gq[...] = (gs @ k) * ctx.scale
        gk[...] = (gs.swapaxes(-1, -2) @ q) * ctx.scale
        gv[...] = p.swapaxes(-1, -2) @ go
        return (gqkv,)


def check_attention(qkv, num_heads, scale, key_bias=None):
    """Check qkv (B, N, 3*D) with h = num_heads dividing D, num_heads an int >= 1, scale a
    finite real number and key_bias None or a float array (B, N); returns (num_heads, scale)
    as int and float."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, numbers.Integral) or num_heads < 1:
        raise ValueError(f"attention expects num_heads a positive int, got {num_heads!r}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise ValueError(f"attention expects scale a finite real number, got {scale!r}")
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"attention expects qkv of shape (B, N, 3*D) with D divisible by "
                         f"num_heads={num_heads}, got {qkv.shape}")
    if qkv.dtype.kind != "f":
        raise ValueError(f"attention expects a floating-point qkv, got dtype {qkv.dtype}")
    if key_bias is not None and (not isinstance(key_bias, np.ndarray) or key_bias.shape != qkv.shape[:2]
                                 or key_bias.dtype != qkv.dtype):
        got = f"{key_bias.dtype} {key_bias.shape}" if isinstance(key_bias, np.ndarray) else type(key_bias).__name__
        raise ValueError(f"attention expects key_bias a {qkv.dtype} array of shape {qkv.shape[:2]}, got {got}")
    return int(num_heads), float(scale)
