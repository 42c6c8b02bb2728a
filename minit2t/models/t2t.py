"""Tokens-to-Token ViT (Yuan et al., ICCV 2021): the T2T module and the ViT backbone.

Legend: B batch, C channels, H/W image size, k/s/p kernel/stride/padding of a soft split,
Hi/Wi the token grid after soft split i, Ti = Hi*Wi its tokens, E token_dim (T2T width),
D embed dim, N = num_patches (the tokens after the last split).

T2T module (tokens_type "transformer" or "performer"), for each of the three soft splits (k, s, p):
    soft split:         image (B, C, H, W) -> overlapping k x k patches as tokens (B, T, C*k*k)
    T2T layer:          tokens (B, T, C*k*k) -> (B, T, E)       [the first two splits only]
    re-structurization: tokens (B, T, E) -> image (B, E, sqrt T, sqrt T)
then a Linear projects the last split's tokens to D. For the paper's comparisons the module can be
"convolution" (convolutions in place of soft split + T2T layer) or "hard" (ViT's tokenizer: the image cut
into non-overlapping p x p patches, p = H / sqrt N, each projected by one Linear). The backbone is a deep-narrow ViT:
cls token + fixed sinusoid positions, `depth` pre-norm blocks (LayerScale in them optional, their
attention the release's or shunted self-attention), LayerNorm, linear head.
"""
import inspect

import numpy as np

from minit2t import ops
from minit2t.models.config import MODEL_OPTIONS, RELEASE_SOFT_SPLIT, TOKENS_TYPES, model_config, split_sizes
from minit2t.models.token_performer import TokenPerformer
from minit2t.models.token_transformer import TokenTransformer
from minit2t.nn import init
from minit2t.nn.layers import Conv2d, Dropout, Identity, LayerNorm, Linear, ModuleList, Unfold
from minit2t.nn.module import Module, Parameter
from minit2t.nn.shunted import check_grid, check_shunted
from minit2t.nn.transformer import Block
from minit2t.tensor import Tensor

__all__ = ["T2TModule", "T2T_ViT", "TokenPerformer", "TokenTransformer", "get_sinusoid_encoding"]


def get_sinusoid_encoding(n_position, d_hid):
    """(1, n_position, d_hid): sin on even, cos on odd features of pos / 10000^(2(j//2)/d)."""
    pos = np.arange(n_position, dtype=np.float64)[:, None]                  # (n, 1)
    rates = np.power(10000.0, 2 * (np.arange(d_hid) // 2) / d_hid)          # (d,)
    table = pos / rates                                                     # (n, d)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table[None].astype(np.float32)                                   # (1, n, d)


def drop_path_rates(rate, depth, uniform=False):
    """Each block's stochastic-depth rate: 0 .. rate rising linearly (the release), or `rate` in every
    block when `uniform` (DeiT III)."""
    if not isinstance(uniform, bool):
        raise TypeError(f"drop_path_uniform must be True or False, got {uniform!r}")
    if uniform:
        return [float(rate)] * depth
    return [float(r) for r in np.linspace(0, rate, depth)]           # stochastic depth decay


def restructurize(x, side):                                      # (B, T, E)
    """Re-structurization: the T = side * side tokens become an E-channel image again."""
    B, T, E = x.shape
    return x.transpose(1, 2).reshape(B, E, side, side)               # (B, E, side, side)


class T2TModule(Module):
    """Tokens-to-Token: three soft splits with two T2T layers between them, then a projection."""

    def __init__(self, img_size=224, tokens_type="performer", in_chans=3, embed_dim=768, token_dim=64,
                 soft_split=RELEASE_SOFT_SPLIT):
        super().__init__()
        if tokens_type not in TOKENS_TYPES:
            raise ValueError(f"tokens_type must be one of {TOKENS_TYPES}, got {tokens_type!r}")
        (k0, s0, p0), (k1, s1, p1), (k2, s2, p2) = soft_split
        self.tokens_type, self.img_size, self.in_chans = tokens_type, img_size, in_chans
        self.sides = split_sizes(img_size, soft_split)
        if tokens_type == "hard":                                    # ViT's hard split, for comparison
            self.patch = img_size // self.sides[-1]                  # as many tokens as the soft splits give
            self.soft_split0 = Unfold(self.patch, self.patch, 0)     # non-overlapping patches
            self.project = Linear(in_chans * self.patch ** 2, embed_dim)
        elif tokens_type == "convolution":                           # the paper's comparison
            self.soft_split0 = Conv2d(in_chans, token_dim, k0, s0, p0)
            self.soft_split1 = Conv2d(token_dim, token_dim, k1, s1, p1)
            self.project = Conv2d(token_dim, embed_dim, k2, s2, p2)
        else:
            layer = TokenPerformer if tokens_type == "performer" else TokenTransformer
            self.soft_split0 = Unfold(k0, s0, p0)
            self.soft_split1 = Unfold(k1, s1, p1)
            self.soft_split2 = Unfold(k2, s2, p2)
            self.attention1 = layer(dim=in_chans * k0 * k0, in_dim=token_dim)
            self.attention2 = layer(dim=token_dim * k1 * k1, in_dim=token_dim)
            self.project = Linear(token_dim * k2 * k2, embed_dim)
        self.num_patches = self.sides[-1] ** 2

    def forward(self, x):                                            # (B, C, H, W)
        self._check_images(x)
        if self.tokens_type == "convolution":
            return self._convolutions(x)
        if self.tokens_type == "hard":                               # ViT: one linear map per patch
            return self.project(self.soft_split0(x).transpose(1, 2))  # (B, N, C*p*p) -> (B, N, D)
        x = self.soft_split0(x).transpose(1, 2)                      # (B, T0, C*k0*k0)  soft split
        x = self.attention1(x)                                       # (B, T0, E)        T2T layer
        x = restructurize(x, self.sides[0])                          # (B, E, H0, W0)    re-structurization
        x = self.soft_split1(x).transpose(1, 2)                      # (B, T1, E*k1*k1)  soft split
        x = self.attention2(x)                                       # (B, T1, E)        T2T layer
        x = restructurize(x, self.sides[1])                          # (B, E, H1, W1)    re-structurization
        x = self.soft_split2(x).transpose(1, 2)                      # (B, N, E*k2*k2)   soft split
        return self.project(x)                                       # (B, N, D)         projection

    def _convolutions(self, x):                                      # (B, C, H, W)
        """The paper's comparison: convolutions in place of soft split + T2T layer."""
        x = self.soft_split0(x)                                      # (B, E, H0, W0)
        x = self.soft_split1(x)                                      # (B, E, H1, W1)
        x = self.project(x)                                          # (B, D, H2, W2)
        return x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)  # (B, N, D)

    def _check_images(self, x):
        """The entrance of every T2T-ViT: a Tensor of images (B, C, H, W) with B >= 1 (an empty batch is
        refused, not answered with an empty output) in the model's dtype, which is never converted: as
        torch's "expected ... Float but found Double", float64 images into a float32 model are a TypeError."""
        if not isinstance(x, Tensor):
            raise TypeError(f"T2T module expects a Tensor (wrap images with mt.tensor), got {type(x).__name__}")
        want = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"T2T module expects images of shape (B, {want[0]}, {want[1]}, {want[2]}), "
                             f"got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"T2T module: a batch needs at least one image, got shape {x.shape}")
        dtype = self.project.weight.dtype
        if x.dtype != dtype:
            other = f" (or model.to(np.{x.dtype}) for a {x.dtype} model)" if x.dtype in (np.float32, np.float64) else ""
            raise TypeError(f"T2T module: the model is {dtype} but the images are {x.dtype}; convert them "
                            f"with x.astype(np.{dtype}){other}")


class T2T_ViT(Module):
    """T2T module + cls token + sinusoid positions + deep-narrow transformer + head.

    T2T_ViT(**options): the options, their defaults and valid ranges are MODEL_OPTIONS (models/config.py).

    Two options of DeiT III's recipe, both off by default (the release's model): `layer_scale_init`, a
    number > 0, gives every backbone block LayerScale (blocks.i.ls1.gamma, blocks.i.ls2.gamma, all that
    value at init); `drop_path_uniform` gives every block drop_path_rate, not 0 .. drop_path_rate rising.
    `attention`: the backbone blocks' attention, "standard" (the release's) or "shunted" (Shunted
    self-attention, minit2t.nn.shunted, its aggregation ratio `sr_ratio` dividing the grid side sqrt N);
    the T2T module's layers are the same either way."""

    def __init__(self, **options):
        super().__init__()
        self.config = c = model_config(options)                     # every option checked: models/config.py
        img_size, embed_dim, depth, num_classes = c["img_size"], c["embed_dim"], c["depth"], c["num_classes"]
        num_heads, sr_ratio, attention = c["num_heads"], c["sr_ratio"], c["attention"]
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.tokens_to_token = T2TModule(img_size, c["tokens_type"], c["in_chans"], embed_dim, c["token_dim"],
                                         c["soft_split"])
        N = self.tokens_to_token.num_patches
        if attention == "shunted":                                   # its heads and token grid fit it
            check_shunted(embed_dim, num_heads, sr_ratio)
            check_grid(self.tokens_to_token.sides[-1], sr_ratio)
        self.cls_token = Parameter(init.trunc_normal((1, 1, embed_dim), std=0.02))
        self.pos_embed = Parameter(get_sinusoid_encoding(N + 1, embed_dim), requires_grad=False)
        self.pos_drop = Dropout(c["drop_rate"])
        dpr = drop_path_rates(c["drop_path_rate"], depth, c["drop_path_uniform"])
        self.blocks = ModuleList(Block(embed_dim, num_heads, c["mlp_ratio"], c["qkv_bias"], c["qk_scale"],
                                       c["drop_rate"], c["attn_drop_rate"], dpr[i], c["layer_scale_init"],
                                       attention, sr_ratio)
                                 for i in range(depth))
        self.norm = LayerNorm(embed_dim)
        self.head = Linear(embed_dim, num_classes) if num_classes > 0 else Identity()

    def embed(self, x):                                              # (B, C, H, W)
        """The backbone's input: the T2T module's tokens after a cls token, plus positions."""
        x = self.tokens_to_token(x)                                  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)              # (B, 1, D)
        x = ops.Concat.apply(cls, x, axis=1)                         # (B, N+1, D)
        return self.pos_drop(x + self.pos_embed)

    def forward_features(self, x):                                   # (B, C, H, W)
        x = self.embed(x)                                            # (B, N+1, D)
        for blk in self.blocks:
            x = blk(x)                                               # (B, N+1, D)
        return self.norm(x)[:, 0]                                    # (B, D)

    def forward(self, x):                                            # (B, C, H, W)
        return self.head(self.forward_features(x))                   # (B, num_classes)


# help(T2T_ViT) and editors show the options, their defaults declared once in models/config.py
T2T_ViT.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default) for o in MODEL_OPTIONS])
