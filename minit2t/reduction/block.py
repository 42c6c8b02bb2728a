"""The backbone block that reduces tokens: what ToMe, EViT and MCTF blocks have in common.

Legend: B batch, N tokens in, M tokens out, D embed dim, h heads, d head dim.

A reducing block holds the very sub-modules of the ViT block it replaces (norm1, attn, drop_path,
norm2, mlp, and LayerScale's ls1, ls2 when the block has them), so the parameters keep their names,
values and order; only forward changes. It takes the
tokens and the TokenState (sizes, sources) and returns fewer tokens, updating the state.
"""
import numpy as np

from minit2t.backends.fusion import may_fuse_attention
from minit2t.nn import functional as F
from minit2t.nn.module import Module
from minit2t.nn.transformer import Block, scaled
from minit2t.ops.attention import split_heads
from minit2t.tensor import Tensor

PARTS = ("norm1", "attn", "ls1", "drop_path", "norm2", "mlp", "ls2")   # Block's order; ls1, ls2 maybe absent


class ReducingBlock(Module):
    """A pre-norm transformer block with a reduction step; subclasses say where and how."""

    ls1 = ls2 = None                                                 # no LayerScale unless the block has it

    def __init__(self, block, prop=True):
        super().__init__()
        _take_parts(self, block)
        self.prop = prop                                             # proportional attention

    def attend(self, x, state, probabilities=True):                  # (B, N, D)
        """x + attention; also the attention probabilities (B, h, N, N) and keys (B, h, N, d).
        A block that needs only the class token's row of them (probabilities="cls": EViT) may get
        that row alone, (B, h, 1, N), and one that needs none (False: ToMe, MCTF's second pass)
        gets None; then the attention itself runs as one op, when nothing watches it."""
        if probabilities is not True and may_fuse_attention(self.attn):
            return self._attend_fused(x, state, probabilities == "cls")
        q, k, v = self.attn.heads(self.norm1(x))                     # (B, h, N, d) each
        attn = self.attn.probabilities(q, k, state.size if self.prop else None)  # (B, h, N, N)
        return x + self.drop_path(scaled(self.ls1, self.attn.mix(attn, v))), attn, k   # (B, N, D)

    def _attend_fused(self, x, state, cls_row):                      # (B, N, D)
        """attend's result through F.attention, proportional attention as its key bias log(size);
        with cls_row, the class token's probabilities too, from the same q and k."""
        attn = self.attn
        qkv = attn.qkv(self.norm1(x))                                # (B, N, 3D)
        bias = np.log(state.size).astype(qkv.dtype) if self.prop and state.size is not None else None
        out = attn.proj_drop(attn.proj(F.attention(qkv, attn.num_heads, attn.scale, key_bias=bias)))
        k = split_heads(qkv.data, attn.num_heads)[1]                 # (B, h, N, d), a view: no gradient
        probs = self._cls_probabilities(qkv, bias) if cls_row else None   # (B, h, 1, N)
        return x + self.drop_path(scaled(self.ls1, out)), probs, Tensor(k)   # (B, N, D)

    def _cls_probabilities(self, qkv, bias):                         # (B, N, 3D)
        """softmax(q_cls k^T * scale + bias) per head: the class token's row of the probabilities."""
        B, N, D3 = qkv.shape
        h, D = self.attn.num_heads, D3 // 3
        q = qkv[:, :1, :D].reshape(B, 1, h, D // h).permute(0, 2, 1, 3)          # (B, h, 1, d)
        k = qkv[:, :, D:2 * D].reshape(B, N, h, D // h).permute(0, 2, 1, 3)      # (B, h, N, d)
        s = (q @ k.transpose(-2, -1)) * self.attn.scale              # (B, h, 1, N)
        if bias is not None:
            s = s + Tensor(bias[:, None, None, :])                   # log(size) of every key
        return s.softmax(axis=-1)                                    # (B, h, 1, N)

    def feed_forward(self, x):                                       # (B, M, D)
        return x + self.drop_path(scaled(self.ls2, self.mlp(self.norm2(x))))   # (B, M, D)


def plain_block(block):
    """The ViT block again, around the same sub-modules (undoes a reduction)."""
    if type(block) is Block:
        return block
    plain = Block.__new__(Block)
    Module.__init__(plain)
    _take_parts(plain, block)
    return plain


def _take_parts(dst, block):
    for name in PARTS:
        part = getattr(block, name, None)
        if part is not None:
            setattr(dst, name, part)
