"""The ViT backbone's pieces (the release's transformer_block.py): Mlp, Attention, Block; and LayerScale
(Touvron et al., "Going deeper with image transformers", 2021), which DeiT III's recipe puts in every block.
A block's attention is the release's (attention="standard") or shunted self-attention ("shunted",
minit2t.nn.shunted).

Legend: B batch, N tokens, D embed dim, h heads, d = D / h head dim, F hidden dim.
"""
import math
from numbers import Real

import numpy as np

from minit2t.backends.fusion import may_fuse_attention, may_fuse_linear_add, may_fuse_linear_gelu, may_fuse_residual
from minit2t.nn import functional as F
from minit2t.nn.layers import GELU, Dropout, DropPath, Identity, LayerNorm, Linear, Softmax
from minit2t.nn.module import Module, Parameter
from minit2t.nn.shunted import ShuntedAttention
from minit2t.tensor import Tensor

ATTENTIONS = ("standard", "shunted")


def _check_tokens(x, dim, what):
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"{what} expects tokens of shape (B, N, {dim}), got {x.shape}")


class Mlp(Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout; with `residual`, residual + all that (a Block's sum).

    fc1 and GELU run as one op, F.linear_gelu (the same values and gradients), when nothing
    needs them apart (no hook on either, neither replaced) and the backend has a fused version
    (minit2t.backends.fusion.may_fuse_linear_gelu); so do fc2 and the sum with the residual,
    F.linear_add (fusion.may_fuse_linear_add)."""

    fused_layers = {"fc1": Linear, "act": GELU}                      # what F.linear_gelu stands for
    residual_layers = {"fc2": Linear, "drop": Dropout}               # ... and F.linear_add, with the sum

    def __init__(self, in_features, hidden_features=None, out_features=None, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = Linear(in_features, hidden_features)
        self.act = GELU()
        self.fc2 = Linear(hidden_features, out_features)
        self.drop = Dropout(drop)

    def forward(self, x, residual=None):                             # (B, N, D)
        if may_fuse_linear_gelu(self):
            x = F.linear_gelu(x, self.fc1.weight, self.fc1.bias)     # (B, N, F)
        else:
            x = self.act(self.fc1(x))                                # (B, N, F)
        return linear_out(self, self.fc2, self.drop, self.drop(x), residual)  # (B, N, Dout)


class Attention(Module):
    """Multi-head self-attention: softmax(q k^T * scale) v, heads concatenated, projected.

    The attention probabilities (B, h, N, N) are the output of the `softmax` sub-module,
    where a forward hook sees them (minit2t.analysis.attention_maps). When nothing needs them
    (no `size`, no hook on `softmax` or `attn_drop`, no attention dropout, no step of a subclass),
    forward runs the same attention as one op, F.attention, which never hands them out; the
    backend's speed policy decides (minit2t.backends.fusion.may_fuse_attention)."""

    fused_steps = ("heads", "probabilities", "mix")                  # what F.attention stands for
    fused_layers = {"softmax": Softmax, "attn_drop": Dropout}        # ... with these sub-modules
    residual_layers = {"proj": Linear, "proj_drop": Dropout}         # what F.linear_add stands for

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.softmax = Softmax(axis=-1)
        self.attn_drop = Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)

    def forward(self, x, size=None, residual=None):                  # (B, N, D)
        """The attention of x; with `residual` (B, N, D), residual + it (a Block's sum), which
        proj's product adds when F.linear_add may stand for the two (fusion.may_fuse_linear_add)."""
        _check_tokens(x, self.dim, "Attention")
        if may_fuse_attention(self, size):
            x = F.attention(self.qkv(x), self.num_heads, self.scale)  # (B, N, D)
            return linear_out(self, self.proj, self.proj_drop, x, residual)  # (B, N, D)
        q, k, v = self.heads(x)                                      # (B, h, N, d) each
        x = self.mix(self.probabilities(q, k, size), v)              # (B, N, D)
        return x if residual is None else residual + x

    def heads(self, x):                                              # (B, N, D)
        """q, k, v split into heads."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)  # (B, N, 3, h, d)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)                  # (B, h, N, d) each

    def probabilities(self, q, k, size=None):                        # (B, h, N, d)
        """softmax(q k^T * scale), each row over the keys. With `size` (B, N), the number of
        original tokens each key stands for after merging, log(size) is added to the logits
        ("proportional attention", ToMe): a merged key weighs what its parts weighed."""
        attn = (q @ k.transpose(-2, -1)) * self.scale                # (B, h, N, N)
        if size is not None:
            attn = attn + Tensor(np.log(size)[:, None, None, :].astype(attn.dtype))
        return self.softmax(attn)                                    # (B, h, N, N)

    def mix(self, attn, v):                                          # (B, h, N, N), (B, h, N, d)
        """The heads' weighted sums of v, concatenated and projected."""
        x = concat_heads(self.attn_drop(attn) @ v)                   # (B, N, D)
        return self.proj_drop(self.proj(x))


def linear_out(layer, linear, drop, x, residual=None):              # (B, N, Din)
    """drop(linear(x)), the end of an attention or MLP branch; with `residual`, residual + that,
    as one op (F.linear_add) when `layer` allows it (fusion.may_fuse_linear_add)."""
    if residual is None:
        return drop(linear(x))                                       # (B, N, Dout)
    if may_fuse_linear_add(layer):
        return F.linear_add(x, linear.weight, linear.bias, residual)  # (B, N, Dout)
    return residual + drop(linear(x))                                # (B, N, Dout)


def concat_heads(x):                                                 # (B, h, N, d)
    B, h, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, h * d)                    # (B, N, D)


class LayerScale(Module):
    """x * gamma: a learnable scale per channel, every entry initialised to `init_values` (small, e.g. 1e-5,
    so that each residual branch starts near zero and the deep network near the identity)."""

    def __init__(self, dim, init_values=1e-5):
        super().__init__()
        if isinstance(init_values, bool) or not isinstance(init_values, Real) or not 0 < init_values < math.inf:
            raise ValueError(f"LayerScale init_values must be a finite number above 0, got {init_values!r}")
        self.dim, self.init_values = dim, float(init_values)
        self.gamma = Parameter(np.full(dim, init_values, dtype=np.float32))  # (D,)

    def forward(self, x):                                            # (..., D)
        if x.shape[-1] != self.dim:
            raise ValueError(f"LayerScale expects input of shape (..., {self.dim}), got {x.shape}")
        return x * self.gamma                                        # (..., D)

    def extra_repr(self):
        return f"{self.dim}, init_values={self.init_values:g}"


class Block(Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).

    With `layer_scale_init` (a number > 0) each branch is scaled per channel before the residual add:
    x + drop_path(ls1(attn(norm1(x)))), then x + drop_path(ls2(mlp(norm2(x)))). Without it the block has
    no ls1 / ls2 at all, so its parameters and state-dict names are the release's.

    `attention`: "standard" (the release's Attention) or "shunted" (ShuntedAttention with `sr_ratio`, which
    needs tokens 1 + H*H, cls first, H a multiple of sr_ratio).

    When nothing needs a branch's output apart from the sum (fusion.may_fuse_residual: no LayerScale, no
    hook on a branch, no drop path acting, the backend has ops.LinearAdd), each branch gets x and adds it
    itself, in its last product (F.linear_add): the same values and gradients, with no pass of its own."""

    ls1 = ls2 = None                                                 # no LayerScale unless given one
    fused_layers = {"attn": Attention, "mlp": Mlp, "drop_path": (Identity, DropPath)}  # see forward

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None,
                 drop=0.0, attn_drop=0.0, drop_path=0.0, layer_scale_init=None, attention="standard", sr_ratio=2):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        if attention == "standard":
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        elif attention == "shunted":
            self.attn = ShuntedAttention(dim, num_heads, sr_ratio, qkv_bias, qk_scale, attn_drop, drop)
        else:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if layer_scale_init is not None:
            self.ls1 = LayerScale(dim, layer_scale_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        if layer_scale_init is not None:
            self.ls2 = LayerScale(dim, layer_scale_init)

    def forward(self, x):                                            # (B, N, D)
        if may_fuse_residual(self):          # the same sums, each in its branch's last product
            x = self.attn(self.norm1(x), residual=x)                 # x + attn(norm1(x))
            return self.mlp(self.norm2(x), residual=x)               # (B, N, D)
        x = x + self.drop_path(scaled(self.ls1, self.attn(self.norm1(x))))
        return x + self.drop_path(scaled(self.ls2, self.mlp(self.norm2(x))))  # (B, N, D)


def scaled(layer_scale, x):                                          # (B, N, D)
    """x through LayerScale, or x itself for a block without one."""
    return x if layer_scale is None else layer_scale(x)
