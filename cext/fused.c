/* Fused elementwise kernels: GELU, layer norm and softmax, each forward
 * and backward, the strided copy, the sum of two arrays and row sums, as
 * the reference loops and the dispatchers. The fast versions:
 * gelu_forward -> gelu_forward_avx512 (fused_fast.c: the vector loop), and
 * so for each kernel; copy_strided_avx512 is in copy_fast.h, exp and the
 * normal CDF in vmath.h.
 *
 * Legend: n elements; R rows of D (layer norm) or N (softmax) floats.
 *   gelu_forward         x (n,) -> y (n,)
 *   gelu_block           x (rows, cols), row stride rx -> y (and h = x), row strides ry, rh
 *   gelu_backward        g, x (n,) -> gx (n,)
 *   gelu_backward_sum    g, x (R, D) -> gx (R, D), y (D,) = the sum of gx's rows
 *   layer_norm_forward   x (R, D), row stride sx; w, b (D,) -> y (R, D),
 *                        mean (R,), rstd (R,)
 *   layer_norm_backward  g (R, D), row stride sg; x (R, D), row stride sx;
 *                        w (D,), mean, rstd (R,) -> gx (R, D), gw, gb (D,)
 *   softmax_forward      x (R, N) -> y (R, N)
 *   softmax_backward     g, y (R, N) -> gx (R, N)
 *   copy_strided         src, dst: shape (nd,), strides ss, ds (nd,)
 *   add_arrays           a, b (n,) -> y (n,) = a + b
 *   add_block            x, z (rows, cols), row strides rx, rz -> y = x + z, row stride ry
 *   sum_rows             x (R, D), row stride sx -> y (D,), the sum of the rows
 * The formulas are in minit2t.h. Outputs are contiguous. The references
 * accumulate row sums in double; they are also the scalar path of CPUs
 * without AVX2. */
#include <math.h>
#include "runtime.h"

/* Phi(x) = P(X <= x), X ~ N(0, 1), and its density phi(x), in double:
 * erfc keeps the lower tail accurate, and x / sqrt 2 is not rounded to
 * float (that alone would cost 2 x^2 / 2 ulps of Phi far in the tail). */
static double normal_cdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }

static double normal_pdf(double x) { return exp(-0.5 * x * x) / sqrt(2.0 * M_PI); }

void gelu_forward_ref(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = (float)(x[i] * normal_cdf(x[i]));
}

/* gelu_forward_ref on each row of a block, and x copied to h (stream: the
 * fast versions' only). */
void gelu_block_ref(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                    int64_t rows, int64_t cols, int stream)
{
    (void)stream;
    for (int64_t i = 0; i < rows; i++) {
        if (h)
            for (int64_t j = 0; j < cols; j++) h[i * rh + j] = x[i * rx + j];
        gelu_forward_ref(x + i * rx, y + i * ry, cols);
    }
}

void add_block_ref(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
                   int64_t rows, int64_t cols, int stream)
{
    (void)stream;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) y[i * ry + j] = x[i * rx + j] + z[i * rz + j];
}

void gelu_backward_ref(const float *g, const float *x, float *gx, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        gx[i] = (float)(g[i] * (normal_cdf(x[i]) + x[i] * normal_pdf(x[i])));
}

void layer_norm_forward_ref(const float *x, int64_t sx, const float *w, const float *b,
                            float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d)
{
    for (int64_t i = 0; i < r; i++) {
        const float *xi = x + i * sx;                       /* row i: (D,) */
        double sum = 0.0, sq = 0.0;
        for (int64_t j = 0; j < d; j++) sum += xi[j];
        float mu = (float)(sum / (double)d);
        for (int64_t j = 0; j < d; j++) sq += (double)(xi[j] - mu) * (xi[j] - mu);
        float rs = (float)(1.0 / sqrt(sq / (double)d + eps));
        for (int64_t j = 0; j < d; j++) y[i * d + j] = (xi[j] - mu) * rs * w[j] + b[j];
        mean[i] = mu;
        rstd[i] = rs;
    }
}

void layer_norm_backward_ref(const float *g, int64_t sg, const float *x, int64_t sx,
                             const float *w, const float *mean, const float *rstd,
                             float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    for (int64_t j = 0; j < d; j++) gw[j] = gb[j] = 0.0f;
    for (int64_t i = 0; i < r; i++) {
        const float *gi = g + i * sg, *xi = x + i * sx;     /* row i: (D,) */
        double s1 = 0.0, s2 = 0.0;                          /* sum g w, sum g w xh */
        for (int64_t j = 0; j < d; j++) {
            float xh = (xi[j] - mean[i]) * rstd[i];
            s1 += gi[j] * w[j];
            s2 += (double)gi[j] * w[j] * xh;
            gw[j] += gi[j] * xh;
            gb[j] += gi[j];
        }
        float c1 = (float)(s1 / (double)d), c2 = (float)(s2 / (double)d);
        for (int64_t j = 0; j < d; j++) {
            float xh = (xi[j] - mean[i]) * rstd[i];
            gx[i * d + j] = rstd[i] * (gi[j] * w[j] - c1 - xh * c2);
        }
    }
}

void softmax_forward_ref(const float *x, float *y, int64_t r, int64_t n)
{
    for (int64_t i = 0; i < r; i++) {
        const float *xi = x + i * n;                        /* row i: (N,) */
        float *yi = y + i * n;
        float mx = -INFINITY;
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) mx = xi[j] > mx ? xi[j] : mx;
        for (int64_t j = 0; j < n; j++) sum += yi[j] = expf(xi[j] - mx);
        for (int64_t j = 0; j < n; j++) yi[j] = (float)(yi[j] / sum);
    }
}

void softmax_backward_ref(const float *g, const float *y, float *gx, int64_t r, int64_t n)
{
    for (int64_t i = 0; i < r; i++) {
        const float *gi = g + i * n, *yi = y + i * n;       /* row i: (N,) */
        double dot = 0.0;
        for (int64_t j = 0; j < n; j++) dot += (double)gi[j] * yi[j];
        for (int64_t j = 0; j < n; j++) gx[i * n + j] = yi[j] * (gi[j] - (float)dot);
    }
}

void copy_strided_ref(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                      const int64_t *shape, int64_t nd)
{
    int64_t idx[8] = {0}, total = 1;
    for (int64_t i = 0; i < nd; i++) total *= shape[i];
    for (int64_t t = 0; t < total; t++) {
        int64_t so = 0, dof = 0;
        for (int64_t i = 0; i < nd; i++) {
            so += idx[i] * ss[i];
            dof += idx[i] * ds[i];
        }
        dst[dof] = src[so];
        for (int64_t i = nd - 1; i >= 0 && ++idx[i] == shape[i]; i--) idx[i] = 0;  /* next index */
    }
}

void add_arrays_ref(const float *a, const float *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void sum_rows_ref(const float *x, int64_t sx, float *y, int64_t r, int64_t d)
{
    for (int64_t j = 0; j < d; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < r; i++) s += x[i * sx + j];
        y[j] = (float)s;
    }
}

int gelu_backward_sum_ref(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d)
{
    gelu_backward_ref(g, x, gx, r * d);
    sum_rows_ref(gx, d, y, r, d);
    return 0;
}

/* ---- dispatchers: the best ISA of this CPU (DISPATCH, runtime.h) --------- */

void add_arrays(const float *a, const float *b, float *y, int64_t n)
{
    int isa = minit2t_isa();
    DISPATCH(isa, add_arrays, (a, b, y, n));
}

void sum_rows(const float *x, int64_t sx, float *y, int64_t r, int64_t d)
{
    int isa = minit2t_isa();
    DISPATCH(isa, sum_rows, (x, sx, y, r, d));
}

void gelu_forward(const float *x, float *y, int64_t n)
{
    int isa = minit2t_isa();
    DISPATCH(isa, gelu_forward, (x, y, n));
}

void gelu_block(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                int64_t rows, int64_t cols, int stream)
{
    int isa = minit2t_isa();
    DISPATCH(isa, gelu_block, (x, rx, y, ry, h, rh, rows, cols, stream));
}

void add_block(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
               int64_t rows, int64_t cols, int stream)
{
    int isa = minit2t_isa();
    DISPATCH(isa, add_block, (x, rx, z, rz, y, ry, rows, cols, stream));
}

void gelu_backward(const float *g, const float *x, float *gx, int64_t n)
{
    int isa = minit2t_isa();
    DISPATCH(isa, gelu_backward, (g, x, gx, n));
}

int gelu_backward_sum(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d)
{
    int isa = minit2t_isa();
    return DISPATCH(isa, gelu_backward_sum, (g, x, gx, y, r, d));
}

void layer_norm_forward(const float *x, int64_t sx, const float *w, const float *b,
                        float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d)
{
    int isa = minit2t_isa();
    DISPATCH(isa, layer_norm_forward, (x, sx, w, b, eps, y, mean, rstd, r, d));
}

void layer_norm_backward(const float *g, int64_t sg, const float *x, int64_t sx,
                         const float *w, const float *mean, const float *rstd,
                         float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    int isa = minit2t_isa();
    DISPATCH(isa, layer_norm_backward, (g, sg, x, sx, w, mean, rstd, gx, gw, gb, r, d));
}

void copy_strided(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                  const int64_t *shape, int64_t nd)
{
    int isa = minit2t_isa();
    DISPATCH(isa, copy_strided, (src, ss, dst, ds, shape, nd));
}

void softmax_forward(const float *x, float *y, int64_t r, int64_t n)
{
    int isa = minit2t_isa();
    DISPATCH(isa, softmax_forward, (x, y, r, n));
}

void softmax_backward(const float *g, const float *y, float *gx, int64_t r, int64_t n)
{
    int isa = minit2t_isa();
    DISPATCH(isa, softmax_backward, (g, y, gx, r, n));
}
