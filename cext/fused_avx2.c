/* The AVX2 + FMA fused kernels: fused_fast.h (GELU, layer norm, softmax) and
 * copy_fast.h (strided copy) compiled for AVX2 + FMA in the vocabulary of
 * vec_avx2.h, under the names *_avx2 (arguments as in minit2t.h). Only this
 * file is compiled for that ISA, and the dispatchers (fused.c) call it only
 * on CPUs that have it (runtime.c). */
#include "runtime.h"

#if MINIT2T_X86
#pragma GCC target("avx2,fma")
#include "vec_avx2.h"
#include "fused_fast.h"
#include "copy_fast.h"

void add_arrays_avx2(const float *a, const float *b, float *y, int64_t n)
{
    add_arrays_fast(a, b, y, n);
}

void sum_rows_avx2(const float *x, int64_t sx, float *y, int64_t r, int64_t d)
{
    sum_rows_fast(x, sx, y, r, d);
}

void gelu_forward_avx2(const float *x, float *y, int64_t n)
{
    gelu_forward_fast(x, y, n);
}

void gelu_backward_avx2(const float *g, const float *x, float *gx, int64_t n)
{
    gelu_backward_fast(g, x, gx, n);
}

void layer_norm_forward_avx2(const float *x, int64_t sx, const float *w, const float *b,
                             float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d)
{
    layer_norm_forward_fast(x, sx, w, b, eps, y, mean, rstd, r, d);
}

void layer_norm_backward_avx2(const float *g, int64_t sg, const float *x, int64_t sx,
                              const float *w, const float *mean, const float *rstd,
                              float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    layer_norm_backward_fast(g, sg, x, sx, w, mean, rstd, gx, gw, gb, r, d);
}

void softmax_forward_avx2(const float *x, float *y, int64_t r, int64_t n)
{
    softmax_forward_fast(x, y, r, n);
}

void softmax_backward_avx2(const float *g, const float *y, float *gx, int64_t r, int64_t n)
{
    softmax_backward_fast(g, y, gx, r, n);
}

void copy_strided_avx2(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                       const int64_t *shape, int64_t nd)
{
    copy_strided_fast(src, ss, dst, ds, shape, nd);
}

#endif /* MINIT2T_X86; elsewhere not_x86.c defines these names */
