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

from minit2t.grad_mode import no_grad
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
    out = np.zeros((slot.shape[0], M))
    b, n = np.nonzero(slot >= 0)
    np.add.at(out, (b, slot[b, n]), values[b, n])
    return out


def assignment(slot, M, weights=None, dtype=np.float64):
    """The weighted-mean assignment matrix (B, M, N): row m averages the tokens sent to slot m,
    each with its weight (B, N) (all 1 if None): P[m, n] = w_n / (sum of w over slot m)."""
    w = np.ones(slot.shape) if weights is None else weights          # (B, N)
    total = group_sums(w, slot, M)                                   # (B, M)
    P = np.zeros((slot.shape[0], M, slot.shape[1]), dtype)
    b, n = np.nonzero(slot >= 0)
    P[b, slot[b, n], n] = w[b, n] / total[b, slot[b, n]]
    return P


def merge(x, P):                                                     # (B, ..., N, D)
    """The tokens of x (a Tensor) merged by the assignment matrix P (B, M, N): P @ x along N."""
    P = P.reshape(P.shape[:1] + (1,) * (x.ndim - 3) + P.shape[1:])   # (B, 1.., M, N)
    return Tensor(P.astype(x.dtype, copy=False)) @ x                 # (B, ..., M, D)


def mean_over_heads(k):                                              # (B, h, N, d)
    """k averaged over its heads, (B, N, d), as a running sum of the heads' slices: NumPy's mean
    over the middle axis of a strided view (the keys inside the packed qkv) takes several times
    as long."""
    total = k[:, 0].astype(k.dtype, copy=True)                       # (B, N, d)
    for i in range(1, k.shape[1]):
        np.add(total, k[:, i], out=total)
    total /= k.shape[1]
    return total


def cosine(a, b):
    """Cosine similarities (B, Na, Nb) between the rows of a (B, Na, D) and b (B, Nb, D)."""
    with no_grad():                                                  # through the active backend:
        dots = (Tensor(a) @ Tensor(np.swapaxes(b, -1, -2))).data     # (B, Na, Nb) NumPy's BLAS threads
                                                                     # would compete with the C backend's
    norm_a = np.sqrt(np.einsum("bnd,bnd->bn", a, a))                 # (B, Na)
    norm_b = np.sqrt(np.einsum("bnd,bnd->bn", b, b))                 # (B, Nb)
    return dots / np.maximum(norm_a[:, :, None] * norm_b[:, None, :], 1e-12)


def bipartite_slots(scores, r1, r2=0):
    """Bipartite soft matching (ToMe), and its second direction (MCTF).

    The N tokens alternate between two sets, A = tokens 0, 2, 4, ... and B = 1, 3, 5, ...;
    scores (B, Na, Nb) rates merging A token i with B token j, and the cls row (A's first) is -inf.
      step 1: every A token picks its best B; the r1 A tokens with the best picks merge into them.
      step 2 (r2 > 0): every B token picks its best unmerged A by the same scores (not recomputed);
              the r2 B tokens with the best picks merge into them.
    Output order: the unmerged A tokens in their order (cls first), then the B tokens that stayed:
    in their order after step 1 alone, best pick first after step 2 (as the reference code).
    Returns slot (B, N) and M = N - r1 - r2."""
    Bt, Na, Nb = scores.shape
    rows = np.arange(Bt)[:, None]
    order = np.argsort(-scores.max(axis=-1), axis=-1, kind="stable")  # (B, Na) best edge first
    merged, kept = order[:, :r1], np.sort(order[:, r1:], axis=-1)    # (B, r1), (B, Na - r1)
    slot_a, slot_b = np.zeros((Bt, Na), int), np.zeros((Bt, Nb), int)
    slot_a[rows, kept] = np.arange(Na - r1)
    if r2 == 0:
        slot_b[:] = Na - r1 + np.arange(Nb)
    else:
        back = np.swapaxes(np.take_along_axis(scores, kept[:, :, None], axis=1), 1, 2)  # (B, Nb, Na - r1)
        order2 = np.argsort(-back.max(axis=-1), axis=-1, kind="stable")  # (B, Nb) best edge first
        merged2, kept2 = order2[:, :r2], order2[:, r2:]
        slot_b[rows, kept2] = Na - r1 + np.arange(Nb - r2)
        slot_b[rows, merged2] = np.take_along_axis(back.argmax(axis=-1), merged2, axis=1)
    partner = np.take_along_axis(scores.argmax(axis=-1), merged, axis=1)  # (B, r1) their B tokens
    slot_a[rows, merged] = np.take_along_axis(slot_b, partner, axis=1)
    slot = np.zeros((Bt, Na + Nb), int)
    slot[:, 0::2], slot[:, 1::2] = slot_a, slot_b
    return slot, Na + Nb - r1 - r2


def protect_cls(scores):
    """scores with the cls token's row (A's first) at -inf, so it never merges."""
    scores = scores.copy()
    scores[:, 0, :] = -np.inf
    return scores
