/* ToMe's bipartite soft matching for one image, shared by tome_match_ref
 * (match.c) and its fast versions (match_fast.c), which differ only in the
 * dot product they pass (and in running images on threads). The math is
 * minit2t/ops/match.py's:
 *
 *   m (N, d)        the keys averaged over the h heads (summed in head order, then / h)
 *   A, B            the even and the odd tokens: Na = ceil(N/2), Nb = floor(N/2)
 *   best, pick (Na) each A token's highest cosine similarity to a B token and that B token
 *                   (the first of equal ones); the cls token (A's first) gets -inf
 *   slot (N)        the r A tokens ranked first by best (descending; a tie: the lower
 *                   index first, as a stable sort) merge into their pick; the kept A tokens
 *                   take slots 0, 1, ... in order, the B tokens the slots after them.
 * k is one image's keys (h, N, d), at element strides sh (head), sn (token), 1.
 * A NaN similarity ranks as NumPy's sort places it: after every number, so never merged. */
#ifndef MINIT2T_MATCH_IMAGE_H
#define MINIT2T_MATCH_IMAGE_H
#include <math.h>
#include "runtime.h"

typedef float (*match_dot)(const float *a, const float *b, int64_t n);

/* m (N, d), norm (N): the head-averaged keys and their lengths. */
static inline void match_metric(const float *k, int64_t h, int64_t N, int64_t d, int64_t sh, int64_t sn,
                                float *m, float *norm, match_dot dot)
{
    for (int64_t n = 0; n < N; n++) {
        float *row = m + n * d;
        for (int64_t c = 0; c < d; c++) row[c] = k[n * sn + c];
        for (int64_t i = 1; i < h; i++)
            for (int64_t c = 0; c < d; c++) row[c] += k[i * sh + n * sn + c];
        for (int64_t c = 0; c < d; c++) row[c] /= (float)h;
        norm[n] = sqrtf(dot(row, row, d));
    }
}

static inline void match_image(const float *k, int64_t h, int64_t N, int64_t d, int64_t sh, int64_t sn,
                               int64_t r, float *m, float *norm, float *best, int64_t *pick, int64_t *slot,
                               match_dot dot)
{
    int64_t Na = (N + 1) / 2, Nb = N / 2, kept = 0;
    match_metric(k, h, N, d, sh, sn, m, norm, dot);
    best[0] = -INFINITY, pick[0] = 0;                                  /* the cls token */
    for (int64_t a = 1; a < Na; a++) {                                 /* A token a is token 2a */
        best[a] = -INFINITY, pick[a] = 0;
        for (int64_t j = 0; j < Nb; j++) {                             /* B token j is token 2j + 1 */
            float s = dot(m + 2 * a * d, m + (2 * j + 1) * d, d) / fmaxf(norm[2 * a] * norm[2 * j + 1], 1e-12f);
            if (isnan(s)) { best[a] = NAN, pick[a] = j; break; }       /* NumPy's max and argmax: the NaN */
            if (s > best[a]) best[a] = s, pick[a] = j;
        }
    }
    for (int64_t a = 0; a < Na; a++) {
        float ba = isnan(best[a]) ? -INFINITY : best[a];               /* after +inf in -best: as cls */
        int64_t rank = 0;                                              /* A tokens ranked before a */
        for (int64_t o = 0; o < Na; o++) {
            float bo = isnan(best[o]) ? -INFINITY : best[o];
            rank += bo > ba || (bo == ba && o < a);
        }
        slot[2 * a] = rank < r ? -1 - pick[a] : kept++;                /* merged: its pick, set below */
    }
    for (int64_t j = 0; j < Nb; j++) slot[2 * j + 1] = kept + j;       /* kept = Na - r */
    for (int64_t a = 0; a < Na; a++)
        if (slot[2 * a] < 0) slot[2 * a] = kept - 1 - slot[2 * a];
}

#endif
