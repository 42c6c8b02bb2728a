"""An independent PyTorch T2T-ViT, the oracle the parity tests hold minit2t to.

It follows the released architecture (module names, parameter names and
shapes, order of operations, scale factors, initialisation) so that its
state_dict loads into minit2t unchanged. Departures from the release:
  * `soft_split` gives (kernel, stride, padding) of the three soft splits
    (the release hard-codes ((7,4,2),(3,2,1),(3,2,1))), and num_patches
    follows from the output-size formula, so 32x32 inputs work;
  * the performer does not cast to float32, so the layer runs in float64;
  * tokens_type 'convolution' gets a working forward: conv, conv, conv,
    then the (B, D, h, w) map is read out as h*w tokens (no activation);
  * tokens_type 'hard' (ViT's split: non-overlapping p x p patches, one Linear);
  * attention='shunted' gives the backbone blocks Shunted self-attention
    (OliverRensu/Shunted-Transformer SSA.py) with minit2t's cls token: a
    query like every token, and the first key/value of each head group,
    not aggregated and not locally enhanced.
The re-structurization takes sqrt of the token count: square images only.

Shape legend: B batch, N tokens, D embed dim, C channels, h heads,
d head dim, E performer embedding (= token_dim), m random features,
k kernel, s stride, p padding, H/W image height/width.
"""
import math

import numpy as np
import torch
import torch.nn as nn
from torch_shunted import ShuntedAttention  # noqa: F401  (ref.ShuntedAttention, for the blocks and the tests)

DEFAULT_SOFT_SPLIT = ((7, 4, 2), (3, 2, 1), (3, 2, 1))


def trunc_normal_(t, std=0.02, a=-2.0, b=2.0):
    """Normal(0, std) with every value outside [a, b] (absolute bounds) drawn again."""
    with torch.no_grad():
        t.normal_(0.0, std)
        while not t.is_meta and t.numel():
            lo, hi = torch.aminmax(t)
            if lo >= a and hi <= b:
                break
            bad = (t < a) | (t > b)
            t[bad] = torch.randn(int(bad.sum()), dtype=t.dtype) * std
    return t


class DropPath(nn.Module):
    """Stochastic depth: drop a whole sample's residual branch with probability p."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # (B, 1, 1)
        return x / keep * mask


def get_sinusoid_encoding(n_position, d_hid):
    """(1, n_position, d_hid) float32 table: sin on even, cos on odd columns."""
    pos = np.arange(n_position, dtype=np.float64)[:, None]             # (N, 1)
    j = np.arange(d_hid)
    angles = pos / np.power(10000, 2 * (j // 2) / d_hid)                # (N, D)
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.tensor(angles, dtype=torch.float32).unsqueeze(0)       # (1, N, D)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Attention(nn.Module):
    """Multi-head self-attention of the backbone blocks."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, D = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, h, D // h).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)
        att = (q @ k.transpose(-2, -1)) * self.scale                      # (B, h, N, N)
        att = self.attn_drop(att.softmax(dim=-1))
        x = (att @ v).transpose(1, 2).reshape(B, N, D)                    # (B, N, D)
        return self.proj_drop(self.proj(x))


class LayerScale(nn.Module):
    """x * gamma, gamma (dim,) learnable (CaiT / DeiT III; timm's name)."""

    def __init__(self, dim, init_values):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); with init_values, each
    branch times a LayerScale (ls1, ls2) before the residual add."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, act_layer=nn.GELU, norm_layer=nn.LayerNorm, init_values=None,
                 attention="standard", sr_ratio=2):
        super().__init__()
        self.norm1 = norm_layer(dim)
        if attention == "shunted":
            self.attn = ShuntedAttention(dim, num_heads, sr_ratio, qkv_bias, qk_scale, attn_drop, drop)
        else:
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class TokenAttention(nn.Module):
    """The T2T attention: maps dim -> in_dim and uses v as the skip connection."""

    def __init__(self, dim, num_heads=8, in_dim=None, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.in_dim = in_dim
        self.scale = qk_scale or (dim // num_heads) ** -0.5                # from the INPUT dim
        self.qkv = nn.Linear(dim, 3 * in_dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(in_dim, in_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, _ = x.shape
        E = self.in_dim
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, E).permute(2, 0, 3, 1, 4)  # (3, B, 1, N, E)
        q, k, v = qkv.unbind(0)
        att = (q * self.scale) @ k.transpose(-2, -1)                      # (B, 1, N, N)
        att = self.attn_drop(att.softmax(dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, N, E)                    # (B, N, E)
        y = self.proj_drop(self.proj(y))
        return v.squeeze(1) + y                                           # (B, N, E)


class Token_transformer(nn.Module):
    def __init__(self, dim, in_dim, num_heads, mlp_ratio=1.0, qkv_bias=False, qk_scale=None, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = TokenAttention(dim, num_heads, in_dim, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(in_dim)
        self.mlp = Mlp(in_dim, int(in_dim * mlp_ratio), in_dim, act_layer=act_layer, drop=drop)

    def forward(self, x):
        x = self.attn(self.norm1(x))                                      # (B, N, E)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Token_performer(nn.Module):
    """Linear-cost attention with positive random features (single head)."""

    def __init__(self, dim, in_dim, head_cnt=1, kernel_ratio=0.5, dp1=0.1, dp2=0.1):
        super().__init__()
        self.emb = in_dim * head_cnt
        self.kqv = nn.Linear(dim, 3 * self.emb)
        self.dp = nn.Dropout(dp1)
        self.proj = nn.Linear(self.emb, self.emb)
        self.head_cnt = head_cnt
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(self.emb)
        self.epsilon = 1e-8
        self.mlp = nn.Sequential(nn.Linear(self.emb, self.emb), nn.GELU(),
                                 nn.Linear(self.emb, self.emb), nn.Dropout(dp2))
        self.m = int(self.emb * kernel_ratio)
        w = nn.init.orthogonal_(torch.randn(self.m, self.emb)) * math.sqrt(self.m)  # (m, E)
        self.w = nn.Parameter(w, requires_grad=False)

    def prm_exp(self, x):
        """exp(w x - |x|^2 / 2) / sqrt(m): (B, N, E) -> (B, N, m)."""
        xd = (x * x).sum(dim=-1, keepdim=True) / 2                        # (B, N, 1)
        wtx = torch.einsum("bne,me->bnm", x, self.w.to(x.dtype))          # (B, N, m)
        return torch.exp(wtx - xd) / math.sqrt(self.m)

    def single_attn(self, x):
        k, q, v = torch.split(self.kqv(x), self.emb, dim=-1)              # 3 x (B, N, E)
        kp, qp = self.prm_exp(k), self.prm_exp(q)                         # (B, N, m)
        den = torch.einsum("bnm,bm->bn", qp, kp.sum(dim=1)).unsqueeze(2)  # (B, N, 1)
        kptv = torch.einsum("bne,bnm->bem", v, kp)                        # (B, E, m)
        y = torch.einsum("bnm,bem->bne", qp, kptv) / (den + self.epsilon)  # (B, N, E)
        return v + self.dp(self.proj(y))

    def forward(self, x):
        x = self.single_attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class T2T_module(nn.Module):
    """Tokens-to-token: soft split, re-structurize, soft split, ... then project to D."""

    def __init__(self, img_size=224, tokens_type="performer", in_chans=3, embed_dim=768, token_dim=64,
                 soft_split=DEFAULT_SOFT_SPLIT):
        super().__init__()
        (k0, s0, p0), (k1, s1, p1), (k2, s2, p2) = soft_split
        self.tokens_type = tokens_type
        side = img_size
        for k, s, p in soft_split:
            side = (side + 2 * p - k) // s + 1                            # conv output size
        self.num_patches = side * side
        if tokens_type == "hard":                                         # as many patches as the splits give
            patch = img_size // side
            self.soft_split0 = nn.Unfold(patch, stride=patch)
            self.project = nn.Linear(in_chans * patch * patch, embed_dim)
        elif tokens_type == "convolution":
            self.soft_split0 = nn.Conv2d(in_chans, token_dim, k0, s0, p0)
            self.soft_split1 = nn.Conv2d(token_dim, token_dim, k1, s1, p1)
            self.project = nn.Conv2d(token_dim, embed_dim, k2, s2, p2)
        elif tokens_type in ("transformer", "performer"):
            self.soft_split0 = nn.Unfold(k0, padding=p0, stride=s0)
            self.soft_split1 = nn.Unfold(k1, padding=p1, stride=s1)
            self.soft_split2 = nn.Unfold(k2, padding=p2, stride=s2)
            if tokens_type == "transformer":
                self.attention1 = Token_transformer(in_chans * k0 * k0, token_dim, num_heads=1, mlp_ratio=1.0)
                self.attention2 = Token_transformer(token_dim * k1 * k1, token_dim, num_heads=1, mlp_ratio=1.0)
            else:
                self.attention1 = Token_performer(in_chans * k0 * k0, token_dim, kernel_ratio=0.5)
                self.attention2 = Token_performer(token_dim * k1 * k1, token_dim, kernel_ratio=0.5)
            self.project = nn.Linear(token_dim * k2 * k2, embed_dim)
        else:
            raise ValueError(f"tokens_type must be 'performer', 'transformer', 'convolution' or 'hard', "
                             f"got {tokens_type!r}")

    @staticmethod
    def _restructurize(x):
        B, N, C = x.shape
        side = int(np.sqrt(N))
        return x.transpose(1, 2).reshape(B, C, side, side)                # (B, C, H', W')

    def forward(self, x):
        if self.tokens_type == "hard":
            return self.project(self.soft_split0(x).transpose(1, 2))      # (B, N, D)
        if self.tokens_type == "convolution":
            x = self.project(self.soft_split1(self.soft_split0(x)))      # (B, D, h, w)
            return x.flatten(2).transpose(1, 2)                           # (B, N, D)
        x = self.soft_split0(x).transpose(1, 2)                           # (B, L0, C*k0*k0)
        x = self.attention1(x)                                            # (B, L0, E)
        x = self.soft_split1(self._restructurize(x)).transpose(1, 2)      # (B, L1, E*k1*k1)
        x = self.attention2(x)                                            # (B, L1, E)
        x = self.soft_split2(self._restructurize(x)).transpose(1, 2)      # (B, N, E*k2*k2)
        return self.project(x)                                            # (B, N, D)


class T2T_ViT(nn.Module):
    def __init__(self, img_size=224, tokens_type="performer", in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, norm_layer=nn.LayerNorm, token_dim=64, soft_split=DEFAULT_SOFT_SPLIT,
                 layer_scale_init=None, drop_path_uniform=False, attention="standard", sr_ratio=2):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.tokens_to_token = T2T_module(img_size, tokens_type, in_chans, embed_dim, token_dim, soft_split)
        num_patches = self.tokens_to_token.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(get_sinusoid_encoding(num_patches + 1, embed_dim), requires_grad=False)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = ([drop_path_rate] * depth if drop_path_uniform else
               [r.item() for r in torch.linspace(0, drop_path_rate, depth, device="cpu")])
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[i],
                  norm_layer=norm_layer, init_values=layer_scale_init, attention=attention, sr_ratio=sr_ratio)
            for i in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x):
        B = x.shape[0]
        x = self.tokens_to_token(x)                                       # (B, N, D)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)       # (B, N+1, D)
        x = self.pos_drop(x + self.pos_embed)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]                                         # (B, D)

    def forward(self, x):
        return self.head(self.forward_features(x))                        # (B, num_classes)


# name -> (tokens_type, embed_dim, depth, num_heads, mlp_ratio), as released
VARIANTS = {
    "t2t_vit_7": ("performer", 256, 7, 4, 2.0),
    "t2t_vit_10": ("performer", 256, 10, 4, 2.0),
    "t2t_vit_12": ("performer", 256, 12, 4, 2.0),
    "t2t_vit_14": ("performer", 384, 14, 6, 3.0),
    "t2t_vit_19": ("performer", 448, 19, 7, 3.0),
    "t2t_vit_24": ("performer", 512, 24, 8, 3.0),
    "t2t_vit_t_14": ("transformer", 384, 14, 6, 3.0),
    "t2t_vit_t_19": ("transformer", 448, 19, 7, 3.0),
    "t2t_vit_t_24": ("transformer", 512, 24, 8, 3.0),
    "t2t_vit_14_resnext": ("performer", 384, 14, 32, 3.0),
    "t2t_vit_14_wide": ("performer", 768, 4, 12, 3.0),
}


def create_model(name, **kwargs):
    """One of the eleven released variants; kwargs go to T2T_ViT."""
    tokens_type, embed_dim, depth, num_heads, mlp_ratio = VARIANTS[name]
    return T2T_ViT(tokens_type=tokens_type, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                   mlp_ratio=mlp_ratio, **kwargs)


def _constructor(name):
    return lambda **kwargs: create_model(name, **kwargs)


globals().update({name: _constructor(name) for name in VARIANTS})  # t2t_vit_7(**kw), ...
