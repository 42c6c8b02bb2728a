"""Exact softmax attention, the reference every approximation is measured against.

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale.

    out = softmax(tau q k^T) v                                         O(T^2) memory
"""


def exact(q, k, v, tau):
    """q (B, T, d), k (B, T, d), v (B, T, dv) -> (B, T, dv)."""
    attn = ((q @ k.transpose(1, 2)) * tau).softmax(axis=-1)           # (B, T, T)
    return attn @ v                                                  # (B, T, dv)
