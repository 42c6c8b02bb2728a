"""ToMe's bipartite soft matching (Bolya et al., ICLR 2023): the decision of token merging, as one op.

Legend: B batch, h heads, N tokens, d head dim; A = tokens 0, 2, 4, ... (Na = ceil(N/2) of them, the
cls token first), B = tokens 1, 3, 5, ... (Nb = floor(N/2)).

    ToMeMatch.compute(k, r) -> slot (B, N)
      metric = the keys k (B, h, N, d) averaged over the heads              (B, N, d)
      scores = cosine(metric of A, metric of B), the cls row -inf            (B, Na, Nb)
      slot   = bipartite_slots(scores, r): each A token picks its most similar B token, and the
               r A tokens with the best picks merge into them; slot[b, n] is the output token
               (0 .. N - r - 1) token n goes to
The decision is discrete: it has no gradient (the merge that follows it is a product with one,
minit2t.reduction.merge). It is an op so that a backend can replace it whole: in NumPy it is a
dozen small array calls a block, about 3 ms for a batch of 256 at CIFAR's 65 tokens (measured on one
thread; NumPy's small calls do not spread over the backend's threads).
bipartite_slots also takes MCTF's scores and second direction; cosine is MCTF's similarity too.
"""
import numpy as np

from minit2t.ops.function import Function
from minit2t.ops.matmul import MatMul


class ToMeMatch(Function):
    """forward(ctx, k (B, h, N, d), r) -> slot (B, N) int64; forward only (a discrete decision)."""

    @staticmethod
    def forward(ctx, k, r):
        check_match(k, r)
        metric = mean_over_heads(k)                                  # (B, N, d)
        scores = protect_cls(cosine(metric[:, 0::2], metric[:, 1::2]))   # (B, Na, Nb)
        return bipartite_slots(scores, r)[0]                         # (B, N)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("ToMeMatch is a discrete decision: it has no gradient (use ToMeMatch.compute)")


def check_match(k, r):
    """k (B, h, N, d) floats and 0 <= r <= (N - 1) // 2 (the cls token and its partner never both merge)."""
    if k.ndim != 4 or k.dtype.kind != "f":
        raise ValueError(f"ToMeMatch expects keys (B, h, N, d) of floats, got {k.dtype} {k.shape}")
    most = (k.shape[2] - 1) // 2
    if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or not 0 <= r <= most:
        raise ValueError(f"ToMeMatch merges 0 to {most} pairs of {k.shape[2]} tokens, got r={r!r}")


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
    dots = MatMul.compute(a, np.swapaxes(b, -1, -2))                 # (B, Na, Nb) the active backend's:
                                                                     # NumPy's BLAS threads would compete
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
