/* An 8 x 8 transpose in registers, for the strided copy (copy_fast.h),
 * attention's transposed k and v (attention_fast.c) and the GEMM's packing
 * of A (gemm_avx2.c, gemm_avx512.c). AVX2 intrinsics, which
 * both the AVX2 and the AVX-512 builds have; the including file has
 * included immintrin.h (vec_avx2.h / vec_avx512.h). */
#ifndef MINIT2T_TRANSPOSE8_H
#define MINIT2T_TRANSPOSE8_H

/* The shuffle network of an 8 x 8 transpose: rows r[0..8) in, and out,
 * r[i] holding column i (row i of the transpose). */
static inline void transpose8_regs(__m256 r[8])
{
    __m256 t[8];
    for (int j = 0; j < 8; j += 2) {                       /* pairs of rows interleaved */
        t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 8; j += 4) {                       /* then pairs of pairs */
        r[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
        r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
        r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
        r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {                          /* then the 128-bit halves */
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++) r[i] = t[i];
}

/* The 8 x 8 tile dst[i * dd + j] = src[i + j * sj] (i, j < 8): 8 rows of
 * src, r[j] = src[j * sj .. + 8), transposed in registers. */
static inline void transpose8(const float *src, int64_t sj, float *dst, int64_t dd)
{
    __m256 r[8];
    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + j * sj);
    transpose8_regs(r);
    for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + i * dd, r[i]);
}

/* The same for n = 4 or 6 rows of src (j < n): dst[i * dd + j] =
 * src[i + j * sj], i < 8; the n floats of each row of dst are stored,
 * nothing past them. */
static inline void transpose8_rows(const float *src, int64_t sj, int n, float *dst, int64_t dd)
{
    __m256 r[8];
    for (int j = 0; j < 8; j++) r[j] = j < n ? _mm256_loadu_ps(src + j * sj) : _mm256_setzero_ps();
    transpose8_regs(r);
    for (int i = 0; i < 8; i++) {
        _mm_storeu_ps(dst + i * dd, _mm256_castps256_ps128(r[i]));
        if (n == 6) _mm_storel_pi((__m64 *)(dst + i * dd + 4), _mm256_extractf128_ps(r[i], 1));
    }
}

#endif
