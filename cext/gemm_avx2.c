/* The AVX2 + FMA GEMM: its micro-kernels, its block sizes, and sgemm_avx2 /
 * sgemm_bias_avx2 (arguments as sgemm / sgemm_bias in minit2t.h). The
 * twin of gemm_avx512.c (read that first) with 8-float vectors: a 6 x 16
 * tile in 12 of the 16 ymm registers. Of the GEMM's files only this one is
 * compiled for AVX2, and sgemm dispatches to it only on CPUs that have it
 * (runtime.c). */
#include "gemm_blocking.h"

#if MINIT2T_X86
#pragma GCC target("avx2,fma")
#include "vec_avx2.h"
#include "transpose8.h"

/* The micro-tile: MR x NR floats of C, NR = two vectors of VW floats. */
enum { MR = 6, NR = 16 };
#include "gemm_tile.h"

/* The micro-kernels: the 6 x 16 tile of C, = (or +=, with GEMM_ACC in
 * flags) A @ B, plus bias (NR floats, added to every row; NULL: none).
 *   a       A (6, kc): ukernel_avx2_rows takes 6 rows in place,
 *           A[i, p] at a[i*rsa + p]; ukernel_avx2_packed a packed sliver,
 *           A[i, p] at a[p*rsa + i] (rsa = 6 for a packed sliver; a transposed A
 *           in place passes its column stride)
 *   b       packed B sliver (kc, 16): row p at b + 16p
 *   c       C tile (6, 16), row stride rsc, columns contiguous
 * The tile lives in 12 of the 16 ymm registers. Step p: acc[i][h] +=
 * A[i, p] * B[p, 8h : 8h + 8], h = 0, 1. The two differ only in where they
 * read A[i, p] (the broadcast line). */
static void ukernel_avx2_rows(int64_t kc, const float *a, int64_t rsa, const float *b,
                              float *c, int64_t rsc, int flags, const float *bias)
{
    __m256 c0[MR], c1[MR];
    const float *ar[MR];                     /* the rows of A */
    tile_start(bias, c, rsc, flags, c0, c1);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) ar[i] = a + i * rsa;
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b + p * NR), b1 = _mm256_loadu_ps(b + p * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(ar[i] + p);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    tile_store(c, rsc, flags, c0, c1);
}

static void ukernel_avx2_packed(int64_t kc, const float *a, int64_t rsa, const float *b,
                                float *c, int64_t rsc, int flags, const float *bias)
{
    __m256 c0[MR], c1[MR];
    tile_start(bias, c, rsc, flags, c0, c1);
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b + p * NR), b1 = _mm256_loadu_ps(b + p * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + p * rsa + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    tile_store(c, rsc, flags, c0, c1);
}

/* The blocking's pack_rows (gemm_blocking.h): 6-row slivers of A, 8 columns
 * at a time through 8 x 8 register transposes (its 6 rows), the last kc % 8
 * columns one float at a time. */
static void pack_rows_avx2(int64_t rows, int64_t kc, const float *a, int64_t rsa, float *dst)
{
    int64_t k8 = kc / 8 * 8;
    for (int64_t i0 = 0; i0 < rows; i0 += MR, a += MR * rsa, dst += kc * MR) {
        for (int64_t p = 0; p < k8; p += 8)
            transpose8_rows(a + p, rsa, 6, dst + p * MR, MR);                  /* rows 0-5 */
        for (int64_t p = k8; p < kc; p++)
            for (int i = 0; i < MR; i++) dst[p * MR + i] = a[i * rsa + p];
    }
}

/* Block sizes, in floats: micro-tile MR x NR = 6 x 16; A block MC x KC =
 * 144 x 512 (288 KB) in L2; B sliver KC x NR = 512 x 16 (32 KB) in L1/L2;
 * B panel KC x NC up to 512 x 1536 (3 MB) in L3. A large KC means few
 * passes over C: measured faster here than KC = 192..384. */
const gemm_blocking gemm_blocking_avx2 = {
    .mr = MR, .nr = NR, .mc = 144, .kc = 512, .nc = 1536,
    .ukernel_rows = ukernel_avx2_rows, .ukernel_packed = ukernel_avx2_packed,
    .pack_rows = pack_rows_avx2, .pack_wide = 0,
};

void sgemm_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, float *c, const int64_t *sc)
{
    gemm_threaded(&gemm_blocking_avx2, bt, m, n, k, a, sa, b, sb, NULL, c, sc, NULL, NULL, NULL, NULL);
}

void sgemm_bias_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    gemm_threaded(&gemm_blocking_avx2, bt, m, n, k, a, sa, b, sb, bias, c, sc, NULL, NULL, NULL, NULL);
}

void sgemm_bias_gelu_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                          const float *a, const int64_t *sa, const float *b,
                          const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                          float *act, const int64_t *sact)
{
    gemm_threaded(&gemm_blocking_avx2, bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, NULL, NULL);
}

void sgemm_bias_add_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                         float *c, const int64_t *sc)
{
    gemm_threaded(&gemm_blocking_avx2, bt, m, n, k, a, sa, b, sb, bias, c, sc, c, sc, r, sr);
}

#endif /* MINIT2T_X86; elsewhere the dispatchers call only sgemm_ref */
