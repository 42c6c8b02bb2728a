/* The fused attention's products on AVX512-BF16 (vdpbf16ps), for the op
 * under minit2t.autocast on CPUs that have it: included by the AVX-512 build
 * of attention_fast.c, which calls these only when minit2t_isa() reaches
 * ISA_AVX512_BF16. Same results as the float32 products of rounded operands
 * (forward_head / backward_head with bf16), up to the order of the sums.
 *
 * A pair is 32 bits, stored in a float slot: bf16(x) of an even element of K
 * in the low half, of the next one in the high half, as vdpbf16ps reads
 * them. Every product C (M, n) = alpha * A (M, K) @ B (K, n) reads
 *   A as pairs along K: A(i, q) at a[i * rsa + q * csa], q < K2 = ceil(K / 2)
 *   B as K2 rows of n pairs: row q at b + q * rsb, (B[2q, j], B[2q + 1, j])
 * Two ways to make pairs from floats (an odd K gets a zero partner):
 *   pairs_rows         along a row: row r's (x[r][2q], x[r][2q + 1])
 *   pairs_interleave   down a column: (x[2q][c], x[2q + 1][c]), row q of the result */
#ifndef MINIT2T_ATTENTION_BF16_H
#define MINIT2T_ATTENTION_BF16_H

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512bf16,avx2,fma")

/* Rows of x (R rows of C floats, stride rs) -> rows of ds >= ceil(C / 2)
 * pairs at dst (stride ds), zeros past the row's own. */
static void pairs_rows(const float *x, int64_t R, int64_t C, int64_t rs, float *dst, int64_t ds)
{
    for (int64_t r = 0; r < R; r++, x += rs, dst += ds)
        for (int64_t c = 0; c < 2 * ds; c += 32) {
            int64_t n = MAX(0, MIN(32, C - c));
            __mmask16 m0 = (__mmask16)((1u << MIN(n, 16)) - 1u), m1 = (__mmask16)((1u << MAX(n - 16, 0)) - 1u);
            __m512 lo = _mm512_maskz_loadu_ps(m0, x + c), hi = _mm512_maskz_loadu_ps(m1, x + c + 16);
            __mmask16 keep = (__mmask16)((1u << MIN(16, ds - c / 2)) - 1u);    /* pairs left in the row */
            _mm512_mask_storeu_ps(dst + c / 2, keep, (__m512)_mm512_cvtne2ps_pbh(hi, lo));
        }
}

/* Rows 2q and 2q + 1 of x (R rows of C floats, stride rs) -> row q of dst
 * (stride ds >= C): pair (x[2q][c], x[2q + 1][c]); a missing last row is 0. */
static void pairs_interleave(const float *x, int64_t R, int64_t C, int64_t rs, float *dst, int64_t ds)
{
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    for (int64_t q = 0; 2 * q < R; q++, dst += ds) {
        const float *x0 = x + 2 * q * rs, *x1 = 2 * q + 1 < R ? x0 + rs : NULL;
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 m = (__mmask16)((1u << MIN(16, C - c)) - 1u);
            __m512i e0 = _mm512_castps_si512(vbf16_avx512(_mm512_maskz_loadu_ps(m, x0 + c)));
            __m512i e1 = x1 ? _mm512_castps_si512(vbf16_avx512(_mm512_maskz_loadu_ps(m, x1 + c)))
                            : _mm512_setzero_si512();
            __m512i pair = _mm512_or_si512(_mm512_and_si512(e1, high), _mm512_srli_epi32(e0, 16));
            _mm512_mask_storeu_ps(dst + c, m, _mm512_castsi512_ps(pair));
        }
    }
}

/* The register tile: rows i0 .. i0 + rows - 1 (rows <= ATTN_RB) by nv
 * vectors of 16 columns, the last cut by `tail` when masked; as gemm_tile
 * in attention_fast.c, with a pair of K a step. */
static inline __attribute__((always_inline)) void
dp_tile(const int nv, const int masked, int64_t rows, int64_t K2, const float *a, int64_t rsa,
        int64_t csa, const float *b, int64_t rsb, __mmask16 tail, float *c, int64_t rsc, float alpha)
{
    __m512 acc[ATTN_RB][4], bv[4];
    const float *ar[ATTN_RB];
#pragma GCC unroll 8
    for (int r = 0; r < ATTN_RB; r++) {
        ar[r] = a + MIN(r, rows - 1) * rsa;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (int64_t q = 0; q < K2; q++, b += rsb) {
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = masked && v == nv - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < ATTN_RB; r++) {
            __m512bh x = (__m512bh)_mm512_set1_ps(ar[r][q * csa]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, (__m512bh)bv[v]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
    for (int r = 0; r < ATTN_RB; r++) {
        if (r >= rows) break;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            if (masked && v == nv - 1) _mm512_mask_storeu_ps(c + r * rsc + 16 * v, tail, _mm512_mul_ps(acc[r][v], va));
            else _mm512_storeu_ps(c + r * rsc + 16 * v, _mm512_mul_ps(acc[r][v], va));
        }
    }
}

#define DP_ROWS(NV, MASKED)                                                           \
    for (int64_t i = 0; i < M; i += ATTN_RB)                                          \
        dp_tile(NV, MASKED, MIN(ATTN_RB, M - i), K2, a + i * rsa, rsa, csa, b + j, rsb, \
                tail, c + i * rsc + j, rsc, alpha)

/* C (M, n) = alpha * A @ B from pairs (the legend above), in the column runs
 * of small_gemm. */
static void small_gemm_dp(int64_t M, int64_t n, int64_t K2, const float *a, int64_t rsa, int64_t csa,
                          const float *b, int64_t rsb, float *c, int64_t rsc, float alpha)
{
    COLUMN_RUNS(DP_ROWS)
}

#undef DP_ROWS

/* Floats of scratch the two heads below need after the transposed k or v. */
static int64_t dp_scratch(int64_t N, int64_t np, int64_t d)
{
    int64_t d2 = ceil_div(d, 32) * 16, n2 = ceil_div(N, 2);      /* pairs of a row of d, rows of pairs */
    return 2 * N * d2 + np * np / 2 + 4 * n2 * MAX(np, d) + 64;
}

/* forward_head's products on pairs: S = q k^T * scale, P = softmax(S) (kept
 * rounded), O = P v. kt scratch (d2, np); r scratch of dp_scratch floats. */
static void forward_head_dp(const float *q, const float *k, const float *v, const float *kb, float *o,
                            float *p, int64_t N, int64_t np, int64_t d, int64_t rs, int64_t ro,
                            float scale, float *kt, float *r)
{
    int64_t d2 = ceil_div(d, 32) * 16, K2 = ceil_div(d, 2), n2 = ceil_div(N, 2);
    float *qp = r, *kp = r + N * d2, *pp = kp + N * d2, *vp = pp + N * np / 2;
    pairs_rows(q, N, d, rs, qp, d2);                                  /* A of S: (N, d2) */
    pairs_rows(k, N, d, rs, kp, d2);
    transpose_rows(kp, N, np, K2, d2, kt);                            /* B of S: (K2, np) */
    small_gemm_dp(N, np, K2, qp, d2, 1, kt, np, p, np, scale);        /* S (N, np) */
    softmax_head(p, kb, N, np);                                       /* P (N, np) */
    round_bf16_vectors(p, N * np);
    pairs_rows(p, N, np, np, pp, np / 2);                             /* A of O: (N, np / 2) */
    pairs_interleave(v, N, d, rs, vp, d);                             /* B of O: (n2, d) */
    small_gemm_dp(N, d, n2, pp, np / 2, 1, vp, d, o, ro, 1.0f);       /* O (N, d) */
}

/* backward_head's products on pairs; ds (N, np) holds gP, then gS / scale;
 * vt scratch (d2, np); r scratch of dp_scratch floats. */
static void backward_head_dp(const float *q, const float *k, const float *v, const float *p, const float *g,
                             float *gq, float *gk, float *gv, int64_t N, int64_t np, int64_t d, int64_t rs,
                             int64_t ro, float scale, float *vt, float *ds, float *r)
{
    int64_t d2 = ceil_div(d, 32) * 16, K2 = ceil_div(d, 2), n2 = ceil_div(N, 2), w = MAX(np, d);
    float *gp = r, *vp = r + N * d2, *sp = vp + N * d2, *a2 = sp + N * np / 2, *b2 = a2 + n2 * w;
    pairs_rows(g, N, d, ro, gp, d2);                                  /* A of gP: (N, d2) */
    pairs_rows(v, N, d, rs, vp, d2);
    transpose_rows(vp, N, np, K2, d2, vt);                            /* B of gP: (K2, np) */
    small_gemm_dp(N, np, K2, gp, d2, 1, vt, np, ds, np, 1.0f);        /* gP (N, np) */
    for (int64_t i = 0; i < N; i++) softmax_row_backward(ds + i * np, p + i * np, ds + i * np, np);
    pairs_rows(ds, N, np, np, sp, np / 2);                            /* A of gq: gS (N, np / 2) */
    pairs_interleave(k, N, d, rs, b2, d);                             /* B of gq: k (n2, d) */
    small_gemm_dp(N, d, n2, sp, np / 2, 1, b2, d, gq, rs, scale);     /* gq = gS k */
    pairs_interleave(ds, N, N, np, a2, w);                            /* A of gk: gS^T, pairs down */
    pairs_interleave(q, N, d, rs, b2, d);                             /* B of gk: q */
    small_gemm_dp(N, d, n2, a2, 1, w, b2, d, gk, rs, scale);          /* gk = gS^T q */
    pairs_interleave(p, N, N, np, a2, w);                             /* A of gv: P^T */
    pairs_interleave(g, N, d, ro, b2, d);                             /* B of gv: g */
    small_gemm_dp(N, d, n2, a2, 1, w, b2, d, gv, rs, 1.0f);           /* gv = P^T g */
}

#pragma GCC pop_options
#endif
