"""Local (band) attention: each query attends only to the w keys around it in token order.

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale,
w window (keys per query).

Query i sees key j when j - i in [-floor(w/2), ceil(w/2)) (fewer at the ends):
    out_i = sum_{j in S_i} e^{tau q_i.k_j} v_j / sum_{j in S_i} e^{tau q_i.k_j}
The w keys and values of each window are gathered (ops.BandGather, backward:
scatter-add), so memory is O(B T w (d + dv)); no T x T array is built.
"""
import numpy as np

from minit2t.ops.band import BandGather, band_mask


def band_logits(q, k, tau, window):
    """tau q_i.k_j for the w keys of each query's window: (B, T, 1, w); -inf off the ends."""
    B, T, d = q.shape
    kw = BandGather.apply(k, window=window)                          # (B, T, w, d)
    logits = (q.reshape(B, T, 1, d) @ kw.transpose(2, 3)) * tau      # (B, T, 1, w)
    off = np.where(band_mask(T, window), 0.0, -np.inf)               # (T, w) constant
    return logits + off.reshape(T, 1, window)                        # (B, T, 1, w)


def local(q, k, v, tau, window):
    """q (B, T, d), k (B, T, d), v (B, T, dv) -> (B, T, dv); window >= 1."""
    if window < 1:
        raise ValueError(f"local attention needs window >= 1 (every query sees itself); got {window}")
    B, T, dv = v.shape
    attn = band_logits(q, k, tau, window).softmax(axis=-1)           # (B, T, 1, w), 0 off the ends
    vw = BandGather.apply(v, window=window)                          # (B, T, w, dv)
    return (attn @ vw).reshape(B, T, dv)                             # (B, T, dv)
