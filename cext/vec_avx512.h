/* The vector vocabulary of the fast kernels for AVX-512F: 16 floats per
 * __m512, masks in __mmask16. The names and their meaning: vec_avx2.h.
 * fast_isa.h includes it first in the AVX-512 build of each template. */
#ifndef MINIT2T_VEC_H
#define MINIT2T_VEC_H
#include <immintrin.h>

#define VF __m512
#define VW 16
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VSTREAM _mm512_stream_ps
#define VSET1 _mm512_set1_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
/* 1 / x: vrcp14ps (relative error below 2^-14), then one Newton step r + r (1 - x r), which squares that
 * error: within an ulp or two of the division, at a fraction of its cost (vdivps on 16 lanes issues once
 * every several cycles). */
static inline __m512 vrecip_avx512(__m512 x)
{
    __m512 r = _mm512_rcp14_ps(x);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(1.0f)), r);
}
#define VRECIP vrecip_avx512
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#define VABS(x) _mm512_abs_ps(x)
#define VFMA _mm512_fmadd_ps
#define VFNMA _mm512_fnmadd_ps
#define VFMS _mm512_fmsub_ps
#define VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE_OR_0(x, n, keep) _mm512_maskz_scalef_ps(keep, x, n)
#define VMASK __mmask16
#define VLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VNLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NLT_UQ)
#define VGT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VSEL(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define VTAIL __mmask16
#define VTAILMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADT(p, m, fill) _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p)
#define VSTORET(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VHSUM _mm512_reduce_add_ps
#define VHMAX _mm512_reduce_max_ps

/* Each lane rounded to the nearest bfloat16 (ties to even; NaN kept), as
 * round_bf16 in bf16.h. */
static inline __m512 vbf16_avx512(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
    r = _mm512_and_si512(r, _mm512_set1_epi32((int)0xFFFF0000u));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_castsi512_ps(r), x);
}
#define VBF16 vbf16_avx512

#endif
