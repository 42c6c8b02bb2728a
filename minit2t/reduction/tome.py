"""ToMe: Token Merging (Bolya et al., ICLR 2023), in every backbone block.

Legend: B batch, N tokens in, M = N - r tokens out, D embed dim, h heads, d head dim.

In each block, after the attention residual and before the MLP:
  metric    the keys averaged over the heads                               (B, N, d)
  match     bipartite soft matching on their cosine similarity: A = tokens 0, 2, 4, ...,
            B = 1, 3, 5, ...; each A token picks its most similar B; the r best pairs merge
            (the cls token never does)
  merge     x_B <- (s_A x_A + s_B x_B) / (s_A + s_B): a mean weighted by size s, the number of
            original tokens each stands for; sizes add                    (B, N - r, D)
and every attention adds log s_j to the logits of key j (proportional attention).
"""
from minit2t.ops import ToMeMatch
from minit2t.reduction.block import ReducingBlock
from minit2t.reduction.merge import assignment, merge


class ToMeBlock(ReducingBlock):
    def __init__(self, block, r, prop=True):
        super().__init__(block, prop)
        self.r = r

    def forward(self, x, state, r=None):                             # (B, N, D)
        x, _, k = self.attend(x, state, probabilities=False)         # (B, N, D), keys (B, h, N, d)
        r = min(self.r if r is None else r, (x.shape[1] - 1) // 2)   # at most half the tokens
        if r > 0:
            slot, M = ToMeMatch.compute(k.data, r), x.shape[1] - r   # (B, N): metric and match (ops/match.py)
            x = merge(x, assignment(slot, M, state.sizes(x), x.dtype))  # (B, M, D) size-weighted means
            state.update(slot, M)
        return self.feed_forward(x)                                  # (B, M, D)

    def extra_repr(self):
        return f"r={self.r}, prop={self.prop}"
