"""MCTF: Multi-criteria Token Fusion (Lee et al., CVPR 2024), in every block but the first.

Legend: B batch, N tokens in, M = N - r out, D embed dim, h heads, d head dim,
Na/Nb tokens in the halves A = tokens 0, 2, 4, ... and B = 1, 3, 5, ...

One-step-ahead attention: block l computes its attention A_l (B, h, N, N) on the unfused
tokens (with +log size), fuses the tokens using A_l, fuses A_l itself, and only then takes v
from the fused tokens:  x' = fuse(x) + proj(fuse(A_l) @ v(norm1(fuse(x)))).
Which pairs fuse is scored by three criteria, each a number in (0, 1], multiplied:
  similarity        W_sim  = ((cos(x_i, x_j) + 1) / 2) ** (1 / tau_sim)   on the block's input x
  informativeness   W_info = (u_i u_j) ** (1 / tau_info),  u = (1 / a) / max(1 / a), where a_j is
                    the attention token j receives (mean over heads and queries): prefer to fuse
                    tokens that few attend to
  size              W_size = (v_i v_j) ** (1 / tau_size),  v = (1 / s) / max(1 / s): prefer small
A tau of 0 turns its criterion off. Bidirectional matching: r // 2 A tokens fuse into their best B
tokens, then r - r // 2 B tokens into their best unfused A tokens (same scores). Fusion pools
with weights w_i = a_i s_i / max s: x_new = sum w_i x_i / sum w_i (sizes add); the attention map
sums the fused keys' columns and takes the same weighted mean of the fused queries' rows.
"""
import numpy as np

from minit2t.nn import functional as F
from minit2t.nn.functional import cross_entropy
from minit2t.nn.transformer import concat_heads, scaled
from minit2t.random import generator
from minit2t.reduction.block import ReducingBlock
from minit2t.reduction.merge import assignment, bipartite_slots, cosine, merge, one_hot, protect_cls
from minit2t.tensor import Tensor


def tokens_to_merge(r, N):
    """The reference code's limits: r < 1 is a fraction of the non-cls tokens; at most half of
    them; at least 10 tokens stay."""
    r = N - 10 if N - r < 10 else r
    r = int((N - 1) * r) if r < 1 else int(r)
    return max(0, min(r, (N - 1) // 2))


class MCTFBlock(ReducingBlock):
    def __init__(self, block, r, tau_sim=1.0, tau_info=20.0, tau_size=40.0, bidirectional=True, prop=True):
        super().__init__(block, prop)
        self.r, self.bidirectional = r, bidirectional
        self.tau_sim, self.tau_info, self.tau_size = tau_sim, tau_info, tau_size

    def forward(self, x, state, r=None):                             # (B, N, D)
        r = tokens_to_merge(self.r if r is None else r, x.shape[1])
        if r == 0:
            return self.feed_forward(self.attend(x, state, probabilities=False)[0])   # (B, N, D)
        q, k = self.project(self.norm1(x), 0, 2)                     # (B, h, N, d) each
        attn = self.attn.probabilities(q, k, state.size if self.prop else None)  # (B, h, N, N)
        received = attn.data.mean(axis=(1, 2))                       # (B, N)  a_j
        size = state.sizes(x)                                        # (B, N)
        slot, M = bipartite_slots(protect_cls(self.scores(x.data, received, size)), *self.split(r))
        P = assignment(slot, M, received * size / size.max(axis=-1, keepdims=True), x.dtype)  # (B, M, N)
        x = merge(x, P)                                              # (B, M, D)
        state.update(slot, M)
        (v,) = self.project(self.norm1(x), 2, 3)                     # (B, h, M, d)
        mixed = scaled(self.ls1, self.fused_mix(attn, slot, P, v))   # (B, M, D)
        return self.feed_forward(x + self.drop_path(mixed))          # (B, M, D)

    def fused_mix(self, attn, slot, P, v):                           # (B, h, N, N), (B, N), (B, M, N), (B, h, M, d)
        """proj(A' @ v) with the fused map A' = P A Q^T (fused_attention), computed right to left,
        P (A (Q^T v)): the M values spread back over the N keys, the unfused attention's output,
        then merged, so A' (B, h, M, M) is never built. Attention dropout (0 in every zoo model)
        acts on A before fusing."""
        spread = merge(v, np.swapaxes(one_hot(slot, v.shape[2], v.dtype), 1, 2))  # (B, h, N, d)  Q^T v
        out = concat_heads(self.attn.attn_drop(attn) @ spread)      # (B, N, D)
        return self.attn.proj_drop(self.attn.proj(merge(out, P)))   # (B, M, D)

    def split(self, r):
        """(r1, r2): A tokens fused into B tokens, then B tokens into A tokens (bidirectional)."""
        r1 = r // 2 if self.bidirectional else r
        return r1, r - r1

    def scores(self, x, received, size):                             # (B, N, D), (B, N), (B, N)
        """W_sim * W_info * W_size between A and B tokens: (B, Na, Nb)."""
        W = np.ones((x.shape[0], (x.shape[1] + 1) // 2, x.shape[1] // 2), x.dtype)  # (B, Na, Nb)
        if self.tau_sim:
            W = W * ((cosine(x[:, 0::2], x[:, 1::2]) + 1) / 2) ** (1 / self.tau_sim)
        for tau, value in ((self.tau_info, received), (self.tau_size, size)):
            if tau:
                u = 1 / value
                u = (u / u.max(axis=-1, keepdims=True)) ** (1 / tau)  # (B, N) in (0, 1]
                W = W * (u[:, 0::2, None] * u[:, None, 1::2])       # (u_i u_j)^(1/tau)
        return W

    def project(self, x, first, last):                               # (B, N, D)
        """Parts first..last-1 of (q, k, v), split into heads: only the projections needed."""
        B, N, D = x.shape
        h, qkv = self.attn.num_heads, self.attn.qkv
        bias = None if qkv.bias is None else qkv.bias[first * D:last * D]
        y = F.linear(x, qkv.weight[first * D:last * D], bias)        # (B, N, n*D)
        y = y.reshape(B, N, last - first, h, D // h).permute(2, 0, 3, 1, 4)  # (n, B, h, N, d)
        return y.unbind(0)

    def extra_repr(self):
        return (f"r={self.r}, tau_sim={self.tau_sim}, tau_info={self.tau_info}, tau_size={self.tau_size}, "
                f"bidirectional={self.bidirectional}, prop={self.prop}")


def fused_attention(attn, slot, P):                                  # (B, h, N, N), (B, N), (B, M, N)
    """The one-step-ahead map fused, A' = P A Q^T (B, h, M, M): the columns of keys fused into one
    token summed (Q, the 0/1 assignment), the rows of the fused queries averaged with the pooling
    weights (P). Its rows still sum to 1. MCTFBlock uses it only through fused_mix."""
    keys = merge(attn.transpose(-2, -1), one_hot(slot, P.shape[1]))  # (B, h, M, N)  (A Q^T)^T = Q A^T
    return merge(keys.transpose(-2, -1), P)                          # (B, h, M, M)  P A Q^T


def label_counts(labels, num_classes):
    """(B, C) how many of a sample's labels are each class: one-hot for int labels (B,); for mixed
    labels (B, C), as mixup_cutmix mixes them (sample i with sample B-1-i, one lam and smoothing for
    the batch), the classes of both mixed samples: y_i + y_{B-1-i} = s(a) + s(b) whatever lam, the
    smoothing floor is alike in every class, so the part above the floor is e_a + e_b (2 e_a when the
    two labels are one class; every class once when it is flat: two classes, one of each)."""
    if labels.ndim == 1:
        return np.eye(num_classes)[labels]
    pair = labels + labels[::-1]                                     # (B, C) s(a) + s(b)
    above = pair - pair.min(axis=-1, keepdims=True)
    total = above.sum(axis=-1, keepdims=True)
    return np.rint(np.divide(2 * above, total, out=np.ones_like(above), where=total > 0))


def consistency_loss(student, teacher, logits, labels, threshold=0.4, weight=3.0):
    """Token-reduction consistency: weight * mean over the confident samples of
    mean((teacher - student)^2), on the final-norm cls tokens (B, D); the teacher (a pass with fewer
    tokens merged) gets no gradient from it. A sample is confident when the student's probability of
    its label exceeds threshold: labels ints (B,); under mixup / cutmix, labels mixed (B, C) and the
    probabilities of both mixed samples' labels summed (label_counts), as MCTF's engine.py does
    (p[y_i] + p[y_{B-1-i}]; the argmax of the mixed label alone would drop a sample whose two classes
    hold 0.3 each)."""
    p = np.exp(logits.data - logits.data.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True)                            # (B, C)
    labels = np.asarray(labels)
    confident = (p * label_counts(labels, p.shape[-1])).sum(axis=-1) > threshold   # (B,)
    if not confident.any():
        return None
    gap = ((Tensor(teacher.data) - student) ** 2).mean(axis=-1)      # (B,)
    mask = Tensor(confident.astype(gap.dtype))
    return (gap * mask).sum() * (weight / confident.sum())


def training_loss(model, images, labels, label_smoothing=0.0, teacher_r_max=8):
    """(loss, student logits) of MCTF's fine-tuning with token-reduction consistency: the tokens
    embedded once, then two passes through the backbone, the student with the model's r and a
    "teacher" merging r' ~ U{0, .., teacher_r_max - 1} in the same blocks; both cross-entropies
    plus consistency_loss on their final-norm cls tokens. labels: ints (B,) or mixed (B, K)."""
    tokens = model.embed(images)                                     # (B, N0, D)
    student, _ = model.forward_tokens(tokens)                        # (B, M, D)
    teacher, _ = model.forward_tokens(tokens, r=int(generator().integers(0, teacher_r_max)))
    logits, teacher_logits = model.head(student[:, 0]), model.head(teacher[:, 0])  # (B, K) each
    loss = cross_entropy(logits, labels, label_smoothing) + cross_entropy(teacher_logits, labels, label_smoothing)
    consistency = consistency_loss(student[:, 0], teacher[:, 0], logits, labels)
    return (loss if consistency is None else loss + consistency), logits


def uses_consistency(model):
    """Whether `model` fuses tokens with MCTF (and so fine-tunes with training_loss)."""
    return any(isinstance(blk, MCTFBlock) for blk in getattr(model, "blocks", ()))
