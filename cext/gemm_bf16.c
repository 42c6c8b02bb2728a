/* The bfloat16 GEMM: the reference loops and the dispatcher.
 * C = bf16(A) @ bf16(B) (+ bias): each operand rounded to the nearest
 * bfloat16 (round_bf16, bf16.h), the products and their sums in float32.
 *
 * Legend as in gemm.c: C (M, N) = A (M, K) @ B (K, N), for each of Bt matrices.
 *   a  A (Bt, M, K), strides sa = {batch, row, col}
 *   b  B (Bt, K, N), strides sb = {batch, row, col}
 *   c  C (Bt, M, N), strides sc = {batch, row}; columns contiguous
 *   bias (N,) added to every row of C, or NULL */
#include "runtime.h"
#include "gemm_blocking.h"
#include "bf16.h"

/* The plain loops, as sgemm_ref: row i of C is zeroed, then bf16(A[i, p])
 * * bf16(row p of B) is added to it for p = 0 .. K-1 (each product exact in
 * float32, each sum rounded), then the bias. */
void sgemm_bf16_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    for (int64_t t = 0; t < bt; t++)
        for (int64_t i = 0; i < m; i++) {
            float *ci = c + t * sc[0] + i * sc[1];        /* row i of C: N */
            for (int64_t j = 0; j < n; j++) ci[j] = 0.0f;
            for (int64_t p = 0; p < k; p++) {
                float aip = round_bf16(a[t * sa[0] + i * sa[1] + p * sa[2]]);
                const float *bp = b + t * sb[0] + p * sb[1];  /* row p of B */
                for (int64_t j = 0; j < n; j++) ci[j] += aip * round_bf16(bp[j * sb[2]]);
            }
            if (bias)
                for (int64_t j = 0; j < n; j++) ci[j] += bias[j];
        }
}

/* sgemm_bf16_ref, then act = gelu(C) (act may be c). */
void sgemm_bf16_gelu_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                         float *act, const int64_t *sact)
{
    sgemm_bf16_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    gemm_gelu_matrices(gelu_block_ref, bt, m, n, c, sc, act, sact);
}

/* sgemm_bf16_ref, then C += R. */
void sgemm_bf16_add_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                        const float *a, const int64_t *sa, const float *b,
                        const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                        float *c, const int64_t *sc)
{
    sgemm_bf16_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    gemm_add_matrices(add_block_ref, bt, m, n, c, sc, r, sr);
}

/* Products under 2048 multiply-adds go to the reference, as in sgemm:
 * packing would cost more than it saves. */
#define TINY_GEMM 2048.0

/* The versions, by ISA level (runtime.h): the reference, the float32
 * micro-kernels of AVX2 or AVX-512F on operands rounded as they are packed,
 * vdpbf16ps, AMX. Where the fast versions are not compiled, the reference. */
typedef void (*sgemm_bf16_version)(int64_t bt, int64_t m, int64_t n, int64_t k,
                                   const float *a, const int64_t *sa, const float *b,
                                   const int64_t *sb, const float *bias, float *c,
                                   const int64_t *sc);
#if MINIT2T_X86
static const sgemm_bf16_version versions[] = {sgemm_bf16_ref, sgemm_bf16_avx2, sgemm_bf16_avx512,
                                              sgemm_bf16_avx512bf16, sgemm_bf16_amx};
#else
static const sgemm_bf16_version versions[] = {sgemm_bf16_ref, sgemm_bf16_ref, sgemm_bf16_ref,
                                              sgemm_bf16_ref, sgemm_bf16_ref};
#endif

void sgemm_bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) isa = ISA_SCALAR;
    versions[isa](bt, m, n, k, a, sa, b, sb, bias, c, sc);
}

typedef void (*sgemm_bf16_gelu_version)(int64_t bt, int64_t m, int64_t n, int64_t k,
                                        const float *a, const int64_t *sa, const float *b,
                                        const int64_t *sb, const float *bias, float *c,
                                        const int64_t *sc, float *act, const int64_t *sact);
#if MINIT2T_X86
static const sgemm_bf16_gelu_version gelu_versions[] = {
    sgemm_bf16_gelu_ref, sgemm_bf16_gelu_avx2, sgemm_bf16_gelu_avx512, sgemm_bf16_gelu_avx512bf16,
    sgemm_bf16_gelu_amx};
#else
static const sgemm_bf16_gelu_version gelu_versions[] = {
    sgemm_bf16_gelu_ref, sgemm_bf16_gelu_ref, sgemm_bf16_gelu_ref, sgemm_bf16_gelu_ref,
    sgemm_bf16_gelu_ref};
#endif

void sgemm_bf16_gelu(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                     float *act, const int64_t *sact)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) {  /* as sgemm_bf16, then gelu_forward */
        sgemm_bf16_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
        gemm_gelu_matrices(gelu_block, bt, m, n, c, sc, act, sact);
        return;
    }
    gelu_versions[isa](bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact);
}

typedef void (*sgemm_bf16_add_version)(int64_t bt, int64_t m, int64_t n, int64_t k,
                                       const float *a, const int64_t *sa, const float *b,
                                       const int64_t *sb, const float *bias, const float *r,
                                       const int64_t *sr, float *c, const int64_t *sc);
#if MINIT2T_X86
static const sgemm_bf16_add_version add_versions[] = {
    sgemm_bf16_add_ref, sgemm_bf16_add_avx2, sgemm_bf16_add_avx512, sgemm_bf16_add_avx512bf16,
    sgemm_bf16_add_amx};
#else
static const sgemm_bf16_add_version add_versions[] = {
    sgemm_bf16_add_ref, sgemm_bf16_add_ref, sgemm_bf16_add_ref, sgemm_bf16_add_ref, sgemm_bf16_add_ref};
#endif

void sgemm_bf16_add(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                    float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) {  /* as sgemm_bf16, then the sum */
        sgemm_bf16_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
        gemm_add_matrices(add_block, bt, m, n, c, sc, r, sr);
        return;
    }
    add_versions[isa](bt, m, n, k, a, sa, b, sb, bias, r, sr, c, sc);
}
