/* Internals shared by the kernel files: ISA levels, threads, scratch
 * memory and the GEMM blocking description. Legend as in minit2t.h. */
#ifndef MINIT2T_INTERNAL_H
#define MINIT2T_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "minit2t.h"

#define ISA_SCALAR 0
#define ISA_AVX2 1
#define ISA_AVX512 2

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Per-thread, grow-only, 64-byte aligned buffer; `slot` picks one of a few
 * independent buffers. NULL when memory runs out. */
float *minit2t_scratch(int slot, size_t nfloats);

/* How many threads are worth waking for `work` (flops or bytes moved). */
int minit2t_threads_for(double work);

/* Micro-kernel: the MR x NR tile C = (or +=, when acc) A @ B where
 *   a  MR rows of A, kc columns: in place (row stride rsa, columns
 *      contiguous) or packed (a[p*MR + i], rsa unused)
 *   b  packed B sliver: kc rows of NR contiguous floats
 *   c  C tile, row stride rsc, columns contiguous */
typedef void (*ukernel_fn)(int64_t kc, const float *a, int64_t rsa,
                           const float *b, float *c, int64_t rsc, int acc);

/* The blocking of one ISA: micro-tile MR x NR and cache blocks MC, KC, NC
 * (see gemm.c for how they nest). */
typedef struct {
    int mr, nr;
    int64_t mc, kc, nc;
    ukernel_fn kernel_rows, kernel_packed;   /* A in place / A packed */
} gemm_arch;

/* The blocked, threaded GEMM driver (gemm_threads.c); the arguments of
 * sgemm_bias (bias NULL: none). */
void sgemm_blocked(const gemm_arch *g, int64_t bt, int64_t m, int64_t n,
                   int64_t k, const float *a, const int64_t *sa,
                   const float *b, const int64_t *sb, const float *bias,
                   float *c, const int64_t *sc);

/* ---- the blocks of the blocked GEMM (gemm.c), for its drivers ---- */

typedef struct {               /* one product C = A @ B; strides in floats */
    int64_t m, n, k;
    const float *a;
    int64_t rsa, csa;
    const float *b;
    int64_t rsb, csb;
    float *c;
    int64_t rsc;
    const float *bias;         /* (N,) added to every row of C, or NULL */
} gemm_problem;

/* A is packed when its columns are strided (a transposed A). */
#define PACK_A(csa) ((csa) != 1)

static inline int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

/* K blocks of equal size, at most g->kc. */
int64_t gemm_balanced_kc(const gemm_arch *g, int64_t k);

/* B[0:kc, 0:nb] (strides rsb, csb) -> dst: slivers of nr columns (kc, nr). */
void gemm_pack_b(int64_t kc, int64_t nb, const float *b, int64_t rsb,
                 int64_t csb, int nr, float *dst);

/* A[0:mb, 0:kc] (strides rsa, csa) -> dst: slivers of mr rows (kc, mr). */
void gemm_pack_a(int64_t mb, int64_t kc, const float *a, int64_t rsa,
                 int64_t csa, int mr, float *dst);

/* C block (mb, nb) (+)= A block (mb, kc) @ packed B panel (kc, nb); with
 * bias (nb,) (first K block only, acc = 0): C = bias + A @ B. */
void gemm_macro_kernel(const gemm_arch *g, int64_t mb, int64_t nb, int64_t kc,
                       const float *a, int64_t rsa, int packed, const float *bp,
                       float *c, int64_t rsc, int acc, const float *bias, float *edge_a);

/* One product on the calling thread, no OpenMP construct; the reference
 * loops when scratch memory runs out (gemm_fallback). */
void gemm_serial(const gemm_arch *g, const gemm_problem *P);
void gemm_fallback(const gemm_problem *P);

#endif
