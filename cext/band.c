/* Band products: each query's window of keys (local attention, Scatterbrain's
 * sparse part), as the reference loops and the dispatchers. The fast
 * versions: band_dot -> band_dot_avx512 (band_fast.c: the vector loop over
 * d, threads over rows), and so for each.
 *
 * Legend: B batch, T tokens, d width, w window; slot t of query i holds key
 * j = i + lo + t, lo = -floor(w/2) (minit2t/ops/band.py); keys outside
 * 0..T-1 count as zeros. All arrays contiguous.
 *   band_dot    a, b (B, T, d) -> s (B, T, w)   s[i, t] = a_i . b_j (0 off the ends)
 *   band_mix    p (B, T, w), v (B, T, d) -> y (B, T, d)   y_i = sum_t p[i, t] v_j
 *   band_mix_t  p (B, T, w), a (B, T, d) -> y (B, T, d)   y_j = sum_t p[j-lo-t, t] a_{j-lo-t}
 * band_mix_t is band_mix's adjoint in v, written as a gather over the keys'
 * queries so that each output row is one thread's. The references
 * accumulate in double. */
#include "runtime.h"

static int64_t band_lo(int64_t w) { return -(w / 2); }

void band_dot_ref(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    for (int64_t r = 0; r < nb * T; r++) {                  /* row r: batch r / T, query i */
        int64_t i = r % T, base = r - i;
        for (int64_t t = 0; t < w; t++) {
            int64_t j = i + band_lo(w) + t;
            double acc = 0.0;
            if (j >= 0 && j < T)
                for (int64_t c = 0; c < d; c++) acc += (double)a[r * d + c] * b[(base + j) * d + c];
            s[r * w + t] = (float)acc;
        }
    }
}

void band_mix_ref(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    for (int64_t r = 0; r < nb * T; r++) {
        int64_t i = r % T, base = r - i;
        for (int64_t c = 0; c < d; c++) {
            double acc = 0.0;
            for (int64_t t = 0; t < w; t++) {
                int64_t j = i + band_lo(w) + t;
                if (j >= 0 && j < T) acc += (double)p[r * w + t] * v[(base + j) * d + c];
            }
            y[r * d + c] = (float)acc;
        }
    }
}

void band_mix_t_ref(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    for (int64_t r = 0; r < nb * T; r++) {                  /* row r: batch r / T, key j */
        int64_t j = r % T, base = r - j;
        for (int64_t c = 0; c < d; c++) {
            double acc = 0.0;
            for (int64_t t = 0; t < w; t++) {
                int64_t i = j - band_lo(w) - t;             /* the query whose slot t is key j */
                if (i >= 0 && i < T) acc += (double)p[(base + i) * w + t] * a[(base + i) * d + c];
            }
            y[r * d + c] = (float)acc;
        }
    }
}

/* ---- dispatchers: the best ISA of this CPU (DISPATCH, runtime.h) --------- */

void band_dot(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    int isa = minit2t_isa();
    DISPATCH(isa, band_dot, (a, b, s, nb, T, d, w));
}

void band_mix(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    int isa = minit2t_isa();
    DISPATCH(isa, band_mix, (p, v, y, nb, T, d, w));
}

void band_mix_t(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w)
{
    int isa = minit2t_isa();
    DISPATCH(isa, band_mix_t, (p, a, y, nb, T, d, w));
}
