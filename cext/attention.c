/* Multi-head attention from the packed projection qkv, forward and backward
 * (ops.Attention), as the reference loops and the dispatchers. The fast
 * versions: attention_forward -> attention_forward_avx512
 * (attention_fast.c) -> attention_heads (threads over heads, each head's
 * products, softmax and mix in cache), and so for the backward.
 *
 * Legend: B batch, N tokens, h heads, d = D / h head width, D = h * d.
 *   qkv   (B, N, 3, h, d)  q, k, v of head hh at [b, n, 0 | 1 | 2, hh]
 *   kbias (B, N)           added to every score of key j (ToMe's log size_j),
 *                          or NULL
 *   out   (B, N, h, d)     the heads' outputs, concatenated: (B, N, D)
 *   p     (B, h, N, Np)    the probabilities softmax(q k^T * scale), kept
 *                          by the forward for the backward: rows padded
 *                          to Np = N rounded up to 16 floats (64 bytes)
 *                          with zeros, so the fast kernels load and store
 *                          whole vectors; NULL (forward only, inference):
 *                          not kept
 *   g     (B, N, h, d)     the gradient of out
 *   gqkv  (B, N, 3, h, d)  the gradients of q, k, v in qkv's layout
 * Per head, with S = q k^T * scale (+ kbias), P = softmax(S) over each row, O = P v:
 *   forward   out = P v
 *   backward  gv = P^T g;  gP = g v^T;  gS = P * (gP - rowsum(gP * P));
 *             gq = gS k * scale;  gk = gS^T q * scale
 * bf16 = 1 (the op under minit2t.autocast): every product's operands are
 * rounded to bfloat16 first (bf16.h): q, k, v and g as they are read, P
 * after the softmax (and kept so), gS before its two products.
 * All arrays contiguous. The references accumulate in double. Each
 * function returns 0, or -1 when it could not get working memory (then
 * nothing is computed). */
#include <math.h>
#include <stdlib.h>
#include "runtime.h"
#include "bf16.h"

/* x, or x rounded to bf16 when bf16 is set. */
static inline double rd(float x, int bf16) { return bf16 ? round_bf16(x) : x; }

/* Np: the row length of p, N rounded up to 16 floats. */
int64_t attention_row(int64_t N) { return (N + 15) / 16 * 16; }

/* One query of one head: its row pi of P (N, then zeros to Np) and its
 * output oi. Rows of k and v are rs floats apart; kb: N key biases or NULL. */
static void forward_row_ref(const float *qi, const float *k, const float *v, const float *kb,
                            float *oi, float *pi, int64_t N, int64_t np, int64_t d, int64_t rs,
                            float scale, int bf16)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < N; j++) {
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) s += rd(qi[c], bf16) * rd(k[j * rs + c], bf16);
        pi[j] = (float)(s * scale + (kb ? kb[j] : 0.0));
        mx = pi[j] > mx ? pi[j] : mx;
    }
    for (int64_t j = 0; j < N; j++) sum += exp((double)pi[j] - mx);
    for (int64_t j = 0; j < N; j++) pi[j] = (float)rd((float)(exp((double)pi[j] - mx) / sum), bf16);
    for (int64_t j = N; j < np; j++) pi[j] = 0.0f;
    for (int64_t c = 0; c < d; c++) {
        double acc = 0.0;
        for (int64_t j = 0; j < N; j++) acc += (double)pi[j] * rd(v[j * rs + c], bf16);
        oi[c] = (float)acc;
    }
}

int attention_forward_ref(const float *qkv, const float *kbias, float *out, float *p,
                          int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16)
{
    int64_t D = h * d, rs = 3 * D, np = attention_row(N);
    float *row = p ? NULL : malloc(sizeof(float) * (size_t)MAX(np, 1));   /* P not kept */
    if (!p && !row) return -1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t hh = 0; hh < h; hh++) {
            const float *q = qkv + b * N * rs + hh * d;     /* head hh's q: N rows of d */
            for (int64_t i = 0; i < N; i++)
                forward_row_ref(q + i * rs, q + D, q + 2 * D, kbias ? kbias + b * N : NULL,
                                out + (b * N + i) * D + hh * d,
                                p ? p + ((b * h + hh) * N + i) * np : row, N, np, d, rs, scale, bf16);
        }
    free(row);
    return 0;
}

/* gP(i, j) = g_i . v_j */
static double dot_ref(const float *gi, const float *vj, int64_t d, int bf16)
{
    double s = 0.0;
    for (int64_t c = 0; c < d; c++) s += rd(gi[c], bf16) * rd(vj[c], bf16);
    return s;
}

/* One head's gradients; gq, gk, gv have q's row stride rs. Query by query:
 * row i of gS needs rowsum_i = sum_j gP(i, j) P(i, j) first; gq's row i is
 * then complete, and gk collects gS(i, j) q_i into each row j. */
static void backward_head_ref(const float *q, const float *k, const float *v, const float *p,
                              const float *g, float *gq, float *gk, float *gv, int64_t N,
                              int64_t np, int64_t d, int64_t rs, int64_t ro, float scale, int bf16)
{
    for (int64_t j = 0; j < N; j++)
        for (int64_t c = 0; c < d; c++) {
            double acc = 0.0;
            for (int64_t i = 0; i < N; i++) acc += (double)p[i * np + j] * rd(g[i * ro + c], bf16);
            gv[j * rs + c] = (float)acc;
            gk[j * rs + c] = 0.0f;
        }
    for (int64_t i = 0; i < N; i++) {
        const float *pi = p + i * np, *gi = g + i * ro;
        double rowsum = 0.0;
        for (int64_t j = 0; j < N; j++) rowsum += pi[j] * dot_ref(gi, v + j * rs, d, bf16);
        for (int64_t c = 0; c < d; c++) gq[i * rs + c] = 0.0f;
        for (int64_t j = 0; j < N; j++) {
            double gs = pi[j] * (dot_ref(gi, v + j * rs, d, bf16) - rowsum);
            gs = rd((float)gs, bf16) * scale;                   /* gS(i, j) * scale */
            for (int64_t c = 0; c < d; c++) {
                gq[i * rs + c] += (float)(gs * rd(k[j * rs + c], bf16));
                gk[j * rs + c] += (float)(gs * rd(q[i * rs + c], bf16));
            }
        }
    }
}

int attention_backward_ref(const float *qkv, const float *p, const float *g, float *gqkv,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16)
{
    int64_t D = h * d, rs = 3 * D, np = attention_row(N);
    for (int64_t b = 0; b < B; b++)
        for (int64_t hh = 0; hh < h; hh++) {
            int64_t base = b * N * rs + hh * d;             /* head hh's q row 0 */
            const float *q = qkv + base;
            float *gq = gqkv + base;
            backward_head_ref(q, q + D, q + 2 * D, p + (b * h + hh) * N * np, g + b * N * D + hh * d,
                              gq, gq + D, gq + 2 * D, N, np, d, rs, D, scale, bf16);
        }
    return 0;
}

/* ---- dispatchers: the best ISA of this CPU (DISPATCH, runtime.h) --------- */

int attention_forward(const float *qkv, const float *kbias, float *out, float *p,
                      int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16)
{
    int isa = minit2t_isa();
    return DISPATCH(isa, attention_forward, (qkv, kbias, out, p, B, N, h, d, scale, bf16));
}

int attention_backward(const float *qkv, const float *p, const float *g, float *gqkv,
                       int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16)
{
    int isa = minit2t_isa();
    return DISPATCH(isa, attention_backward, (qkv, p, g, gqkv, B, N, h, d, scale, bf16));
}
