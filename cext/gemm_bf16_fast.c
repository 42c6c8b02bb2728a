/* The bf16 GEMM on CPUs without bf16 instructions, sgemm_bf16_avx2 /
 * sgemm_bf16_avx512: written once in the vector vocabulary of vec_avx2.h
 * and compiled once per ISA (fast_isa.h). Legend as in gemm_bf16.h.
 *
 * A and B are rounded to bf16 as they are packed (VBF16) and kept as
 * float32 values whose low 16 bits are zero, in the layouts the float32
 * GEMM's micro-kernel ukernel_rows reads (gemm_avx512.c, gemm_avx2.c),
 * which then runs on them with its block sizes:
 *   A block  rows of kp floats (row stride lda), MR rows per micro-kernel
 *   B sliver kp rows of NR floats: (p, j) at p * NR + j
 * A product of two bf16 values is exact in float32 (8 x 8 significant bits
 * fit in 24), so its FMAs add exactly the products that vdpbf16ps would,
 * here in k order: within one K block the result is sgemm_bf16_ref's bit
 * for bit (the reference adds the bias last, a kernel first). */
#include <string.h>
#include "fast_isa.h"
#include "bf16_run.h"
#include "gemm_bf16.h"
#include "transpose8.h"

#if FAST_AVX512
#define FLOAT32_GEMM gemm_blocking_avx512
#else
#define FLOAT32_GEMM gemm_blocking_avx2
#endif

/* The kit's pack_a, and its pack_b with ldd = nr: dst[r * ldd + c] =
 * bf16(src[r * rs + c * cs]) for r < R, c < C; 0 for R <= r < Rp or
 * C <= c < Cp. Rows with contiguous columns are rounded as they are copied;
 * contiguous columns (a transposed A, B = weight.T) are copied through 8 x 8
 * register transposes, then rounded in place; anything else one by one. */
static void pack_floats(int64_t R, int64_t C, const float *src, int64_t rs, int64_t cs,
                        int64_t Rp, int64_t Cp, void *out, int64_t ldd)
{
    float *dst = out;
    if (cs == 1) {
        for (int64_t r = 0; r < R; r++) round_run(src + r * rs, dst + r * ldd, C);
    } else {
        int64_t r8 = rs == 1 ? R / 8 * 8 : 0, c8 = C / 8 * 8;
        for (int64_t c = 0; c < c8; c += 8)                       /* down src's columns */
            for (int64_t r = 0; r < r8; r += 8) transpose8(src + r + c * cs, cs, dst + r * ldd + c, ldd);
        for (int64_t r = 0; r < R; r++) {
            for (int64_t c = r < r8 ? c8 : 0; c < C; c++) dst[r * ldd + c] = src[r * rs + c * cs];
            round_run(dst + r * ldd, dst + r * ldd, C);
        }
    }
    for (int64_t r = 0; r < Rp; r++) {
        int64_t c0 = r < R ? C : 0;
        memset(dst + r * ldd + c0, 0, (size_t)(Cp - c0) * sizeof(float));
    }
}

static void pack_b_floats(int64_t kb, int64_t w, const float *b, int64_t rsb, int64_t csb,
                          int64_t kp, int nr, void *dst)
{
    pack_floats(kb, w, b, rsb, csb, kp, nr, dst, nr);
}

/* The float32 GEMM's micro-kernel on MR rows of a packed A block. */
static void ukernel(int64_t kp, const void *a, int64_t lda, const void *b, float *c,
                    int64_t rsc, int flags, const float *bias)
{
    FLOAT32_GEMM.ukernel_rows(kp, a, lda, b, c, rsc, flags, bias);
}

/* Arguments as gemm_bf16_run's. */
static void run(int64_t bt, int64_t m, int64_t n, int64_t k, const float *a, const int64_t *sa,
                const float *b, const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                float *act, const int64_t *sact, const float *res, const int64_t *sres)
{
    const gemm_blocking *g = &FLOAT32_GEMM;
    bf16_kit kit = {
        .mr = g->mr, .nr = g->nr, .kstep = 1, .mc = g->mc, .kc = g->kc, .nc = g->nc,
        .a_bytes = 4, .b_bytes = 4, .pack_a = pack_floats, .pack_b = pack_b_floats,
        .ukernel = ukernel,
    };
    gemm_bf16_run(&kit, bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, res, sres);
}

void FAST(sgemm_bf16)(int64_t bt, int64_t m, int64_t n, int64_t k,
                      const float *a, const int64_t *sa, const float *b,
                      const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    run(bt, m, n, k, a, sa, b, sb, bias, c, sc, NULL, NULL, NULL, NULL);
}

void FAST(sgemm_bf16_gelu)(int64_t bt, int64_t m, int64_t n, int64_t k,
                           const float *a, const int64_t *sa, const float *b,
                           const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                           float *act, const int64_t *sact)
{
    run(bt, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, NULL, NULL);
}

void FAST(sgemm_bf16_add)(int64_t bt, int64_t m, int64_t n, int64_t k,
                          const float *a, const int64_t *sa, const float *b,
                          const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                          float *c, const int64_t *sc)
{
    run(bt, m, n, k, a, sa, b, sb, bias, c, sc, c, sc, r, sr);
}
