/* Every non-x86 fallback, in one place: on a CPU other than x86-64 (or a
 * compiler without GCC's target pragmas, or a build with -DMINIT2T_PORTABLE)
 * the *_avx2.c / *_avx512.c files compile to nothing, and the fast names
 * the cffi module exports are defined here as the references. The
 * dispatchers never call them there (minit2t_cpu_isa is 0, runtime.c); a
 * direct call still gets the right answer. */
#include "runtime.h"

#if !MINIT2T_X86

/* ---- the AVX2 names ---- */

void sgemm_avx2(int64_t bt, int64_t m, int64_t n, int64_t k, const float *a,
                const int64_t *sa, const float *b, const int64_t *sb, float *c,
                const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
}

void sgemm_bias_avx2(int64_t bt, int64_t m, int64_t n, int64_t k, const float *a,
                     const int64_t *sa, const float *b, const int64_t *sb,
                     const float *bias, float *c, const int64_t *sc)
{
    sgemm_bias_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
}

void unfold_avx2(const float *x, const int64_t *sx, float *cols, int64_t nb, int64_t nc,
                 int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    unfold_ref(x, sx, cols, nb, nc, h, w, k, s, p);
}

void fold_avx2(const float *cols, const int64_t *scol, float *x, int64_t nb, int64_t nc,
               int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    fold_ref(cols, scol, x, nb, nc, h, w, k, s, p);
}

void add_arrays_avx2(const float *a, const float *b, float *y, int64_t n)
{
    add_arrays_ref(a, b, y, n);
}

void sum_rows_avx2(const float *x, int64_t sx, float *y, int64_t r, int64_t d)
{
    sum_rows_ref(x, sx, y, r, d);
}

void gelu_forward_avx2(const float *x, float *y, int64_t n)
{
    gelu_forward_ref(x, y, n);
}

void gelu_backward_avx2(const float *g, const float *x, float *gx, int64_t n)
{
    gelu_backward_ref(g, x, gx, n);
}

void layer_norm_forward_avx2(const float *x, int64_t sx, const float *w, const float *b,
                             float eps, float *y, float *mean, float *rstd, int64_t r,
                             int64_t d)
{
    layer_norm_forward_ref(x, sx, w, b, eps, y, mean, rstd, r, d);
}

void layer_norm_backward_avx2(const float *g, int64_t sg, const float *x, int64_t sx,
                              const float *w, const float *mean, const float *rstd,
                              float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    layer_norm_backward_ref(g, sg, x, sx, w, mean, rstd, gx, gw, gb, r, d);
}

void softmax_forward_avx2(const float *x, float *y, int64_t r, int64_t n)
{
    softmax_forward_ref(x, y, r, n);
}

void softmax_backward_avx2(const float *g, const float *y, float *gx, int64_t r, int64_t n)
{
    softmax_backward_ref(g, y, gx, r, n);
}

void copy_strided_avx2(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                       const int64_t *shape, int64_t nd)
{
    copy_strided_ref(src, ss, dst, ds, shape, nd);
}

void band_dot_avx2(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d,
                  int64_t w)
{
    band_dot_ref(a, b, s, nb, T, d, w);
}

void band_mix_avx2(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d,
                  int64_t w)
{
    band_mix_ref(p, v, y, nb, T, d, w);
}

void band_mix_t_avx2(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d,
                    int64_t w)
{
    band_mix_t_ref(p, a, y, nb, T, d, w);
}

int attention_forward_avx2(const float *qkv, const float *kbias, float *out, float *p,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_forward_ref(qkv, kbias, out, p, B, N, h, d, scale);
}

int attention_backward_avx2(const float *qkv, const float *p, const float *g, float *gqkv,
                            int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_backward_ref(qkv, p, g, gqkv, B, N, h, d, scale);
}

/* ---- the AVX-512 names ---- */

void sgemm_avx512(int64_t bt, int64_t m, int64_t n, int64_t k, const float *a,
                  const int64_t *sa, const float *b, const int64_t *sb, float *c,
                  const int64_t *sc)
{
    sgemm_ref(bt, m, n, k, a, sa, b, sb, c, sc);
}

void sgemm_bias_avx512(int64_t bt, int64_t m, int64_t n, int64_t k, const float *a,
                       const int64_t *sa, const float *b, const int64_t *sb,
                       const float *bias, float *c, const int64_t *sc)
{
    sgemm_bias_ref(bt, m, n, k, a, sa, b, sb, bias, c, sc);
}

void unfold_avx512(const float *x, const int64_t *sx, float *cols, int64_t nb, int64_t nc,
                   int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    unfold_ref(x, sx, cols, nb, nc, h, w, k, s, p);
}

void fold_avx512(const float *cols, const int64_t *scol, float *x, int64_t nb, int64_t nc,
                 int64_t h, int64_t w, int64_t k, int64_t s, int64_t p)
{
    fold_ref(cols, scol, x, nb, nc, h, w, k, s, p);
}

void add_arrays_avx512(const float *a, const float *b, float *y, int64_t n)
{
    add_arrays_ref(a, b, y, n);
}

void sum_rows_avx512(const float *x, int64_t sx, float *y, int64_t r, int64_t d)
{
    sum_rows_ref(x, sx, y, r, d);
}

void gelu_forward_avx512(const float *x, float *y, int64_t n)
{
    gelu_forward_ref(x, y, n);
}

void gelu_backward_avx512(const float *g, const float *x, float *gx, int64_t n)
{
    gelu_backward_ref(g, x, gx, n);
}

void layer_norm_forward_avx512(const float *x, int64_t sx, const float *w, const float *b,
                               float eps, float *y, float *mean, float *rstd, int64_t r,
                               int64_t d)
{
    layer_norm_forward_ref(x, sx, w, b, eps, y, mean, rstd, r, d);
}

void layer_norm_backward_avx512(const float *g, int64_t sg, const float *x, int64_t sx,
                                const float *w, const float *mean, const float *rstd,
                                float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    layer_norm_backward_ref(g, sg, x, sx, w, mean, rstd, gx, gw, gb, r, d);
}

void softmax_forward_avx512(const float *x, float *y, int64_t r, int64_t n)
{
    softmax_forward_ref(x, y, r, n);
}

void softmax_backward_avx512(const float *g, const float *y, float *gx, int64_t r,
                             int64_t n)
{
    softmax_backward_ref(g, y, gx, r, n);
}

void copy_strided_avx512(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                         const int64_t *shape, int64_t nd)
{
    copy_strided_ref(src, ss, dst, ds, shape, nd);
}

void band_dot_avx512(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d,
                    int64_t w)
{
    band_dot_ref(a, b, s, nb, T, d, w);
}

void band_mix_avx512(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d,
                    int64_t w)
{
    band_mix_ref(p, v, y, nb, T, d, w);
}

void band_mix_t_avx512(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d,
                      int64_t w)
{
    band_mix_t_ref(p, a, y, nb, T, d, w);
}

int attention_forward_avx512(const float *qkv, const float *kbias, float *out, float *p,
                             int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_forward_ref(qkv, kbias, out, p, B, N, h, d, scale);
}

int attention_backward_avx512(const float *qkv, const float *p, const float *g, float *gqkv,
                              int64_t B, int64_t N, int64_t h, int64_t d, float scale)
{
    return attention_backward_ref(qkv, p, g, gqkv, B, N, h, d, scale);
}

#endif
