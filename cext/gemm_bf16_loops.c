/* The loops of the bf16 GEMM around a kit's micro-kernel (gemm_bf16.h), and
 * how the threads share them: gemm_bf16_run, the entry of every fast
 * version. The blocking of the float32 GEMM (gemm_loops.c), with two
 * differences: A and B are always packed, since the packing is where their
 * elements are rounded to bf16 (no pass of its own over either); and each
 * thread may have to set itself up (AMX: the tile configuration). Legend as
 * in gemm.c and gemm_bf16.h.
 *
 *   for jc in N step NC
 *     for pc in K step KC              K blocks of equal size, kb -> kp (kstep)
 *       pack B[pc:+kb, jc:+NC]         slivers of NR columns, rounded
 *       for ic in M step MC
 *         pack A[ic:+MC, pc:+kb]       rows, rounded
 *         for jr in NC step NR, ir in MC step MR: the micro-kernel
 *
 * Threads (the plans of gemm_threads.c): a batch that splits evenly is
 * shared one matrix per thread; a product of several K blocks is cut into
 * fixed slices of C, one per thread; otherwise the threads pack each B
 * panel together and take its A blocks as they come free. Every element of
 * C is summed in the same order on any number of threads. */
#include "gemm_bf16.h"

/* The row stride of a packed A block of kp columns: kp, one 64-byte line
 * more when its rows would be a multiple of 512 bytes apart (the MR rows a
 * micro-kernel reads would crowd a few sets of L1; see A_COLUMNS in
 * gemm_blocking.h). */
static int64_t lda_of(const bf16_kit *kit, int64_t kp)
{
    return kp + (kp * kit->a_bytes % 512 == 0 ? 64 / kit->a_bytes : 0);
}

/* The block sizes of one product: kc (K cut into equal blocks, each a
 * multiple of the kit's kstep), nc, and the bytes of the packed B panel and
 * of one packed A block of mc rows (with room for the line lda_of may add
 * to the last, shorter K block). */
typedef struct { int64_t kc, nc, b_panel, a_block; } bf16_sizes;

static bf16_sizes sizes_of(const bf16_kit *kit, const gemm_problem *P, int64_t mc)
{
    bf16_sizes s;
    int64_t kc = ceil_div(P->k, ceil_div(P->k, kit->kc));
    s.kc = ceil_div(kc, kit->kstep) * kit->kstep;
    s.nc = MIN(kit->nc, ceil_div(P->n, kit->nr) * kit->nr);
    s.b_panel = s.kc * s.nc * kit->b_bytes;
    s.a_block = ceil_div(mc, kit->mr) * kit->mr * (s.kc * kit->a_bytes + 64);
    return s;
}

/* Slivers [s0, s1) of the B panel B[pc:+kb, jc:+nb] into bp. */
static void pack_slivers(const bf16_kit *kit, const gemm_problem *P, int64_t pc, int64_t kb,
                         int64_t kp, int64_t jc, int64_t nb, int64_t s0, int64_t s1, char *bp)
{
    for (int64_t s = s0; s < s1; s++) {
        int64_t j = s * kit->nr;
        kit->pack_b(kb, MIN(kit->nr, nb - j), P->b + pc * P->rsb + (jc + j) * P->csb, P->rsb,
                    P->csb, kp, kit->nr, bp + s * kp * kit->nr * kit->b_bytes);
    }
}

/* A tile cut by the edge of M or N: the whole MR x NR tile into `tile`, its
 * top-left mr x nr added to C (acc), or to the bias, or stored. */
static void edge_tile(const bf16_kit *kit, int64_t mr, int64_t nr, int64_t kp, const char *as,
                      int64_t lda, const char *bs, float *c, int64_t rsc, int acc,
                      const float *bias)
{
    float tile[32 * 32];                         /* MR x NR, both at most 32 */
    kit->ukernel(kp, as, lda, bs, tile, kit->nr, 0, NULL);
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
            c[i * rsc + j] = (acc ? c[i * rsc + j] : bias ? bias[j] : 0.0f) + tile[i * kit->nr + j];
}

/* A tile into the block of gemm_act_block (row stride ldb), whole; an edge
 * tile (cut by M, or by N to nr columns) adds its bias after the products,
 * as edge_tile, so that the values are the same as without the block. */
static void block_tile(const bf16_kit *kit, int edge, int64_t nr, int64_t kp, const char *as,
                       int64_t lda, const char *bs, float *ct, int64_t ldb, const float *bias)
{
    kit->ukernel(kp, as, lda, bs, ct, ldb, 0, edge ? NULL : bias);
    if (edge && bias)
        for (int64_t i = 0; i < kit->mr; i++)
            for (int64_t j = 0; j < nr; j++) ct[i * ldb + j] = bias[j] + ct[i * ldb + j];
}

/* C is written by streaming stores in its last K block when it is large and
 * its rows start on 64-byte lines (GEMM_STREAM_BYTES, gemm_blocking.h). */
static int block_flags(const gemm_problem *P, int64_t pc, int64_t kb)
{
    int stream = pc + kb >= P->k && P->m * P->n * (int64_t)sizeof(float) >= GEMM_STREAM_BYTES &&
                 (uintptr_t)P->c % 64 == 0 && P->rsc % 16 == 0 && !P->act;
    return (pc > 0 ? GEMM_ACC : 0) | (stream ? GEMM_STREAM : 0);
}

/* One A block: A[ic:+mb, pc:+kb] packed into ap, then the loops jr, ir over
 * it and the packed B panel bp (kb x nb, at column jc). The first K block
 * starts each tile at the bias. */
static void a_block(const bf16_kit *kit, const gemm_problem *P, int64_t ic, int64_t mb,
                    int64_t pc, int64_t kb, int64_t kp, int64_t jc, int64_t nb,
                    const char *bp, char *ap, gemm_next next)
{
    int64_t mp = ceil_div(mb, kit->mr) * kit->mr, lda = lda_of(kit, kp);
    int flags = block_flags(P, pc, kb);
    kit->pack_a(mb, kb, P->a + ic * P->rsa + pc * P->csa, P->rsa, P->csa, mp, kp, ap, lda);
    const float *bias = pc == 0 && P->bias ? P->bias + jc : NULL;
    int64_t ldb = ceil_div(nb, kit->nr) * kit->nr;              /* GELU's block: whole tiles */
    float *cb = P->act && kb == P->k ? minit2t_scratch(SCRATCH_C_BLOCK, (size_t)(mp * ldb)) : NULL;
    a_prefetch pf = {NULL, 0, 0, 0, 0, 0};                       /* the next A block, see above */
    int64_t per_call = 0, calls = ceil_div(nb, kit->nr) * ceil_div(mb, kit->mr);
    if (next.ic >= 0 && next.mb > 0 && next.kb > 0 && (P->csa == 1 || P->rsa == 1)) {
        pf = P->csa == 1 ? (a_prefetch){P->a + next.pc, P->rsa, next.kb, next.ic, next.ic + next.mb, 0}
                         : (a_prefetch){P->a + next.ic, P->csa, next.mb, next.pc, next.pc + next.kb, 0};
        per_call = ceil_div((pf.r1 - pf.r) * (ceil_div(pf.cols, 16) + 1), calls);
    }
    for (int64_t jr = 0; jr < nb; jr += kit->nr) {
        const char *bs = bp + jr * kp * kit->b_bytes;             /* sliver (kp, NR) */
        int64_t nr = MIN(kit->nr, nb - jr);
        for (int64_t ir = 0; ir < mb; ir += kit->mr) {
            const char *as = ap + ir * lda * kit->a_bytes;         /* MR rows */
            float *ct = P->c + (ic + ir) * P->rsc + jc + jr;       /* tile (MR, NR) */
            if (per_call) prefetch_a_lines(&pf, per_call);
            if (cb)                       /* whole tiles: A, B are packed with zeros past mb, nb */
                block_tile(kit, ir + kit->mr > mb || nr < kit->nr, nr, kp, as, lda, bs,
                           cb + ir * ldb + jr, ldb, bias ? bias + jr : NULL);
            else if (ir + kit->mr > mb || nr < kit->nr)
                edge_tile(kit, MIN(kit->mr, mb - ir), nr, kp, as, lda, bs, ct, P->rsc,
                          flags & GEMM_ACC, bias ? bias + jr : NULL);
            else
                kit->ukernel(kp, as, lda, bs, ct, P->rsc, flags, bias ? bias + jr : NULL);
        }
    }
#if MINIT2T_X86
    if (flags & GEMM_STREAM) __builtin_ia32_sfence();   /* the streamed rows visible */
#endif
    if (P->act && pc + kb >= P->k) gemm_act_block(P, ic, mb, jc, nb, cb, ldb);
}

/* When scratch memory runs out: the reference loops. */
static void fallback(const gemm_problem *P)
{
    int64_t sa[3] = {0, P->rsa, P->csa}, sb[3] = {0, P->rsb, P->csb}, sc[2] = {0, P->rsc};
    sgemm_bf16_ref(1, P->m, P->n, P->k, P->a, sa, P->b, sb, P->bias, P->c, sc);
    if (P->act) gemm_epilogue(P, 0, 0, P->c, P->rsc, NULL, 0, P->m, P->n, 0);
}

/* The whole product P on the calling thread, with no OpenMP construct (it
 * may run inside a parallel region); the thread is set up already. */
static void loops_alone(const bf16_kit *kit, const gemm_problem *P)
{
    bf16_sizes s = sizes_of(kit, P, kit->mc);
    char *bp = (char *)minit2t_scratch(SCRATCH_B_PANEL, (size_t)ceil_div(s.b_panel, 4));
    char *ap = (char *)minit2t_scratch(SCRATCH_A_BLOCK, (size_t)ceil_div(s.a_block, 4));
    if (!bp || !ap) {
        fallback(P);
        return;
    }
    for (int64_t jc = 0; jc < P->n; jc += s.nc)
        for (int64_t pc = 0; pc < P->k; pc += s.kc) {
            int64_t nb = MIN(s.nc, P->n - jc), kb = MIN(s.kc, P->k - pc);
            int64_t kp = ceil_div(kb, kit->kstep) * kit->kstep;
            pack_slivers(kit, P, pc, kb, kp, jc, nb, 0, ceil_div(nb, kit->nr), bp);
            for (int64_t ic = 0; ic < P->m; ic += kit->mc)
                a_block(kit, P, ic, MIN(kit->mc, P->m - ic), pc, kb, kp, jc, nb, bp, ap,
                        gemm_next_block(P, ic, kit->mc, pc, kb, s.kc));
        }
}

/* One product on a team of nt > 1 threads: each B panel packed by all (one
 * sliver per step; the omp for ends in a barrier), then its A blocks taken
 * as they come free. M is cut into at least 4 blocks per thread when it is
 * short (a weight gradient's M is the layer's width), so that none waits
 * long for the last. */
static void loops_team(const bf16_kit *kit, const gemm_problem *P, int nt)
{
    int64_t mc = MIN(kit->mc, ceil_div(ceil_div(P->m, 4 * nt), kit->mr) * kit->mr);
    bf16_sizes s = sizes_of(kit, P, mc);
    char *bp = (char *)minit2t_scratch(SCRATCH_B_PANEL, (size_t)ceil_div(s.b_panel, 4));
    char *ap = (char *)minit2t_scratch(SCRATCH_A_BLOCK, (size_t)ceil_div(nt * s.a_block, 4));
    if (!bp || !ap) {
        fallback(P);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        char *my_a = ap + minit2t_thread_id() * s.a_block;
        if (kit->thread_start) kit->thread_start();
        for (int64_t jc = 0; jc < P->n; jc += s.nc)
            for (int64_t pc = 0; pc < P->k; pc += s.kc) {
                int64_t nb = MIN(s.nc, P->n - jc), kb = MIN(s.kc, P->k - pc);
                int64_t kp = ceil_div(kb, kit->kstep) * kit->kstep;
#pragma omp for schedule(static)
                for (int64_t sl = 0; sl < ceil_div(nb, kit->nr); sl++)
                    pack_slivers(kit, P, pc, kb, kp, jc, nb, sl, sl + 1, bp);
#pragma omp for schedule(dynamic, 1)
                for (int64_t ic = 0; ic < P->m; ic += mc) {
                    int64_t nic = ic + nt * mc;               /* likely this thread's next block */
                    gemm_next next = {nic < P->m ? nic : -1, MIN(mc, P->m - nic), pc, kb};
                    a_block(kit, P, ic, MIN(mc, P->m - ic), pc, kb, kp, jc, nb, bp, my_a, next);
                }
            }
        if (kit->thread_end) kit->thread_end();
    }
}

/* Products of several K blocks (a weight gradient g^T x, K the batch's
 * rows) would meet at the team's barriers twice per K block, and a thread
 * descheduled by other work holds the others there: the threads take fixed
 * slices of C instead, rows (or columns, when N is the longer side) at
 * multiples of MR (NR), each packing its own panels of B (A). Faster even
 * on a quiet machine, though each thread packs all of B: AMX, 2 threads,
 * 384 x 8320 x 128 (A transposed) 0.99 against 1.10 ms for the team. */
static void loops_sliced(const bf16_kit *kit, const gemm_problem *P, int nt)
{
    int by_rows = P->m >= P->n;
    int64_t unit = by_rows ? kit->mr : kit->nr, len = by_rows ? P->m : P->n;
    int64_t per = ceil_div(ceil_div(len, unit), nt) * unit;      /* slice length */
    int parts = (int)ceil_div(len, per);
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int t = 0; t < parts; t++) {
        gemm_problem S = gemm_problem_slice(P, by_rows, t * per, MIN(per, len - t * per));
        if (kit->thread_start) kit->thread_start();
        loops_alone(kit, &S);
        if (kit->thread_end) kit->thread_end();
    }
}

/* One chunk of gemm_split_k_run on the calling thread: the kit's loops. */
static void alone_of(const void *kit, const gemm_problem *S)
{
    const bf16_kit *k = kit;
    if (k->thread_start) k->thread_start();
    loops_alone(k, S);
    if (k->thread_end) k->thread_end();
}

void gemm_bf16_run(const bf16_kit *kit, int64_t bt, int64_t m, int64_t n, int64_t k,
                   const float *a, const int64_t *sa, const float *b, const int64_t *sb,
                   const float *bias, float *c, const int64_t *sc, float *act, const int64_t *sact,
                   const float *res, const int64_t *sres)
{
    if (bt <= 0 || m <= 0 || n <= 0 || k <= 0) {          /* nothing, or C = bias (or 0) */
        sgemm_bf16_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
        if (res) gemm_add_matrices(add_block, bt, m, n, c, sc, res, sres);
        else if (act) gemm_gelu_matrices(gelu_block, bt, m, n, c, sc, act, sact);
        return;
    }
    int nt = minit2t_threads_for(2.0 * (double)bt * (double)m * (double)n * (double)k);
    if (nt > 1 && (bt >= 4 * nt || bt % nt == 0)) {      /* one matrix per thread */
#pragma omp parallel num_threads(nt)
        {
            if (kit->thread_start) kit->thread_start();
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < bt; t++) {
                gemm_problem P = gemm_problem_at(t, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, res, sres);
                loops_alone(kit, &P);
            }
            if (kit->thread_end) kit->thread_end();
        }
        return;
    }
    for (int64_t t = 0; t < bt; t++) {
        gemm_problem P = gemm_problem_at(t, m, n, k, a, sa, b, sb, bias, c, sc, act, sact, res, sres);
        if (gemm_split_k(&P, kit->kc) && gemm_split_k_run(&P, kit->kstep, nt, alone_of, kit) == 0) {
            continue;
        } else if (nt > 1 && k > kit->kc) {
            loops_sliced(kit, &P, nt);
        } else if (nt > 1) {
            loops_team(kit, &P, nt);
        } else {
            if (kit->thread_start) kit->thread_start();
            loops_alone(kit, &P);
            if (kit->thread_end) kit->thread_end();
        }
    }
}
