"""A minit2t T2T-ViT as a torch.nn.Module, and back: to_torch(model), from_torch(module, config).

Needs PyTorch (pip install -e ".[torch]"); `import minit2t` never imports it. TorchT2TViT(config) is the
model of a minit2t config (model.config, MODEL_OPTIONS) written with torch's layers, its parameter names the
PyTorch release's (yitu-opensource/T2T-ViT, and minit2t's: the names match one for one), so a state dict
moves either way unchanged. Every T2T module (performer, transformer, convolution, hard) and backbone
(LayerScale, Shunted attention) minit2t builds has its twin here; what has none is refused in one line:
token reduction (a config with `reduce`) and swapped approximate T2T attention (minit2t.approx).

Legend: B batch, C channels, T tokens of a T2T layer, N backbone tokens (cls first), D embed dim,
E token_dim, h heads, d = D / h, m random features of the performer.
"""
import math

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:
    raise ImportError('minit2t.interop needs PyTorch: pip install -e ".[torch]"') from None

from minit2t.models import T2T_ViT
from minit2t.models.config import model_config, split_sizes
from minit2t.models.t2t import drop_path_rates, get_sinusoid_encoding
from minit2t.models.token_transformer import TokenAttention

__all__ = ["TorchT2TViT", "from_torch", "to_torch"]
CONVOLUTIONS = ("soft_split0", "soft_split1", "project")              # the convolution T2T module's layers


class DropPath(nn.Module):
    """Stochastic depth: in training, each sample's branch dropped with probability p (the rest scaled)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, out=None, drop=0.0):
        super().__init__()
        self.fc1, self.act = nn.Linear(dim, hidden), nn.GELU()
        self.fc2, self.drop = nn.Linear(hidden, out or dim), nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def softmax_attention(q, k, v, scale, drop):                          # (B, h, N, d), (B, h, M, d) x2
    return drop(torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)) @ v    # (B, h, N, d)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias, qk_scale, attn_drop, drop):
        super().__init__()
        self.heads, self.scale = heads, qk_scale or (dim // heads) ** -0.5
        self.qkv, self.attn_drop = nn.Linear(dim, 3 * dim, bias=qkv_bias), nn.Dropout(attn_drop)
        self.proj, self.proj_drop = nn.Linear(dim, dim), nn.Dropout(drop)

    def forward(self, x):                                             # (B, N, D)
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        x = softmax_attention(q, k, v, self.scale, self.attn_drop)    # (B, h, N, d)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, D)))


class ShuntedAttention(nn.Module):
    """Two groups of h/2 heads; group g's keys and values: the cls token, then the grid aggregated by a
    convolution of kernel = stride = r_g (sr_ratio, sr_ratio / 2), values locally enhanced by a depthwise
    3x3 convolution (minit2t.nn.shunted tells the whole story)."""

    def __init__(self, dim, heads, sr_ratio, qkv_bias, qk_scale, attn_drop, drop):
        super().__init__()
        self.heads, self.scale = heads, qk_scale or (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        for g, r in ((1, sr_ratio), (2, sr_ratio // 2)):
            setattr(self, f"sr{g}", nn.Conv2d(dim, dim, r, stride=r))
            setattr(self, f"norm{g}", nn.LayerNorm(dim))
            setattr(self, f"kv{g}", nn.Linear(dim, dim, bias=qkv_bias))
            setattr(self, f"local_conv{g}", nn.Conv2d(dim // 2, dim // 2, 3, padding=1, groups=dim // 2))
        self.act, self.attn_drop = nn.GELU(), nn.Dropout(attn_drop)
        self.proj, self.proj_drop = nn.Linear(dim, dim), nn.Dropout(drop)

    def forward(self, x):                                             # (B, N, D)
        B, N, D = x.shape
        side, h = math.isqrt(N - 1), self.heads
        q = self.q(x).reshape(B, N, h, D // h).transpose(1, 2)        # (B, h, N, d)
        image = x[:, 1:].transpose(1, 2).reshape(B, D, side, side)    # (B, D, H, W)
        outs = []
        for g, q_g in zip((1, 2), q.split(h // 2, dim=1)):
            grid = getattr(self, f"sr{g}")(image)                     # (B, D, Hr, Hr)
            r = grid.shape[-1]
            tokens = torch.cat([x[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)      # (B, 1+M, D)
            kv = getattr(self, f"kv{g}")(self.act(getattr(self, f"norm{g}")(tokens)))
            k, v = kv.reshape(B, 1 + r * r, 2, h // 2, D // h).permute(2, 0, 3, 1, 4)  # (B, h/2, 1+M, d)
            grid_v = v[:, :, 1:].transpose(2, 3).reshape(B, D // 2, r, r)              # (B, D/2, Hr, Hr)
            local = getattr(self, f"local_conv{g}")(grid_v).reshape(B, h // 2, D // h, r * r).transpose(2, 3)
            v = torch.cat([v[:, :, :1], v[:, :, 1:] + local], dim=2)
            outs.append(softmax_attention(q_g, k, v, self.scale, self.attn_drop))    # (B, h/2, N, d)
        x = torch.cat(outs, dim=1).transpose(1, 2).reshape(B, N, D)
        return self.proj_drop(self.proj(x))


class LayerScale(nn.Module):
    def __init__(self, dim, init_values):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    """x + drop_path(ls1(attn(norm1(x)))), then x + drop_path(ls2(mlp(norm2(x)))); no ls without LayerScale."""

    def __init__(self, c, drop_path):
        super().__init__()
        D, heads = c["embed_dim"], c["num_heads"]
        args = (c["qkv_bias"], c["qk_scale"], c["attn_drop_rate"], c["drop_rate"])
        self.norm1 = nn.LayerNorm(D)
        self.attn = (ShuntedAttention(D, heads, c["sr_ratio"], *args) if c["attention"] == "shunted"
                     else Attention(D, heads, *args))
        scale = c["layer_scale_init"]
        self.ls1 = LayerScale(D, scale) if scale is not None else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(D)
        self.mlp = Mlp(D, int(D * c["mlp_ratio"]), drop=c["drop_rate"])
        self.ls2 = LayerScale(D, scale) if scale is not None else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class TokenPerformer(nn.Module):
    """One-head attention Din -> E with positive random features, v the skip (minit2t.models.token_performer)."""

    def __init__(self, dim, emb, kernel_ratio=0.5):
        super().__init__()
        self.emb, self.m, self.epsilon = emb, int(emb * kernel_ratio), 1e-8
        self.kqv, self.dp, self.proj = nn.Linear(dim, 3 * emb), nn.Dropout(0.1), nn.Linear(emb, emb)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(emb)
        self.mlp = nn.Sequential(nn.Linear(emb, emb), nn.GELU(), nn.Linear(emb, emb), nn.Dropout(0.1))
        self.w = nn.Parameter(torch.zeros(self.m, emb), requires_grad=False)   # (m, E): set by the weights

    def features(self, x):                                            # (B, T, E)
        squared = (x * x).sum(dim=-1, keepdim=True) / 2               # (B, T, 1)
        return torch.exp(x @ self.w.t() - squared) / math.sqrt(self.m)   # (B, T, m)

    def forward(self, x):                                             # (B, T, Din)
        k, q, v = self.kqv(self.norm1(x)).split(self.emb, dim=-1)      # (B, T, E) each
        kp, qp = self.features(k), self.features(q)                   # (B, T, m) each
        norm = qp @ kp.sum(dim=1).unsqueeze(-1)                       # (B, T, 1)
        y = (qp @ (v.transpose(1, 2) @ kp).transpose(1, 2)) / (norm + self.epsilon)   # (B, T, E)
        x = v + self.dp(self.proj(y))
        return x + self.mlp(self.norm2(x))


class TokenTransformer(nn.Module):
    """One-head transformer layer Din -> E, v the skip, scale Din ** -0.5 (minit2t.models.token_transformer)."""

    def __init__(self, dim, emb):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, 1, False, None, 0.0, 0.0)
        self.attn.qkv, self.attn.proj = nn.Linear(dim, 3 * emb, bias=False), nn.Linear(emb, emb)
        self.norm2, self.mlp = nn.LayerNorm(emb), Mlp(emb, emb)

    def forward(self, x):                                             # (B, T, Din)
        x, attn = self.norm1(x), self.attn
        B, T, _ = x.shape
        q, k, v = attn.qkv(x).reshape(B, T, 3, 1, -1).permute(2, 0, 3, 1, 4)     # (B, 1, T, E) each
        y = softmax_attention(q, k, v, attn.scale, attn.attn_drop).transpose(1, 2).flatten(2)
        x = v.transpose(1, 2).flatten(2) + attn.proj_drop(attn.proj(y))         # (B, T, E)
        return x + self.mlp(self.norm2(x))


class T2TModule(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, D, E, kind = c["in_chans"], c["embed_dim"], c["token_dim"], c["tokens_type"]
        (k0, s0, p0), (k1, s1, p1), (k2, s2, p2) = c["soft_split"]
        self.kind, self.sides = kind, split_sizes(c["img_size"], c["soft_split"])
        if kind == "hard":
            patch = c["img_size"] // self.sides[-1]
            self.soft_split0 = nn.Unfold(patch, stride=patch)
            self.project = nn.Linear(C * patch * patch, D)
        elif kind == "convolution":                                 # C -> E -> E -> D, a split's k, s, p each
            widths = (C, E, E, D)
            for i, (name, kernel_stride_padding) in enumerate(zip(CONVOLUTIONS, c["soft_split"])):
                setattr(self, name, nn.Conv2d(widths[i], widths[i + 1], *kernel_stride_padding))
        else:
            layer = TokenPerformer if kind == "performer" else TokenTransformer
            self.soft_split0 = nn.Unfold(k0, stride=s0, padding=p0)
            self.soft_split1 = nn.Unfold(k1, stride=s1, padding=p1)
            self.soft_split2 = nn.Unfold(k2, stride=s2, padding=p2)
            self.attention1, self.attention2 = layer(C * k0 * k0, E), layer(E * k1 * k1, E)
            self.project = nn.Linear(E * k2 * k2, D)

    def forward(self, x):                                             # (B, C, H, W)
        if self.kind == "convolution":
            return self.project(self.soft_split1(self.soft_split0(x))).flatten(2).transpose(1, 2)
        if self.kind == "hard":
            return self.project(self.soft_split0(x).transpose(1, 2))
        for split, layer, side in ((self.soft_split0, self.attention1, self.sides[0]),
                                   (self.soft_split1, self.attention2, self.sides[1])):
            x = layer(split(x).transpose(1, 2))                       # (B, T, E)
            x = x.transpose(1, 2).reshape(x.shape[0], -1, side, side)  # (B, E, side, side)
        return self.project(self.soft_split2(x).transpose(1, 2))      # (B, N, D)


class TorchT2TViT(nn.Module):
    """The torch twin of T2T_ViT(**config): T2T module, cls token, sinusoid positions, blocks, norm, head."""

    def __init__(self, config):
        super().__init__()
        self.config = c = model_config(refuse_unsupported(config), who="TorchT2TViT")
        D = c["embed_dim"]
        self.tokens_to_token = T2TModule(c)
        n = self.tokens_to_token.sides[-1] ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.from_numpy(get_sinusoid_encoding(n + 1, D)), requires_grad=False)
        self.pos_drop = nn.Dropout(c["drop_rate"])
        rates = drop_path_rates(c["drop_path_rate"], c["depth"], c["drop_path_uniform"])
        self.blocks = nn.ModuleList(Block(c, rate) for rate in rates)
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, c["num_classes"]) if c["num_classes"] > 0 else nn.Identity()

    def forward_features(self, x):                                    # (B, C, H, W)
        x = self.tokens_to_token(x)                                   # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]                                     # (B, D)

    def forward(self, x):
        return self.head(self.forward_features(x))                    # (B, num_classes)


def refuse_unsupported(config):
    """The config, if the twin can express it; one ValueError line naming what it cannot."""
    if not isinstance(config, dict):
        raise TypeError(f"expected a minit2t model config (a dict, model.config), got {type(config).__name__}")
    if config.get("reduce") is not None:
        raise ValueError(f"minit2t.interop does not support token reduction (the config's reduce="
                         f"{config['reduce']!r}); build the model without it")
    return {k: v for k, v in config.items() if k != "reduce"}


def to_torch(model):
    """A TorchT2TViT holding `model`'s weights (its dtype, float32 or float64), in its train / eval mode."""
    if not isinstance(model, T2T_ViT):
        raise TypeError(f"to_torch expects a minit2t T2T_ViT, got {type(model).__name__}")
    t2t = model.tokens_to_token
    for name in ("attention1", "attention2"):
        attn = getattr(getattr(t2t, name, None), "attn", None)
        if attn is not None and not isinstance(attn, TokenAttention):
            raise ValueError(f"minit2t.interop does not support swapped T2T attention ({name}: "
                             f"{type(attn).__name__}); swap_t2t_attention(model, 'exact') first")
    state = model.state_dict()
    module = TorchT2TViT(model.config).to(torch.from_numpy(state["cls_token"]).dtype)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return module.train(model.training)


def from_torch(module, config=None):
    """A minit2t T2T_ViT of `config` (default: module.config) holding the module's weights, in its mode."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    config = refuse_unsupported(getattr(module, "config", None) if config is None else config)
    state = {k[len("module."):] if k.startswith("module.") else k: v.detach().cpu().numpy()
             for k, v in module.state_dict().items()}
    model = T2T_ViT(**config)
    if state and next(iter(state.values())).dtype == np.float64:
        model.double()
    model.load_state_dict(state, strict=True)
    return model.train(module.training)
