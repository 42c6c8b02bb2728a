/* The blocked GEMM's shared declarations: what gemm_avx2.c / gemm_avx512.c
 * (micro-kernels, block sizes), gemm_threads.c (threads) and gemm_loops.c
 * (the loops) pass each other. Legend as in gemm.c; MR x NR the
 * micro-tile, MC / KC / NC the cache blocks (the nesting: gemm_loops.c). */
#ifndef MINIT2T_GEMM_BLOCKING_H
#define MINIT2T_GEMM_BLOCKING_H
#include "runtime.h"

/* A micro-kernel: the MR x NR tile C = (or +=, with GEMM_ACC in flags)
 * A @ B + bias, over kc:
 *   a  MR rows of A, kc columns: ukernel_rows reads them in place (row
 *      stride rsa, columns contiguous); ukernel_packed reads A[i, p] at
 *      a[p*rsa + i]: a packed sliver (rsa = MR), or a transposed A in
 *      place (rows contiguous, rsa its column stride)
 *   b  a packed B sliver (kc, NR): row p at b + p*NR
 *   c  the C tile, row stride rsc, columns contiguous; with GEMM_STREAM
 *      its rows are stored by streaming stores (c 64-byte aligned)
 *   bias  NR floats added to every row of the tile, or NULL */
enum { GEMM_ACC = 1, GEMM_STREAM = 2 };
typedef void (*gemm_ukernel)(int64_t kc, const float *a, int64_t rsa,
                             const float *b, float *c, int64_t rsc, int flags,
                             const float *bias);

/* Packs `rows` rows of A (a multiple of MR), columns contiguous (row
 * stride rsa), kc columns, into slivers: dst[(i / MR) * kc * MR + p * MR +
 * i % MR]. */
typedef void (*gemm_pack_rows)(int64_t rows, int64_t kc, const float *a, int64_t rsa, float *dst);

/* One ISA's blocking: its micro-tile MR x NR, its cache blocks MC, KC, NC,
 * its micro-kernels for A in place / A packed, its packing of A's rows, and
 * pack_wide: rows that could be read in place are packed all the same when
 * the panel of B is wider than pack_wide columns (0: never; see PACK_A). */
typedef struct {
    int mr, nr;
    int64_t mc, kc, nc;
    gemm_ukernel ukernel_rows, ukernel_packed;
    gemm_pack_rows pack_rows;
    int64_t pack_wide;
} gemm_blocking;

/* Each ISA's blocking (gemm_avx2.c, gemm_avx512.c; only on x86-64, and to
 * be used only where the CPU has the ISA). The bf16 GEMM runs their
 * ukernel_rows on operands it has rounded to bf16 (gemm_bf16_fast.c). */
extern const gemm_blocking gemm_blocking_avx2, gemm_blocking_avx512;

/* One product C = A @ B + bias; strides in floats. */
typedef struct {
    int64_t m, n, k;
    const float *a;
    int64_t rsa, csa;          /* A (M, K): row, column stride */
    const float *b;
    int64_t rsb, csb;          /* B (K, N) */
    float *c;
    int64_t rsc;               /* C (M, N), columns contiguous */
    const float *bias;         /* (N,) added to every row of C, or NULL */
    float *act;                /* the epilogue's output (M, N), row stride rsact, */
    int64_t rsact;             /* or NULL: none (see gemm_act_block) */
    const float *res;          /* with act: NULL, act = gelu(C); else act = C + res, */
    int64_t rsres;             /* res (M, N) with row stride rsres */
} gemm_problem;

/* act[t] = gelu(C[t]) for each of bt matrices (m, n), strides sc, sact as
 * sgemm_bias_gelu's, by `gelu` (gelu_block_ref, or the dispatcher
 * gelu_block): the GELU of a product that did not run the blocked loops
 * (a reference, a product too small for them, or K = 0). */
typedef void (*gemm_gelu_fn)(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                             int64_t rows, int64_t cols, int stream);
static inline void gemm_gelu_matrices(gemm_gelu_fn gelu, int64_t bt, int64_t m, int64_t n, const float *c,
                                      const int64_t *sc, float *act, const int64_t *sact)
{
    for (int64_t t = 0; t < bt && m > 0 && n > 0; t++)
        gelu(c + t * sc[0], sc[1], act + t * sact[0], sact[1], NULL, 0, m, n, 0);
}

/* C[t] += R[t] for each of bt matrices (m, n), strides sc, sr as
 * sgemm_bias_add's, by `add` (add_block_ref, or the dispatcher add_block):
 * the residual of a product that did not run the blocked loops. */
typedef void (*gemm_add_fn)(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
                            int64_t rows, int64_t cols, int stream);
static inline void gemm_add_matrices(gemm_add_fn add, int64_t bt, int64_t m, int64_t n, float *c,
                                     const int64_t *sc, const float *r, const int64_t *sr)
{
    for (int64_t t = 0; t < bt && m > 0 && n > 0; t++)
        add(c + t * sc[0], sc[1], r + t * sr[0], sr[1], c + t * sc[0], sc[1], m, n, 0);
}

/* P's epilogue on rows [i, +rows), columns [j, +cols) of C, whose values
 * are x (row stride rx; x may be C itself): act = gelu(x), and h = x when
 * h is not NULL; or, with P->res, act = x + res. stream as gelu_block's. */
void gemm_epilogue(const gemm_problem *P, int64_t i, int64_t j, const float *x, int64_t rx,
                   float *h, int64_t rh, int64_t rows, int64_t cols, int stream);

/* The GEMM's epilogue (sgemm_bias_gelu, sgemm_bf16_gelu): with P->act,
 * act[ic:+mb, jc:+nb] = gelu(C[ic:+mb, jc:+nb]) for a block of C whose
 * last K block is done, while it is still in cache (gelu_block, fused.c),
 * so the activation costs no pass of its own over C. act may be c (in
 * place: the values before GELU are then not kept). With P->res
 * (sgemm_bias_add, sgemm_bf16_add; act is then c) the epilogue is
 * C + res instead (add_block). With cb, the block was
 * computed into this thread's scratch (row stride ldb; a product of one K
 * block), and goes from there to act and to C (when act is not C), both by
 * streaming stores when large: no store misses the cache to read a line it
 * will overwrite. Without cb (several K blocks: C sums them), the block is
 * read from C, which is then not written by streaming stores. */
void gemm_act_block(const gemm_problem *P, int64_t ic, int64_t mb, int64_t jc, int64_t nb,
                    const float *cb, int64_t ldb);

/* A is read in place by ukernel_rows when its columns are contiguous, by
 * ukernel_packed when its rows are (a transposed A: a weight gradient
 * g^T x). It is packed first when neither is, or when the stride between
 * the lines the kernel reads is a multiple of 2 KB: the micro-kernel reads
 * MR rows (or kc columns) at once, and lines 4 KB apart all fall in one
 * set of an 8-way L1 (1024^3 ran 5% slower in place than packed; a
 * transposed A packed first cost a weight gradient a fifth of its time).
 * Rows with contiguous columns are packed too when the panel of B is wider
 * than the ISA's pack_wide: one packed sliver streams from L2 as one run,
 * where MR rows read in place are MR runs, and the packing (register
 * transposes) costs less than that gains once enough slivers of B reuse
 * it. Measured on an AMD EPYC, 1 thread: AVX-512 (12-row slivers) at
 * 16640 x 128 x 128 89 GFLOP/s packed against 83 in place, but at 16384 x
 * 32 x 32 (one sliver of B) 82 against 98, so pack_wide = 64; AVX2 (6 rows)
 * gained at some shapes and lost at others (16384 x 288 x 96: 88 against
 * 93), so pack_wide = 0. */
#define A_COLUMNS(csa, rsa) ((rsa) == 1 && (csa) != 1 && (csa) % 512 != 0)
#define PACK_A(g, csa, rsa, nb) (!A_COLUMNS(csa, rsa) && ((csa) != 1 || (rsa) % 512 == 0 || \
                                  ((g)->pack_wide && (nb) > (g)->pack_wide)))

/* C is written by streaming (non-temporal) stores in its last K block when
 * it is larger than GEMM_STREAM_BYTES and its rows start on 64-byte lines:
 * a store that misses the cache otherwise reads the line from memory first,
 * and a C this large leaves the caches before it is read again. On an AMD
 * EPYC, 2 threads, 16640 x 128 x 128 with A flushed from the caches: 189
 * GFLOP/s against 181 in a quiet minute, 174 against 146 in a busy one;
 * t2t_vit_cifar (six alternating runs of the two builds, medians of nine
 * calls): inference 270-275 ms against 279-288, a training step 401-407
 * against 407-413. */
#define GEMM_STREAM_BYTES (4 << 20)

/* ---- gemm_threads.c: the entry of sgemm_avx2 / sgemm_avx512 and their
 * _bias, _bias_gelu and _bias_add twins; arguments as sgemm_bias_gelu (bias
 * NULL: none; act NULL: no epilogue), then res, sres: with act = c, the
 * residual of sgemm_bias_add (NULL: act = gelu(C)). */
void gemm_threaded(const gemm_blocking *g, int64_t bt, int64_t m, int64_t n,
                   int64_t k, const float *a, const int64_t *sa,
                   const float *b, const int64_t *sb, const float *bias,
                   float *c, const int64_t *sc, float *act, const int64_t *sact,
                   const float *res, const int64_t *sres);

/* Matrix t of a batch (arguments as sgemm_bias_gelu, then the residual as
 * sgemm_bias_add's r, sr, or NULL) as a gemm_problem. */
gemm_problem gemm_problem_at(int64_t t, int64_t m, int64_t n, int64_t k, const float *a,
                             const int64_t *sa, const float *b, const int64_t *sb,
                             const float *bias, float *c, const int64_t *sc,
                             float *act, const int64_t *sact, const float *res, const int64_t *sres);

/* A weight gradient's K (the batch's rows) is far longer than its M and N
 * (gemm_split_k: K > kc and K >= 8 max(M, N)): K is cut into GEMM_SPLIT_K
 * chunks of equal length (a multiple of kstep), whatever the thread count,
 * each chunk's product into a partial C of its own by alone(how, chunk's
 * problem) on one thread (the threads take chunks), then C = bias + the
 * partials, added in chunk order (then GELU, with act), so the result does
 * not depend on the thread count. Each thread reads its own rows of A and
 * B once, run after run, where slices of C had each thread read all of B
 * and A down its columns. gemm_split_k_run returns 0, or -1 (nothing done)
 * when the partials' memory is not there. */
#define GEMM_SPLIT_K 8
int gemm_split_k(const gemm_problem *P, int64_t kc);
int gemm_split_k_run(const gemm_problem *P, int64_t kstep, int nt,
                     void (*alone)(const void *how, const gemm_problem *chunk), const void *how);

/* The slice of P that computes rows (by_rows) or columns [lo, lo + cnt) of C. */
gemm_problem gemm_problem_slice(const gemm_problem *P, int by_rows, int64_t lo, int64_t cnt);

/* The A block a thread will most likely take next: runs [r, r1) of cols
 * floats from a, rsa apart (its rows, or for a transposed A the rows of
 * the matrix it transposes), asked for into L2 a few lines per micro-kernel
 * call of the block before it (gemm_block, and a_block of the bf16 GEMM). */
typedef struct { const float *a; int64_t rsa, cols, r, r1, c; } a_prefetch;

static inline void prefetch_a_lines(a_prefetch *f, int64_t lines)
{
    for (int64_t n = 0; n < lines && f->r < f->r1; n++) {
        __builtin_prefetch(f->a + f->r * f->rsa + f->c, 0, 2);
        f->c += 16;                                         /* one 64-byte line */
        if (f->c >= f->cols) {
            f->c = 0;
            f->r++;
        }
    }
}

/* ---- gemm_loops.c: the blocking, on the calling thread ---- */

/* The whole product P, with no OpenMP construct (it may run inside a
 * parallel region). */
void gemm_loops(const gemm_blocking *g, const gemm_problem *P);

/* C[ic:+mb, jc:+nb] (+)= A[ic:+mb, pc:+kb] @ bp, the packed B panel
 * (kb, nb); ap (for a packed A block) and edge_a: scratch of this thread;
 * the A block this thread takes next, A[next.ic:+next.mb, next.pc:+next.kb],
 * asked for into L2 meanwhile (next.ic < 0: none). */
typedef struct { int64_t ic, mb, pc, kb; } gemm_next;

/* After A block ic (mc rows) of the K block at pc (kb long, blocks of kc) of
 * P, taken in order on one thread: the next rows, else the first block of
 * the next K block, else none. */
static inline gemm_next gemm_next_block(const gemm_problem *P, int64_t ic, int64_t mc, int64_t pc,
                                        int64_t kb, int64_t kc)
{
    if (ic + mc < P->m) return (gemm_next){ic + mc, MIN(mc, P->m - ic - mc), pc, kb};
    if (pc + kc < P->k) return (gemm_next){0, MIN(mc, P->m), pc + kc, MIN(kc, P->k - pc - kc)};
    return (gemm_next){-1, 0, pc, 0};
}
void gemm_block(const gemm_blocking *g, const gemm_problem *P, int64_t ic, int64_t mb,
                int64_t pc, int64_t kb, int64_t jc, int64_t nb, const float *bp,
                float *ap, float *edge_a, gemm_next next);

/* B[0:kc, 0:nb] (strides rsb, csb) -> dst: slivers of nr columns (kc, nr). */
void gemm_pack_b(int64_t kc, int64_t nb, const float *b, int64_t rsb,
                 int64_t csb, int nr, float *dst);

/* K cut into blocks of equal size, at most g->kc: the block size. */
int64_t gemm_balanced_kc(const gemm_blocking *g, int64_t k);

/* The reference loops on P (when scratch memory runs out). */
void gemm_fallback(const gemm_problem *P);

#endif
