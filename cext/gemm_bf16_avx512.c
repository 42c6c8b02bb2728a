/* The bf16 GEMM with AVX512-BF16: sgemm_bf16_avx512bf16 (arguments as
 * sgemm_bf16), its vdpbf16ps micro-kernel, and the packing of A and B into
 * pairs of bf16 along K, which the AMX kit (gemm_bf16_amx.c) shares. The
 * loops around the micro-kernel: gemm_bf16_loops.c. Legend as in
 * gemm_bf16.h. Of the bf16 GEMM's files this one and the AMX one are
 * compiled for AVX512-BF16 (with AVX-512BW for the shuffles), and sgemm_bf16
 * calls them only on CPUs that have it (runtime.c).
 *
 * A pair is 32 bits: bf16(x[2q]) in the low half, bf16(x[2q + 1]) in the
 * high one, as vdpbf16ps (and AMX's tdpbf16ps) read them:
 *   A block  rows of kp bf16 (kp / 2 pairs), row stride lda bf16
 *   B sliver kp / 2 rows of NR pairs: (B[2q, j], B[2q + 1, j]) at q * NR + j
 * The conversion is vcvtne2ps2bf16 (nearest even, as round_bf16; it reads
 * float32 subnormals as 0). */
#include "gemm_bf16.h"

#if MINIT2T_X86
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")
#include <string.h>
#include "vec_avx512.h"
#include "bf16.h"

/* ---- the packing into pairs ------------------------------------------- */

/* The mask of the first n of 16 lanes (none for n <= 0). */
static inline __mmask16 first(int64_t n)
{
    return n <= 0 ? 0 : n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* The top 16 bits of round_bf16(x); a NaN stays a (quiet) NaN. */
static inline uint32_t bf16_bits(float x)
{
    uint32_t u;
    x = round_bf16(x);
    memcpy(&u, &x, sizeof u);
    return (u >> 16) | ((u & 0x7FFFFFFFu) > 0x7F800000u ? 0x40u : 0u);
}

/* 16 pairs from the 32 floats s[0:n] (zeros past n): pair q = (s[2q], s[2q + 1]). */
static inline __m512i pairs_of_run(const float *s, int64_t n)
{
    __m512 lo = _mm512_maskz_loadu_ps(first(n), s), hi = _mm512_maskz_loadu_ps(first(n - 16), s + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* 16 pairs from two runs: pair r = (s0[r], s1[r]) for r < n (zeros past n;
 * s1 NULL: zero high halves). The conversion puts s0's 16 bf16 below s1's;
 * vpermw interleaves them. */
static inline __m512i pairs_of_two_runs(const float *s0, const float *s1, int64_t n)
{
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __m512 lo = _mm512_maskz_loadu_ps(first(n), s0);
    __m512 hi = s1 ? _mm512_maskz_loadu_ps(first(n), s1) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(interleave), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* 16 pairs of row r along q = q0 .. q0 + 15, one float at a time (any strides). */
static __m512i pairs_one_by_one(const float *src, int64_t rs, int64_t cs, int64_t R, int64_t C,
                                int64_t r, int64_t q0)
{
    uint32_t p[16];
    for (int t = 0; t < 16; t++) {
        int64_t c = 2 * (q0 + t);
        float lo = r < R && c < C ? src[r * rs + c * cs] : 0.0f;
        float hi = r < R && c + 1 < C ? src[r * rs + (c + 1) * cs] : 0.0f;
        p[t] = bf16_bits(lo) | bf16_bits(hi) << 16;
    }
    return _mm512_loadu_si512(p);
}

/* The 16 x 16 transpose of 32-bit lanes: v[i] holds row i in, column i out.
 * Pairs of rows interleaved by 32 then 64 bits (u[4g + c] holds, in its
 * 128-bit lane L, column 4L + c of rows 4g .. 4g + 3), then the 128-bit
 * lanes gathered in two rounds of vshufi32x4. */
static inline void transpose16(__m512i v[16])
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i x0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), x1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
        __m512i y0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
        __m512i y1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
        v[c] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        v[4 + c] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        v[8 + c] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
        v[12 + c] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
    }
}

/* The block of 16 x 16 pairs at (r0, q0) of pack_pairs. */
static inline void pack_block(const float *src, int64_t rs, int64_t cs, int64_t R, int64_t C,
                              int64_t Rp, int64_t Q, uint32_t *dst, int64_t dr, int64_t dq,
                              int64_t r0, int64_t q0)
{
    __m512i v[16];
    for (int64_t t = 0; t < 16; t++) {
        int64_t r = r0 + t, c = 2 * (q0 + t);
        if (cs == 1)
            v[t] = r < R ? pairs_of_run(src + r * rs + 2 * q0, C - 2 * q0) : _mm512_setzero_si512();
        else if (rs == 1)
            v[t] = c < C ? pairs_of_two_runs(src + r0 + c * cs, c + 1 < C ? src + r0 + (c + 1) * cs : NULL,
                                             R - r0) : _mm512_setzero_si512();
        else
            v[t] = pairs_one_by_one(src, rs, cs, R, C, r, q0);
    }
    if ((cs == 1 || rs != 1) != (dq == 1)) transpose16(v);   /* read along q, stored along r, or back */
    for (int64_t t = 0; t < 16; t++) {
        if (dq == 1 && r0 + t < Rp)
            _mm512_mask_storeu_epi32(dst + (r0 + t) * dr + q0, first(Q - q0), v[t]);
        else if (dq != 1 && q0 + t < Q)
            _mm512_mask_storeu_epi32(dst + (q0 + t) * dq + r0, first(Rp - r0), v[t]);
    }
}

/* dst[r * dr + q * dq] = the pair (X[r, 2q], X[r, 2q + 1]) of X[r, c] =
 * src[r * rs + c * cs], for r < Rp and q < Q, zero where r >= R or c >= C;
 * one of dr, dq is 1. In blocks of 16 x 16 pairs, read as 16 vectors along
 * q (cs = 1: runs of 32 floats), along r (rs = 1: two runs of 16, one per
 * column of the pair) or one by one, and transposed in registers when the
 * destination runs the other way. The blocks are taken along the
 * direction src is contiguous in, so that it is read in long runs (a
 * transposed A: down its columns, 3.5 against 8.2 ms for an AMX weight
 * gradient 384 x 8320 x 128 on one thread). */
static void pack_pairs(const float *src, int64_t rs, int64_t cs, int64_t R, int64_t C,
                       int64_t Rp, int64_t Q, uint32_t *dst, int64_t dr, int64_t dq)
{
    if (rs == 1 && cs != 1) {
        for (int64_t q0 = 0; q0 < Q; q0 += 16)
            for (int64_t r0 = 0; r0 < Rp; r0 += 16)
                pack_block(src, rs, cs, R, C, Rp, Q, dst, dr, dq, r0, q0);
    } else {
        for (int64_t r0 = 0; r0 < Rp; r0 += 16)
            for (int64_t q0 = 0; q0 < Q; q0 += 16)
                pack_block(src, rs, cs, R, C, Rp, Q, dst, dr, dq, r0, q0);
    }
}

void bf16_pack_a_pairs(int64_t mb, int64_t kb, const float *a, int64_t rsa, int64_t csa,
                       int64_t mp, int64_t kp, void *dst, int64_t lda)
{
    pack_pairs(a, rsa, csa, mb, kb, mp, kp / 2, dst, lda / 2, 1);
}

void bf16_pack_b_pairs(int64_t kb, int64_t w, const float *b, int64_t rsb, int64_t csb,
                       int64_t kp, int nr, void *dst)
{
    pack_pairs(b, csb, rsb, w, kb, nr, kp / 2, dst, 1, nr);        /* rows of X: B's columns */
}

/* ---- the vdpbf16ps micro-kernel ----------------------------------------- */

enum { MR = 12, NR = 32 };
#include "gemm_tile.h"

/* The 12 x 32 tile of C = (or +=) A @ B + bias over kp, in 24 zmm
 * registers as the float32 kernel's (gemm_avx512.c). Step q broadcasts the
 * pair (A[i, 2q], A[i, 2q + 1]) of each row; vdpbf16ps adds its dot product
 * with each column's pair of B to that column's sum (the odd product first,
 * then the even one, each rounded to float32). */
static void ukernel(int64_t kp, const void *ap, int64_t lda, const void *bp, float *c,
                    int64_t rsc, int flags, const float *bias)
{
    const uint32_t *a = ap, *b = bp;
    __m512 c0[MR], c1[MR];
    tile_start(bias, c, rsc, flags, c0, c1);
#pragma GCC unroll 2
    for (int64_t q = 0; q < kp / 2; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + q * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + q * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i * (lda / 2) + q]);
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
    }
    tile_store(c, rsc, flags, c0, c1);
}

/* Block sizes: A block MC x KC = 144 x 512 bf16 (144 KB) in L2; B sliver
 * KC x NR = 512 x 32 bf16 (32 KB) in L1; B panel up to 512 x 1536 (1.5 MB). */
static const bf16_kit kit = {
    .mr = MR, .nr = NR, .kstep = 2, .mc = 144, .kc = 512, .nc = 1536,
    .a_bytes = 2, .b_bytes = 2, .pack_a = bf16_pack_a_pairs, .pack_b = bf16_pack_b_pairs,
    .ukernel = ukernel,
};

void sgemm_bf16_gelu_avx512bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                                const float *a, const int64_t *sa, const float *b,
                                const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                                float *act, const int64_t *sact)
{
    gemm_bf16_run(&kit, bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, NULL, NULL);
}

void sgemm_bf16_add_avx512bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                               const float *a, const int64_t *sa, const float *b,
                               const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                               float *c, const int64_t *sc)
{
    gemm_bf16_run(&kit, bt, m, n, k, a, sa, b, sb, bias, c, sc, c, sc, r, sr);
}

void sgemm_bf16_avx512bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                           const float *a, const int64_t *sa, const float *b,
                           const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    gemm_bf16_run(&kit, bt, m, n, k, a, sa, b, sb, bias, c, sc, NULL, NULL, NULL, NULL);
}

#endif /* MINIT2T_X86; elsewhere sgemm_bf16 calls only sgemm_bf16_ref */
