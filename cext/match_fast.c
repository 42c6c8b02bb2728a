/* The fast ToMe matching, compiled once per ISA (fast_isa.h):
 * tome_match_avx2 / tome_match_avx512. Shapes and math as match.c and
 * match_image.h. Images are independent: threads take runs of them, each
 * with its own scratch; the dot products over d are vdot (vmath.h), in
 * float32 vectors (the reference sums in double). */

#include <stdlib.h>
#include "fast_isa.h"
#include "vmath.h"
#include "match_image.h"

int FAST(tome_match)(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
                     int64_t sb, int64_t sh, int64_t sn, int64_t r)
{
    int64_t Na = (N + 1) / 2;
    int status = 0;
    int nt = minit2t_threads_for(2.0 * (double)nb * N * (N / 2 + h) * d);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *m = malloc(sizeof(float) * (size_t)(N * (d + 1) + Na));
        int64_t *pick = malloc(sizeof(int64_t) * (size_t)Na);
        if (!m || !pick) {
#pragma omp atomic write
            status = -1;
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nb; b++)
            if (m && pick)
                match_image(k + b * sb, h, N, d, sh, sn, r, m, m + N * d, m + N * (d + 1), pick, slot + b * N,
                            vdot);
        free(m);
        free(pick);
    }
    return status;
}
