/* The AVX2 + FMA kernels: the GEMM micro-kernel (6 x 16 tile) with its
 * blocking, the fast unfold/fold and the fused elementwise kernels (GELU,
 * layer norm, softmax, strided copy). Only this file is compiled for AVX2;
 * the dispatchers call it only on CPUs that have it (cpu.c). */
#include "internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#define VF __m256
#define VW 8
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VBCAST _mm256_broadcast_ss
#define VFMA _mm256_fmadd_ps
#define VADD _mm256_add_ps
#define VZERO _mm256_setzero_ps
#define MR 6
#define UKERNEL ukernel_avx2_rows
#include "gemm_kernel.h"
#define A_PACKED
#define UKERNEL ukernel_avx2_packed
#include "gemm_kernel.h"
#undef A_PACKED

/* MR, NR; MC, KC, NC: A block 144 x 512 floats (288 KB) in L2, B sliver
 * 512 x 16 (32 KB) in L1/L2, B panel up to 512 x 1536 (3 MB) in L3. A large
 * KC means few passes over C: measured faster here than KC = 192..384. */
static const gemm_arch arch = {6, 16, 144, 512, 1536, ukernel_avx2_rows, ukernel_avx2_packed};

void sgemm_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, float *c, const int64_t *sc)
{
    sgemm_blocked(&arch, bt, m, n, k, a, sa, b, sb, NULL, c, sc);
}

void sgemm_bias_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_blocked(&arch, bt, m, n, k, a, sa, b, sb, bias, c, sc);
}

#define IM2COL_NAME(f) f##_avx2
#include "im2col_fast.h"

/* The vector vocabulary of vmath.h / fused_fast.h. */
#define VSET1 _mm256_set1_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#define VFNMA _mm256_fnmadd_ps
#define VFMS _mm256_fmsub_ps
#define VABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE(x, n) _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(x), \
                                         _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23)))
#define VMASK __m256
#define VLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VGT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VNAN(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
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

#define FUSED_NAME(f) f##_avx2
#include "fused_fast.h"
#include "copy_fast.h"

#else  /* not x86-64: never dispatched to; the reference keeps it correct */
void sgemm_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, float *c, const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
}
void sgemm_bias_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_bias_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
}
void unfold_avx2(const float *x, const int64_t *sx, float *cols, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    unfold_ref(x, sx, cols, nb, nc, h, w, k, s, p);
}
void fold_avx2(const float *cols, const int64_t *scol, float *x, int64_t nb,
               int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    fold_ref(cols, scol, x, nb, nc, h, w, k, s, p);
}
#define FUSED_NAME(f) f##_avx2
#include "fused_stubs.h"
#endif
