"""Performer (FAVOR+) attention: softmax attention through positive random features, O(T m).

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale,
m features, W (r, d) the fixed random matrix (features.py).

e^{tau q_i.k_j} ~ phi_i . phi_j, so
    out = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1)
computed right to left: (m, dv) and (m,) summaries of the keys, never T x T.
This is the softmax kernel (Choromanski et al. 2021), unlike the release's T2T
performer (models/token_performer.py), whose rows of norm sqrt(m) estimate a Gaussian kernel.
"""
from minit2t.approx.features import stable_features


def performer(q, k, v, tau, W, feature_map="positive"):
    """q (B, T, d), k (B, T, d), v (B, T, dv), W (r, d) -> (B, T, dv)."""
    pq, pk, _, _ = stable_features(q, k, tau, W, feature_map)        # (B, T, m) each
    kv = pk.transpose(1, 2) @ v                                      # (B, m, dv)  sum_j phi_j v_j^T
    ksum = pk.sum(axis=1, keepdims=True)                             # (B, 1, m)   sum_j phi_j
    num = pq @ kv                                                    # (B, T, dv)
    den = (pq * ksum).sum(axis=-1, keepdims=True)                    # (B, T, 1)
    return num / den                                                 # (B, T, dv)
