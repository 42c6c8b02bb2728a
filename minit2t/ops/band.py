"""Band ops: products over each query's window of keys, never building a T x T or T x w x d array.

Legend: B batch, T tokens, d width, w window (keys per query), o offset j - i.
Query i sees key j = i + o for o in [-floor(w/2), ceil(w/2)): slot s of the window holds
offset o_s = s - floor(w/2) (the band of local attention, Scatterbrain's sparse support).
Keys outside 0..T-1 count as zeros; band_mask(T, w) says which slots are real.

    band_dot(a, b)[i, s]  = a_i . b_{i+o_s}                 (B, T, d) x2 -> (B, T, w)
    band_mix(p, v)[i]     = sum_s p[i, s] v_{i+o_s}         (B, T, w), (B, T, d) -> (B, T, d)
    band_mix_t(p, a)[j]   = sum_s p[j-o_s, s] a_{j-o_s}     the adjoint of band_mix in v

Each is a loop over the w offsets of one product of two (B, n, d) slices, so memory is
O(B T (w + d)). The backwards are the same three functions:
    BandDot: grad a = band_mix(g, b), grad b = band_mix_t(g, a)
    BandMix: grad p = band_dot(g, v), grad v = band_mix_t(p, g)
Under autocast (minit2t.amp) the operands (and g) are rounded to bf16 first.
"""
import numbers

import numpy as np

from minit2t.amp import operands
from minit2t.ops.function import Function


def band_offsets(w):
    """The w offsets o = j - i of a window of w keys: -floor(w/2), ..., ceil(w/2) - 1."""
    return np.arange(-(w // 2), w - w // 2)                         # (w,)


def band_mask(T, w):
    """(T, w) bool: slot s of query i holds a real key (0 <= i + offset_s < T)."""
    j = np.arange(T)[:, None] + band_offsets(w)[None, :]            # (T, w)
    return (j >= 0) & (j < T)


def _slots(T, w):
    """(s, o, lo, hi) for each slot: queries lo..hi-1 have their key i + o inside 0..T-1."""
    for s, o in enumerate(band_offsets(w)):
        lo, hi = max(0, -o), min(T, T - o)
        if lo < hi:
            yield s, int(o), lo, hi


def band_dot(a, b, w):
    """a, b (B, T, d) -> (B, T, w): a_i . b_{i+o_s}, 0 where the key is off the ends."""
    B, T, _ = a.shape
    out = np.zeros((B, T, w), dtype=np.result_type(a, b))
    for s, o, lo, hi in _slots(T, w):
        out[:, lo:hi, s] = np.einsum("btd,btd->bt", a[:, lo:hi], b[:, lo + o:hi + o])   # (B, n)
    return out


def band_mix(p, v):
    """p (B, T, w), v (B, T, d) -> (B, T, d): sum_s p[i, s] v_{i+o_s}."""
    B, T, w = p.shape
    out = np.zeros((B, T, v.shape[-1]), dtype=np.result_type(p, v))
    for s, o, lo, hi in _slots(T, w):
        out[:, lo:hi] += p[:, lo:hi, s, None] * v[:, lo + o:hi + o]    # (B, n, d)
    return out


def band_mix_t(p, a):
    """p (B, T, w), a (B, T, d) -> (B, T, d): key j collects p[i, s] a_i from each query i = j - o_s."""
    B, T, w = p.shape
    out = np.zeros((B, T, a.shape[-1]), dtype=np.result_type(p, a))
    for s, o, lo, hi in _slots(T, w):
        out[:, lo + o:hi + o] += p[:, lo:hi, s, None] * a[:, lo:hi]    # (B, n, d)
    return out


class BandDot(Function):
    """a, b (B, T, d) -> (B, T, w): the scores a_i . b_j on the band (0 off the ends)."""

    @staticmethod
    def forward(ctx, a, b, window):
        w = check_band("band_dot", window, a=a, b=b)
        a, b = operands(ctx, a, b)                                  # bf16 under autocast
        ctx.save_for_backward(a, b)
        return band_dot(a, b, w)                                    # (B, T, w)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        g = operands(ctx, g)                                        # bf16 under autocast
        return band_mix(g, b), band_mix_t(g, a)                     # (B, T, d) each


class BandMix(Function):
    """p (B, T, w), v (B, T, d) -> (B, T, d): each query's weighted sum of its window's values."""

    @staticmethod
    def forward(ctx, p, v):
        check_band("band_mix", None, p=p, v=v)
        p, v = operands(ctx, p, v)                                  # bf16 under autocast
        ctx.save_for_backward(p, v)
        return band_mix(p, v)                                       # (B, T, d)

    @staticmethod
    def backward(ctx, g):
        p, v = ctx.saved
        g = operands(ctx, g)                                        # bf16 under autocast
        return band_dot(g, v, p.shape[-1]), band_mix_t(p, g)        # (B, T, w), (B, T, d)


def check_band(name, window, **arrays):
    """Check shapes ((B, T, d) pairs; p (B, T, w) against v) and the window (an int >= 0, or None)."""
    for key, x in arrays.items():
        if x.ndim != 3:
            want = "(B, T, w)" if key == "p" else "(B, T, d)"
            raise ValueError(f"{name} expects {key} of shape {want}; got shape {x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"{name} expects floating-point arrays; got {key} of dtype {x.dtype}")
    a, b = arrays.values()
    same = a.shape == b.shape if name == "band_dot" else a.shape[:2] == b.shape[:2]
    if not same:
        what = "the same shape" if name == "band_dot" else "the same (B, T)"
        raise ValueError(f"{name} expects " + " and ".join(arrays) + f" of {what}; got {a.shape} and {b.shape}")
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise TypeError(f"{name}: window must be an int; got {window!r} ({type(window).__name__})")
    if window < 0:
        raise ValueError(f"{name}: window must be >= 0; got {window}")
    return int(window)
