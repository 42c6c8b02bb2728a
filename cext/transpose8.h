/* An 8 x 8 transpose in registers, for the strided copy (copy_fast.h) and
 * attention's transposed k and v (attention_fast.h). AVX2 intrinsics, which
 * both the AVX2 and the AVX-512 builds have; the including file has
 * included immintrin.h (vec_avx2.h / vec_avx512.h). */
#ifndef MINIT2T_TRANSPOSE8_H
#define MINIT2T_TRANSPOSE8_H

/* The 8 x 8 tile dst[i * dd + j] = src[i + j * sj] (i, j < 8): 8 rows of
 * src, r[j] = src[j * sj .. + 8), transposed in registers. */
static inline void transpose8(const float *src, int64_t sj, float *dst, int64_t dd)
{
    __m256 r[8], t[8];
    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + j * sj);
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
        _mm256_storeu_ps(dst + i * dd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * dd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

#endif
