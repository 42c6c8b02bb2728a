/* The fast band products, written once in the vector vocabulary of
 * vec_avx2.h and compiled once per ISA (fast_isa.h): band_dot_avx2 /
 * band_dot_avx512, band_mix_*, band_mix_t_*. Legend and shapes as in
 * band.c: B batch, T tokens, d width, w window, slot t of query i is key
 * i + lo + t, lo = -floor(w/2).
 *
 * Rows (b, i) are independent, so threads take runs of rows. Within a row
 * the loop runs over d in vectors of VW floats (the tail masked); the
 * window's keys are neighbours in memory, so they stay in cache from one
 * query to the next: each of a, b, v is read from memory about once. */

#include "fast_isa.h"
#include "vmath.h"

void FAST(band_dot)(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    int nt = minit2t_threads_for(2.0 * (double)nb * T * w * d);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < nb * T; r++) {
        int64_t i = r % T, base = r - i;
        for (int64_t t = 0; t < w; t++) {
            int64_t j = i - w / 2 + t;
            s[r * w + t] = (j >= 0 && j < T) ? vdot(a + r * d, b + (base + j) * d, d) : 0.0f;
        }
    }
}

/* y (d,) = sum over k < n of coef[k * cs] * rows[k * rs .. + d], one vector of y at a time
 * (the strides may be negative). */
static inline void band_sum_rows(const float *coef, int64_t cs, const float *rows, int64_t rs, int64_t n,
                                 float *y, int64_t d)
{
    int64_t c = 0;
    for (; c + VW <= d; c += VW) {
        VF acc = VSET1(0.0f);
        for (int64_t k = 0; k < n; k++) acc = VFMA(VSET1(coef[k * cs]), VLOAD(rows + k * rs + c), acc);
        VSTORE(y + c, acc);
    }
    if (c < d) {
        VTAIL m = VTAILMASK(d - c);
        VF acc = VSET1(0.0f);
        for (int64_t k = 0; k < n; k++)
            acc = VFMA(VSET1(coef[k * cs]), VLOADT(rows + k * rs + c, m, 0.0f), acc);
        VSTORET(y + c, m, acc);
    }
}

void FAST(band_mix)(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    int nt = minit2t_threads_for(2.0 * (double)nb * T * w * d);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < nb * T; r++) {
        int64_t i = r % T, base = r - i;
        int64_t t0 = MAX(0, w / 2 - i), t1 = MIN(w, T - i + w / 2);    /* slots with a key */
        int64_t j0 = i - w / 2 + t0;                                   /* their keys: j0, j0 + 1, ... */
        band_sum_rows(p + r * w + t0, 1, v + (base + j0) * d, d, t1 - t0, y + r * d, d);
    }
}

void FAST(band_mix_t)(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    int nt = minit2t_threads_for(2.0 * (double)nb * T * w * d);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < nb * T; r++) {
        int64_t j = r % T, base = r - j;
        /* slot t of query i = j + w/2 - t holds key j; t from t0 to t1 - 1 keeps 0 <= i < T */
        int64_t t0 = MAX(0, j + w / 2 - (T - 1)), t1 = MIN(w, j + w / 2 + 1);
        int64_t i0 = j + w / 2 - t0;                                   /* queries i0, i0 - 1, ... */
        /* term k: p[i0 - k, t0 + k] (stride 1 - w in p) times a[i0 - k] (stride -d) */
        band_sum_rows(p + (base + i0) * w + t0, 1 - w, a + (base + i0) * d, -d, t1 - t0, y + r * d, d);
    }
}
