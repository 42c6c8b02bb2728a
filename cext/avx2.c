/* The AVX2 + FMA kernels: the GEMM micro-kernel (6 x 16 tile) with its
 * blocking, and the fast unfold/fold. Only this file is compiled for AVX2;
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
    sgemm_blocked(&arch, bt, m, n, k, a, sa, b, sb, c, sc);
}

#define IM2COL_NAME(f) f##_avx2
#include "im2col_fast.h"

#else  /* not x86-64: never dispatched to; the reference keeps it correct */
void sgemm_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, float *c, const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
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
#endif
