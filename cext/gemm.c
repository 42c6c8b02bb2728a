/* Float32 GEMM: the reference loop, the blocks of the blocked product
 * (packing, macro-kernel, one product on one thread) and the dispatcher.
 * The threaded drivers are in gemm_threads.c.
 *
 * Legend: C (M, N) = A (M, K) @ B (K, N), Bt matrices; MR x NR micro-tile,
 * MC / KC / NC cache blocks (per ISA, in avx2.c / avx512.c).
 *
 * Blocking (after BLIS, Van Zee & van de Geijn 2015), for one matrix:
 *   for jc in N step NC                 B panel  KC x NC, lives in L2/L3
 *     for pc in K step KC
 *       pack B[pc:+KC, jc:+NC] into slivers of NR columns (KC x NR each,
 *         zero-padded), read through B's row/col strides: a transposed B
 *         costs no copy of its own
 *       for ic in M step MC             A block  MC x KC, lives in L2
 *         A is used in place when its columns are contiguous; otherwise
 *         (a transposed A) it is packed into slivers of MR rows first
 *         for jr in NC step NR          B sliver KC x NR, lives in L1
 *           for ir in MC step MR        micro-kernel: the MR x NR tile of C
 *                                       in registers, KC rank-1 updates
 * The first K block stores C, later ones add to it. Tiles cut by the edge of
 * M or N are computed into a zero-padded scratch tile and copied out.
 * Threads: see gemm_threads.c. */
#include <string.h>
#include "internal.h"

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

void sgemm_bias_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
    for (int64_t t = 0; t < bt; t++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[t * sc[0] + i * sc[1] + j] += bias[j];
}

/* B[0:kc, 0:nb] (strides rsb, csb) -> dst, slivers of NR columns:
 * dst[(j / NR) * kc * NR + p * NR + j % NR], zero past nb. */
void gemm_pack_b(int64_t kc, int64_t nb, const float *b, int64_t rsb,
                 int64_t csb, int nr, float *dst)
{
    for (int64_t j0 = 0; j0 < nb; j0 += nr, dst += kc * nr) {
        int64_t w = MIN(nr, nb - j0);
        const float *src = b + j0 * csb;
        if (csb == 1) {
            for (int64_t p = 0; p < kc; p++) {
                memcpy(dst + p * nr, src + p * rsb, (size_t)w * sizeof(float));
                memset(dst + p * nr + w, 0, (size_t)(nr - w) * sizeof(float));
            }
        } else {
            for (int64_t j = 0; j < nr; j++)
                for (int64_t p = 0; p < kc; p++)
                    dst[p * nr + j] = j < w ? src[p * rsb + j * csb] : 0.0f;
        }
    }
}

/* pack_a for a transposed A (rsa = 1: column p, A[0:mb, p], is contiguous):
 * column by column, each cut into the slivers. Inlined with a constant mr
 * (see gemm_pack_a), so the copies of mr floats unroll. */
static inline __attribute__((always_inline)) void
pack_a_cols(int64_t mb, int64_t kc, const float *a, int64_t csa, int mr, float *dst)
{
    int64_t sliver = kc * mr, full = mb / mr * mr;
    for (int64_t p = 0; p < kc; p++) {
        const float *src = a + p * csa;                     /* A[0:mb, p] */
        float *d = dst + p * mr;
        if (p + 8 < kc)                                     /* a column 8 ahead: from memory */
            for (int64_t i = 0; i < mb; i += 16) __builtin_prefetch(src + 8 * csa + i);
        for (int64_t i0 = 0; i0 < full; i0 += mr, d += sliver)
            for (int i = 0; i < mr; i++) d[i] = src[i0 + i];
        if (full < mb)
            for (int i = 0; i < mr; i++) d[i] = full + i < mb ? src[full + i] : 0.0f;
    }
}

/* A[0:mb, 0:kc] (strides rsa, csa) -> dst, slivers of MR rows:
 * dst[(i / MR) * kc * MR + p * MR + i % MR], zero past mb. */
void gemm_pack_a(int64_t mb, int64_t kc, const float *a, int64_t rsa,
                 int64_t csa, int mr, float *dst)
{
    if (rsa == 1) {
        if (mr == 6) pack_a_cols(mb, kc, a, csa, 6, dst);          /* AVX2 */
        else if (mr == 12) pack_a_cols(mb, kc, a, csa, 12, dst);   /* AVX-512 */
        else pack_a_cols(mb, kc, a, csa, mr, dst);
        return;
    }
    for (int64_t i0 = 0; i0 < mb; i0 += mr, dst += kc * mr) {
        int64_t h = MIN(mr, mb - i0);
        const float *src = a + i0 * rsa;
        for (int64_t i = 0; i < mr; i++)
            for (int64_t p = 0; p < kc; p++)
                dst[p * mr + i] = i < h ? src[i * rsa + p * csa] : 0.0f;
    }
}

/* A tile cut by the edge of M or N: mr x nr of the MR x NR micro-tile. */
static void edge_tile(const gemm_arch *g, int64_t mr, int64_t nr, int64_t kc,
                      const float *a, int64_t rsa, int packed, const float *bs,
                      float *c, int64_t rsc, int acc, const float *bias, float *edge_a)
{
    float tile[16 * 64];                       /* MR x NR, MR <= 16, NR <= 64 */
    if (packed) {                              /* rows past mr are zeros */
        g->kernel_packed(kc, a, rsa, bs, tile, g->nr, 0);
    } else {
        if (mr < g->mr) {                      /* copy, zero rows below */
            memset(edge_a, 0, (size_t)(g->mr * kc) * sizeof(float));
            for (int64_t i = 0; i < mr; i++)
                memcpy(edge_a + i * kc, a + i * rsa, (size_t)kc * sizeof(float));
            a = edge_a;
            rsa = kc;
        }
        g->kernel_rows(kc, a, rsa, bs, tile, g->nr, 0);
    }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
            c[i * rsc + j] = (acc ? c[i * rsc + j] : bias ? bias[j] : 0.0f) + tile[i * g->nr + j];
}

/* The two innermost loops over one A block (mb x kc) and B panel (kc x nb).
 * A bias is written into a full C tile first, which the kernel then adds
 * to: the tile is in L1, so the bias costs no pass over C of its own. */
void gemm_macro_kernel(const gemm_arch *g, int64_t mb, int64_t nb, int64_t kc,
                       const float *a, int64_t rsa, int packed, const float *bp,
                       float *c, int64_t rsc, int acc, const float *bias, float *edge_a)
{
    ukernel_fn kernel = packed ? g->kernel_packed : g->kernel_rows;
    for (int64_t jr = 0; jr < nb; jr += g->nr) {
        const float *bs = bp + jr * kc;                   /* sliver (kc, NR) */
        int64_t nr = MIN(g->nr, nb - jr);
        for (int64_t ir = 0; ir < mb; ir += g->mr) {
            int64_t mr = MIN(g->mr, mb - ir);
            const float *as = a + (packed ? ir * kc : ir * rsa);  /* MR rows */
            float *ct = c + ir * rsc + jr;
            if (mr == g->mr && nr == g->nr && bias) {
                for (int64_t i = 0; i < mr; i++)
                    memcpy(ct + i * rsc, bias + jr, (size_t)nr * sizeof(float));
                kernel(kc, as, rsa, bs, ct, rsc, 1);
            } else if (mr == g->mr && nr == g->nr) {
                kernel(kc, as, rsa, bs, ct, rsc, acc);
            } else {
                edge_tile(g, mr, nr, kc, as, rsa, packed, bs, ct, rsc, acc,
                          bias ? bias + jr : NULL, edge_a);
            }
        }
    }
}

int64_t gemm_balanced_kc(const gemm_arch *g, int64_t k)
{
    return ceil_div(k, ceil_div(k, g->kc));              /* K blocks of equal size */
}

void gemm_fallback(const gemm_problem *P)                /* out of scratch memory */
{
    int64_t sa[3] = {0, P->rsa, P->csa}, sb[3] = {0, P->rsb, P->csb}, sc[2] = {0, P->rsc};
    if (P->bias)
        sgemm_bias_ref(1, P->m, P->n, P->k, P->a, sa, P->b, sb, P->bias, P->c, sc);
    else
        sgemm_ref(1, P->m, P->n, P->k, P->a, sa, P->b, sb, P->c, sc);
}

/* One product on the calling thread alone, with no OpenMP construct (so it
 * may run inside a parallel region): the blocking of the threaded drivers
 * (gemm_threads.c), their work items in order, so every element of C gets
 * the same sums. */
void gemm_serial(const gemm_arch *g, const gemm_problem *P)
{
    int64_t kc = gemm_balanced_kc(g, P->k), nc = MIN(g->nc, ceil_div(P->n, g->nr) * g->nr);
    float *bp = minit2t_scratch(0, (size_t)(kc * nc));
    float *ap = minit2t_scratch(1, (size_t)((g->mc + g->mr) * kc));
    float *edge_a = minit2t_scratch(2, (size_t)(g->mr * kc));
    if (!bp || !ap || !edge_a) {
        gemm_fallback(P);
        return;
    }
    int packed = PACK_A(P->csa);
    for (int64_t jc = 0; jc < P->n; jc += nc)
        for (int64_t pc = 0; pc < P->k; pc += kc) {
            int64_t nb = MIN(nc, P->n - jc), kb = MIN(kc, P->k - pc);
            gemm_pack_b(kb, nb, P->b + pc * P->rsb + jc * P->csb, P->rsb, P->csb, g->nr, bp);
            for (int64_t ic = 0; ic < P->m; ic += g->mc) {
                int64_t mb = MIN(g->mc, P->m - ic);
                const float *ab = P->a + ic * P->rsa + pc * P->csa;   /* (mb, kb) */
                if (packed) {
                    gemm_pack_a(mb, kb, ab, P->rsa, P->csa, g->mr, ap);
                    ab = ap;
                }
                gemm_macro_kernel(g, mb, nb, kb, ab, P->rsa, packed, bp, P->c + ic * P->rsc + jc,
                                  P->rsc, pc > 0, pc == 0 && P->bias ? P->bias + jc : NULL, edge_a);
            }
        }
}

/* Tiny products are faster without packing. */
void sgemm(int64_t bt, int64_t m, int64_t n, int64_t k,
           const float *a, const int64_t *sa, const float *b,
           const int64_t *sb, float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if (isa == ISA_SCALAR || (double)m * (double)n * (double)k < 2048.0)
        sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
    else if (isa == ISA_AVX512)
        sgemm_avx512(bt, m, n, k, a, sa, b, sb, c, sc);
    else
        sgemm_avx2(bt, m, n, k, a, sa, b, sb, c, sc);
}

void sgemm_bias(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, const float *bias, float *c, const int64_t *sc)
{
    int isa = minit2t_isa();
    if (isa == ISA_SCALAR || (double)m * (double)n * (double)k < 2048.0)
        sgemm_bias_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    else if (isa == ISA_AVX512)
        sgemm_bias_avx512(bt, m, n, k, a, sa, b, sb, bias, c, sc);
    else
        sgemm_bias_avx2(bt, m, n, k, a, sa, b, sb, bias, c, sc);
}
