/* The blocking of the fast GEMM (after BLIS, Van Zee & van de Geijn 2015):
 * the loops around the micro-kernel and the packing, on one thread.
 * Legend as in gemm.c: C (M, N) = A (M, K) @ B (K, N); MR x NR micro-tile,
 * MC / KC / NC cache blocks, per ISA (gemm_avx2.c, gemm_avx512.c).
 *
 * For one matrix (gemm_loops, then gemm_block):
 *   for jc in N step NC                 B panel  KC x NC, lives in L2/L3
 *     for pc in K step KC
 *       pack B[pc:+KC, jc:+NC] into slivers of NR columns (KC x NR each,
 *         zero-padded), read through B's row/col strides: a transposed B
 *         costs no copy of its own
 *       for ic in M step MC             A block  MC x KC, lives in L2
 *         A is packed into slivers of MR rows first, or used in place:
 *         when its columns are contiguous (unless the panel is wider than
 *         the ISA's pack_wide), or its rows (a transposed A, read by the
 *         packed kernel with its column stride); PACK_A in gemm_blocking.h
 *         (meanwhile the next A block is asked for into L2)
 *         for jr in NC step NR          B sliver KC x NR, lives in L1
 *           for ir in MC step MR        micro-kernel: the MR x NR tile of C
 *                                       in registers, KC rank-1 updates
 * K is cut into blocks of equal size. The first K block stores C (plus the
 * bias), later ones add to it. Tiles cut by the edge of M or N are computed
 * into a zero-padded scratch tile and copied out. Every element of C is
 * summed in the same order however M and N are cut, which is what lets the
 * threads (gemm_threads.c) cut them as they like. */
#include <stdint.h>
#include <string.h>
#include "gemm_blocking.h"

/* B[0:kc, 0:nb] (strides rsb, csb) -> dst, slivers of nr columns:
 * dst[(j / nr) * kc * nr + p * nr + j % nr], zero past nb. */
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
 * (see pack_a), so the copies of mr floats unroll. */
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

/* A[0:mb, 0:kc] (strides rsa, csa) -> dst, slivers of mr rows:
 * dst[(i / mr) * kc * mr + p * mr + i % mr], zero past mb. Rows with
 * contiguous columns go to the ISA's pack_rows in whole slivers. Kept out
 * of line: inlined into gemm_block it measured about 1% slower. */
static __attribute__((noinline)) void
pack_a(const gemm_blocking *g, int64_t mb, int64_t kc, const float *a, int64_t rsa, int64_t csa,
       float *dst)
{
    int mr = g->mr;
    if (rsa == 1) {
        if (mr == 6) pack_a_cols(mb, kc, a, csa, 6, dst);          /* AVX2 */
        else if (mr == 12) pack_a_cols(mb, kc, a, csa, 12, dst);   /* AVX-512 */
        else pack_a_cols(mb, kc, a, csa, mr, dst);
        return;
    }
    int64_t i0 = 0;
    if (csa == 1) {
        i0 = mb / mr * mr;
        g->pack_rows(i0, kc, a, rsa, dst);
    }
    for (dst += i0 * kc; i0 < mb; i0 += mr, dst += kc * mr) {
        int64_t h = MIN(mr, mb - i0);
        const float *src = a + i0 * rsa;
        for (int64_t i = 0; i < mr; i++)
            for (int64_t p = 0; p < kc; p++)
                dst[p * mr + i] = i < h ? src[i * rsa + p * csa] : 0.0f;
    }
}

/* The last h < mr rows of a transposed A used in place (A[i, p] at
 * a[i + p * csa]) -> dst, one packed sliver (kc, mr), zero past h: packed
 * once per block, so the edge tiles of every sliver of B read it. */
static void pack_a_tail(int64_t h, int64_t kc, const float *a, int64_t csa, int mr, float *dst)
{
    for (int64_t p = 0; p < kc; p++)
        for (int64_t i = 0; i < mr; i++) dst[p * mr + i] = i < h ? a[i + p * csa] : 0.0f;
}

/* A tile cut by the edge of M or N: the top-left mr x nr of the MR x NR
 * micro-tile at c (row stride rsc), = (acc ? c : bias or 0) + A @ B. The
 * kernel writes a whole tile into `tile`; A rows past mr are zeros (packed
 * A has them; rows in place are copied into edge_a, MR x kc, first; a
 * transposed A's last rows were packed by gemm_block). `ps`: A's p stride
 * for ukernel_packed, 0 for ukernel_rows (row stride rsa). */
static void edge_tile(const gemm_blocking *g, int64_t mr, int64_t nr, int64_t kc,
                      const float *a, int64_t rsa, int64_t ps, const float *bs,
                      float *c, int64_t rsc, int acc, const float *bias, float *edge_a)
{
    float tile[16 * 64];                       /* MR x NR, MR <= 16, NR <= 64 */
    if (ps) {
        g->ukernel_packed(kc, a, ps, bs, tile, g->nr, 0, NULL);
    } else {
        if (mr < g->mr) {
            memset(edge_a, 0, (size_t)(g->mr * kc) * sizeof(float));
            for (int64_t i = 0; i < mr; i++)
                memcpy(edge_a + i * kc, a + i * rsa, (size_t)kc * sizeof(float));
            a = edge_a;
            rsa = kc;
        }
        g->ukernel_rows(kc, a, rsa, bs, tile, g->nr, 0, NULL);
    }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
            c[i * rsc + j] = (acc ? c[i * rsc + j] : bias ? bias[j] : 0.0f) + tile[i * g->nr + j];
}

/* The micro-kernels' flags for the K block at pc: GEMM_ACC after the first
 * (which starts from the bias), GEMM_STREAM in the last for a large C whose
 * rows start on 64-byte lines (GEMM_STREAM_BYTES in gemm_blocking.h). */
static int block_flags(const gemm_problem *P, int64_t pc, int64_t kb)
{
    int stream = pc + kb >= P->k && P->m * P->n * (int64_t)sizeof(float) >= GEMM_STREAM_BYTES &&
                 (uintptr_t)P->c % 64 == 0 && P->rsc % 16 == 0 && !P->act;
    return (pc > 0 ? GEMM_ACC : 0) | (stream ? GEMM_STREAM : 0);
}

/* After a block written with GEMM_STREAM: its streaming stores made visible
 * before anything that follows (the threads meet, another op reads C). */
static void fence_streams(int flags)
{
#if MINIT2T_X86
    if (flags & GEMM_STREAM) __builtin_ia32_sfence();
#else
    (void)flags;
#endif
}

/* The loops jr, ir over one A block (mb x kb) and the packed B panel
 * (kb x nb): one micro-kernel call per MR x NR tile of C. In the first K
 * block (pc = 0) the kernel starts each row of the tile at the bias, so
 * the bias costs no pass over C. Rows [next_ic, next_ic + next_mb) of A
 * (next_ic < 0: none), the block this thread will likely take next, are
 * asked for into L2 meanwhile, spread over the calls: A is usually the
 * output of the op before, written by streaming stores, so without this
 * every block would start by waiting on memory (AMD EPYC, AVX-512,
 * 16640 x 128 x 128: 96-102 GFLOP/s against 87-91 on one thread;
 * t2t_vit_cifar's inference at batch 256, 2 threads, the builds with and
 * without in one process in turn: 264-274 ms against 276-285; with the
 * AVX2 kernels, which read A in place, 326 against 336). Not for an A
 * read in place beside one or two slivers of B, or with K < 64 (the T2T
 * layers' 65536 x 32 x 32 and, with AVX2, 65536 x 27 x 96): there the
 * hardware prefetcher keeps up, and asking as well ran 3-10% slower. */
void gemm_block(const gemm_blocking *g, const gemm_problem *P, int64_t ic, int64_t mb,
                int64_t pc, int64_t kb, int64_t jc, int64_t nb, const float *bp,
                float *ap, float *edge_a, gemm_next next)
{
    const float *a = P->a + ic * P->rsa + pc * P->csa;       /* A block (mb, kb) */
    int packed = PACK_A(g, P->csa, P->rsa, nb), flags = block_flags(P, pc, kb);
    int64_t ps = packed ? g->mr : A_COLUMNS(P->csa, P->rsa) ? P->csa : 0;  /* see edge_tile */
    if (packed) {
        pack_a(g, mb, kb, a, P->rsa, P->csa, ap);
        a = ap;
    }
    int64_t full = mb / g->mr * g->mr;                        /* rows in whole slivers */
    if (ps && !packed && full < mb)                           /* a transposed A's last rows */
        pack_a_tail(mb - full, kb, a + full, ps, g->mr, edge_a);
    gemm_ukernel ukernel = ps ? g->ukernel_packed : g->ukernel_rows;
    a_prefetch pf = {P->a + pc * P->csa, P->rsa, kb, next.ic, next.ic + next.mb, 0};
    int64_t per_call = 0, calls = ceil_div(nb, g->nr) * ceil_div(mb, g->mr);   /* lines per call */
    int in_place_ok = nb > 2 * g->nr && kb >= 64;             /* see above */
    if ((packed || in_place_ok) && P->csa == 1 && next.ic >= 0 && next.mb > 0 && next.pc == pc) {
        per_call = ceil_div(next.mb * ceil_div(kb, 16), calls);
    } else if (ps && !packed && next.ic >= 0 && next.mb > 0 && next.kb > 0) {
        /* a transposed A read in place (a weight gradient's g^T): its block is next.kb rows of g,
         * next.mb floats each, a row stride apart, which the hardware prefetcher does not follow */
        pf = (a_prefetch){P->a + next.ic, P->csa, next.mb, next.pc, next.pc + next.kb, 0};
        per_call = ceil_div(next.kb * (ceil_div(next.mb, 16) + 1), calls);
    }
    const float *bias = pc == 0 && P->bias ? P->bias + jc : NULL;
    /* With GELU after a product of one K block, the block goes to this thread's scratch (cb),
     * and from there through the epilogue to act and C (gemm_act_block). */
    int64_t ldb = ceil_div(nb, g->nr) * g->nr;
    float *cb = P->act && kb == P->k ? minit2t_scratch(SCRATCH_C_BLOCK, (size_t)(mb * ldb)) : NULL;
    float *c = cb ? cb : P->c + ic * P->rsc + jc;
    int64_t rsc = cb ? ldb : P->rsc;
    for (int64_t jr = 0; jr < nb; jr += g->nr) {
        const float *bs = bp + jr * kb;                       /* sliver (kb, NR) */
        int64_t nr = MIN(g->nr, nb - jr);
        for (int64_t ir = 0; ir < mb; ir += g->mr) {
            int64_t mr = MIN(g->mr, mb - ir);
            const float *as = a + (packed ? ir * kb : ir * P->rsa);  /* MR rows */
            float *ct = c + ir * rsc + jr;                     /* tile (MR, NR) */
            if (per_call) prefetch_a_lines(&pf, per_call);
            if (mr < g->mr || nr < g->nr) {
                int cut = ps && !packed && ir == full;         /* the packed last rows */
                edge_tile(g, mr, nr, kb, cut ? edge_a : as, P->rsa, cut ? g->mr : ps, bs, ct,
                          rsc, flags & GEMM_ACC, bias ? bias + jr : NULL, edge_a);
            } else {
                ukernel(kb, as, ps ? ps : P->rsa, bs, ct, rsc, flags, bias ? bias + jr : NULL);
            }
        }
    }
    fence_streams(flags);
    if (P->act && pc + kb >= P->k) gemm_act_block(P, ic, mb, jc, nb, cb, ldb);
}

int64_t gemm_balanced_kc(const gemm_blocking *g, int64_t k)
{
    return ceil_div(k, ceil_div(k, g->kc));
}

void gemm_fallback(const gemm_problem *P)
{
    int64_t sa[3] = {0, P->rsa, P->csa}, sb[3] = {0, P->rsb, P->csb}, sc[2] = {0, P->rsc};
    if (P->bias)
        sgemm_bias_ref(1, P->m, P->n, P->k, P->a, sa, P->b, sb, P->bias, P->c, sc);
    else
        sgemm_ref(1, P->m, P->n, P->k, P->a, sa, P->b, sb, P->c, sc);
    if (P->act) gemm_epilogue(P, 0, 0, P->c, P->rsc, NULL, 0, P->m, P->n, 0);
}

/* The loops jc, pc, ic (the nesting above) for the whole of P, on the
 * calling thread alone, with no OpenMP construct: the threads run it on
 * matrices or slices of C of their own (gemm_threads.c). */
void gemm_loops(const gemm_blocking *g, const gemm_problem *P)
{
    int64_t kc = gemm_balanced_kc(g, P->k), nc = MIN(g->nc, ceil_div(P->n, g->nr) * g->nr);
    float *bp = minit2t_scratch(SCRATCH_B_PANEL, (size_t)(kc * nc));
    float *ap = minit2t_scratch(SCRATCH_A_BLOCK, (size_t)((g->mc + g->mr) * kc));
    float *edge_a = minit2t_scratch(SCRATCH_EDGE_A, (size_t)(g->mr * kc));
    if (!bp || !ap || !edge_a) {
        gemm_fallback(P);
        return;
    }
    for (int64_t jc = 0; jc < P->n; jc += nc)
        for (int64_t pc = 0; pc < P->k; pc += kc) {
            int64_t nb = MIN(nc, P->n - jc), kb = MIN(kc, P->k - pc);
            gemm_pack_b(kb, nb, P->b + pc * P->rsb + jc * P->csb, P->rsb, P->csb, g->nr, bp);
            for (int64_t ic = 0; ic < P->m; ic += g->mc)
                gemm_block(g, P, ic, MIN(g->mc, P->m - ic), pc, kb, jc, nb, bp, ap, edge_a,
                           gemm_next_block(P, ic, g->mc, pc, kb, kc));
        }
}
