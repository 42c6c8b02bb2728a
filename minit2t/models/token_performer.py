"""The T2T performer: one-head attention in linear time with positive random features.

Legend: B batch, T tokens, Din input width (C*k*k of the soft split),
E = emb (token_dim, the output width), m random features (= kernel_ratio * E).

softmax attention exp(q.k) is approximated as phi(q) . phi(k) with
    phi(x) = exp(w x - |x|^2 / 2) / sqrt(m),  w (m, E) fixed, orthogonal rows scaled by sqrt(m)
so  y = phi(Q) (phi(K)^T V) / (phi(Q) sum_t phi(K_t))  costs O(T m E), not O(T^2 E).
Widths differ (Din -> E), so the residual around attention is V, not the input.
"""
import math

from minit2t.nn import init
from minit2t.nn.layers import GELU, Dropout, LayerNorm, Linear, Sequential
from minit2t.nn.module import Module, Parameter


class TokenPerformer(Module):
    def __init__(self, dim, in_dim, head_cnt=1, kernel_ratio=0.5, dp1=0.1, dp2=0.1):
        super().__init__()
        self.dim = dim
        self.emb = in_dim * head_cnt                                 # E
        self.kqv = Linear(dim, 3 * self.emb)
        self.dp = Dropout(dp1)
        self.proj = Linear(self.emb, self.emb)
        self.head_cnt = head_cnt
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(self.emb)
        self.epsilon = 1e-8
        self.mlp = Sequential(Linear(self.emb, self.emb), GELU(), Linear(self.emb, self.emb), Dropout(dp2))
        self.m = int(self.emb * kernel_ratio)
        w = init.orthogonal(self.m, self.emb) * math.sqrt(self.m)    # (m, E)
        self.w = Parameter(w, requires_grad=False)

    def prm_exp(self, x):                                            # (B, T, E)
        """Positive random features exp(w x - |x|^2/2) / sqrt(m)."""
        xd = (x * x).sum(axis=-1, keepdims=True) / 2                 # (B, T, 1)
        wtx = x @ self.w.transpose(0, 1)                             # (B, T, m)
        return (wtx - xd).exp() / math.sqrt(self.m)                  # (B, T, m)

    def single_attn(self, x):                                        # (B, T, Din)
        k, q, v = self.kqv(x).split(self.emb, axis=-1)               # (B, T, E) each
        kp, qp = self.prm_exp(k), self.prm_exp(q)                    # (B, T, m) each
        ksum = kp.sum(axis=1, keepdims=True).transpose(1, 2)         # (B, m, 1)
        D = qp @ ksum                                                # (B, T, 1)
        kptv = v.transpose(1, 2) @ kp                                # (B, E, m)
        y = (qp @ kptv.transpose(1, 2)) / (D + self.epsilon)         # (B, T, E)
        return v + self.dp(self.proj(y))                             # (B, T, E) value skip

    def forward(self, x):                                            # (B, T, Din)
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"TokenPerformer expects tokens of shape (B, T, {self.dim}), got {x.shape}")
        x = self.single_attn(self.norm1(x))                          # (B, T, E)
        return x + self.mlp(self.norm2(x))                           # (B, T, E)
