/* The AVX-512F unfold / fold: im2col_fast.h compiled for AVX-512F, under
 * the names unfold_avx512 and fold_avx512 (arguments as unfold / fold in
 * minit2t.h). Only this file is compiled for that ISA, and the dispatchers
 * (im2col.c) call it only on CPUs that have it (runtime.c).
 * The runs it copies with (im2col_runs.h) are AVX2 code in this build too,
 * on purpose (see there); the compiler may use AVX-512 around them. */
#include "runtime.h"

#if MINIT2T_X86
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>
#include "im2col_fast.h"

void unfold_avx512(const float *x, const int64_t *sx, float *cols, int64_t nb,
                   int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    unfold_fast(x, sx, cols, nb, nc, h, w, k, s, p);
}

void fold_avx512(const float *cols, const int64_t *scol, float *x, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    fold_fast(cols, scol, x, nb, nc, h, w, k, s, p);
}

#endif /* MINIT2T_X86; elsewhere not_x86.c defines these names */
