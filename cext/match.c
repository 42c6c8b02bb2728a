/* ToMe's bipartite soft matching (minit2t/ops/match.py: ops.ToMeMatch), as
 * the reference loops and the dispatcher. The fast versions: tome_match ->
 * tome_match_avx512 (match_fast.c: images on threads, vector dot products).
 *
 * Legend: B (nb) batch, h heads, N tokens, d head width.
 *   k     (B, h, N, d) float32 at element strides (sb, sh, sn, 1): the keys, e.g. a view
 *         into the qkv Linear's output
 *   slot  (B, N) int64 out: the output token each token goes to, N - r of them
 *   r     the tokens merged, 0 <= r <= (N - 1) / 2
 * Per image (match_image.h): the head-averaged keys, each even token's most similar odd
 * token, the r best pairs merged. Scratch: N * (d + 1) + Na floats and Na int64 a
 * thread. Returns 0, or -1 when the scratch cannot be allocated. The reference
 * accumulates its dot products in double. */
#include <stdlib.h>
#include "match_image.h"

static float dot_ref(const float *a, const float *b, int64_t n)
{
    double acc = 0.0;
    for (int64_t c = 0; c < n; c++) acc += (double)a[c] * b[c];
    return (float)acc;
}

int tome_match_ref(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
                   int64_t sb, int64_t sh, int64_t sn, int64_t r)
{
    int64_t Na = (N + 1) / 2;
    float *m = malloc(sizeof(float) * (size_t)(N * (d + 1) + Na));
    int64_t *pick = malloc(sizeof(int64_t) * (size_t)Na);
    int status = (m && pick) ? 0 : -1;
    for (int64_t b = 0; b < nb && status == 0; b++)
        match_image(k + b * sb, h, N, d, sh, sn, r, m, m + N * d, m + N * (d + 1), pick, slot + b * N, dot_ref);
    free(m);
    free(pick);
    return status;
}

/* ---- dispatcher: the best ISA of this CPU (DISPATCH, runtime.h) --------- */

int tome_match(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
               int64_t sb, int64_t sh, int64_t sn, int64_t r)
{
    int isa = minit2t_isa();
    return DISPATCH(isa, tome_match, (k, slot, nb, h, N, d, sb, sh, sn, r));
}
