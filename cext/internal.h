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

/* The blocked, threaded GEMM driver (gemm.c); same arguments as sgemm. */
void sgemm_blocked(const gemm_arch *g, int64_t bt, int64_t m, int64_t n,
                   int64_t k, const float *a, const int64_t *sa,
                   const float *b, const int64_t *sb, float *c,
                   const int64_t *sc);

#endif
