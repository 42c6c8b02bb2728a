"""Initialisers, as the release uses them (timm's trunc_normal_, torch's orthogonal_)."""
import numpy as np

from minit2t.random import generator


def trunc_normal(shape, std=0.02, a=-2.0, b=2.0, dtype=np.float32):
    """Normal(0, std) values redrawn until they fall in [a, b] (absolute bounds, as timm)."""
    out = generator().normal(0.0, std, size=shape)
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = generator().normal(0.0, std, size=int(bad.sum()))
        bad = (out < a) | (out > b)
    return out.astype(dtype)


def normal(shape, std, dtype=np.float32):
    """Normal(0, std) values."""
    return generator().normal(0.0, std, size=shape).astype(dtype)


def orthogonal(rows, cols, gain=1.0, dtype=np.float32):
    """A (rows, cols) matrix with orthonormal rows or columns (QR of a Gaussian)."""
    flat = generator().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)                                         # (max, min)
    q *= np.sign(np.diag(r))                                           # unique, uniform
    q = q if rows >= cols else q.T                                     # (rows, cols)
    return (gain * q).astype(dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


def uniform(shape, low, high, dtype=np.float32):
    return generator().uniform(low, high, size=shape).astype(dtype)
