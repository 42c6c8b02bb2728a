"""The T2T transformer: a one-head transformer layer that also changes the token width.

Legend: B batch, T tokens, Din input width (C*k*k of the soft split), E output width (token_dim).

Its attention projects Din -> E for q, k and v, so the residual around the
attention cannot be the input (width Din); the release uses v (width E) instead.
The scale comes from the *input* width: (Din / heads) ** -0.5.
"""
from minit2t.backends.fusion import may_fuse_attention, may_fuse_residual
from minit2t.nn import functional as F
from minit2t.nn.layers import Dropout, DropPath, Identity, LayerNorm, Linear, Softmax
from minit2t.nn.module import Module
from minit2t.nn.transformer import Mlp, linear_out


class TokenAttention(Module):
    """One-head attention Din -> E with v as the skip. The probabilities (B, 1, T, T) are the output
    of `softmax`; when nothing watches or changes them (no hook on `softmax` or `attn_drop`, no
    attention dropout), forward runs the same attention as one op, F.attention (the backend's speed
    policy decides: minit2t.backends.fusion.may_fuse_attention); proj and the value skip then run as
    one op too, F.linear_add, when nothing needs them apart (fusion.may_fuse_linear_add)."""

    fused_steps = ()                                                 # the steps are forward's own lines
    fused_layers = {"softmax": Softmax, "attn_drop": Dropout}        # F.attention stands for these
    residual_layers = {"proj": Linear, "proj_drop": Dropout}         # F.linear_add: these and the skip

    def __init__(self, dim, num_heads=1, in_dim=None, qkv_bias=False, qk_scale=None,
                 attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if num_heads != 1:
            raise ValueError(f"the T2T transformer's attention has one head, got num_heads={num_heads}")
        self.dim, self.num_heads, self.in_dim = dim, num_heads, in_dim
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = Linear(dim, in_dim * 3, bias=qkv_bias)
        self.softmax = Softmax(axis=-1)                              # its output: the attention
        self.attn_drop = Dropout(attn_drop)
        self.proj = Linear(in_dim, in_dim)
        self.proj_drop = Dropout(proj_drop)

    def forward(self, x):                                            # (B, T, Din)
        B, T, _ = x.shape
        E = self.in_dim
        if may_fuse_attention(self):
            qkv = self.qkv(x)                                        # (B, T, 3E)
            x = F.attention(qkv, self.num_heads, self.scale)         # (B, T, E)
            return linear_out(self, self.proj, self.proj_drop, x, qkv[..., 2 * E:])  # (B, T, E) v + proj(x)
        qkv = self.qkv(x).reshape(B, T, 3, 1, E).permute(2, 0, 3, 1, 4)  # (3, B, 1, T, E)
        q, k, v = qkv.unbind(0)                                      # (B, 1, T, E) each
        attn = (q * self.scale) @ k.transpose(-2, -1)                # (B, 1, T, T)
        attn = self.attn_drop(self.softmax(attn))                    # (B, 1, T, T)
        x = (attn @ v).transpose(1, 2).reshape(B, T, E)              # (B, T, E)
        x = self.proj_drop(self.proj(x))
        return v.reshape(B, T, E) + x                                # (B, T, E) value skip


class TokenTransformer(Module):
    """The T2T layer: v + attn(norm1(x)), then x + mlp(norm2(x)); the second sum in fc2's product when
    nothing needs the MLP's output apart (fusion.may_fuse_residual, as nn.Block's)."""

    fused_layers = {"mlp": Mlp, "drop_path": (Identity, DropPath)}   # between x and the sum x + mlp(...)

    def __init__(self, dim, in_dim, num_heads=1, mlp_ratio=1.0, qkv_bias=False, qk_scale=None,
                 drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.dim = dim
        self.norm1 = LayerNorm(dim)
        self.attn = TokenAttention(dim, num_heads, in_dim, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else Identity()
        self.norm2 = LayerNorm(in_dim)
        self.mlp = Mlp(in_dim, int(in_dim * mlp_ratio), in_dim, drop=drop)

    def forward(self, x):                                            # (B, T, Din)
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"TokenTransformer expects tokens of shape (B, T, {self.dim}), got {x.shape}")
        x = self.attn(self.norm1(x))                                 # (B, T, E)
        if may_fuse_residual(self):
            return self.mlp(self.norm2(x), residual=x)               # (B, T, E) the same sum, in fc2's product
        return x + self.drop_path(self.mlp(self.norm2(x)))           # (B, T, E)
