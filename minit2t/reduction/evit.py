"""EViT: keep the attentive tokens, fuse the inattentive (Liang et al., ICLR 2022).

Legend: B batch, N tokens in (cls first), K = ceil(keep * (N - 1)) kept, D embed dim, h heads.

At a few blocks (by default a quarter, half and three quarters of the way: 3, 6, 9 of 12), after
the attention residual and before the MLP:
  rank      a_j = the cls token's attention to token j, averaged over heads   (B, N - 1)
  keep      the K tokens with the largest a_j, most attended first
  fuse      the rest become one token, sum_j a_j x_j over the dropped j, appended last
            (fuse=sum, as the reference code: the weights are not renormalised;
             fuse=mean divides by sum_j a_j, the paper's "weighted average"; fuse=drop drops them)
The fusion's weights are attention probabilities, so its gradient reaches them too.
"""
import math

import numpy as np

from minit2t.reduction.block import ReducingBlock
from minit2t.reduction.merge import one_hot
from minit2t.tensor import Tensor

FUSE = ("sum", "mean", "drop")


class EViTBlock(ReducingBlock):
    def __init__(self, block, keep=1.0, fuse="sum", prop=False):
        super().__init__(block, prop)
        self.keep, self.fuse = keep, fuse

    def forward(self, x, state, r=None):                             # (B, N, D)
        x, attn, _ = self.attend(x, state, probabilities="cls")      # (B, N, D), (B, h, 1 or N, N)
        B, N, _ = x.shape
        K = math.ceil(self.keep * (N - 1))
        if K < N - 1:
            a = attn[:, :, 0, :].mean(axis=1)                        # (B, N) cls attention (index 0: itself)
            slot = self.slots(a.data, K)                             # (B, N)
            M = K + 1 + (self.fuse != "drop")
            fused = (slot == K + 1).astype(x.dtype)                  # (B, N) 1 for the inattentive
            w = a * Tensor(fused) + Tensor(1.0 - fused)              # (B, N) a_j for them, 1 for the others
            P = Tensor(one_hot(slot, M, x.dtype)) * w.reshape(B, 1, N)   # (B, M, N)
            if self.fuse == "mean":
                P = P / P.sum(axis=-1, keepdims=True)
            x = P @ x                                                # (B, M, D)
            state.update(slot, M)
        return self.feed_forward(x)                                  # (B, M, D)

    def slots(self, a, K):                                           # (B, N)
        """cls -> 0, the kept tokens -> 1..K by rank, the others -> K + 1 (-1 when dropped)."""
        B, N = a.shape
        rank = np.argsort(-a[:, 1:], axis=-1, kind="stable") + 1     # (B, N-1) most attended first
        slot = np.zeros((B, N), int)
        rows = np.arange(B)[:, None]
        slot[rows, rank[:, :K]] = np.arange(1, K + 1)
        slot[rows, rank[:, K:]] = -1 if self.fuse == "drop" else K + 1
        return slot

    def extra_repr(self):
        return f"keep={self.keep}, fuse={self.fuse}, prop={self.prop}"
