"""Local (band) attention: each query attends only to the w keys around it in token order.

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale,
w window (keys per query).

Query i sees key j when j - i in [-floor(w/2), ceil(w/2)) (fewer at the ends):
    out_i = sum_{j in S_i} e^{tau q_i.k_j} v_j / sum_{j in S_i} e^{tau q_i.k_j}
The scores and the weighted sum are band ops (ops.BandDot, ops.BandMix): memory is
O(B T (w + dv)); no T x T array is built, nor the (B, T, w, d) windows of keys.
"""
import numpy as np

from minit2t.ops.band import BandDot, BandMix, band_mask


def band_logits(q, k, tau, window):
    """tau q_i.k_j for the w keys of each query's window: (B, T, w); -inf off the ends."""
    off = np.where(band_mask(q.shape[1], window), 0.0, -np.inf)      # (T, w) constant
    return BandDot.apply(q, k, window=window) * tau + off            # (B, T, w)


def local(q, k, v, tau, window):
    """q (B, T, d), k (B, T, d), v (B, T, dv) -> (B, T, dv); window >= 1."""
    if window < 1:
        raise ValueError(f"local attention needs window >= 1 (every query sees itself); got {window}")
    attn = band_logits(q, k, tau, window).softmax(axis=-1)           # (B, T, w), 0 off the ends
    return BandMix.apply(attn, v)                                    # (B, T, dv)
