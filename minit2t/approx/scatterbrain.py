"""Scatterbrain attention: sparse (local band) + low-rank (random features), corrected on the band.

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale,
w window, m features (the "cosh" map, W (m/2, d); features.py), S_i the band of query i:
j - i in [-floor(w/2), ceil(w/2)).

Chen et al. 2021 ("Scatterbrain: unifying sparse and low-rank attention"; HazyResearch/fly
sblocal_attention.py). The unnormalised attention is e^{tau q_i.k_j} on S and phi_i.phi_j off it:
    out_i = [ sum_{j in S_i} (e^{tau q_i.k_j} - phi_i.phi_j) v_j + phi_i^T sum_j phi_j v_j^T ] / Z_i
    Z_i   =   sum_{j in S_i} e^{tau q_i.k_j} + max(phi_i^T sum_j phi_j - sum_{j in S_i} phi_i.phi_j, 1e-24)
Stability: the features are those of features.stable_features (divided by e^{cq_i} e^{ck});
the low-rank part is clamped in those units, as in the reference. Each row i is then put in
one scale e^{-h_i}, h_i = max(max_{j in S_i} tau q_i.k_j, cq_i + ck): the band part as
e^{tau q_i.k_j - h_i} <= 1, the low-rank part by scaling the query's features by
r_i = e^{cq_i + ck - h_i} <= 1 (the clamp's floor scales with them).
Numerator and Z share h_i, so it cancels (and is a constant: the gradient is exact).
The band part is band ops (ops.BandDot, ops.BandMix), so memory is O(B T (w + m + dv)):
no T x T array, and no (B, T, w, d) windows.
"""
import numpy as np

import minit2t as mt
from minit2t.approx.features import stable_features
from minit2t.approx.local import band_logits
from minit2t.ops.band import BandDot, BandMix

RESIDUAL_FLOOR = 1e-24


def clamp_min(x, floor):
    """max(x, floor) elementwise (floor a number or an array broadcast to x), through the Max
    op (the gradient goes to x where x > floor)."""
    c = np.broadcast_to(np.asarray(floor, dtype=x.dtype), x.shape)
    return mt.cat([x.reshape(*x.shape, 1), mt.tensor(c.reshape(*x.shape, 1))], axis=-1).max(axis=-1)


def band_part(q, k, pq, pk, tau, window, c):
    """The sparse part on the band S, in each row's scale e^{-h_i}, h_i = max(max_S tau q_i.k_j, c_i):
    the coefficients e^{tau q_i.k_j - h_i} - r_i phi_i.phi_j (B, T, w), r_i = e^{c_i - h_i}, their two
    row sums (B, T, 1) and h (B, T, 1). c = cq + ck, the features' scale."""
    logits = band_logits(q, k, tau, window)                          # (B, T, w), -inf off the ends
    h = np.maximum(logits.data.max(axis=-1, keepdims=True), c)       # (B, T, 1) row scale
    e = (logits - h).exp()                                           # (B, T, w) e^{tau q.k - h} on S
    pp = BandDot.apply(pq * np.exp(c - h), pk, window=window)        # (B, T, w) r_i phi_i.phi_j on S
    return e - pp, e.sum(axis=-1, keepdims=True), pp.sum(axis=-1, keepdims=True), h


def scatterbrain_parts(q, k, v, tau, window, W):
    """(num (B, T, dv), Z (B, T, 1), h (B, T, 1) ndarray): out = num / Z; the true
    numerator and normaliser are num e^h and Z e^h."""
    pq, pk, cq, ck = stable_features(q, k, tau, W, "cosh")           # (B, T, m) each, entries <= 1
    kv = pk.transpose(1, 2) @ v                                      # (B, m, dv) sum_j phi_j v_j^T
    ksum = pk.sum(axis=1, keepdims=True)                             # (B, 1, m)  sum_j phi_j
    if window == 0:                                                  # no sparse part: low rank only
        low_z = (pq * ksum).sum(axis=-1, keepdims=True)              # (B, T, 1)
        return pq @ kv, clamp_min(low_z, RESIDUAL_FLOOR), cq + ck
    coef, e_sum, pp_sum, h = band_part(q, k, pq, pk, tau, window, cq + ck)   # (B, T, w), (B, T, 1) x3
    r = np.exp(cq + ck - h)                                          # (B, T, 1) <= 1
    pq = pq * r                                                      # (B, T, m) phi_i in the row's scale
    num = BandMix.apply(coef, v) + pq @ kv                           # (B, T, dv) band, corrected, + low rank
    low_z = (pq * ksum).sum(axis=-1, keepdims=True) - pp_sum         # (B, T, 1) low rank off the band
    return num, e_sum + clamp_min(low_z, RESIDUAL_FLOOR * r), h


def scatterbrain(q, k, v, tau, window, W):
    """q (B, T, d), k (B, T, d), v (B, T, dv), W (m/2, d) -> (B, T, dv); window >= 0."""
    if window < 0:
        raise ValueError(f"scatterbrain needs window >= 0; got {window}")
    num, Z, _ = scatterbrain_parts(q, k, v, tau, window, W)
    return num / Z                                                   # (B, T, dv)
