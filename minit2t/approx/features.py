"""Random features for the softmax kernel: exp(x.y) = E_w[phi(x) . phi(y)].

Legend: B batch, T tokens, d width, m features, r rows of W.

FAVOR+ (Choromanski et al. 2021, "Rethinking attention with Performers", Lemma 1):
  positive:  phi(x) = exp(W x - |x|^2/2) / sqrt(m),                     W (m, d), r = m
  cosh (the one Scatterbrain uses, Chen et al. 2021; its hyperbolic form):
             phi(x) = exp(-|x|^2/2) / sqrt(m) [exp(W x), exp(-W x)],     W (m/2, d), r = m/2
Both are unbiased for each Gaussian row w ~ N(0, I_d): E[e^{w.x - |x|^2/2} e^{w.y - |y|^2/2}] = e^{x.y}.
W: blocks of d orthogonal rows (QR of a Gaussian), each row rescaled by the norm of an
independent d-dim Gaussian (chi_d), so every row is marginally N(0, I) and rows of a
block are orthogonal (lower variance). Drawn once from a seed.

Softmax attention with scale tau uses x = sqrt(tau) q, y = sqrt(tau) k:
e^{tau q.k} = e^{x.y}. The maps here return log phi (B, T, m); the attention code
subtracts maxima in log space before exp (see performer.py, scatterbrain.py).
"""
import math

import numpy as np

import minit2t as mt


def gaussian_orthogonal(rows, d, seed=0, dtype=np.float64):
    """W (rows, d): block-orthogonal Gaussian rows with chi_d norms, from `seed`."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(-(-rows // d)):                                   # ceil(rows / d) blocks of d rows
        q, r = np.linalg.qr(rng.standard_normal((d, d)))             # (d, d) orthogonal columns
        blocks.append((q * np.sign(np.diag(r))).T)                   # rows orthonormal, uniform
    W = np.concatenate(blocks, axis=0)[:rows]                        # (rows, d)
    norms = np.linalg.norm(rng.standard_normal((rows, d)), axis=1)   # (rows,) chi_d
    return (W * norms[:, None]).astype(dtype)


def feature_rows(feature_map, m):
    """Rows of W for m features of this map."""
    if feature_map == "positive":
        return m
    if feature_map == "cosh":
        if m % 2:
            raise ValueError(f"the cosh feature map needs an even number of features; got {m}")
        return m // 2
    raise ValueError(f"unknown feature map {feature_map!r}; expected positive or cosh")


def log_features(x, W, feature_map):
    """log phi(x): x (B, T, d) already scaled by sqrt(tau), W (r, d) -> (B, T, m)."""
    W = np.asarray(W, dtype=x.dtype)
    wx = x @ W.T                                                     # (B, T, r)
    half_sq = (x * x).sum(axis=-1, keepdims=True) * 0.5              # (B, T, 1)
    if feature_map == "positive":
        return wx - half_sq - 0.5 * math.log(W.shape[0])             # (B, T, m), m = r
    if feature_map == "cosh":
        c = half_sq + 0.5 * math.log(2 * W.shape[0])                 # (B, T, 1)
        return mt.cat([wx - c, -wx - c], axis=-1)                    # (B, T, m), m = 2r
    raise ValueError(f"unknown feature map {feature_map!r}; expected positive or cosh")


def stable_features(q, k, tau, W, feature_map):
    """(phi~(q), phi~(k), cq, ck): features divided by e^{cq} (each query's max feature,
    (B, T, 1)) and e^{ck} (the largest key feature of each batch element, (B, 1, 1)), so
    every entry is <= 1. cq and ck are constants (ndarrays): attention is a ratio in which
    they cancel, so the gradient through the rest is exact."""
    s = math.sqrt(tau)
    lq, lk = log_features(q * s, W, feature_map), log_features(k * s, W, feature_map)   # (B, T, m)
    cq = lq.data.max(axis=-1, keepdims=True)                         # (B, T, 1)
    ck = lk.data.max(axis=(1, 2), keepdims=True)                     # (B, 1, 1)
    return (lq - cq).exp(), (lk - ck).exp(), cq, ck
