/* Float32 GEMM: the reference loops and the dispatchers (first in the
 * reading order of README.md). The fast versions are a blocked product:
 *   sgemm -> sgemm_avx512        (gemm_avx512.c: micro-kernels, block sizes)
 *         -> gemm_threaded       (gemm_threads.c: how threads share the work)
 *         -> gemm_loops          (gemm_loops.c: the loops jc, pc, ic)
 *         -> gemm_block          (gemm_loops.c: the loops jr, ir)
 *         -> ukernel_avx512_rows (gemm_avx512.c: one MR x NR tile of C)
 *
 * Legend: C (M, N) = A (M, K) @ B (K, N), for each of Bt matrices.
 *   a  A (Bt, M, K), strides sa = {batch, row, col}
 *   b  B (Bt, K, N), strides sb = {batch, row, col}
 *   c  C (Bt, M, N), strides sc = {batch, row}; columns contiguous
 *   bias (N,), added to every row of C (sgemm_bias) */
#include "runtime.h"
#include "gemm_blocking.h"

/* The plain triple loop, in i, p, j order: row i of C is zeroed, then
 * A[i, p] * row p of B is added to it for p = 0 .. K-1. */
void sgemm_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
               const float *a, const int64_t *sa, const float *b,
               const int64_t *sb, float *c, const int64_t *sc)
{
    for (int64_t t = 0; t < bt; t++)
        for (int64_t i = 0; i < m; i++) {
            float *ci = c + t * sc[0] + i * sc[1];        /* row i of C: N */
            for (int64_t j = 0; j < n; j++) ci[j] = 0.0f;
            for (int64_t p = 0; p < k; p++) {
                float aip = a[t * sa[0] + i * sa[1] + p * sa[2]];
                const float *bp = b + t * sb[0] + p * sb[1];  /* row p of B */
                for (int64_t j = 0; j < n; j++) ci[j] += aip * bp[j * sb[2]];
            }
        }
}

/* sgemm_ref, then bias added to every row of C. */
void sgemm_bias_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
    for (int64_t t = 0; t < bt; t++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[t * sc[0] + i * sc[1] + j] += bias[j];
}

/* sgemm_bias_ref, or sgemm_ref where bias is NULL: the product of the references with an
 * epilogue, and of their dispatchers' products too small to pack. */
static void bias_product_ref(int64_t bt, int64_t m, int64_t n, int64_t k, const float *a, const int64_t *sa,
                             const float *b, const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    if (bias) sgemm_bias_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    else sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
}

/* sgemm_bias_ref (or sgemm_ref, bias NULL), then act = gelu(C) (act may be c). */
void sgemm_bias_gelu_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                         float *act, const int64_t *sact)
{
    bias_product_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    gemm_gelu_matrices(gelu_block_ref, bt, m, n, c, sc, act, sact);
}

/* sgemm_bias_ref (or sgemm_ref, bias NULL), then C += R. */
void sgemm_bias_add_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                        const float *a, const int64_t *sa, const float *b,
                        const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                        float *c, const int64_t *sc)
{
    bias_product_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    gemm_add_matrices(add_block_ref, bt, m, n, c, sc, r, sr);
}

/* Products under 2048 multiply-adds go to the reference: packing would
 * cost more than it saves. */
#define TINY_GEMM 2048.0

void sgemm(int64_t bt, int64_t m, int64_t n, int64_t k,
           const float *a, const int64_t *sa, const float *b,
           const int64_t *sb, float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) isa = ISA_SCALAR;
    DISPATCH(isa, sgemm, (bt, m, n, k, a, sa, b, sb, c, sc));
}

void sgemm_bias(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) isa = ISA_SCALAR;
    DISPATCH(isa, sgemm_bias, (bt, m, n, k, a, sa, b, sb, bias, c, sc));
}

void sgemm_bias_gelu(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                     float *act, const int64_t *sact)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) {  /* the reference product, this ISA's GELU: */
        bias_product_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);      /* sgemm_bias, then gelu_forward */
        gemm_gelu_matrices(gelu_block, bt, m, n, c, sc, act, sact);
        return;
    }
    DISPATCH(isa, sgemm_bias_gelu, (bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact));
}

void sgemm_bias_add(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                    float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if ((double)m * (double)n * (double)k < TINY_GEMM) {  /* the reference product, this ISA's sum */
        bias_product_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
        gemm_add_matrices(add_block, bt, m, n, c, sc, r, sr);
        return;
    }
    DISPATCH(isa, sgemm_bias_add, (bt, m, n, k, a, sa, b, sb, bias, r, sr, c, sc));
}
