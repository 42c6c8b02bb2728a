/* The AVX-512F kernels: the GEMM micro-kernel (12 x 32 tile) with its
 * blocking, and the fast unfold/fold. Only this file is compiled for AVX-512;
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
    sgemm_blocked(&arch, bt, m, n, k, a, sa, b, sb, c, sc);
}

#define IM2COL_NAME(f) f##_avx512
#include "im2col_fast.h"

#else  /* not x86-64: never dispatched to; the reference keeps it correct */
void sgemm_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                  const float *a, const int64_t *sa, const float *b,
                  const int64_t *sb, float *c, const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
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
#endif
