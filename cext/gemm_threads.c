/* How the threads share the fast GEMM: gemm_threaded, the entry of
 * sgemm_avx2 / sgemm_avx512, picks one of three plans; each runs the
 * loops of gemm_loops.c. Legend as in gemm.c and gemm_loops.c; P one
 * product (gemm_problem), nt the thread count.
 *
 *   a batch that splits evenly    one matrix per thread, each gemm_loops
 *   several K blocks (K > KC)     gemm_sliced: fixed slices of C, rows or
 *                                 columns, one per thread, each gemm_loops
 *   otherwise                     gemm_team: the threads pack each B panel
 *                                 together, then take (A block x run of
 *                                 slivers) work items, gemm_block each, as
 *                                 they come free, so a thread slowed by
 *                                 other work on the machine holds no one up
 * Work items never share a C element, and every element is summed in the
 * same order on any number of threads. Code that runs inside a parallel
 * region calls gemm_loops, which has no OpenMP construct of its own (a
 * nested region would cost a team each). */
#include <stdlib.h>
#include "gemm_blocking.h"

/* Products of several K blocks (a weight gradient x^T g has K = the batch's
 * rows): the shared panels of gemm_team would meet at a barrier twice per
 * K block, so the threads instead take fixed slices of C, rows (or
 * columns, when N is the longer side), and each runs its own gemm_loops.
 * Slices start at multiples of MR (NR), so the result does not depend on
 * the thread count. */
static void gemm_sliced(const gemm_blocking *g, const gemm_problem *P, int nt)
{
    int by_rows = P->m >= P->n;
    int64_t unit = by_rows ? g->mr : g->nr, len = by_rows ? P->m : P->n;
    int64_t per = ceil_div(ceil_div(len, unit), nt) * unit;      /* slice length */
    int parts = (int)ceil_div(len, per);
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        gemm_problem S = gemm_problem_slice(P, by_rows, t * per, MIN(per, len - t * per));
        gemm_loops(g, &S);
    }
}

int gemm_split_k(const gemm_problem *P, int64_t kc)
{
    return P->k > kc && P->k >= 8 * MAX(P->m, P->n);
}

int gemm_split_k_run(const gemm_problem *P, int64_t kstep, int nt, void (*alone)(const void *, const gemm_problem *),
                     const void *how)
{
    int64_t chunk = ceil_div(ceil_div(P->k, GEMM_SPLIT_K), kstep) * kstep;
    int chunks = (int)ceil_div(P->k, chunk);
    size_t mn = (size_t)(P->m * P->n);
    float *part = aligned_alloc(64, (chunks * mn * sizeof(float) + 63) / 64 * 64);
    if (!part) return -1;
#pragma omp parallel for num_threads(MIN(nt, chunks)) schedule(static) if (nt > 1)
    for (int t = 0; t < chunks; t++) {
        gemm_problem S = *P;                                  /* rows [t chunk, +chunk) of K */
        S.k = MIN(chunk, P->k - t * chunk);
        S.a += t * chunk * P->csa;
        S.b += t * chunk * P->rsb;
        S.c = part + t * mn;
        S.rsc = P->n;
        S.bias = NULL;
        S.act = NULL;
        S.res = NULL;
        alone(how, &S);
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < P->m; i++) {                      /* C's row i: bias + the partials */
        float *ci = P->c + i * P->rsc;
        for (int64_t j = 0; j < P->n; j++) ci[j] = P->bias ? P->bias[j] : 0.0f;
        for (int t = 0; t < chunks; t++)
            for (int64_t j = 0; j < P->n; j++) ci[j] += part[t * mn + i * P->n + j];
        if (P->act) gemm_epilogue(P, i, 0, ci, P->rsc, NULL, 0, 1, P->n, 0);
    }
    free(part);
    return 0;
}

static void loops_of(const void *g, const gemm_problem *S) { gemm_loops((const gemm_blocking *)g, S); }

gemm_problem gemm_problem_slice(const gemm_problem *P, int by_rows, int64_t lo, int64_t cnt)
{
    gemm_problem S = *P;
    if (by_rows) {
        S.m = cnt;
        S.a += lo * P->rsa;
        S.c += lo * P->rsc;
        S.act = P->act ? P->act + lo * P->rsact : NULL;
        S.res = P->res ? P->res + lo * P->rsres : NULL;
    } else {
        S.n = cnt;
        S.b += lo * P->csb;
        S.c += lo;
        S.bias = P->bias ? P->bias + lo : NULL;
        S.act = P->act ? P->act + lo : NULL;
        S.res = P->res ? P->res + lo : NULL;
    }
    return S;
}

/* gemm_team's work items for one B panel of nb columns: mblocks x split
 * blocks of C, mc rows (a multiple of MR, at most MC + MR) by nw columns
 * (a multiple of NR). M is cut into a multiple of nt blocks of equal size;
 * when that gives fewer than 8 per thread, N is cut too. */
typedef struct { int64_t mc, mblocks, nw, split; } team_items;

static team_items team_split(const gemm_blocking *g, int64_t m, int64_t nb, int nt)
{
    team_items it;
    int64_t blocks = ceil_div(ceil_div(m, g->mc), nt) * nt;      /* even shares */
    it.mc = ceil_div(ceil_div(m, blocks), g->mr) * g->mr;
    it.mblocks = ceil_div(m, it.mc);
    int64_t slivers = ceil_div(nb, g->nr);
    int64_t split = (nt == 1 || it.mblocks >= 8 * nt) ? 1 : ceil_div(8 * nt, it.mblocks);
    it.nw = ceil_div(slivers, MIN(split, slivers)) * g->nr;
    it.split = ceil_div(nb, it.nw);
    return it;
}

/* One product on a team of nt > 1 threads: every thread runs the panel
 * loops jc, pc; they pack each B panel together (one sliver per step; the
 * omp for ends in a barrier), then share its work items. */
static void gemm_team(const gemm_blocking *g, const gemm_problem *P, int nt)
{
    int64_t kc = gemm_balanced_kc(g, P->k), nc = MIN(g->nc, ceil_div(P->n, g->nr) * g->nr);
    int64_t per_a = (g->mc + g->mr) * kc, per_e = g->mr * kc;  /* per thread */
    float *bp = minit2t_scratch(SCRATCH_B_PANEL, (size_t)(kc * nc));
    float *ap = minit2t_scratch(SCRATCH_A_BLOCK, (size_t)(nt * per_a));
    float *edge_a = minit2t_scratch(SCRATCH_EDGE_A, (size_t)(nt * per_e));
    if (!bp || !ap || !edge_a) {
        gemm_fallback(P);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        float *my_a = ap + minit2t_thread_id() * per_a, *my_edge = edge_a + minit2t_thread_id() * per_e;
        for (int64_t jc = 0; jc < P->n; jc += nc)
            for (int64_t pc = 0; pc < P->k; pc += kc) {
                int64_t nb = MIN(nc, P->n - jc), kb = MIN(kc, P->k - pc);
#pragma omp for schedule(static)
                for (int64_t j = 0; j < nb; j += g->nr)
                    gemm_pack_b(kb, MIN(g->nr, nb - j), P->b + pc * P->rsb + (jc + j) * P->csb,
                                P->rsb, P->csb, g->nr, bp + j * kb);
                team_items it = team_split(g, P->m, nb, nt);
#pragma omp for schedule(dynamic, 1)
                for (int64_t t = 0; t < it.mblocks * it.split; t++) {
                    int64_t ic = t / it.split * it.mc, j0 = t % it.split * it.nw;
                    int64_t nic = (t + nt) / it.split * it.mc;     /* item t + nt's A block: */
                    int ahead = nic != ic && nic < P->m;            /* likely this thread's next */
                    gemm_next next = {ahead ? nic : -1, ahead ? MIN(it.mc, P->m - nic) : 0, pc, kb};
                    gemm_block(g, P, ic, MIN(it.mc, P->m - ic), pc, kb, jc + j0,
                               MIN(it.nw, nb - j0), bp + j0 * kb, my_a, my_edge, next);
                }
            }
    }
}

gemm_problem gemm_problem_at(int64_t t, int64_t m, int64_t n, int64_t k, const float *a,
                             const int64_t *sa, const float *b, const int64_t *sb,
                             const float *bias, float *c, const int64_t *sc,
                             float *act, const int64_t *sact, const float *res, const int64_t *sres)
{
    gemm_problem P = {m, n, k, a + t * sa[0], sa[1], sa[2],
                      b + t * sb[0], sb[1], sb[2], c + t * sc[0], sc[1], bias,
                      act ? act + t * sact[0] : NULL, act ? sact[1] : 0,
                      res ? res + t * sres[0] : NULL, res ? sres[1] : 0};
    return P;
}

void gemm_epilogue(const gemm_problem *P, int64_t i, int64_t j, const float *x, int64_t rx,
                   float *h, int64_t rh, int64_t rows, int64_t cols, int stream)
{
    float *act = P->act + i * P->rsact + j;
    if (P->res)
        add_block(x, rx, P->res + i * P->rsres + j, P->rsres, act, P->rsact, rows, cols, stream);
    else
        gelu_block(x, rx, act, P->rsact, h, rh, rows, cols, stream);
}

void gemm_act_block(const gemm_problem *P, int64_t ic, int64_t mb, int64_t jc, int64_t nb,
                    const float *cb, int64_t ldb)
{
    float *c = P->c + ic * P->rsc + jc, *act = P->act + ic * P->rsact + jc;
    int big = P->m * P->n * (int64_t)sizeof(float) >= GEMM_STREAM_BYTES;
    if (cb)                         /* act (and C, when act is not C) from the block */
        gemm_epilogue(P, ic, jc, cb, ldb, act == c ? NULL : c, P->rsc, mb, nb,
                      big && P->rsact % 16 == 0 && P->rsc % 16 == 0);
    else                            /* in C: streaming stores only into another act */
        gemm_epilogue(P, ic, jc, c, P->rsc, NULL, 0, mb, nb, big && P->rsact % 16 == 0 && act != c);
}

/* Arguments as gemm_blocking.h says (bias, act, res NULL: none); g the ISA's blocking. */
void gemm_threaded(const gemm_blocking *g, int64_t bt, int64_t m, int64_t n,
                   int64_t k, const float *a, const int64_t *sa,
                   const float *b, const int64_t *sb, const float *bias,
                   float *c, const int64_t *sc, float *act, const int64_t *sact,
                   const float *res, const int64_t *sres)
{
    if (bt <= 0 || m <= 0 || n <= 0) return;
    if (k <= 0) {                                        /* C = bias, or 0 */
        for (int64_t t = 0; t < bt; t++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) c[t * sc[0] + i * sc[1] + j] = bias ? bias[j] : 0.0f;
        if (res) gemm_add_matrices(add_block, bt, m, n, c, sc, res, sres);
        else if (act) gemm_gelu_matrices(gelu_block, bt, m, n, c, sc, act, sact);
        return;
    }
    int nt = minit2t_threads_for(2.0 * (double)bt * (double)m * (double)n * (double)k);
    if (nt > 1 && (bt >= 4 * nt || bt % nt == 0)) {      /* one matrix per thread */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t t = 0; t < bt; t++) {
            gemm_problem P = gemm_problem_at(t, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, res, sres);
            gemm_loops(g, &P);
        }
        return;
    }
    for (int64_t t = 0; t < bt; t++) {
        gemm_problem P = gemm_problem_at(t, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, res, sres);
        if (gemm_split_k(&P, g->kc) && gemm_split_k_run(&P, 1, nt, loops_of, g) == 0) continue;
        if (nt == 1) gemm_loops(g, &P);
        else if (k > g->kc) gemm_sliced(g, &P, nt);
        else gemm_team(g, &P, nt);
    }
}
