"""The backbone block that reduces tokens: what ToMe, EViT and MCTF blocks have in common.

Legend: B batch, N tokens in, M tokens out, D embed dim, h heads, d head dim.

A reducing block holds the very sub-modules of the ViT block it replaces (norm1, attn, drop_path,
norm2, mlp), so the parameters keep their names and values; only forward changes. It takes the
tokens and the TokenState (sizes, sources) and returns fewer tokens, updating the state.
"""
from minit2t.nn.module import Module
from minit2t.nn.transformer import Block

PARTS = ("norm1", "attn", "drop_path", "norm2", "mlp")


class ReducingBlock(Module):
    """A pre-norm transformer block with a reduction step; subclasses say where and how."""

    def __init__(self, block, prop=True):
        super().__init__()
        for name in PARTS:
            setattr(self, name, getattr(block, name))
        self.prop = prop                                             # proportional attention

    def attend(self, x, state):                                      # (B, N, D)
        """x + attention; also the attention probabilities (B, h, N, N) and keys (B, h, N, d)."""
        q, k, v = self.attn.heads(self.norm1(x))                     # (B, h, N, d) each
        attn = self.attn.probabilities(q, k, state.size if self.prop else None)  # (B, h, N, N)
        return x + self.drop_path(self.attn.mix(attn, v)), attn, k   # (B, N, D)

    def feed_forward(self, x):                                       # (B, M, D)
        return x + self.drop_path(self.mlp(self.norm2(x)))           # (B, M, D)


def plain_block(block):
    """The ViT block again, around the same sub-modules (undoes a reduction)."""
    if type(block) is Block:
        return block
    plain = Block.__new__(Block)
    Module.__init__(plain)
    for name in PARTS:
        setattr(plain, name, getattr(block, name))
    return plain
