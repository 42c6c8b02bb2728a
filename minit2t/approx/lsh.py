"""Reformer LSH attention (Kitaev et al., ICLR 2020, "Reformer: the efficient Transformer", Sec. 3).

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale,
c bucket = chunk size (queries per chunk), nc = ceil(T / c) chunks, P = nc c (sorted order padded),
S = 2c keys per query chunk (c when nc = 1), n hashes (rounds), nb buckets, R (n, d, nb/2) rotations.

Reformer ties q = k (shared-QK); here q and k are separate projections, so both are hashed,
L2-normalised, with the same rotations of round r (angular LSH, Sec. 3 / Andoni et al. 2015):
    h_r(x) = argmax([x^ R_r, -x^ R_r]),   x^ = x / |x|,   R_r (d, nb/2) Gaussian, drawn once from a seed
nb = 2 max(1, T // 2c): about T / c buckets (made even), so a bucket holds about one chunk.
Round r (one "hash"), without ever building the T x T matrix:
  1. queries sorted by (h_r(q_i), i), keys sorted by (h_r(k_j), j); each order cut into nc chunks
     of c (the last padded: padded keys are masked with -inf, padded queries dropped);
  2. query chunk a attends to key chunk a and the one before it, a - 1 (chunk 0 to the last one,
     wrapping round as Reformer's look-one-back; with nc = 1 only its own chunk): P_i^r;
     chunks cut through buckets as in Reformer; no other mask (a token may attend to itself:
     Reformer masks that only because q = k there);
  3. per round, over the slots of P_i^r, with m_ij = log N_ij:
         z_i^r = log sum_{j in P_i^r} e^{tau q_i.k_j - m_ij}
         o_i^r =     sum_{j in P_i^r} e^{tau q_i.k_j - m_ij - z_i^r} v_j
     N_ij = #{rounds r' : j in P_i^{r'}} >= 1 (Reformer's m_{i,j}: a pair met in several rounds
     counts once), found from each round's chunk of i and j: O(B n^2 T S), no T x T array.
Rounds combined by their normalisers (Reformer eq. "o_i = sum_r exp(z(i, P_i^r) - z(i, P_i)) o_i^r"):
    out_i = sum_r softmax_r(z_i^r) o_i^r
which is exactly softmax(tau q_i k^T) restricted to the union P_i = U_r P_i^r, each key once.
The gathers by sorted index are ops.GetItem with integer arrays (backward: scatter-add); the
buckets, orders and counts are constants (hashing is piecewise constant: no gradient through it).
Memory O(B n T S (d + dv)).
"""
import numpy as np

from minit2t.ops.shape import GetItem


def lsh_n_buckets(T, bucket):
    """Buckets for T tokens in chunks of `bucket`: even (for [xR, -xR]), about T / bucket, >= 2."""
    return 2 * max(1, T // (2 * bucket))


def lsh_rotations(d, n_buckets, hashes, seed=0, dtype=np.float64):
    """R (hashes, d, n_buckets/2): one Gaussian random rotation per round, from `seed`."""
    if n_buckets < 2 or n_buckets % 2:
        raise ValueError(f"LSH needs an even number of buckets >= 2; got {n_buckets}")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((hashes, d, n_buckets // 2)).astype(dtype)


def lsh_hash(x, R):
    """Buckets (B, n, T) of x (B, T, d) ndarray: argmax over [x^ R_r, -x^ R_r] per round r."""
    unit = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)   # (B, T, d)
    rot = np.einsum("btd,ndh->bnth", unit, R.astype(x.dtype))       # (B, n, T, nb/2)
    return np.concatenate([rot, -rot], axis=-1).argmax(axis=-1)     # (B, n, T)


def lsh_sort(buckets):
    """(order (B, n, T): tokens sorted by (bucket, position), place (B, n, T): each token's place)."""
    T = buckets.shape[-1]
    order = np.argsort(buckets * T + np.arange(T), axis=-1, kind="stable")   # (B, n, T)
    place = np.argsort(order, axis=-1)                              # (B, n, T) inverse permutation
    return order, place


def chunk_slots(nc, c):
    """(nc, S) places in the padded sorted order of the keys query chunk a sees: chunk a, then a - 1."""
    own = np.arange(nc)[:, None] * c + np.arange(c)[None, :]        # (nc, c)
    if nc == 1:
        return own                                                  # (1, c): no other chunk
    return np.concatenate([own, np.roll(own, 1, axis=0)], axis=1)   # (nc, 2c), chunk 0 sees the last


def lsh_attention_sets(q, k, R, bucket):
    """The constants of the rounds, ndarrays: (qtok (B, n, nc, c) query of each padded place,
    ktok (B, n, nc, S) key of each slot, mask (B, n, nc, 1, S) 0 or -inf for padding,
    log_count (B, n, nc, c, S) log N_ij, qplace (B, n, T) each query's padded place)."""
    B, T, _ = q.shape
    c = bucket
    nc = -(-T // c)
    P = nc * c
    qorder, qplace = lsh_sort(lsh_hash(q, R))                       # (B, n, T) each
    korder, kplace = lsh_sort(lsh_hash(k, R))                       # (B, n, T) each
    pad = np.zeros(qorder.shape[:2] + (P - T,), dtype=qorder.dtype)  # (B, n, P - T) token 0 as filler
    qtok = np.concatenate([qorder, pad], axis=-1).reshape(B, -1, nc, c)   # (B, n, nc, c)
    slots = chunk_slots(nc, c)                                      # (nc, S)
    ktok = np.concatenate([korder, pad], axis=-1)[:, :, slots]      # (B, n, nc, S)
    real = slots < T                                                # (nc, S) not a padded place
    mask = np.where(real, 0.0, -np.inf).astype(q.dtype)[None, None, :, None, :]   # (1, 1, nc, 1, S)
    # N_ij: in how many rounds r' key j lies in query i's chunk or the one before (P_i^{r'})
    qchunk, kchunk = qplace // c, kplace // c                       # (B, n, T) each: chunk in round r'
    bi = np.arange(B)[:, None, None, None]
    count = np.zeros(ktok.shape[:3] + (c, ktok.shape[-1]), dtype=np.int64)   # (B, n, nc, c, S)
    for r in range(R.shape[0]):
        qa = qchunk[:, r][bi, qtok][..., None]                      # (B, n, nc, c, 1) chunk of i in r
        kb = kchunk[:, r][bi, ktok][:, :, :, None, :]               # (B, n, nc, 1, S) chunk of j in r
        count += (kb == qa) | ((nc > 1) & (kb == (qa - 1) % nc))
    log_count = np.log(np.maximum(count, 1)).astype(q.dtype)        # padding: any finite value
    return qtok, ktok, mask, log_count, qplace


def lsh(q, k, v, tau, bucket, R):
    """q (B, T, d), k (B, T, d), v (B, T, dv), R (n, d, nb/2) -> (B, T, dv); bucket >= 1."""
    if bucket < 1:
        raise ValueError(f"LSH attention needs bucket >= 1 (queries per chunk); got {bucket}")
    if R.ndim != 3 or R.shape[1] != q.shape[-1]:
        raise ValueError(f"LSH rotations: expected shape (hashes, {q.shape[-1]}, n_buckets/2); got {R.shape}")
    B, T, dv = v.shape
    n = R.shape[0]
    qtok, ktok, mask, log_count, qplace = lsh_attention_sets(q.data, k.data, R, bucket)
    bi = np.arange(B)[:, None, None, None]
    qs = GetItem.apply(q, index=(bi, qtok))                         # (B, n, nc, c, d) queries, sorted
    kw = GetItem.apply(k, index=(bi, ktok))                         # (B, n, nc, S, d) keys each chunk sees
    vw = GetItem.apply(v, index=(bi, ktok))                         # (B, n, nc, S, dv)
    logits = (qs @ kw.transpose(3, 4)) * tau + (mask - log_count)   # (B, n, nc, c, S)
    top = logits.data.max(axis=-1, keepdims=True)                   # (B, n, nc, c, 1) constant shift
    z = (logits - top).exp().sum(axis=-1, keepdims=True).log() + top   # (B, n, nc, c, 1) z_i^r
    o = logits.softmax(axis=-1) @ vw                                # (B, n, nc, c, dv) o_i^r
    ri, bj = np.arange(n)[None, :, None], np.arange(B)[:, None, None]
    o = GetItem.apply(o.reshape(B, n, -1, dv), index=(bj, ri, qplace))   # (B, n, T, dv) token order
    z = GetItem.apply(z.reshape(B, n, -1, 1), index=(bj, ri, qplace))    # (B, n, T, 1)
    return (z.softmax(axis=1) * o).sum(axis=1)                      # (B, T, dv) rounds by z_i^r
