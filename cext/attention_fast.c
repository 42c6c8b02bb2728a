/* The fast attention, written once in the vector vocabulary of vec_avx2.h
 * and compiled once per ISA (fast_isa.h): attention_forward_avx2 /
 * attention_forward_avx512 and attention_backward_*, the last two functions
 * here. Legend and layouts as in attention.c.
 *
 * Heads (b, hh) are independent: threads take whole heads. One head's
 * q, k, v (N x d each), its P (N x Np) and a transposed k or v stay in cache
 * while every product, the softmax and the mix run over them, so nothing
 * of the head goes back to memory between steps. Every product is one
 * small GEMM, small_gemm, with A read in place through strides (so P^T
 * and gS^T cost no copy) and B's rows contiguous. Rows of P, gS and the
 * transposed k, v are padded to Np (a multiple of 16 floats, zeros past N),
 * so their loads and stores are whole vectors: a masked store, and a load
 * right after one, cost several times a plain one.
 * With bf16 (under minit2t.autocast) the operands of the products are
 * rounded to bfloat16 in cache, each once per head: the transposed k or v
 * as it is made, q, v, k and g into rounded copies (N x d each, in the
 * thread's scratch after the transposed one), P after the softmax and gS
 * before its products in place; the products themselves stay float32. */
#include "fast_isa.h"
#include "bf16_run.h"
#include "vmath.h"
#include "softmax_rows.h"
#include "transpose8.h"

/* The register tile of small_gemm: ATTN_RB rows by up to ATTN_NV vectors of
 * columns. AVX-512: 6 x 4 (24 accumulators of the 32 zmm registers); AVX2:
 * 6 x 2 (12 of the 16 ymm; 4 rows measured about 5% slower per head at the
 * backbone's shape). */
#define ATTN_RB 6
#if FAST_AVX512
#define ATTN_NV 4
#else
#define ATTN_NV 2
#endif

/* The register tile of small_gemm: rows i0 .. i0 + rows - 1 (rows <= ATTN_RB)
 * by nv vectors of columns, the last one cut by `tail` when `masked`:
 *   c[r, :] = alpha * sum_p A(i0 + r, p) * b[p, :],  A(i, p) = a[i * rsa + p * csa]
 * a points at A(i0, 0); b at column 0 of the tile (row stride rsb); c likewise.
 * Missing rows (rows < ATTN_RB) repeat the last one and are not stored.
 * With stream, whole vectors go out by streaming stores (c aligned: see
 * small_gemm). Inlined with constant nv and masked, so acc lives in registers. */
static inline __attribute__((always_inline)) void
gemm_tile(const int nv, const int masked, int64_t rows, int64_t K, const float *a, int64_t rsa,
          int64_t csa, const float *b, int64_t rsb, VTAIL tail, float *c, int64_t rsc, float alpha,
          int stream)
{
    VF acc[ATTN_RB][4], bv[4];
    const float *ar[ATTN_RB];
#pragma GCC unroll 8
    for (int r = 0; r < ATTN_RB; r++) {
        ar[r] = a + MIN(r, rows - 1) * rsa;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[r][v] = VSET1(0.0f);
    }
    for (int64_t p = 0; p < K; p++, b += rsb) {
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = masked && v == nv - 1 ? VLOADT(b + v * VW, tail, 0.0f) : VLOAD(b + v * VW);
#pragma GCC unroll 8
        for (int r = 0; r < ATTN_RB; r++) {
            VF x = VSET1(ar[r][p * csa]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[r][v] = VFMA(x, bv[v], acc[r][v]);
        }
    }
    VF va = VSET1(alpha);
#pragma GCC unroll 8
    for (int r = 0; r < ATTN_RB; r++) {
        if (r >= rows) break;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            if (masked && v == nv - 1) VSTORET(c + r * rsc + v * VW, tail, VMUL(acc[r][v], va));
            else if (stream) VSTREAM(c + r * rsc + v * VW, VMUL(acc[r][v], va));
            else VSTORE(c + r * rsc + v * VW, VMUL(acc[r][v], va));
        }
    }
}

/* One run of columns (nv vectors, the last one masked or not) over all M rows. */
#define TILE_ROWS(NV, MASKED)                                                         \
    for (int64_t i = 0; i < M; i += ATTN_RB)                                          \
        gemm_tile(NV, MASKED, MIN(ATTN_RB, M - i), K, a + i * rsa, rsa, csa, b + j, rsb, \
                  tail, c + i * rsc + j, rsc, alpha, stream)

/* C (M, n) = alpha * A (M, K) @ B (K, n): A(i, p) = a[i * rsa + p * csa], B's
 * row p at b + p * rsb (contiguous), C's row i at c + i * rsc. Columns go in
 * runs of ATTN_NV vectors (then 2, then 1; only a last partial vector is
 * masked), and for each run the rows in tiles of ATTN_RB: the run of B
 * stays in L1. With stream (an output in memory that nothing here reads
 * again: O, the gradients), by streaming stores where C's rows start on
 * 64-byte lines: a store that misses would read its line first (the
 * caller fences). */
static void small_gemm(int64_t M, int64_t n, int64_t K, const float *a, int64_t rsa, int64_t csa,
                       const float *b, int64_t rsb, float *c, int64_t rsc, float alpha, int stream)
{
    stream = stream && (uintptr_t)c % 64 == 0 && rsc % 16 == 0;
    for (int64_t j = 0; j < n;) {
        int64_t left = ceil_div(n - j, VW);                          /* vectors to go */
        int nv = left >= ATTN_NV ? ATTN_NV : left >= 2 ? 2 : 1;
        int64_t w = MIN(n - j, nv * VW);
        VTAIL tail = VTAILMASK(w - (nv - 1) * VW);
        if (w < nv * VW) {
            if (nv == 1) TILE_ROWS(1, 1);
            else TILE_ROWS(2, 1);                                    /* nv < ATTN_NV here */
        } else if (nv == 1) {
            TILE_ROWS(1, 0);
        } else if (nv == 2) {
            TILE_ROWS(2, 0);
#if ATTN_NV >= 4
        } else {
            TILE_ROWS(4, 0);
#endif
        }
        j += w;
    }
}

#undef TILE_ROWS

/* x (N rows of d, row stride rs) -> xt (d, np), contiguous, zeros past N:
 * 8 x 8 tiles in registers, the edges (N or d not a multiple of 8) one
 * float at a time. */
static void transpose_rows(const float *x, int64_t N, int64_t np, int64_t d, int64_t rs, float *xt)
{
    int64_t n8 = N / 8 * 8, d8 = d / 8 * 8;
    for (int64_t c = 0; c < d8; c += 8)
        for (int64_t j = 0; j < n8; j += 8) transpose8(x + j * rs + c, rs, xt + c * np + j, np);
    for (int64_t c = 0; c < d; c++) {
        for (int64_t j = c < d8 ? n8 : 0; j < N; j++) xt[c * np + j] = x[j * rs + c];
        for (int64_t j = N; j < np; j++) xt[c * np + j] = 0.0f;
    }
}

/* y[0:n] = x[0:n], n a multiple of VW, by streaming stores where y starts on a
 * 64-byte line (a kept P: memory that nothing here reads again). */
static void stream_copy(const float *x, float *y, int64_t n)
{
    int stream = (uintptr_t)y % 64 == 0;
    for (int64_t i = 0; i < n; i += VW) {
        if (stream) VSTREAM(y + i, VLOAD(x + i));
        else VSTORE(y + i, VLOAD(x + i));
    }
}

/* x (N rows of d, row stride rs) -> y (N rows of d, contiguous), rounded to bf16. */
static void round_bf16_rows(const float *x, int64_t N, int64_t d, int64_t rs, float *y)
{
    for (int64_t i = 0; i < N; i++) round_run(x + i * rs, y + i * d, d);
}

/* The scores x[j .. j + VW) plus the key biases kb (NULL: none); lanes past
 * N are -inf. */
static inline VF scores_at(const float *x, const float *kb, int64_t j, int64_t N)
{
    const float ninf = -__builtin_inff();
    if (j + VW <= N) return kb ? VADD(VLOAD(x + j), VLOAD(kb + j)) : VLOAD(x + j);
    VTAIL m = VTAILMASK(MAX(0, N - j));
    VF s = VLOADT(x + j, m, ninf);
    return kb ? VADD(s, VLOADT(kb + j, m, 0.0f)) : s;
}

/* R rows of S (x[r]: N scores, then pads to np), plus the key biases kb (N
 * or NULL) -> their probabilities in place, zeros past N. Whole vectors
 * only: np is a multiple of VW. Each row is a chain of dependent steps
 * (its maximum, then its sum, each summed across lanes), which one row
 * alone leaves mostly waiting, so two rows (R = 2) go side by side, each
 * computed exactly as alone. Inlined with a constant R. */
static inline __attribute__((always_inline)) void
softmax_rows_padded(const int R, float *const *x, const float *kb, int64_t N, int64_t np)
{
    const float ninf = -__builtin_inff();
    VF mx[2], vm[2], acc[2], inv[2];
    for (int r = 0; r < R; r++) mx[r] = VSET1(ninf), acc[r] = VSET1(0.0f);
    for (int64_t j = 0; j < N; j += VW)
        for (int r = 0; r < R; r++) mx[r] = VMAX(mx[r], scores_at(x[r], kb, j, N));
    for (int r = 0; r < R; r++) vm[r] = VSET1(VHMAX(mx[r]));
    for (int64_t j = 0; j < np; j += VW)
        for (int r = 0; r < R; r++) {
            VF e = vexp_nonpos(VSUB(scores_at(x[r], kb, j, N), vm[r]));   /* pads: exp(-inf) = 0 */
            VSTORE(x[r] + j, e);
            acc[r] = VADD(acc[r], e);
        }
    for (int r = 0; r < R; r++) inv[r] = VSET1(1.0f / VHSUM(acc[r]));
    for (int64_t j = 0; j < np; j += VW)
        for (int r = 0; r < R; r++) VSTORE(x[r] + j, VMUL(VLOAD(x[r] + j), inv[r]));
}

/* softmax_rows_padded over the N rows of p (row stride np), two at a time
 * (attention forward on an AMD EPYC, 2 threads, 256 images of 65 tokens, 4
 * heads of 32: 4.6 ms against 4.9 one row at a time; the backward's rows
 * taken two at a time measured 3% slower, so they go one by one). */
static void softmax_head(float *p, const float *kb, int64_t N, int64_t np)
{
    int64_t i = 0;
    for (; i + 1 < N; i += 2) {
        float *const rows[2] = {p + i * np, p + (i + 1) * np};
        softmax_rows_padded(2, rows, kb, N, np);
    }
    if (i < N) {
        float *const row[1] = {p + i * np};
        softmax_rows_padded(1, row, kb, N, np);
    }
}

#if FAST_AVX512
#include "attention_amx.h"
#endif

/* Ask for the rows of the next head (N rows of d floats at stride rs from
 * x): its q, k, v are scattered over qkv, one short run per token, which
 * the hardware prefetcher does not follow. Into L2 (locality 1), not L1:
 * this head's own q, k, v and P fill L1 while the next head's arrive
 * (attention forward on an AMD EPYC, 2 threads, 256 images of 65 tokens,
 * 4 heads of 32: 5.05 ms against 5.3 into L1). */
static void prefetch_rows(const float *x, int64_t N, int64_t d, int64_t rs)
{
    for (int64_t j = 0; j < N; j++)
        for (int64_t c = 0; c < d; c += 16) __builtin_prefetch(x + j * rs + c, 0, 1);
}

/* One head: P = softmax(q k^T * scale + kb), each row over the keys, in s (N, np), copied
 * out to p (N, np) when it is kept (p not NULL); o = P v. q, k, v rows at stride rs, o's at
 * ro; kb N key biases or NULL; kt scratch (d, np); with bf16, r scratch (2 N d) for the
 * rounded q and v. */
static void forward_head(const float *q, const float *k, const float *v, const float *kb,
                         float *o, float *p, float *s, int64_t N, int64_t np, int64_t d, int64_t rs,
                         int64_t ro, float scale, float *kt, int bf16, float *r)
{
    int64_t rsq = rs, rsv = rs;
    transpose_rows(k, N, np, d, rs, kt);                             /* (d, np) */
    if (bf16) {
        round_run(kt, kt, d * np);
        round_bf16_rows(q, N, d, rs, r);                             /* (N, d) */
        round_bf16_rows(v, N, d, rs, r + N * d);                     /* (N, d) */
        q = r, v = r + N * d, rsq = rsv = d;
    }
    small_gemm(N, np, d, q, rsq, 1, kt, np, s, np, scale, 0);        /* S (N, np) */
    softmax_head(s, kb, N, np);                                      /* P (N, np) */
    if (bf16) round_run(s, s, N * np);
    if (p) stream_copy(s, p, N * np);                                /* kept: out to memory */
    small_gemm(N, d, N, s, np, 1, v, rsv, o, ro, 1.0f, 1);           /* O (N, d) */
}

/* One head's gradients (attention.c): ds (N, np) holds gP, then gS / scale;
 * vt scratch (d, np); with bf16, r scratch (3 N d) for the rounded g, k, q.
 * gq, gk, gv rows at stride rs; g's at ro. */
static void backward_head(const float *q, const float *k, const float *v, const float *p,
                          const float *g, float *gq, float *gk, float *gv, int64_t N, int64_t np,
                          int64_t d, int64_t rs, int64_t ro, float scale, float *vt, float *ds,
                          int bf16, float *r)
{
    int64_t rsq = rs, rsg = ro;
    transpose_rows(v, N, np, d, rs, vt);                             /* (d, np) */
    if (bf16) {
        round_run(vt, vt, d * np);
        round_bf16_rows(g, N, d, ro, r);                             /* (N, d) each */
        round_bf16_rows(k, N, d, rs, r + N * d);
        round_bf16_rows(q, N, d, rs, r + 2 * N * d);
        g = r, k = r + N * d, q = r + 2 * N * d, rsq = rsg = d;
    }
    small_gemm(N, np, d, g, rsg, 1, vt, np, ds, np, 1.0f, 0);        /* gP (N, np) */
    for (int64_t i = 0; i < N; i++) softmax_row_backward(ds + i * np, p + i * np, ds + i * np, np);
    if (bf16) round_run(ds, ds, N * np);
    small_gemm(N, d, N, ds, np, 1, k, rsq, gq, rs, scale, 1);        /* gq = gS k */
    small_gemm(N, d, N, ds, 1, np, q, rsq, gk, rs, scale, 1);        /* gk = gS^T q */
    small_gemm(N, d, N, p, 1, np, g, rsg, gv, rs, 1.0f, 1);          /* gv = P^T g */
}

/* Head u's work: the next head's rows asked for, then its forward or backward. */
static void one_head(int backward, int64_t u, const float *qkv, const float *kbias,
                     const float *p_in, float *p, const float *g, float *out, int64_t B, int64_t N,
                     int64_t h, int64_t d, float scale, float *t, float *s, int bf16, int amx)
{
    int64_t D = h * d, rs = 3 * D, np = attention_row(N);
    int64_t b = u / h, base = b * N * rs + u % h * d, gbase = b * N * D + u % h * d;
    if (u + 1 < B * h) {
        int64_t b1 = (u + 1) / h, next = b1 * N * rs + (u + 1) % h * d;
        for (int part = 0; part < 3; part++) prefetch_rows(qkv + next + part * D, N, d, rs);
        if (backward) prefetch_rows(g + b1 * N * D + (u + 1) % h * d, N, d, D);
    }
#if FAST_AVX512
    if (backward && amx)
        backward_head_amx(qkv + base, qkv + base + D, qkv + base + 2 * D, p_in + u * N * np, g + gbase,
                          out + base, out + base + D, out + base + 2 * D, N, np, d, rs, D, scale, t);
    else
#endif
    if (backward)
        backward_head(qkv + base, qkv + base + D, qkv + base + 2 * D, p_in + u * N * np, g + gbase,
                      out + base, out + base + D, out + base + 2 * D, N, np, d, rs, D, scale, t, s,
                      bf16, t + d * np);
#if FAST_AVX512
    else if (amx)
        forward_head_amx(qkv + base, qkv + base + D, qkv + base + 2 * D, kbias ? kbias + b * N : NULL,
                         out + gbase, p ? p + u * N * np : NULL, N, np, d, rs, D, scale, t);
#endif
    else
        forward_head(qkv + base, qkv + base + D, qkv + base + 2 * D, kbias ? kbias + b * N : NULL,
                     out + gbase, p ? p + u * N * np : NULL, s, N, np, d, rs, D, scale, t, bf16, t + d * np);
}

/* The forward (backward = 0: kbias, p as attention_forward) or the backward
 * (backward = 1: p_in, g as attention_backward), out the output (out or
 * gqkv). Threads over the B * h heads. Each thread's scratch: the transposed k or
 * v, d x Np (then, with bf16, the rounded copies, 3 N d), and one head's gS
 * (backward) or P (a forward that does not keep it), N x Np. Returns -1,
 * having computed nothing, when scratch ran out. */
static int attention_heads(int backward, const float *qkv, const float *kbias, const float *p_in,
                           float *p, const float *g, float *out, int64_t B, int64_t N, int64_t h,
                           int64_t d, float scale, int bf16)
{
    int64_t np = attention_row(N);
    int nt = minit2t_threads_for(4.0 * (double)(B * h) * (double)(N * np) * (double)(d + 8));
    int failed = 0;
#if FAST_AVX512                                 /* bf16 on AMX tiles: attention_amx.h */
    int amx = bf16 && minit2t_isa() >= ISA_AMX;
    int64_t t_size = amx ? amx_head_floats(N, d) : d * np + (bf16 ? 3 * N * d : 0);
#else
    int amx = 0;
    int64_t t_size = d * np + (bf16 ? 3 * N * d : 0);
#endif
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *t = minit2t_scratch(SCRATCH_ATTN_T, (size_t)MAX(t_size, 1));
        float *s = minit2t_scratch(SCRATCH_ATTN_S, (size_t)MAX(N * np, 1));
        if (!t || !s) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        int stop;
#pragma omp atomic read
        stop = failed;
        if (!stop) {
#if FAST_AVX512
            if (amx) bf16_tiles_start();
#endif
#pragma omp for schedule(static)
            for (int64_t u = 0; u < B * h; u++)
                one_head(backward, u, qkv, kbias, p_in, p, g, out, B, N, h, d, scale, t, s, bf16, amx);
#if FAST_AVX512
            if (amx) bf16_tiles_end();
#endif
            _mm_sfence();                           /* the streamed outputs visible */
        }
    }
    return failed ? -1 : 0;
}

/* attention_forward_avx2 / _avx512 and attention_backward_avx2 / _avx512. */
int FAST(attention_forward)(const float *qkv, const float *kbias, float *out, float *p,
                            int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16)
{
    return attention_heads(0, qkv, kbias, NULL, p, NULL, out, B, N, h, d, scale, bf16);
}

int FAST(attention_backward)(const float *qkv, const float *p, const float *g, float *gqkv,
                             int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16)
{
    return attention_heads(1, qkv, NULL, p, NULL, g, gqkv, B, N, h, d, scale, bf16);
}
