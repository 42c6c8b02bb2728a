"""An independent PyTorch transcription of the attention approximations: the oracle
tests/test_approx.py holds minit2t.approx to.

Written from the formulas (Performer: Choromanski et al. 2021, Lemma 1; Scatterbrain: Chen et al.
2021, sblocal attention), as dense T x T masks -- the plainest statement, fine at test sizes --
not from minit2t's gathered bands and log-space shifts. Float64, no stabilisation.
The random matrix W is passed in (the same one minit2t draws), so outputs are comparable.
"""
import torch


def band(T, w):
    """(T, T) bool: key j allowed for query i when j - i in [-floor(w/2), ceil(w/2))."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    return (j - i >= -(w // 2)) & (j - i < w - w // 2)


def band_slots(T, w, dtype=torch.float64):
    """(T, w, T) 0/1: slot s of query i selects key i + s - floor(w/2) (no key off the ends)."""
    i, s, j = torch.arange(T)[:, None, None], torch.arange(w)[None, :, None], torch.arange(T)[None, None, :]
    return (j == i + s - w // 2).to(dtype)


def band_dot(a, b, w):
    """(B, T, w): a_i . b_j for the w keys j of each query's window (0 off the ends)."""
    return torch.einsum("bid,isj,bjd->bis", a, band_slots(a.shape[1], w, a.dtype), b)


def band_mix(p, v):
    """(B, T, d): sum over slot s of p[i, s] v_j."""
    return torch.einsum("bis,isj,bjd->bid", p, band_slots(v.shape[1], p.shape[-1], v.dtype), v)


def exact(q, k, v, tau):
    return torch.softmax(tau * q @ k.transpose(-1, -2), dim=-1) @ v


def local(q, k, v, tau, w):
    scores = tau * q @ k.transpose(-1, -2)
    scores = scores.masked_fill(~band(q.shape[1], w), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def phi_positive(x, W):
    """exp(W x - |x|^2/2) / sqrt(m), m = rows of W."""
    m = W.shape[0]
    return torch.exp(x @ W.T - (x ** 2).sum(-1, keepdim=True) / 2) / m ** 0.5


def phi_cosh(x, W):
    """exp(-|x|^2/2) / sqrt(m) [exp(W x), exp(-W x)], m = 2 rows of W."""
    m = 2 * W.shape[0]
    base = torch.exp(-(x ** 2).sum(-1, keepdim=True) / 2) / m ** 0.5
    return torch.cat([base * torch.exp(x @ W.T), base * torch.exp(-(x @ W.T))], dim=-1)


def performer(q, k, v, tau, W, phi=phi_positive):
    fq, fk = phi(q * tau ** 0.5, W), phi(k * tau ** 0.5, W)
    kernel = fq @ fk.transpose(-1, -2)                                   # (B, T, T), dense on purpose
    return (kernel @ v) / kernel.sum(-1, keepdim=True)


def scatterbrain_matrix(q, k, tau, w, W):
    """(unnormalised A, normaliser Z): A = exp(tau q.k) on the band, phi.phi off it."""
    fq, fk = phi_cosh(q * tau ** 0.5, W), phi_cosh(k * tau ** 0.5, W)
    low = fq @ fk.transpose(-1, -2)
    S = band(q.shape[1], w)
    sparse = torch.where(S, torch.exp(tau * q @ k.transpose(-1, -2)), torch.zeros_like(low))
    A = sparse + torch.where(S, torch.zeros_like(low), low)
    residual = low.sum(-1, keepdim=True) - torch.where(S, low, torch.zeros_like(low)).sum(-1, keepdim=True)
    Z = sparse.sum(-1, keepdim=True) + torch.clamp(residual, min=1e-24)
    return A, Z


def scatterbrain(q, k, v, tau, w, W):
    A, Z = scatterbrain_matrix(q, k, tau, w, W)
    return (A @ v) / Z


def lsh_union(q, k, T, bucket, R):
    """(B, T, T) bool: key j in the union over rounds of the keys query i sees (Reformer, chunked):
    per round sort by (bucket, position), chunks of `bucket`, query chunk a sees key chunks a, a - 1."""
    nc = -(-T // bucket)
    union = torch.zeros(q.shape[0], T, T, dtype=torch.bool)
    for Rr in R:                                                         # one round per rotation
        chunks = []
        for x in (q, k):
            u = x / x.norm(dim=-1, keepdim=True)
            h = torch.cat([u @ Rr, -(u @ Rr)], dim=-1).argmax(-1)        # (B, T) bucket of each token
            order = torch.argsort(h * T + torch.arange(T), dim=-1)       # by (bucket, position)
            place = torch.argsort(order, dim=-1)
            chunks.append(place // bucket)                               # (B, T) chunk of each token
        qa, kb = chunks[0][:, :, None], chunks[1][:, None, :]
        seen = kb == qa
        if nc > 1:
            seen = seen | (kb == (qa - 1) % nc)
        union |= seen
    return union


def lsh(q, k, v, tau, bucket, R):
    """Exact softmax attention restricted to the union of the rounds' keys, each key once."""
    U = lsh_union(q.detach(), k.detach(), q.shape[1], bucket, R)
    scores = (tau * q @ k.transpose(-1, -2)).masked_fill(~U, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
