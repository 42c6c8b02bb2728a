/* The fast strided copy, copy_strided_avx2 / _avx512 (FAST(copy_strided),
 * the last function here): part of the template fused_fast.c, which
 * includes it at its end. Arguments as in minit2t.h: dst[i] = src[i] over
 * an nd-dim shape, element strides ss, ds.
 *
 * The dims are taken in dst's memory order (sorted by its strides); dims of
 * size 1 are dropped and a dim is merged into the next one when
 * both arrays step over it as over one longer row; what is left is R rows
 * of n floats (the last dim). Threads take runs of rows; each run starts
 * its row index counter once, then steps it. A row is a vector copy when
 * both strides are 1, a fill when src's is 0, else a scalar loop.
 *
 * A transpose (src contiguous along the next-to-last dim, dst along the
 * last: the T2T layers' tokens, (B, C, L) read as (B, L, C)) goes instead
 * in 8 x 8 tiles, each read as 8 vectors of src, transposed in registers
 * and written as 8 vectors of dst (copy_transposed). */

/* Order the dims by dst's strides, largest first (dst is then written in
 * memory order), merge and drop dims (see above); returns the dims left,
 * at least 1. */
static int copy_collapse(const int64_t *shape, const int64_t *ss, const int64_t *ds,
                         int64_t nd, int64_t *n, int64_t *s, int64_t *d)
{
    int64_t order[8];
    for (int64_t i = 0; i < nd; i++) {                /* insertion sort by |ds| */
        int64_t j = i;
        for (; j > 0 && llabs(ds[order[j - 1]]) < llabs(ds[i]); j--) order[j] = order[j - 1];
        order[j] = i;
    }
    int k = 0;
    for (int64_t o = 0; o < nd; o++) {
        int64_t i = order[o];
        if (shape[i] == 1) continue;
        if (k > 0 && s[k - 1] == ss[i] * shape[i] && d[k - 1] == ds[i] * shape[i]) {
            n[k - 1] *= shape[i];                   /* dim k-1 steps as one row with i */
            s[k - 1] = ss[i];
            d[k - 1] = ds[i];
            continue;
        }
        n[k] = shape[i], s[k] = ss[i], d[k] = ds[i];
        k++;
    }
    if (k == 0) n[0] = 1, s[0] = 1, d[0] = 1, k = 1;
    return k;
}

#include "transpose8.h"

static inline void copy_row(const float *src, int64_t s, float *dst, int64_t d, int64_t n)
{
    int64_t j = 0;
    if (s == 1 && d == 1) {
        for (; j + VW <= n; j += VW) VSTORE(dst + j, VLOAD(src + j));
        if (j < n) {
            VTAIL m = VTAILMASK(n - j);
            VSTORET(dst + j, m, VLOADT(src + j, m, 0.0f));
        }
    } else if (s == 0 && d == 1) {
        VF v = VSET1(src[0]);
        for (; j + VW <= n; j += VW) VSTORE(dst + j, v);
        for (; j < n; j++) dst[j] = src[0];
    } else {
        for (; j < n; j++) dst[j * d] = src[j * s];
    }
}

/* Flat index q over dims n[0 .. nd) (the last fastest) -> its index idx
 * and its offsets in src (strides s) and dst (strides d). */
static inline void copy_unravel(int64_t q, const int64_t *n, const int64_t *s, const int64_t *d,
                                int nd, int64_t *idx, int64_t *so, int64_t *dof)
{
    *so = *dof = 0;
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = q % n[i];
        q /= n[i];
        *so += idx[i] * s[i];
        *dof += idx[i] * d[i];
    }
}

/* The collapsed copy whose last two dims are a transpose: plane (ni, nj)
 * with src (i, j) at i + j * sj and dst (i, j) at i * di + j, under `outer`
 * leading indices (strides os, od: the dims before, merged by the caller).
 * Threads take (outer index, band of 8 rows i); tiles at the edges go by
 * the scalar loop. */
static void copy_transposed(const float *src, float *dst, int64_t outer, const int64_t *on,
                            const int64_t *os, const int64_t *od, int no, int64_t ni, int64_t nj,
                            int64_t sj, int64_t di)
{
    int64_t bands = (ni + 7) / 8;
    int nt = minit2t_threads_for(2.0 * (double)outer * (double)ni * (double)nj);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < outer * bands; t++) {
        int64_t idx[8], i0 = t % bands * 8, so, dof;
        copy_unravel(t / bands, on, os, od, no, idx, &so, &dof);    /* the outer index's offsets */
        const float *sp = src + so + i0;
        float *dp = dst + dof + i0 * di;
        int64_t j = 0;
        if (i0 + 8 <= ni)
            for (; j + 8 <= nj; j += 8) transpose8(sp + j * sj, sj, dp + j, di);
        for (int64_t i = 0; i < MIN(8, ni - i0); i++)      /* the edges */
            for (int64_t jj = j; jj < nj; jj++) dp[i * di + jj] = sp[i + jj * sj];
    }
}

void FAST(copy_strided)(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                        const int64_t *shape, int64_t nd)
{
    int64_t n[8], s[8], d[8], rows = 1;
    for (int64_t i = 0; i < nd; i++)
        if (shape[i] == 0) return;
    int k = copy_collapse(shape, ss, ds, nd, n, s, d);
    if (k >= 2 && d[k - 1] == 1 && s[k - 2] == 1 && s[k - 1] != 1 && n[k - 2] >= 8 && n[k - 1] >= 8) {
        int64_t outer = 1;
        for (int i = 0; i < k - 2; i++) outer *= n[i];
        copy_transposed(src, dst, outer, n, s, d, k - 2, n[k - 2], n[k - 1], s[k - 1], d[k - 2]);
        return;
    }
    for (int i = 0; i < k - 1; i++) rows *= n[i];
    int64_t per = MAX(1, 8192 / n[k - 1]);           /* rows per work item: ~32 KiB */
    int64_t items = (rows + per - 1) / per;
    int nt = minit2t_threads_for(2.0 * (double)rows * (double)n[k - 1]);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < items; t++) {
        int64_t idx[8], r = t * per, end = MIN(rows, r + per), so, dof;
        copy_unravel(r, n, s, d, k - 1, idx, &so, &dof);            /* row r's index and offsets */
        for (; r < end; r++) {
            copy_row(src + so, s[k - 1], dst + dof, d[k - 1], n[k - 1]);
            for (int i = k - 2; i >= 0; i--) {       /* next row */
                so += s[i];
                dof += d[i];
                if (++idx[i] < n[i]) break;
                so -= n[i] * s[i];
                dof -= n[i] * d[i];
                idx[i] = 0;
            }
        }
    }
}
