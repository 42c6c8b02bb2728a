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
e^{tau q_i.k_j - h_i} <= 1, the low-rank part times r_i = e^{cq_i + ck - h_i} <= 1.
Numerator and Z share h_i, so it cancels (and is a constant: the gradient is exact).
"""
import numpy as np

import minit2t as mt
from minit2t.approx.features import stable_features
from minit2t.approx.local import band_logits
from minit2t.ops.band import BandGather

RESIDUAL_FLOOR = 1e-24


def clamp_min(x, floor):
    """max(x, floor) elementwise, through the Max op (the gradient goes to x where x > floor)."""
    c = np.full(x.shape, floor, dtype=x.dtype)
    return mt.cat([x.reshape(*x.shape, 1), mt.tensor(c.reshape(*x.shape, 1))], axis=-1).max(axis=-1)


def scatterbrain_parts(q, k, v, tau, window, W):
    """(num (B, T, dv), Z (B, T, 1), h (B, T, 1) ndarray): out = num / Z; the true
    numerator and normaliser are num e^h and Z e^h."""
    B, T, dv = v.shape
    pq, pk, cq, ck = stable_features(q, k, tau, W, "cosh")           # (B, T, m) each, entries <= 1
    m = pq.shape[-1]
    low_num = pq @ (pk.transpose(1, 2) @ v)                          # (B, T, dv) phi_i^T sum_j phi_j v_j^T
    low_z = (pq * pk.sum(axis=1, keepdims=True)).sum(axis=-1, keepdims=True)   # (B, T, 1)
    if window == 0:                                                  # no sparse part: low rank only
        return low_num, clamp_min(low_z, RESIDUAL_FLOOR), cq + ck
    logits = band_logits(q, k, tau, window)                          # (B, T, 1, w), -inf off the ends
    vw = BandGather.apply(v, window=window)                          # (B, T, w, dv)
    pkw = BandGather.apply(pk, window=window)                        # (B, T, w, m), 0 off the ends
    pp = pq.reshape(B, T, 1, m) @ pkw.transpose(2, 3)                # (B, T, 1, w) phi_i.phi_j on S
    h = np.maximum(logits.data.max(axis=-1).reshape(B, T, 1), cq + ck)   # (B, T, 1) row scale
    r = np.exp(cq + ck - h)                                          # (B, T, 1) <= 1
    e = (logits - h.reshape(B, T, 1, 1)).exp()                       # (B, T, 1, w) e^{tau q.k - h} on S
    sparse_num = (e @ vw).reshape(B, T, dv)                          # (B, T, dv)
    sparse_z = e.sum(axis=-1)                                        # (B, T, 1)
    corr_num = (pp @ vw).reshape(B, T, dv)                           # (B, T, dv) sum_S phi_i.phi_j v_j
    corr_z = pp.sum(axis=-1)                                         # (B, T, 1)
    num = sparse_num + (low_num - corr_num) * r                      # (B, T, dv)
    Z = sparse_z + clamp_min(low_z - corr_z, RESIDUAL_FLOOR) * r     # (B, T, 1)
    return num, Z, h


def scatterbrain(q, k, v, tau, window, W):
    """q (B, T, d), k (B, T, d), v (B, T, dv), W (m/2, d) -> (B, T, dv); window >= 0."""
    if window < 0:
        raise ValueError(f"scatterbrain needs window >= 0; got {window}")
    num, Z, _ = scatterbrain_parts(q, k, v, tau, window, W)
    return num / Z                                                   # (B, T, dv)
