/* The fast attention, written once in the vector vocabulary of vec_avx2.h
 * and compiled per ISA: included by attention_avx2.c and attention_avx512.c,
 * which define ATTN_RB (rows of a register tile) and ATTN_NV (its widest
 * row, in vectors) before it. Legend and layouts as in attention.c.
 *
 * Heads (b, hh) are independent: threads take whole heads. One head's
 * q, k, v (N x d each), its P (N x N) and a transposed k or v stay in cache
 * while every product, the softmax and the mix run over them, so nothing
 * of the head goes back to memory between steps. Every product is one
 * small GEMM, small_gemm, with A read in place through strides (so P^T
 * and gS^T cost no copy) and B's rows contiguous. */
#include "vmath.h"
#include "softmax_rows.h"

/* The register tile of small_gemm: rows i0 .. i0 + rows - 1 (rows <= ATTN_RB)
 * by nv vectors of columns, the last one cut by `tail`:
 *   c[r, :] = alpha * sum_p A(i0 + r, p) * b[p, :],  A(i, p) = a[i * rsa + p * csa]
 * a points at A(i0, 0); b at column 0 of the tile (row stride rsb); c likewise.
 * Missing rows (rows < ATTN_RB) repeat the last one and are not stored.
 * Inlined with a constant nv, so acc lives in registers. */
static inline __attribute__((always_inline)) void
gemm_tile(const int nv, int64_t rows, int64_t K, const float *a, int64_t rsa, int64_t csa,
          const float *b, int64_t rsb, VTAIL tail, float *c, int64_t rsc, float alpha)
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
        for (int v = 0; v < nv - 1; v++) bv[v] = VLOAD(b + v * VW);
        bv[nv - 1] = VLOADT(b + (nv - 1) * VW, tail, 0.0f);
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
        for (int v = 0; v < nv - 1; v++) VSTORE(c + r * rsc + v * VW, VMUL(acc[r][v], va));
        VSTORET(c + r * rsc + (nv - 1) * VW, tail, VMUL(acc[r][nv - 1], va));
    }
}

/* C (M, n) = alpha * A (M, K) @ B (K, n): A(i, p) = a[i * rsa + p * csa], B's
 * row p at b + p * rsb (contiguous), C's row i at c + i * rsc. Columns go in
 * runs of ATTN_NV vectors (then 2, then 1; the last vector masked), and for
 * each run the rows in tiles of ATTN_RB: the run of B stays in L1. */
static void small_gemm(int64_t M, int64_t n, int64_t K, const float *a, int64_t rsa, int64_t csa,
                       const float *b, int64_t rsb, float *c, int64_t rsc, float alpha)
{
    for (int64_t j = 0; j < n;) {
        int64_t left = ceil_div(n - j, VW);                          /* vectors to go */
        int nv = left >= ATTN_NV ? ATTN_NV : left >= 2 ? 2 : 1;
        int64_t w = MIN(n - j, nv * VW);
        VTAIL tail = VTAILMASK(w - (nv - 1) * VW);
        for (int64_t i = 0; i < M; i += ATTN_RB) {
            int64_t rows = MIN(ATTN_RB, M - i);
            const float *ai = a + i * rsa;
            float *ci = c + i * rsc + j;
            if (nv == 1) gemm_tile(1, rows, K, ai, rsa, csa, b + j, rsb, tail, ci, rsc, alpha);
            else if (nv == 2) gemm_tile(2, rows, K, ai, rsa, csa, b + j, rsb, tail, ci, rsc, alpha);
#if ATTN_NV >= 4
            else gemm_tile(4, rows, K, ai, rsa, csa, b + j, rsb, tail, ci, rsc, alpha);
#endif
        }
        j += w;
    }
}

/* x (N rows of d, row stride rs) -> xt (d, N), contiguous. */
static void transpose_rows(const float *x, int64_t N, int64_t d, int64_t rs, float *xt)
{
    for (int64_t c = 0; c < d; c++)
        for (int64_t j = 0; j < N; j++) xt[c * N + j] = x[j * rs + c];
}

/* Ask for the rows of the next head (N rows of d floats at stride rs from
 * x): its q, k, v are scattered over qkv, one short run per token, which
 * the hardware prefetcher does not follow, so each head would otherwise
 * wait on memory for every row. */
static void prefetch_rows(const float *x, int64_t N, int64_t d, int64_t rs)
{
    for (int64_t j = 0; j < N; j++)
        for (int64_t c = 0; c < d; c += 16) __builtin_prefetch(x + j * rs + c);
}

/* One head: P = softmax(q k^T * scale) row by row into p (N, N), o = P v.
 * q, k, v rows at stride rs, o's at ro; kt scratch (d, N). */
static void forward_head(const float *q, const float *k, const float *v, float *o, float *p,
                         int64_t N, int64_t d, int64_t rs, int64_t ro, float scale, float *kt)
{
    transpose_rows(k, N, d, rs, kt);                                 /* (d, N) */
    small_gemm(N, N, d, q, rs, 1, kt, N, p, N, scale);               /* S (N, N) */
    for (int64_t i = 0; i < N; i++) softmax_row(p + i * N, p + i * N, N);
    small_gemm(N, d, N, p, N, 1, v, rs, o, ro, 1.0f);                /* O (N, d) */
}

/* One head's gradients (attention.c): ds (N, N) holds gP, then gS / scale;
 * vt scratch (d, N). gq, gk, gv rows at stride rs; g's at ro. */
static void backward_head(const float *q, const float *k, const float *v, const float *p,
                          const float *g, float *gq, float *gk, float *gv, int64_t N, int64_t d,
                          int64_t rs, int64_t ro, float scale, float *vt, float *ds)
{
    transpose_rows(v, N, d, rs, vt);                                 /* (d, N) */
    small_gemm(N, N, d, g, ro, 1, vt, N, ds, N, 1.0f);               /* gP (N, N) */
    for (int64_t i = 0; i < N; i++) softmax_row_backward(ds + i * N, p + i * N, ds + i * N, N);
    small_gemm(N, d, N, ds, N, 1, k, rs, gq, rs, scale);             /* gq = gS k */
    small_gemm(N, d, N, ds, 1, N, q, rs, gk, rs, scale);             /* gk = gS^T q */
    small_gemm(N, d, N, p, 1, N, g, ro, gv, rs, 1.0f);               /* gv = P^T g */
}

/* Threads over the B * h heads. Each thread's scratch: the transposed k or
 * v, d x N, and (backward) gS, N x N. Where it cannot be had, the whole
 * call runs the reference instead (it writes every output). */
static int attention_fast(int backward, const float *qkv, const float *p_in, float *p,
                          const float *g, float *out, int64_t B, int64_t N, int64_t h,
                          int64_t d, float scale)
{
    int64_t D = h * d, rs = 3 * D;
    int nt = minit2t_threads_for(4.0 * (double)(B * h) * (double)(N * N) * (double)(d + 8));
    int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *t = minit2t_scratch(SCRATCH_ATTN_T, (size_t)MAX(d * N, 1));
        float *s = backward ? minit2t_scratch(SCRATCH_ATTN_S, (size_t)MAX(N * N, 1)) : t;
        if (!t || !s) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t u = 0; u < B * h; u++) {
            int64_t b = u / h, hh = u % h, base = b * N * rs + hh * d;
            if (!t || !s) continue;
            if (u + 1 < B * h) {                                     /* the next head's rows */
                int64_t b1 = (u + 1) / h, next = b1 * N * rs + (u + 1) % h * d;
                for (int part = 0; part < 3; part++) prefetch_rows(qkv + next + part * D, N, d, rs);
                if (backward) prefetch_rows(g + b1 * N * D + (u + 1) % h * d, N, d, D);
            }
            if (backward)
                backward_head(qkv + base, qkv + base + D, qkv + base + 2 * D, p_in + u * N * N,
                              g + b * N * D + hh * d, out + base, out + base + D,
                              out + base + 2 * D, N, d, rs, D, scale, t, s);
            else
                forward_head(qkv + base, qkv + base + D, qkv + base + 2 * D,
                             out + b * N * D + hh * d, p + u * N * N, N, d, rs, D, scale, t);
        }
    }
    return failed;
}

static void attention_forward_fast(const float *qkv, float *out, float *p, int64_t B, int64_t N,
                                   int64_t h, int64_t d, float scale)
{
    if (attention_fast(0, qkv, NULL, p, NULL, out, B, N, h, d, scale))
        attention_forward_ref(qkv, out, p, B, N, h, d, scale);
}

static void attention_backward_fast(const float *qkv, const float *p, const float *g, float *gqkv,
                                    int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    if (attention_fast(1, qkv, p, NULL, g, gqkv, B, N, h, d, scale))
        attention_backward_ref(qkv, p, g, gqkv, B, N, h, d, scale);
}
