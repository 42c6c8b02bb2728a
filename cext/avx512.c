/* The AVX-512F kernels: the GEMM micro-kernel (12 x 32 tile) with its
 * blocking, the fast unfold/fold and the fused elementwise kernels (GELU,
 * layer norm, softmax, strided copy). Only this file is compiled for AVX-512;
 * the dispatchers call it only on CPUs that have it (cpu.c). */
#include "internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>

#define VF __m512
#define VW 16
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VBCAST(ptr) _mm512_set1_ps(*(ptr))
#define VFMA _mm512_fmadd_ps
#define VADD _mm512_add_ps
#define VZERO _mm512_setzero_ps
#define MR 12
#define UKERNEL ukernel_avx512_rows
#include "gemm_kernel.h"
#define A_PACKED
#define UKERNEL ukernel_avx512_packed
#include "gemm_kernel.h"
#undef A_PACKED

/* MR, NR; MC, KC, NC: A block 144 x 256 floats (144 KB) in L2, B sliver
 * 256 x 32 (32 KB) in L1/L2, B panel up to 256 x 1536 (1.5 MB) in L3. */
static const gemm_arch arch = {12, 32, 144, 256, 1536, ukernel_avx512_rows, ukernel_avx512_packed};

void sgemm_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                  const float *a, const int64_t *sa, const float *b,
                  const int64_t *sb, float *c, const int64_t *sc)
{
    sgemm_blocked(&arch, bt, m, n, k, a, sa, b, sb, NULL, c, sc);
}

void sgemm_bias_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                       const float *a, const int64_t *sa, const float *b,
                       const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_blocked(&arch, bt, m, n, k, a, sa, b, sb, bias, c, sc);
}

#define IM2COL_NAME(f) f##_avx512
#include "im2col_fast.h"

/* The vector vocabulary of vmath.h / fused_fast.h. */
#define VSET1 _mm512_set1_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#define VFNMA _mm512_fnmadd_ps
#define VFMS _mm512_fmsub_ps
#define VABS(x) _mm512_abs_ps(x)
#define VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE(x, n) _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(x), \
                                         _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23)))
#define VMASK __mmask16
#define VLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VGT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VNAN(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define VSEL(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define VTAIL __mmask16
#define VTAILMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADT(p, m, fill) _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p)
#define VSTORET(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VHSUM _mm512_reduce_add_ps
#define VHMAX _mm512_reduce_max_ps

#define FUSED_NAME(f) f##_avx512
#include "fused_fast.h"
#include "copy_fast.h"

#else  /* not x86-64: never dispatched to; the reference keeps it correct */
void sgemm_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                  const float *a, const int64_t *sa, const float *b,
                  const int64_t *sb, float *c, const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
}
void sgemm_bias_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                       const float *a, const int64_t *sa, const float *b,
                       const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_bias_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
}
void unfold_avx512(const float *x, const int64_t *sx, float *cols, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    unfold_ref(x, sx, cols, nb, nc, h, w, k, s, p);
}
void fold_avx512(const float *cols, const int64_t *scol, float *x, int64_t nb,
               int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    fold_ref(cols, scol, x, nb, nc, h, w, k, s, p);
}
#define FUSED_NAME(f) f##_avx512
#include "fused_stubs.h"
#endif
