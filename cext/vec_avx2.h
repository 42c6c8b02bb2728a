/* The vector vocabulary of the fast kernels for AVX2 + FMA: 8 floats per
 * __m256. fast_isa.h includes it first in the AVX2 build of each template
 * (fused_fast.c, band_fast.c, ...), which are written in these names (with
 * vmath.h, copy_fast.h, ...); vec_avx512.h is the same list for AVX-512.
 *   VF, VW        the vector type, its number of floats
 *   VLOAD, VSTORE, VSET1; VSTREAM (a streaming store, p on a VF boundary); VADD, VSUB, VMUL, VDIV, VMIN, VMAX, VABS
 *   VFMA(a, b, c) = a*b + c   VFNMA(a, b, c) = c - a*b   VFMS(a, b, c) = a*b - c
 *   VROUND (to nearest); VRECIP(x) = 1 / x, here a division (AVX-512: the
 *          14-bit reciprocal and one Newton step, within an ulp or two)
 *   VMASK  a lane mask: VLT, VGT (ordered), VNLT (not less: true for NaN);
 *          VSEL(m, a, b) = m ? b : a, lane by lane;
 *          VSCALE_OR_0(x, n, m) = m ? x * 2^n : 0 (n integral, as VF, and
 *          x * 2^n normal: here 2^n added to x's exponent bits; AVX-512 does
 *          it in one instruction, vscalefps)
 *   VTAIL  the mask of the first n < VW lanes, VTAILMASK(n): VLOADT(p, m,
 *          fill) loads them (fill elsewhere), VSTORET(p, m, v) stores them
 *   VHSUM, VHMAX  the sum / max of the lanes, as a float */
#ifndef MINIT2T_VEC_H
#define MINIT2T_VEC_H
#include <immintrin.h>

#define VF __m256
#define VW 8
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VSTREAM _mm256_stream_ps
#define VSET1 _mm256_set1_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VRECIP(x) _mm256_div_ps(_mm256_set1_ps(1.0f), x)
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#define VABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define VFMA _mm256_fmadd_ps
#define VFNMA _mm256_fnmadd_ps
#define VFMS _mm256_fmsub_ps
#define VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE_OR_0(x, n, keep) _mm256_and_ps(keep, _mm256_castsi256_ps(_mm256_add_epi32( \
                                    _mm256_castps_si256(x), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23))))
#define VMASK __m256
#define VLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VNLT(a, b) _mm256_cmp_ps(a, b, _CMP_NLT_UQ)
#define VGT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VSEL(m, a, b) _mm256_blendv_ps(a, b, m)
#define VTAIL __m256i
#define VTAILMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), \
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADT(p, m, fill) _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), \
                                            _mm256_castsi256_ps(m))
#define VSTORET(p, m, v) _mm256_maskstore_ps(p, m, v)
#define VHSUM hsum_avx2
#define VHMAX hmax_avx2

static inline float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline float hmax_avx2(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

/* Each lane rounded to the nearest bfloat16 (ties to even; NaN kept), as
 * round_bf16 in bf16.h. */
static inline __m256 vbf16_avx2(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
    r = _mm256_and_si256(r, _mm256_set1_epi32((int)0xFFFF0000u));
    return _mm256_blendv_ps(_mm256_castsi256_ps(r), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#define VBF16 vbf16_avx2

#endif
