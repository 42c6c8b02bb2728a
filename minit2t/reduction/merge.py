"""What ToMe, EViT and MCTF share: token sizes, the bipartite matching, and the merge.

Legend: B batch, N tokens before a reduction step, M after it, D embed dim, h heads,
N0 tokens at the backbone's input, Na/Nb tokens in the two halves of a bipartite matching.

Every reduction step has two parts:
  1. a decision, made on NumPy arrays with no gradient (matching and ranking are discrete):
     `slot` (B, N) says which of the M output tokens each input token goes to;
  2. the merge, a matrix product. The assignment matrix P (B, M, N) holds w_n at [m, n] when
     token n goes to slot m; with each row divided by its sum it takes a weighted mean:
         x_merged = P @ x                                          (B, M, N) @ (B, N, D)
     MatMul already has its gradient, so a merge trains without a new op; an EViT fusion whose
     weights are attention probabilities builds P from a Tensor and passes gradients to them too.
The cls token (index 0) is never merged: it always keeps slot 0.
"""
import numpy as np

from minit2t.ops.match import bipartite_slots, cosine, mean_over_heads, protect_cls  # noqa: F401 (shared)
from minit2t.tensor import Tensor


class TokenState:
    """What travels through the backbone beside the tokens, for one forward pass:
    size (B, N), how many of the original N0 tokens each token stands for (None while nothing
    has merged), and, when traced, source (B, N, N0): which ones, per block in `sources`."""

    def __init__(self, batch, tokens, trace=False):
        self.size = None
        self.source = np.broadcast_to(np.eye(tokens, dtype=bool), (batch, tokens, tokens)) if trace else None
        self.sources = []                                            # source after each block, traced

    def sizes(self, x):
        """size as an array for x's tokens: ones before anything has merged."""
        return np.ones(x.shape[:2]) if self.size is None else self.size  # (B, N)

    def update(self, slot, M):
        """Sizes and sources after the tokens went to their slots."""
        self.size = group_sums(np.ones(slot.shape) if self.size is None else self.size, slot, M)  # (B, M)
        if self.source is not None:
            self.source = np.einsum("bmn,bnk->bmk", one_hot(slot, M), self.source) > 0  # (B, M, N0)

    def record(self):
        if self.source is not None:
            self.sources.append(self.source)


def one_hot(slot, M, dtype=np.float64):
    """(B, M, N) with a 1 at [b, slot[b, n], n]; a token with slot -1 goes nowhere (dropped)."""
    B, N = slot.shape
    P = np.zeros((B, M, N), dtype)
    b, n = np.nonzero(slot >= 0)
    P[b, slot[b, n], n] = 1
    return P


def group_sums(values, slot, M):                                     # (B, N)
    """(B, M): for each slot, the sum of the values of the tokens sent to it."""
    B = slot.shape[0]
    sent = slot >= 0                                                 # (B, N) the tokens that go somewhere
    flat = (np.arange(B)[:, None] * M + slot)[sent]                  # each one's (b, slot) as b * M + slot
    return np.bincount(flat, weights=values[sent], minlength=B * M).reshape(B, M)


def assignment(slot, M, weights=None, dtype=np.float64):
    """The weighted-mean assignment matrix (B, M, N): row m averages the tokens sent to slot m,
    each with its weight (B, N) (all 1 if None): P[m, n] = w_n / (sum of w over slot m)."""
    w = np.ones(slot.shape) if weights is None else weights          # (B, N)
    total = group_sums(w, slot, M)                                   # (B, M)
    P = np.zeros((slot.shape[0], M, slot.shape[1]), dtype)
    b, n = np.nonzero(slot >= 0)
    s = slot[b, n]
    P[b, s, n] = w[b, n] / total[b, s]
    return P


def merge(x, P):                                                     # (B, ..., N, D)
    """The tokens of x (a Tensor) merged by the assignment matrix P (B, M, N): P @ x along N."""
    P = P.reshape(P.shape[:1] + (1,) * (x.ndim - 3) + P.shape[1:])   # (B, 1.., M, N)
    return Tensor(P.astype(x.dtype, copy=False)) @ x                 # (B, ..., M, D)
