/* The threaded drivers of the blocked GEMM (the blocks are in gemm.c).
 *
 * Legend as in gemm.c: C (M, N) = A (M, K) @ B (K, N), Bt matrices; MR x NR
 * micro-tile, MC / KC / NC cache blocks; P one product (gemm_problem).
 *
 * Threads: a batch that splits evenly runs one matrix per thread; a product
 * of several K blocks is cut into slices of C, one per thread (gemm_sliced);
 * otherwise the threads pack each B panel together, then take (A block x
 * run of slivers) work items as they come free, so a thread slowed by other
 * work on the machine holds no one up. Work items never share a C element,
 * and every element is summed in the same order on any number of threads.
 * Code that runs inside a parallel region uses gemm_serial, which has no
 * OpenMP construct of its own (a nested region would cost a team each). */
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Pack the B panel [pc:+kb, jc:+nb], one NR sliver per step, threads sharing
 * the slivers (called inside a parallel region; ends with a barrier). */
static void pack_panel(const gemm_arch *g, const gemm_problem *P, int64_t jc,
                       int64_t nb, int64_t pc, int64_t kb, float *bp)
{
    int64_t slivers = ceil_div(nb, g->nr);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < slivers; t++) {
        int64_t j = t * g->nr;
        gemm_pack_b(kb, MIN(g->nr, nb - j), P->b + pc * P->rsb + (jc + j) * P->csb,
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
            gemm_pack_a(mb, kb, ab, P->rsa, P->csa, g->mr, ap);
            ab = ap;
        }
        const float *bias = pc == 0 && P->bias ? P->bias + jc + j0 : NULL;
        gemm_macro_kernel(g, mb, MIN(nw, nb - j0), kb, ab, P->rsa, packed, bp + j0 * kb,
                          P->c + ic * P->rsc + jc + j0, P->rsc, pc > 0, bias, edge_a);
    }
}

/* One product on nt > 1 threads: the panel loops (jc, pc) run on every
 * thread, which share the packed B panel and split its work items. */
static void gemm_one(const gemm_arch *g, const gemm_problem *P, int nt)
{
    if (nt == 1) {
        gemm_serial(g, P);
        return;
    }
    int64_t kc = gemm_balanced_kc(g, P->k), nc = MIN(g->nc, ceil_div(P->n, g->nr) * g->nr);
    int64_t per_a = (g->mc + g->mr) * kc, per_e = g->mr * kc;  /* per thread */
    float *bp = minit2t_scratch(0, (size_t)(kc * nc));
    float *ap = minit2t_scratch(1, (size_t)(nt * per_a));
    float *edge_a = minit2t_scratch(2, (size_t)(nt * per_e));
    if (!bp || !ap || !edge_a) {
        gemm_fallback(P);
        return;
    }
#pragma omp parallel num_threads(nt)
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

/* Products of several K blocks (a weight gradient x^T g has K = the batch's
 * rows): the shared-panel scheme of gemm_one would meet at a barrier twice
 * per K block, so the threads instead take fixed slices of C, rows (or
 * columns, when N is the longer side), and each runs an independent
 * one-thread product, packing its own panels. Slices start at multiples of
 * MR (NR), so every element of C is summed in the same order as on one
 * thread: the result does not depend on the thread count. */
static void gemm_sliced(const gemm_arch *g, const gemm_problem *P, int nt)
{
    int by_rows = P->m >= P->n;
    int64_t unit = by_rows ? g->mr : g->nr, len = by_rows ? P->m : P->n;
    int64_t per = ceil_div(ceil_div(len, unit), nt) * unit;      /* slice length */
    int parts = (int)ceil_div(len, per);
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        gemm_problem S = *P;
        int64_t lo = t * per, cnt = MIN(per, len - lo);
        if (by_rows) {
            S.m = cnt;
            S.a += lo * P->rsa;
            S.c += lo * P->rsc;
        } else {
            S.n = cnt;
            S.b += lo * P->csb;
            S.c += lo;
            S.bias = P->bias ? P->bias + lo : NULL;
        }
        gemm_serial(g, &S);
    }
}

static gemm_problem problem_at(int64_t t, int64_t m, int64_t n, int64_t k,
                               const float *a, const int64_t *sa, const float *b,
                               const int64_t *sb, const float *bias, float *c,
                               const int64_t *sc)
{
    gemm_problem P = {m, n, k, a + t * sa[0], sa[1], sa[2],
                      b + t * sb[0], sb[1], sb[2], c + t * sc[0], sc[1], bias};
    return P;
}

/* Batches that split evenly over the threads run one matrix per thread;
 * otherwise every matrix is split over all threads. */
void sgemm_blocked(const gemm_arch *g, int64_t bt, int64_t m, int64_t n,
                   int64_t k, const float *a, const int64_t *sa,
                   const float *b, const int64_t *sb, const float *bias,
                   float *c, const int64_t *sc)
{
    if (bt <= 0 || m <= 0 || n <= 0) return;
    if (k <= 0) {                                        /* C = bias, or 0 */
        for (int64_t t = 0; t < bt; t++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) c[t * sc[0] + i * sc[1] + j] = bias ? bias[j] : 0.0f;
        return;
    }
    int nt = minit2t_threads_for(2.0 * (double)bt * (double)m * (double)n * (double)k);
    if (nt > 1 && (bt >= 4 * nt || bt % nt == 0)) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t t = 0; t < bt; t++) {
            gemm_problem P = problem_at(t, m, n, k, a, sa, b, sb, bias, c, sc);
            gemm_serial(g, &P);
        }
    } else {
        for (int64_t t = 0; t < bt; t++) {
            gemm_problem P = problem_at(t, m, n, k, a, sa, b, sb, bias, c, sc);
            if (nt > 1 && k > g->kc)
                gemm_sliced(g, &P, nt);
            else
                gemm_one(g, &P, nt);
        }
    }
}

