"""band gather and its adjoint: the keys/values of each query's window over the token order.

Legend: B batch, T tokens, d width, w window (keys per query), o offset j - i.
Query i sees key j = i + o for o in [-floor(w/2), ceil(w/2)) -- the band of local
attention (Scatterbrain's sparse support). Keys outside 0..T-1 come back as zeros;
band_mask(T, w) says which slots are real.
<band_gather(x), y> = <x, band_scatter(y)>, so each is the other's backward;
no T x T array is ever built: memory O(B T w d).
"""
import numbers

import numpy as np

from minit2t.ops.function import Function


def band_offsets(w):
    """The w offsets o = j - i of a window of w keys: -floor(w/2), ..., ceil(w/2) - 1."""
    return np.arange(-(w // 2), w - w // 2)                         # (w,)


def band_mask(T, w):
    """(T, w) bool: slot s of query i holds a real key (0 <= i + offset_s < T)."""
    j = np.arange(T)[:, None] + band_offsets(w)[None, :]            # (T, w)
    return (j >= 0) & (j < T)


def band_gather(x, w):
    """x (B, T, d) -> (B, T, w, d): slot s of token i holds x[i + offset_s], zeros off the ends."""
    B, T, d = x.shape
    out = np.zeros((B, T, w, d), dtype=x.dtype)
    for s, o in enumerate(band_offsets(w)):
        lo, hi = max(0, -o), min(T, T - o)                          # queries whose key i+o exists
        if lo < hi:
            out[:, lo:hi, s] = x[:, lo + o:hi + o]
    return out


def band_scatter(g, T):
    """Adjoint of band_gather: every slot (B, T, w, d) added back onto its key -> (B, T, d)."""
    B, _, w, d = g.shape
    x = np.zeros((B, T, d), dtype=g.dtype)
    for s, o in enumerate(band_offsets(w)):
        lo, hi = max(0, -o), min(T, T - o)
        if lo < hi:
            x[:, lo + o:hi + o] += g[:, lo:hi, s]
    return x


class BandGather(Function):
    """(B, T, d) -> (B, T, w, d); backward: band_scatter."""

    @staticmethod
    def forward(ctx, x, window):
        w = check_band(x, window)
        ctx.T = x.shape[1]
        return band_gather(x, w)                                    # (B, T, w, d)

    @staticmethod
    def backward(ctx, g):
        return (band_scatter(g, ctx.T),)                            # (B, T, d)


def check_band(x, window):
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise TypeError(f"band window must be an int; got {window!r} ({type(window).__name__})")
    if window < 0:
        raise ValueError(f"band window must be >= 0; got {window}")
    if x.ndim != 3:
        raise ValueError(f"band gather expects x of shape (B, T, d); got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"band gather expects a floating-point array; got dtype {x.dtype}")
    return int(window)
