"""An independent PyTorch transcription of ToMe, EViT and MCTF in a T2T-ViT backbone: the oracle
tests/test_reduction.py holds minit2t.reduction to.

Written from the papers and structured as the reference repositories are, not from minit2t's NumPy:
  ToMe  facebookresearch/ToMe (tome/merge.py, tome/patch/timm.py): bipartite_soft_matching returns
        a `merge` closure (gather + scatter_reduce), merge_wavg averages by size, merge_source
        tracks sources; proportional attention adds log(size) to the logits; metric = keys
        averaged over heads.
  EViT  youweiliang/evit (evit.py, helpers.py): topk of the cls attention, the complement gathered,
        the inattentive fused into one extra token sum_j a_j x_j (fuse="sum", as the code;
        "mean" divides by sum_j a_j, the paper's weighted average; "drop" drops them).
  MCTF  mlvlab/MCTF (utils/mctf.py, models/modules/blocks.py, models/SA/MHSA.py, engine.py):
        W_sim * W_info * W_size scores, bidirectional matching, pooling_type=1 (attention x
        size weighted, the weights under no_grad), one_step_ahead=1 (fused attention, v from the
        fused tokens), and the token-reduction consistency loss of engine.train_one_epoch.
Departures: one protected token (cls); minit2t's per-block r lists for ToMe and MCTF; EViT may
also take proportional attention (prop=True); MCTF's "at most N - 10 merged" rule gives r = 0
instead of a negative r (which the reference would crash on); everything runs in float64.

The unreduced layers (T2T module, blocks' sub-modules, norm, head) are torch_t2t's, loaded with a
minit2t model's state_dict (from_minit2t).

Legend: B batch, N tokens into a block, M tokens out, N0 tokens at the backbone's input,
D embed dim, h heads, d head dim, Na/Nb tokens in A = x[:, 0::2] / B = x[:, 1::2],
r tokens merged, K tokens kept (EViT), C classes.
"""
import inspect
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_t2t as ref


# ---- the model's weights --------------------------------------------------------------------

def from_minit2t(model):
    """A float64 torch_t2t.T2T_ViT with the minit2t model's configuration and weights."""
    accepted = inspect.signature(ref.T2T_ViT).parameters
    kw = {k: v for k, v in model.config.items() if k in accepted}
    t = ref.T2T_ViT(**kw).double()
    sd = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in model.state_dict().items()}
    t.load_state_dict(sd, strict=True)
    return t.eval()


class Info:
    """What travels beside the tokens (the reference repos' `_tome_info` / `info`):
    size (B, N, 1) or None before any merge, source (B, N, N0) when traced."""

    def __init__(self, x, trace=False):                                   # (B, N0, D)
        self.size, self.trace = None, trace
        B, N0, _ = x.shape
        self.source = torch.eye(N0, dtype=x.dtype)[None].expand(B, N0, N0) if trace else None
        self.sources = []                                                 # source after each block


def do_nothing(x, mode=None):
    return x


# ---- attention ----------------------------------------------------------------------------------

def attention(attn, x, size=None):                                        # (B, N, D)
    """ToMe's patched timm Attention: (output (B, N, D), probabilities (B, h, N, N),
    metric = keys averaged over heads (B, N, d)); size (B, N, 1) adds log(size) to the logits."""
    B, N, D = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, D // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)                                               # (B, h, N, d) each
    a = (q @ k.transpose(-2, -1)) * attn.scale                            # (B, h, N, N)
    if size is not None:
        a = a + size.log()[:, None, None, :, 0]                           # proportional attention
    a = a.softmax(dim=-1)
    y = (attn.attn_drop(a) @ v).transpose(1, 2).reshape(B, N, D)         # (B, N, D)
    return attn.proj_drop(attn.proj(y)), a, k.mean(1)


def qkv_part(attn, x, part):                                              # (B, N, D)
    """MHSA's slices of the qkv projection: part 0 = q, 1 = k, 2 = v, split into heads (B, h, N, d)."""
    B, N, D = x.shape
    W = attn.qkv.weight[part * D:(part + 1) * D]                          # (D, D)
    b = None if attn.qkv.bias is None else attn.qkv.bias[part * D:(part + 1) * D]
    return F.linear(x, W, b).reshape(B, N, attn.num_heads, D // attn.num_heads).permute(0, 2, 1, 3)


def mhsa_attn(attn, x, size=None):                                        # (B, N, D)
    """MHSA(_attn=True): only q and k, the probabilities (B, h, N, N) with log(size) added."""
    q, k = qkv_part(attn, x, 0), qkv_part(attn, x, 1)                    # (B, h, N, d)
    a = (q @ k.transpose(-2, -1)) * attn.scale                            # (B, h, N, N)
    if size is not None:
        a = a + size.log()[:, None, None, :, 0]
    return a.softmax(dim=-1)


def mhsa_with(attn, x, a):                                                # (B, M, D), (B, h, M, M)
    """MHSA(_attn=a): v from x, mixed by the given (fused) attention; output (B, M, D)."""
    B, M, D = x.shape
    v = qkv_part(attn, x, 2)                                              # (B, h, M, d)
    y = (attn.attn_drop(a) @ v).transpose(1, 2).reshape(B, M, D)         # (B, M, D)
    return attn.proj_drop(attn.proj(y))


# ---- ToMe -------------------------------------------------------------------------------------

def bipartite_soft_matching(metric, r):                                   # (B, N, d)
    """ToMe's matching with a class token: returns merge(x, mode) for x (B, N, c) -> (B, N - r, c)."""
    t = metric.shape[1]
    r = min(r, (t - 1) // 2)                                              # at most half (cls protected)
    if r <= 0:
        return do_nothing
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]                  # (B, Na, d), (B, Nb, d)
        scores = a @ b.transpose(-1, -2)                                  # (B, Na, Nb)
        scores[..., 0, :] = -math.inf                                     # cls never merges
        node_max, node_idx = scores.max(dim=-1)                           # (B, Na)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]   # (B, Na, 1)
        unm_idx = edge_idx[..., r:, :]                                    # (B, Na - r, 1) unmerged A
        src_idx = edge_idx[..., :r, :]                                    # (B, r, 1) merged A
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)       # (B, r, 1) their B
        unm_idx = unm_idx.sort(dim=1)[0]                                  # cls first

    def merge(x, mode="mean"):                                            # (B, N, c)
        src, dst = x[..., ::2, :], x[..., 1::2, :]                        # (B, Na, c), (B, Nb, c)
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))     # (B, Na - r, c)
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))           # (B, r, c)
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)  # (B, Nb, c)
        return torch.cat([unm, dst], dim=1)                               # (B, N - r, c)

    return merge


def merge_wavg(merge, x, size=None):                                      # (B, N, D), (B, N, 1)
    """Size-weighted average of what merges; sizes add. (B, M, D), (B, M, 1)."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])                           # (B, N, 1)
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def merge_source(merge, x, source):                                       # (B, N, N0)
    """Which original tokens each merged token stands for: (B, M, N0)."""
    return merge(source, mode="amax")


class ToMeBlock(nn.Module):
    """tome/patch/timm.py ToMeBlock around a torch_t2t.Block: merge between attention and MLP."""

    def __init__(self, blk, r, prop=True):
        super().__init__()
        self.blk, self.r, self.prop = blk, r, prop

    def forward(self, x, info, r=None):                                   # (B, N, D)
        b = self.blk
        y, _, metric = attention(b.attn, b.norm1(x), info.size if self.prop else None)
        x = x + b.drop_path(y)                                            # (B, N, D)
        r = self.r if r is None else r
        if r > 0:
            merge = bipartite_soft_matching(metric, r)
            if info.trace:
                info.source = merge_source(merge, x, info.source)         # (B, M, N0)
            x, info.size = merge_wavg(merge, x, info.size)                # (B, M, D), (B, M, 1)
        return x + b.drop_path(b.mlp(b.norm2(x)))                         # (B, M, D)


# ---- EViT ---------------------------------------------------------------------------------------

def complement_idx(idx, dim):                                             # (B, K)
    """The indices in 0..dim-1 not in idx, ascending: (B, dim - K) (helpers.complement_idx)."""
    chosen = torch.zeros(idx.shape[0], dim, dtype=torch.long).scatter(1, idx, 1)  # (B, dim)
    return chosen.argsort(dim=1, stable=True)[:, :dim - idx.shape[1]]


def evit_select(t, idx, compl, fused, mode):                              # (B, N, c)
    """[cls, the kept t[1:][idx] in rank order, (the reduce of t[1:][compl] if fused)]: (B, M, c)."""
    c = t.shape[-1]
    rest = t[:, 1:]                                                       # (B, N-1, c)
    parts = [t[:, :1], rest.gather(1, idx[..., None].expand(-1, -1, c))]
    if fused:
        dropped = rest.gather(1, compl[..., None].expand(-1, -1, c))      # (B, N-1-K, c)
        parts.append(dropped.sum(1, keepdim=True) if mode == "sum" else dropped.amax(1, keepdim=True))
    return torch.cat(parts, dim=1)


class EViTBlock(nn.Module):
    """evit.py Block: keep the K tokens the cls token attends to most, fuse the rest."""

    def __init__(self, blk, keep_rate=1.0, fuse="sum", prop=False):
        super().__init__()
        self.blk, self.keep_rate, self.fuse, self.prop = blk, keep_rate, fuse, prop
        self.r = 0                                                        # no r: never overridden
        self.detach_weights = False                                       # (a test's counterfactual)

    def forward(self, x, info, r=None):                                   # (B, N, D)
        b = self.blk
        B, N, C = x.shape
        tmp, attn, _ = attention(b.attn, b.norm1(x), info.size if self.prop else None)
        x = x + b.drop_path(tmp)                                          # (B, N, D)
        left_tokens = math.ceil(self.keep_rate * (N - 1))                 # K
        if left_tokens < N - 1:
            cls_attn = attn[:, :, 0, 1:].mean(dim=1)                      # (B, N-1)
            _, idx = torch.topk(cls_attn, left_tokens, dim=1, largest=True, sorted=True)  # (B, K)
            compl = complement_idx(idx, N - 1)                            # (B, N-1-K)
            non_cls = x[:, 1:]                                            # (B, N-1, D)
            x_others = non_cls.gather(1, idx[..., None].expand(-1, -1, C))  # (B, K, D)
            parts = [x[:, 0:1], x_others]
            if self.fuse != "drop":
                non_topk = non_cls.gather(1, compl[..., None].expand(-1, -1, C))  # (B, N-1-K, D)
                non_topk_attn = cls_attn.gather(1, compl)                 # (B, N-1-K), with gradient
                if self.detach_weights:
                    non_topk_attn = non_topk_attn.detach()
                if self.fuse == "mean":
                    non_topk_attn = non_topk_attn / non_topk_attn.sum(dim=1, keepdim=True)
                parts.append(torch.sum(non_topk * non_topk_attn[..., None], dim=1, keepdim=True))  # (B, 1, D)
            x = torch.cat(parts, dim=1)                                   # (B, M, D)
            fused = self.fuse != "drop"
            size = info.size if info.size is not None else torch.ones_like(tmp[..., :1])
            info.size = evit_select(size, idx, compl, fused, "sum")       # (B, M, 1)
            if info.trace:
                info.source = evit_select(info.source, idx, compl, fused, "amax")  # (B, M, N0)
        return x + b.drop_path(b.mlp(b.norm2(x)))                         # (B, M, D)


# ---- MCTF ---------------------------------------------------------------------------------------

def mctf_r(r, t):
    """utils/mctf.mctf's limits: keep >= 10 tokens, r < 1 a fraction, at most half the non-cls."""
    if t - r < 10:
        r = t - 10
    r = min(int((t - 1) * r) if r < 1 else r, (t - 1) // 2)
    return max(int(r), 0)


def dim_match(src, dim_num):                                              # (B, n, 1)
    """Indices (B, n, 1) -> (B, 1.., n, 1) with dim_num dims, to expand over middle dims."""
    while src.dim() < dim_num:
        src = src.unsqueeze(1)
    return src


def mctf_matching(metric, attn, size, r, tau_sim, tau_info, tau_size, bidirection):
    """utils/mctf.bipartite_soft_matching: metric (B, N, D) the block input, attn (B, h, N, N),
    size (B, N, 1) or None. Returns merge(x, mode) for x (B, ..., N, c) -> (B, ..., N - r, c)."""
    r1, r2 = (r // 2, r - r // 2) if bidirection else (r, 0)
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]                  # (B, Na, D), (B, Nb, D)
        W_sim = ((a @ b.transpose(-1, -2) + 1) / 2) ** (1 / tau_sim) if tau_sim else \
            torch.ones((a.shape[0], a.shape[1], b.shape[1]), dtype=a.dtype)  # (B, Na, Nb)
        W_info = 1
        if tau_info > 0 and attn is not None:
            u = 1 / attn.mean(dim=[1, 2])                                 # (B, N) 1 / attention received
            u = u / u.max(1, keepdim=True)[0]
            W_info = (u[..., ::2, None] * u[..., 1::2, None].transpose(1, 2)) ** (1 / tau_info)
        W_size = 1
        if tau_size and size is not None:
            s = 1 / size                                                  # (B, N, 1)
            s = s / s.max(1, keepdim=True)[0]
            W_size = (s[..., ::2, :] * s[..., 1::2, :].transpose(1, 2)) ** (1 / tau_size)
        scores = W_sim * W_info * W_size                                  # (B, Na, Nb)
        scores[..., :1, :] = -math.inf                                    # cls protected
        t1, t2 = scores.shape[1:]
        node_max, node_idx = scores.max(dim=-1)                           # (B, Na)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]   # (B, Na, 1)
        unm_idx = edge_idx[..., r1:, :].sort(dim=1)[0]                    # (B, Na - r1, 1), cls first
        src_idx = edge_idx[..., :r1, :]                                   # (B, r1, 1)
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)       # (B, r1, 1)
        if bidirection:
            new_scores = scores.gather(dim=-2, index=unm_idx.repeat(1, 1, t2)).transpose(1, 2)  # (B, Nb, Na - r1)
            node_max2, node_idx2 = new_scores.max(dim=-1)                 # (B, Nb)
            edge_idx2 = node_max2.sort(dim=-1, descending=True)[1][..., None]  # (B, Nb, 1)
            unm_idx2, src_idx2 = edge_idx2[..., r2:, :], edge_idx2[..., :r2, :]
            dst_idx2 = node_idx2[..., None].gather(dim=-2, index=src_idx2)  # (B, r2, 1)

    def merge(x, mode="mean"):                                            # (B, ..., N, c)
        src, dst = x[..., ::2, :], x[..., 1::2, :]                        # (B, ..., Na, c), (B, ..., Nb, c)
        n, mid, c, nd = src.shape[0], src.shape[1:-2], src.shape[-1], src.dim()
        grow = lambda i, k: dim_match(i, nd).expand(n, *mid, k, c)         # noqa: E731
        unm = src.gather(-2, grow(unm_idx, t1 - r1))                      # (B, ..., Na - r1, c)
        src = src.gather(-2, grow(src_idx, r1))                           # (B, ..., r1, c)
        dst = dst.scatter_reduce(-2, grow(dst_idx, r1), src, reduce=mode)  # (B, ..., Nb, c)
        if not bidirection:
            return torch.cat([unm, dst], dim=-2)                          # (B, ..., M, c)
        unm2 = dst.gather(-2, grow(unm_idx2, t2 - r2))                    # (B, ..., Nb - r2, c)
        src2 = dst.gather(-2, grow(src_idx2, r2))                         # (B, ..., r2, c)
        dst2 = unm.scatter_reduce(-2, grow(dst_idx2, r2), src2, reduce=mode)  # (B, ..., Na - r1, c)
        return torch.cat([dst2, unm2], dim=-2)                            # (B, ..., M, c)

    return merge


def mctf_wavg(merge, x, size, attn):                                      # (B, N, D), (B, N, 1), (B, h, N, N)
    """merge_wavg with pooling_type=1 and one_step_ahead=1: weights a_i s_i / max s (no gradient);
    the attention's key columns summed, its query rows pooled alike. (B, M, D), (B, M, 1), (B, h, M, M)."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])                           # (B, N, 1)
    size_max = size.amax(dim=-2, keepdim=True)                            # (B, 1, 1)
    with torch.no_grad():
        attn_m = attn.mean(dim=[1, 2]).unsqueeze(-1)                      # (B, N, 1)
        norm = merge(attn_m * (size / size_max), mode="sum")              # (B, M, 1)
    attn_n = merge(attn[..., None], mode="sum").squeeze(-1)               # (B, h, N, M) keys summed
    attn_n = merge(attn_n * attn_m[:, None] * (size / size_max)[:, None], mode="sum")  # (B, h, M, M)
    attn_n = attn_n / norm[:, None]
    x = merge(x * attn_m * (size / size_max), mode="sum")                 # (B, M, D)
    with torch.no_grad():
        size = merge(size, mode="sum")                                    # (B, M, 1)
    return x / norm, size, attn_n


class MCTFBlock(nn.Module):
    """models/modules/blocks.Block_DEIT with one_step_ahead=1 around a torch_t2t.Block."""

    def __init__(self, blk, r, tau_sim=1.0, tau_info=20.0, tau_size=40.0, bidirection=True, prop=True):
        super().__init__()
        self.blk, self.r, self.bidirection, self.prop = blk, r, bidirection, prop
        self.tau_sim, self.tau_info, self.tau_size = tau_sim, tau_info, tau_size

    def forward(self, x, info, r=None):                                   # (B, N, D)
        b = self.blk
        size = info.size if self.prop else None                           # (B, N, 1)
        r = mctf_r(self.r if r is None else r, x.shape[1])
        if r > 0:
            attn = mhsa_attn(b.attn, b.norm1(x), size)                    # (B, h, N, N) unfused tokens
            merge = mctf_matching(x, attn, info.size, r, self.tau_sim, self.tau_info, self.tau_size,
                                  self.bidirection)
            if info.trace:
                info.source = merge(info.source, mode="amax")             # (B, M, N0)
            x, info.size, attn = mctf_wavg(merge, x, info.size, attn)     # (B, M, D), (B, M, 1), (B, h, M, M)
            x_attn = mhsa_with(b.attn, b.norm1(x), attn)                  # v from the fused tokens
        else:
            x_attn = attention(b.attn, b.norm1(x), size)[0]
        x = x + b.drop_path(x_attn)
        return x + b.drop_path(b.mlp(b.norm2(x)))                         # (B, M, D)


def consistency_loss(student, teacher, logits, targets, threshold=0.4, weight=3.0):
    """engine.train_one_epoch's token-reduction consistency (no mixup): student/teacher (B, D) are
    the final-norm cls tokens, logits (B, C) the student's; 0 when no sample passes."""
    loss_consistency = ((teacher.detach() - student) ** 2).mean(dim=1)    # (B,) deit.py
    probs = torch.softmax(logits, dim=-1)
    confidence_score = probs[range(len(targets)), targets]                # (B,)
    confidence_pass = (confidence_score > threshold).to(student.dtype)
    if not confidence_pass.sum():
        return torch.zeros((), dtype=student.dtype)
    return (loss_consistency * confidence_pass).sum() / confidence_pass.sum() * weight


# ---- the reduced backbone -----------------------------------------------------------------------

class ReducedT2T(nn.Module):
    """torch_t2t.T2T_ViT with its blocks wrapped by reducing blocks (same parameter names)."""

    def __init__(self, t, blocks):
        super().__init__()
        self.t, self.rblocks = t, blocks                                  # rblocks hold t.blocks' modules

    def embed(self, images):                                              # (B, C, H, W)
        x = self.t.tokens_to_token(images)                                # (B, N0 - 1, D)
        x = torch.cat((self.t.cls_token.expand(x.shape[0], -1, -1), x), dim=1)  # (B, N0, D)
        return self.t.pos_drop(x + self.t.pos_embed)

    def forward_tokens(self, x, r=None, trace=False):                     # (B, N0, D)
        """(norm(tokens) (B, M, D), Info); r overrides every block whose own r is not 0."""
        info = Info(x, trace)
        for blk in self.rblocks:
            x = blk(x, info, r if r is not None and blk.r else None)      # (B, M, D)
            if trace:
                info.sources.append(info.source > 0)
        return self.t.norm(x), info

    def forward(self, images):                                            # (B, C, H, W)
        return self.t.head(self.forward_tokens(self.embed(images))[0][:, 0])  # (B, C)


def tome(t, rs, prop=True):
    """ToMe with r[i] merged in block i."""
    return ReducedT2T(t, [ToMeBlock(b, r, prop) for b, r in zip(t.blocks, rs)])


def evit(t, keep_rate, at, fuse="sum", prop=False):
    """EViT reducing at the blocks in `at`."""
    return ReducedT2T(t, [EViTBlock(b, keep_rate if i in at else 1.0, fuse, prop) for i, b in enumerate(t.blocks)])


def mctf(t, rs, tau_sim=1.0, tau_info=20.0, tau_size=40.0, bidirection=True, prop=True):
    """MCTF with r[i] fused in block i."""
    return ReducedT2T(t, [MCTFBlock(b, r, tau_sim, tau_info, tau_size, bidirection, prop)
                          for b, r in zip(t.blocks, rs)])
