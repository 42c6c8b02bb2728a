/* The AVX-512 GEMM: its micro-kernels, its block sizes, and sgemm_avx512 /
 * sgemm_bias_avx512 (arguments as sgemm / sgemm_bias in minit2t.h). The
 * loops around the micro-kernel are in gemm_loops.c, the threads in
 * gemm_threads.c; gemm_avx2.c is this file's twin for AVX2 + FMA. Of the
 * GEMM's files only this one is compiled for AVX-512F, and sgemm
 * dispatches to it only on CPUs that have it (runtime.c). */
#include "gemm_blocking.h"

#if MINIT2T_X86
#pragma GCC target("avx512f,avx2,fma")
#include "vec_avx512.h"
#include "transpose8.h"

/* The micro-tile: MR x NR floats of C, NR = two vectors of VW floats. */
enum { MR = 12, NR = 32 };
#include "gemm_tile.h"

/* The micro-kernels: the 12 x 32 tile of C, = (or +=, with GEMM_ACC in
 * flags) A @ B, plus bias (NR floats, added to every row; NULL: none).
 *   a       A (12, kc): ukernel_avx512_rows takes 12 rows in place,
 *           A[i, p] at a[i*rsa + p]; ukernel_avx512_packed a packed sliver,
 *           A[i, p] at a[p*rsa + i] (rsa = 12 for a packed sliver; a transposed A
 *           in place passes its column stride)
 *   b       packed B sliver (kc, 32): row p at b + 32p
 *   c       C tile (12, 32), row stride rsc, columns contiguous
 * The tile lives in 24 of the 32 zmm registers, two 16-float vectors per
 * row. Each step p broadcasts A[i, p] of each row and multiplies it by row
 * p of B: acc[i][h] += A[i, p] * B[p, 16h : 16h + 16], h = 0, 1. The two
 * differ only in where they read A[i, p] (the broadcast line). */
static void ukernel_avx512_rows(int64_t kc, const float *a, int64_t rsa, const float *b,
                              float *c, int64_t rsc, int flags, const float *bias)
{
    __m512 c0[MR], c1[MR];
    const float *ar[MR];                     /* the rows of A */
    tile_start(bias, c, rsc, flags, c0, c1);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) ar[i] = a + i * rsa;
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b + p * NR), b1 = _mm512_loadu_ps(b + p * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(ar[i][p]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    tile_store(c, rsc, flags, c0, c1);
}

static void ukernel_avx512_packed(int64_t kc, const float *a, int64_t rsa, const float *b,
                                float *c, int64_t rsc, int flags, const float *bias)
{
    __m512 c0[MR], c1[MR];
    tile_start(bias, c, rsc, flags, c0, c1);
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b + p * NR), b1 = _mm512_loadu_ps(b + p * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[p * rsa + i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    tile_store(c, rsc, flags, c0, c1);
}

/* The blocking's pack_rows (gemm_blocking.h): 12-row slivers of A, 8
 * columns at a time through 8 x 8 register transposes (rows 0-7 and 8-11),
 * the last kc % 8 columns one float at a time. */
static void pack_rows_avx512(int64_t rows, int64_t kc, const float *a, int64_t rsa, float *dst)
{
    int64_t k8 = kc / 8 * 8;
    for (int64_t i0 = 0; i0 < rows; i0 += MR, a += MR * rsa, dst += kc * MR) {
        for (int64_t p = 0; p < k8; p += 8) {
            transpose8(a + p, rsa, dst + p * MR, MR);                          /* rows 0-7 */
            transpose8_rows(a + 8 * rsa + p, rsa, 4, dst + p * MR + 8, MR);    /* rows 8-11 */
        }
        for (int64_t p = k8; p < kc; p++)
            for (int i = 0; i < MR; i++) dst[p * MR + i] = a[i * rsa + p];
    }
}

/* Block sizes, in floats: micro-tile MR x NR = 12 x 32; A block MC x KC =
 * 144 x 384 (216 KB) in L2; B sliver KC x NR = 384 x 32 (48 KB) in L1/L2;
 * B panel KC x NC up to 384 x 1536 (2.3 MB) in L3. KC = 384 against 256
 * (AMD EPYC, 1 thread): K = 288 (the T2T layer's 3 x 3 x 32) in one K
 * block, 98 against 91 GFLOP/s; a weight gradient 128 x 8320 x 128, 97
 * against 86; no shape measured slower. */
const gemm_blocking gemm_blocking_avx512 = {
    .mr = MR, .nr = NR, .mc = 144, .kc = 384, .nc = 1536,
    .ukernel_rows = ukernel_avx512_rows, .ukernel_packed = ukernel_avx512_packed,
    .pack_rows = pack_rows_avx512, .pack_wide = 64,
};

void sgemm_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                  const float *a, const int64_t *sa, const float *b,
                  const int64_t *sb, float *c, const int64_t *sc)
{
    gemm_threaded(&gemm_blocking_avx512, bt, m, n, k, a, sa, b, sb, NULL, c, sc, NULL, NULL, NULL, NULL);
}

void sgemm_bias_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                       const float *a, const int64_t *sa, const float *b,
                       const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    gemm_threaded(&gemm_blocking_avx512, bt, m, n, k, a, sa, b, sb, bias, c, sc, NULL, NULL, NULL, NULL);
}

void sgemm_bias_gelu_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                            const float *a, const int64_t *sa, const float *b,
                            const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                            float *act, const int64_t *sact)
{
    gemm_threaded(&gemm_blocking_avx512, bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, NULL, NULL);
}

void sgemm_bias_add_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                           const float *a, const int64_t *sa, const float *b,
                           const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                           float *c, const int64_t *sc)
{
    gemm_threaded(&gemm_blocking_avx512, bt, m, n, k, a, sa, b, sb, bias, c, sc, c, sc, r, sr);
}

#endif /* MINIT2T_X86; elsewhere the dispatchers call only sgemm_ref */
