/* Float32 GEMM: the reference loop, the blocked driver and the dispatcher.
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
 * Threads: a batch that splits evenly runs one matrix per thread; otherwise
 * the threads pack each B panel together, then take (A block x run of
 * slivers) work items as they come free, so a thread slowed by other work
 * on the machine holds no one up. Work items never share a C element. */
#include <string.h>
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* B[0:kc, 0:nb] (strides rsb, csb) -> dst, slivers of NR columns:
 * dst[(j / NR) * kc * NR + p * NR + j % NR], zero past nb. */
static void pack_b(int64_t kc, int64_t nb, const float *b, int64_t rsb,
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

/* A[0:mb, 0:kc] (strides rsa, csa) -> dst, slivers of MR rows:
 * dst[(i / MR) * kc * MR + p * MR + i % MR], zero past mb. */
static void pack_a(int64_t mb, int64_t kc, const float *a, int64_t rsa,
                   int64_t csa, int mr, float *dst)
{
    for (int64_t i0 = 0; i0 < mb; i0 += mr, dst += kc * mr) {
        int64_t h = MIN(mr, mb - i0);
        const float *src = a + i0 * rsa;
        if (rsa == 1) {             /* a transposed A: columns contiguous */
            for (int64_t p = 0; p < kc; p++) {
                memcpy(dst + p * mr, src + p * csa, (size_t)h * sizeof(float));
                memset(dst + p * mr + h, 0, (size_t)(mr - h) * sizeof(float));
            }
        } else {
            for (int64_t i = 0; i < mr; i++)
                for (int64_t p = 0; p < kc; p++)
                    dst[p * mr + i] = i < h ? src[i * rsa + p * csa] : 0.0f;
        }
    }
}

/* A tile cut by the edge of M or N: mr x nr of the MR x NR micro-tile. */
static void edge_tile(const gemm_arch *g, int64_t mr, int64_t nr, int64_t kc,
                      const float *a, int64_t rsa, int packed, const float *bs,
                      float *c, int64_t rsc, int acc, float *edge_a)
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
            c[i * rsc + j] = (acc ? c[i * rsc + j] : 0.0f) + tile[i * g->nr + j];
}

/* The two innermost loops over one A block (mb x kc) and B panel (kc x nb). */
static void macro_kernel(const gemm_arch *g, int64_t mb, int64_t nb, int64_t kc,
                         const float *a, int64_t rsa, int packed, const float *bp,
                         float *c, int64_t rsc, int acc, float *edge_a)
{
    ukernel_fn kernel = packed ? g->kernel_packed : g->kernel_rows;
    for (int64_t jr = 0; jr < nb; jr += g->nr) {
        const float *bs = bp + jr * kc;                   /* sliver (kc, NR) */
        int64_t nr = MIN(g->nr, nb - jr);
        for (int64_t ir = 0; ir < mb; ir += g->mr) {
            int64_t mr = MIN(g->mr, mb - ir);
            const float *as = a + (packed ? ir * kc : ir * rsa);  /* MR rows */
            float *ct = c + ir * rsc + jr;
            if (mr == g->mr && nr == g->nr)
                kernel(kc, as, rsa, bs, ct, rsc, acc);
            else
                edge_tile(g, mr, nr, kc, as, rsa, packed, bs, ct, rsc, acc, edge_a);
        }
    }
}

/* A is packed when its columns are strided (a transposed A). */
#ifndef PACK_A
#define PACK_A(csa) ((csa) != 1)
#endif

static int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

typedef struct {               /* one product C = A @ B; strides in floats */
    int64_t m, n, k;
    const float *a;
    int64_t rsa, csa;
    const float *b;
    int64_t rsb, csb;
    float *c;
    int64_t rsc;
} gemm_problem;

/* Pack the B panel [pc:+kb, jc:+nb], one NR sliver per step, threads sharing
 * the slivers (called inside a parallel region; ends with a barrier). */
static void pack_panel(const gemm_arch *g, const gemm_problem *P, int64_t jc,
                       int64_t nb, int64_t pc, int64_t kb, float *bp)
{
    int64_t slivers = ceil_div(nb, g->nr);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < slivers; t++) {
        int64_t j = t * g->nr;
        pack_b(kb, MIN(g->nr, nb - j), P->b + pc * P->rsb + (jc + j) * P->csb,
               P->rsb, P->csb, g->nr, bp + j * kb);
    }
}

/* C[:, jc:+nb] (+)= A[:, pc:+kb] @ packed panel, as work items of one A
 * block (MC rows) by a run of slivers, handed out to threads as they come
 * free. Short M is split along N too, so every thread gets work. */
static void panel_items(const gemm_arch *g, const gemm_problem *P, int64_t jc,
                        int64_t nb, int64_t pc, int64_t kb, const float *bp,
                        float *ap, float *edge_a, int nt)
{
    int64_t mblocks = ceil_div(ceil_div(P->m, g->mc), nt) * nt;  /* even shares */
    int64_t mc = ceil_div(ceil_div(P->m, mblocks), g->mr) * g->mr; /* <= MC + MR */
    int64_t slivers = ceil_div(nb, g->nr);
    mblocks = ceil_div(P->m, mc);
    int64_t split = (nt == 1 || mblocks >= 8 * nt) ? 1 : ceil_div(8 * nt, mblocks);
    int64_t nw = ceil_div(slivers, MIN(split, slivers)) * g->nr;  /* item width */
    split = ceil_div(nb, nw);
    int packed = PACK_A(P->csa);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < mblocks * split; t++) {
        int64_t ic = t / split * mc, j0 = t % split * nw;
        int64_t mb = MIN(mc, P->m - ic);
        const float *ab = P->a + ic * P->rsa + pc * P->csa;      /* (mb, kb) */
        if (packed) {
            pack_a(mb, kb, ab, P->rsa, P->csa, g->mr, ap);
            ab = ap;
        }
        macro_kernel(g, mb, MIN(nw, nb - j0), kb, ab, P->rsa, packed, bp + j0 * kb,
                     P->c + ic * P->rsc + jc + j0, P->rsc, pc > 0, edge_a);
    }
}

/* One product on nt threads: the panel loops (jc, pc) run on every thread,
 * which share the packed B panel and split its work items. */
static void gemm_one(const gemm_arch *g, const gemm_problem *P, int nt)
{
    int64_t kc = ceil_div(P->k, ceil_div(P->k, g->kc));    /* balanced K blocks */
    int64_t nc = MIN(g->nc, ceil_div(P->n, g->nr) * g->nr);
    int64_t per_a = (g->mc + g->mr) * kc, per_e = g->mr * kc;  /* per thread */
    float *bp = minit2t_scratch(0, (size_t)(kc * nc));
    float *ap = minit2t_scratch(1, (size_t)(nt * per_a));
    float *edge_a = minit2t_scratch(2, (size_t)(nt * per_e));
    if (!bp || !ap || !edge_a) {                            /* out of memory */
        int64_t sa[3] = {0, P->rsa, P->csa}, sb[3] = {0, P->rsb, P->csb};
        int64_t sc[2] = {0, P->rsc};
        sgemm_ref(1, P->m, P->n, P->k, P->a, sa, P->b, sb, P->c, sc);
        return;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = thread_id();
        for (int64_t jc = 0; jc < P->n; jc += nc)
            for (int64_t pc = 0; pc < P->k; pc += kc) {
                int64_t nb = MIN(nc, P->n - jc), kb = MIN(kc, P->k - pc);
                pack_panel(g, P, jc, nb, pc, kb, bp);
                panel_items(g, P, jc, nb, pc, kb, bp, ap + tid * per_a,
                            edge_a + tid * per_e, nt);
            }
    }
}

static gemm_problem problem_at(int64_t t, int64_t m, int64_t n, int64_t k,
                               const float *a, const int64_t *sa, const float *b,
                               const int64_t *sb, float *c, const int64_t *sc)
{
    gemm_problem P = {m, n, k, a + t * sa[0], sa[1], sa[2],
                      b + t * sb[0], sb[1], sb[2], c + t * sc[0], sc[1]};
    return P;
}

/* Batches that split evenly over the threads run one matrix per thread;
 * otherwise every matrix is split over all threads. */
void sgemm_blocked(const gemm_arch *g, int64_t bt, int64_t m, int64_t n,
                   int64_t k, const float *a, const int64_t *sa,
                   const float *b, const int64_t *sb, float *c,
                   const int64_t *sc)
{
    if (bt <= 0 || m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t t = 0; t < bt; t++)
            for (int64_t i = 0; i < m; i++)
                memset(c + t * sc[0] + i * sc[1], 0, (size_t)n * sizeof(float));
        return;
    }
    int nt = minit2t_threads_for(2.0 * (double)bt * (double)m * (double)n * (double)k);
    if (nt > 1 && (bt >= 4 * nt || bt % nt == 0)) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t t = 0; t < bt; t++) {
            gemm_problem P = problem_at(t, m, n, k, a, sa, b, sb, c, sc);
            gemm_one(g, &P, 1);
        }
    } else {
        for (int64_t t = 0; t < bt; t++) {
            gemm_problem P = problem_at(t, m, n, k, a, sa, b, sb, c, sc);
            gemm_one(g, &P, nt);
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
