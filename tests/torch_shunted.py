"""Shunted self-attention (Ren et al., CVPR 2022; OliverRensu/Shunted-Transformer SSA.py) in PyTorch, the
oracle for minit2t.nn.shunted, with minit2t's cls token: a query like every token, and the first key and
value of each head group, not aggregated and not locally enhanced. Parameter names and shapes as minit2t's.

Shape legend: B batch, N = 1 + H*W tokens, C embed dim, h heads, d = C / h, Hr/Wr a group's reduced grid,
M = Hr * Wr.
"""
import math

import torch
import torch.nn as nn


class ShuntedAttention(nn.Module):
    """Shunted self-attention on (B, 1 + H*W, D) tokens, cls first: two groups of h/2 heads, group g's
    keys and values from the grid aggregated by a conv of kernel = stride = r_g (r_1 = sr_ratio,
    r_2 = sr_ratio // 2), after the cls token; v locally enhanced by a depthwise 3x3 conv on the grid."""

    def __init__(self, dim, num_heads=8, sr_ratio=2, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads, self.sr_ratio = num_heads, sr_ratio
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.sr1 = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.kv1 = nn.Linear(dim, dim, bias=qkv_bias)
        self.local_conv1 = nn.Conv2d(dim // 2, dim // 2, 3, padding=1, groups=dim // 2)
        self.sr2 = nn.Conv2d(dim, dim, sr_ratio // 2, stride=sr_ratio // 2)
        self.norm2 = nn.LayerNorm(dim)
        self.kv2 = nn.Linear(dim, dim, bias=qkv_bias)
        self.local_conv2 = nn.Conv2d(dim // 2, dim // 2, 3, padding=1, groups=dim // 2)
        self.act = nn.GELU()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        H = W = math.isqrt(N - 1)
        h2, d = self.num_heads // 2, C // self.num_heads
        q = self.q(x).reshape(B, N, self.num_heads, d).permute(0, 2, 1, 3)   # (B, h, N, d)
        image = x[:, 1:].permute(0, 2, 1).reshape(B, C, H, W)                # (B, C, H, W)
        outs = []
        for i, (sr, norm, kv, local) in enumerate([(self.sr1, self.norm1, self.kv1, self.local_conv1),
                                                   (self.sr2, self.norm2, self.kv2, self.local_conv2)]):
            r = sr(image)                                                    # (B, C, Hr, Wr)
            Hr, Wr = r.shape[2:]
            t = torch.cat([x[:, :1], r.reshape(B, C, -1).permute(0, 2, 1)], dim=1)   # (B, 1+M, C)
            kvs = kv(self.act(norm(t))).reshape(B, -1, 2, h2, d).permute(2, 0, 3, 1, 4)
            k, v = kvs[0], kvs[1]                                            # (B, h/2, 1+M, d)
            grid = v[:, :, 1:].transpose(1, 2).reshape(B, Hr * Wr, C // 2).transpose(1, 2).reshape(B, C // 2, Hr, Wr)
            enhanced = local(grid).reshape(B, h2, d, Hr * Wr).transpose(-1, -2)   # (B, h/2, M, d)
            v = torch.cat([v[:, :, :1], v[:, :, 1:] + enhanced], dim=2)     # (B, h/2, 1+M, d)
            att = (q[:, i * h2:(i + 1) * h2] @ k.transpose(-2, -1)) * self.scale   # (B, h/2, N, 1+M)
            att = self.attn_drop(att.softmax(dim=-1))
            outs.append((att @ v).transpose(1, 2).reshape(B, N, C // 2))   # (B, N, C/2)
        return self.proj_drop(self.proj(torch.cat(outs, dim=-1)))
