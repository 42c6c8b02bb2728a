"""Shunted self-attention (Ren et al., "Shunted Self-Attention via Multi-Scale Token Aggregation", CVPR 2022)
for the ViT backbone: Block(..., attention="shunted", sr_ratio=r); and the depthwise convolution it uses.

Legend: B batch, N = 1 + H*W tokens (cls first), H = W the side of the token grid, D embed dim (the
paper's C), h heads, d = D / h head dim, r a group's aggregation ratio, Hr = H / r the side of the
reduced grid, M = Hr * Hr its tokens, C channels, k kernel side, L = Ho * Wo output pixels.

The heads are split in two groups of h/2; every token is a query (q: Linear(D, D)). Group g (1, 2)
aggregates the token grid at its own ratio r_g (r_1 = sr_ratio, r_2 = sr_ratio // 2) for its keys
and values:
    grid (B, D, H, W) -> srg: Conv2d(D, D, kernel = stride = r_g) -> (B, M, D) tokens
    [cls ; those tokens] -> normg -> GELU -> kvg: Linear(D, D) -> k_g, v_g (B, h/2, 1+M, d) each
    v_g <- v_g + local_convg(v_g)      local enhancement: a depthwise 3x3 conv on the reduced grid
    out_g = softmax(q_g k_g^T * scale) v_g   (B, h/2, N, d), q_g the group's heads of q
The groups' outputs, in head order, are concatenated and projected (proj: Linear(D, D)). Group 1 sees a
coarse grid (few keys: large objects), group 2 a finer one (sr_ratio 2: a 1x1 conv, no downsampling).

The cls token is minit2t's decision (T2T-ViT has one; Shunted's pyramid has none): it is a query like
every token, and for keys and values it skips only the aggregation. Each group's keys and values are the
cls token's, then the reduced grid's (1 + M of them, the cls token's first); the local enhancement
changes the grid's values only, never the cls token's.

The probabilities are the outputs of the sub-modules softmax1 (B, h/2, N, 1+M_1) and softmax2
(B, h/2, N, 1+M_2), where forward hooks see them. Parameter names and shapes are torch's (q, sr1, norm1,
kv1, local_conv1, sr2, norm2, kv2, local_conv2, proj), so a state dict transfers either way. The
convolutions start as Shunted's code starts them: N(0, 2 / fan_out) weights, zero biases.
"""
import math
from numbers import Integral

from minit2t import ops
from minit2t.nn import functional as F
from minit2t.nn import init
from minit2t.nn.layers import GELU, Conv2d, Dropout, LayerNorm, Linear, Softmax
from minit2t.nn.module import Module, Parameter


class DepthwiseConv2d(Module):
    """Each channel convolved with its own k x k kernel, stride 1 (torch's Conv2d(C, C, k, padding=p,
    groups=C)): unfold's windows, each channel's k*k values dotted with its kernel in one batched matmul.
    weight (C, 1, k, k), bias (C,), initialised as torch does."""

    def __init__(self, channels, kernel_size=3, padding=1, bias=True):
        super().__init__()
        self.channels, self.kernel_size, self.padding = channels, kernel_size, padding
        bound = 1.0 / kernel_size                                    # 1 / sqrt(fan_in), fan_in = k*k
        self.weight = Parameter(init.uniform((channels, 1, kernel_size, kernel_size), -bound, bound))
        self.bias = Parameter(init.uniform((channels,), -bound, bound)) if bias else None

    def forward(self, x):                                            # (B, C, H, W)
        C, k, p = self.channels, self.kernel_size, self.padding
        if x.ndim != 4 or x.shape[1] != C:
            raise ValueError(f"DepthwiseConv2d expects input of shape (B, {C}, H, W), got {x.shape}")
        B, _, H, W = x.shape
        Ho, Wo = H + 2 * p - k + 1, W + 2 * p - k + 1
        cols = F.unfold(x, k, 1, p).reshape(B, C, k * k, Ho * Wo)     # (B, C, k*k, L)
        y = self.weight.reshape(C, 1, k * k) @ cols                  # (B, C, 1, L)
        if self.bias is not None:
            y = y + self.bias.reshape(C, 1, 1)
        return y.reshape(B, C, Ho, Wo)                               # (B, C, Ho, Wo)

    def extra_repr(self):
        return f"{self.channels}, kernel_size={self.kernel_size}, padding={self.padding}"


def check_sr_ratio(sr_ratio):
    if isinstance(sr_ratio, bool) or not isinstance(sr_ratio, Integral) or sr_ratio < 2 or sr_ratio % 2:
        raise ValueError(f"shunted attention expects sr_ratio an even int >= 2, got {sr_ratio!r}")


def check_shunted(dim, num_heads, sr_ratio):
    """The arguments of a shunted attention: an even sr_ratio >= 2, an even num_heads dividing dim."""
    check_sr_ratio(sr_ratio)
    if num_heads % 2:
        raise ValueError(f"shunted attention expects an even num_heads (two groups of heads), got {num_heads}")
    if dim % num_heads:
        raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")


def check_grid(side, sr_ratio):
    """The token grid's side must be a multiple of sr_ratio (group 1's kernel and stride)."""
    if side % sr_ratio:
        raise ValueError(f"shunted attention expects a token grid whose side is divisible by sr_ratio "
                         f"{sr_ratio}, got a {side}x{side} grid")


def grid_side(n_tokens, sr_ratio):
    """H, for n_tokens = 1 + H*H (a cls token, then the grid), checked against sr_ratio."""
    side = math.isqrt(max(n_tokens - 1, 0))
    if n_tokens < 2 or side * side != n_tokens - 1:
        raise ValueError(f"shunted attention expects 1 + H*H tokens (a cls token, then a square grid), "
                         f"got {n_tokens}")
    check_grid(side, sr_ratio)
    return side


def fan_out_init(conv, fan_out):
    """Shunted's start for a convolution: weight ~ N(0, 2 / fan_out), zero bias."""
    conv.weight.data = init.normal(conv.weight.shape, math.sqrt(2.0 / fan_out))
    conv.bias.data = init.zeros(conv.bias.shape)


class ShuntedAttention(Module):
    """Two groups of heads, each attending to keys and values aggregated at its own ratio (see above)."""

    def __init__(self, dim, num_heads=8, sr_ratio=2, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        check_shunted(dim, num_heads, sr_ratio)
        self.dim, self.num_heads, self.sr_ratio = dim, num_heads, int(sr_ratio)
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.sr1, self.norm1, self.kv1, self.local_conv1 = self._group(self.sr_ratio, qkv_bias)
        self.sr2, self.norm2, self.kv2, self.local_conv2 = self._group(self.sr_ratio // 2, qkv_bias)
        self.act = GELU()
        self.softmax1, self.softmax2 = Softmax(axis=-1), Softmax(axis=-1)
        self.attn_drop = Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)

    def _group(self, r, qkv_bias):
        """One group's layers: aggregation (kernel = stride = r), norm, kv, local enhancement."""
        D = self.dim
        sr, local_conv = Conv2d(D, D, r, stride=r), DepthwiseConv2d(D // 2, 3, padding=1)
        fan_out_init(sr, r * r * D)
        fan_out_init(local_conv, 3 * 3)                              # k*k*out / groups
        return sr, LayerNorm(D), Linear(D, D, bias=qkv_bias), local_conv

    def groups(self):
        return [(self.sr1, self.norm1, self.kv1, self.local_conv1, self.softmax1),
                (self.sr2, self.norm2, self.kv2, self.local_conv2, self.softmax2)]

    def forward(self, x):                                            # (B, N, D)
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"ShuntedAttention expects tokens of shape (B, N, {self.dim}), got {x.shape}")
        B, N, D = x.shape
        side, h = grid_side(N, self.sr_ratio), self.num_heads
        q = self.q(x).reshape(B, N, h, D // h).transpose(1, 2)       # (B, h, N, d)
        cls = x[:, :1]                                               # (B, 1, D)
        image = x[:, 1:].transpose(1, 2).reshape(B, D, side, side)   # (B, D, H, W)
        outs = [self.attend(q_g, cls, image, *layers)                # (B, h/2, N, d) each
                for q_g, layers in zip(q.split(h // 2, axis=1), self.groups())]
        x = ops.Concat.apply(*outs, axis=1)                          # (B, h, N, d)
        x = x.transpose(1, 2).reshape(B, N, D)                       # (B, N, D)
        return self.proj_drop(self.proj(x))                          # (B, N, D)

    def attend(self, q, cls, image, sr, norm, kv, local_conv, softmax):   # (B, h/2, N, d)
        """One group: softmax(q k^T * scale) v over its keys and values."""
        k, v = self.keys_values(cls, image, sr, norm, kv, local_conv)  # (B, h/2, 1+M, d) each
        attn = softmax((q @ k.transpose(-2, -1)) * self.scale)       # (B, h/2, N, 1+M)
        return self.attn_drop(attn) @ v                              # (B, h/2, N, d)

    def keys_values(self, cls, image, sr, norm, kv, local_conv):     # (B, 1, D), (B, D, H, W)
        """A group's keys and values: the cls token's, then the grid's aggregated by sr; v enhanced."""
        B, D = image.shape[:2]
        grid = sr(image)                                             # (B, D, Hr, Hr)
        side = grid.shape[-1]
        tokens = grid.reshape(B, D, side * side).transpose(1, 2)     # (B, M, D)
        tokens = ops.Concat.apply(cls, tokens, axis=1)               # (B, 1+M, D)
        kv = kv(self.act(norm(tokens)))                              # (B, 1+M, D)
        kv = kv.reshape(B, 1 + side * side, 2, self.num_heads // 2, D // self.num_heads)  # (B, 1+M, 2, h/2, d)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)                   # (B, h/2, 1+M, d) each
        return k, enhance(v, local_conv, side)

    def extra_repr(self):
        return f"dim={self.dim}, num_heads={self.num_heads}, sr_ratio={self.sr_ratio}"


def enhance(v, local_conv, side):                                    # (B, h/2, 1+M, d)
    """Local enhancement: the grid's values plus local_conv of them as an image, channels (head, d)
    head-major; the cls token's value unchanged."""
    B, h2, T, d = v.shape
    cls, grid = v[:, :, :1], v[:, :, 1:]                             # (B, h/2, 1, d), (B, h/2, M, d)
    image = grid.transpose(2, 3).reshape(B, h2 * d, side, side)      # (B, D/2, Hr, Hr)
    local = local_conv(image).reshape(B, h2, d, T - 1).transpose(2, 3)  # (B, h/2, M, d)
    return ops.Concat.apply(cls, grid + local, axis=2)               # (B, h/2, 1+M, d)
