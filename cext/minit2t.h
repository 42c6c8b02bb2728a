/* minit2t C kernels: the public functions the cffi module exposes.
 *
 * Legend (shapes are row-major, strides are in elements, not bytes):
 *   Bt   number of matrices in a batched matmul
 *   M, K, N  matrix sides: C (M, N) = A (M, K) @ B (K, N)
 *   B batch, C channels, H/W height/width, k kernel, s stride, p padding
 *   Ho = (H + 2p - k) / s + 1, Wo likewise, L = Ho * Wo sliding windows
 *
 * Every kernel comes as a triplet with one signature:
 *   name_ref     plain loops, the readable reference (also the scalar path)
 *   name_avx2    packed / blocked / vectorised, AVX2 + FMA
 *   name_avx512  the same with AVX-512F
 *   name         the dispatcher: the best ISA of this CPU (see minit2t_isa),
 *                falling back to name_ref for what the fast path does not take
 * The fast versions must only be called on a CPU that has the instructions
 * (where they are not compiled, off x86-64, they are the references).
 * Where the kernels are and in what order to read them: README.md.
 * Callers validate arguments: sizes >= 0, k >= 1, s >= 1, p >= 0, and
 * pointers that cover every element the strides reach.
 *
 * This file is also the cffi cdef: build.py drops the preprocessor lines.
 */
#ifndef MINIT2T_H
#define MINIT2T_H
#include <stdint.h>

/* ---- matmul: C[b] = A[b] @ B[b] for b < bt ------------------------------
 * a   A (Bt, M, K) with strides sa = {batch, row, col}
 * b   B (Bt, K, N) with strides sb = {batch, row, col}
 * c   C (Bt, M, N) with strides sc = {batch, row}; C columns are contiguous
 * Any stride may be 0 (broadcast) or negative for A and B; C is written,
 * never read, so it must not overlap A or B.
 * Blocking of the fast versions (gemm_loops.c): C in MR x NR tiles held in
 * registers, A in MC x KC blocks, B in KC x NC panels; MR x NR = 12 x 32
 * (AVX-512), 6 x 16 (AVX2); sizes in gemm_avx512.c / gemm_avx2.c. */
void sgemm_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
               const float *a, const int64_t *sa, const float *b,
               const int64_t *sb, float *c, const int64_t *sc);
void sgemm_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, float *c, const int64_t *sc);
void sgemm_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                  const float *a, const int64_t *sa, const float *b,
                  const int64_t *sb, float *c, const int64_t *sc);
void sgemm(int64_t bt, int64_t m, int64_t n, int64_t k,
           const float *a, const int64_t *sa, const float *b,
           const int64_t *sb, float *c, const int64_t *sc);

/* ---- matmul plus a bias: C[b] = A[b] @ B[b] + bias, bias (N,) added to
 * every row (the forward of a linear layer); arguments otherwise as sgemm.
 * The fast versions add the bias to each C tile as it is first written. */
void sgemm_bias_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bias_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bias_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                       const float *a, const int64_t *sa, const float *b,
                       const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bias(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, const float *bias, float *c, const int64_t *sc);

/* ---- a linear layer with its GELU: C[b] = A[b] @ B[b] + bias as
 * sgemm_bias (bias may be NULL), and act[b] = gelu(C[b]) (as gelu_forward)
 * with strides sact = {batch, row}, columns contiguous; act may be c (in
 * place: C's values before GELU are not kept). The fast versions apply
 * GELU to each block of C as soon as it is done, while it is in cache
 * (gemm_act_block, gemm_blocking.h): no pass of its own over C. */
void sgemm_bias_gelu_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                         float *act, const int64_t *sact);
void sgemm_bias_gelu_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                          const float *a, const int64_t *sa, const float *b,
                          const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                          float *act, const int64_t *sact);
void sgemm_bias_gelu_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                            const float *a, const int64_t *sa, const float *b,
                            const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                            float *act, const int64_t *sact);
void sgemm_bias_gelu(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                     float *act, const int64_t *sact);

/* ---- a linear layer with a residual stream added: C[b] = A[b] @ B[b] +
 * bias + R[b], summed as sgemm_bias then add_arrays, (A @ B + bias) + R,
 * bias may be NULL; R has strides sr = {batch, row}, columns contiguous,
 * and does not overlap C. The fast versions add R to each block of C as
 * soon as it is done, while it is in cache (gemm_act_block): a transformer
 * block's x + proj(...) with no pass of its own over C. */
void sgemm_bias_add_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                        const float *a, const int64_t *sa, const float *b,
                        const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                        float *c, const int64_t *sc);
void sgemm_bias_add_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                         float *c, const int64_t *sc);
void sgemm_bias_add_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                           const float *a, const int64_t *sa, const float *b,
                           const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                           float *c, const int64_t *sc);
void sgemm_bias_add(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                    float *c, const int64_t *sc);

/* ---- matmul in bfloat16: C[b] = bf16(A[b]) @ bf16(B[b]) (+ bias) ----------
 * Arguments as sgemm_bias (bias may be NULL). bf16(x) rounds each float to
 * the nearest bfloat16 (ties to even; NaN stays NaN), as torch's
 * .bfloat16(); the products and their sums are float32, C is float32. The
 * rounding happens as A and B are packed (gemm_bf16.c), never as a pass
 * of its own. Versions by ISA level (minit2t_isa):
 *   _ref          plain loops: round, multiply-add in k order, then the bias
 *   _avx2, _avx512   A and B rounded as they are packed, kept as floats;
 *                 the float32 micro-kernels' tiles, 6 x 16 / 12 x 32
 *   _avx512bf16   A and B packed as pairs of bf16 along K; vdpbf16ps, a
 *                 12 x 32 tile of C
 *   _amx          the same packing, K padded to 32; AMX tiles: a 32 x 32
 *                 tile of C in four 16 x 16 float32 tiles (where Linux
 *                 refuses the process the tiles: _avx512bf16)
 * The bf16 instructions read bf16 subnormals as 0 and flush subnormal
 * results to 0; the other versions keep them. */
void sgemm_bf16_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bf16_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bf16_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                       const float *a, const int64_t *sa, const float *b,
                       const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bf16_avx512bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                           const float *a, const int64_t *sa, const float *b,
                           const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bf16_amx(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, float *c, const int64_t *sc);
void sgemm_bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                const float *a, const int64_t *sa, const float *b,
                const int64_t *sb, const float *bias, float *c, const int64_t *sc);

/* The same with GELU: C as sgemm_bf16, act = gelu(C) as sgemm_bias_gelu. */
void sgemm_bf16_gelu_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                         float *act, const int64_t *sact);
void sgemm_bf16_gelu_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                          const float *a, const int64_t *sa, const float *b,
                          const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                          float *act, const int64_t *sact);
void sgemm_bf16_gelu_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                            const float *a, const int64_t *sa, const float *b,
                            const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                            float *act, const int64_t *sact);
void sgemm_bf16_gelu_avx512bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                                const float *a, const int64_t *sa, const float *b,
                                const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                                float *act, const int64_t *sact);
void sgemm_bf16_gelu_amx(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                         float *act, const int64_t *sact);
void sgemm_bf16_gelu(int64_t bt, int64_t m, int64_t n, int64_t k,
                     const float *a, const int64_t *sa, const float *b,
                     const int64_t *sb, const float *bias, float *c, const int64_t *sc,
                     float *act, const int64_t *sact);

/* The same with a residual: C as sgemm_bf16, plus R as sgemm_bias_add. */
void sgemm_bf16_add_ref(int64_t bt, int64_t m, int64_t n, int64_t k,
                        const float *a, const int64_t *sa, const float *b,
                        const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                        float *c, const int64_t *sc);
void sgemm_bf16_add_avx2(int64_t bt, int64_t m, int64_t n, int64_t k,
                         const float *a, const int64_t *sa, const float *b,
                         const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                         float *c, const int64_t *sc);
void sgemm_bf16_add_avx512(int64_t bt, int64_t m, int64_t n, int64_t k,
                           const float *a, const int64_t *sa, const float *b,
                           const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                           float *c, const int64_t *sc);
void sgemm_bf16_add_avx512bf16(int64_t bt, int64_t m, int64_t n, int64_t k,
                               const float *a, const int64_t *sa, const float *b,
                               const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                               float *c, const int64_t *sc);
void sgemm_bf16_add_amx(int64_t bt, int64_t m, int64_t n, int64_t k,
                        const float *a, const int64_t *sa, const float *b,
                        const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                        float *c, const int64_t *sc);
void sgemm_bf16_add(int64_t bt, int64_t m, int64_t n, int64_t k,
                    const float *a, const int64_t *sa, const float *b,
                    const int64_t *sb, const float *bias, const float *r, const int64_t *sr,
                    float *c, const int64_t *sc);

/* ---- unfold (im2col): x (B, C, H, W) -> cols (B, C*k*k, L) --------------
 * x has strides sx = {batch, channel, row, col}; cols is contiguous.
 * cols[b, (c*k + i)*k + j, oh*Wo + ow] = x[b, c, oh*s - p + i, ow*s - p + j]
 * (0 where that falls in the padding).
 * Blocking of the fast versions (im2col_fast.c): one (b, c) plane per work
 * item, split into its s*s stride phases in a per-thread scratch buffer. */
void unfold_ref(const float *x, const int64_t *sx, float *cols, int64_t nb,
                int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void unfold_avx2(const float *x, const int64_t *sx, float *cols, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void unfold_avx512(const float *x, const int64_t *sx, float *cols, int64_t nb,
                   int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void unfold(const float *x, const int64_t *sx, float *cols, int64_t nb,
            int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);

/* ---- fold (col2im), the adjoint of unfold: cols (B, C*k*k, L) -> x ------
 * cols has strides scol = {batch, row, col}; x (B, C, H, W) is contiguous
 * and fully written: zero, then every column summed onto its window. */
void fold_ref(const float *cols, const int64_t *scol, float *x, int64_t nb,
              int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold_avx2(const float *cols, const int64_t *scol, float *x, int64_t nb,
               int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold_avx512(const float *cols, const int64_t *scol, float *x, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold(const float *cols, const int64_t *scol, float *x, int64_t nb,
          int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);

/* ---- the soft split's tokens: unfold and fold with cols tokens-major -----
 * cols_t (B, L, C*k*k), contiguous: cols_t[b, l, f] = cols[b, f, l] of
 * unfold, the layout the T2T layers read their tokens in; x (B, C, H, W)
 * with strides sx = {batch, channel, row, col}, any layout (a T2T layer's
 * tokens seen as an image are channels-last: sx[1] = 1).
 *   unfold_tokens  x -> cols_t
 *   fold_tokens    cols_t -> x, through sx: zero, then every token's
 *                  windows summed back, for each pixel in the order of
 *                  fold's (kernel offset (i, j) by (i, j)): fold's values
 * The fast versions (tokens_fast.c): threads over rows of tokens (unfold)
 * or over images (fold: windows of one image overlap); each token is one
 * run of C*k*k floats, filled channel by channel from its k*k pixels. */
void unfold_tokens_ref(const float *x, const int64_t *sx, float *cols, int64_t nb,
                       int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void unfold_tokens_avx2(const float *x, const int64_t *sx, float *cols, int64_t nb,
                        int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void unfold_tokens_avx512(const float *x, const int64_t *sx, float *cols, int64_t nb,
                          int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void unfold_tokens(const float *x, const int64_t *sx, float *cols, int64_t nb,
                   int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold_tokens_ref(const float *cols, float *x, const int64_t *sx, int64_t nb,
                     int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold_tokens_avx2(const float *cols, float *x, const int64_t *sx, int64_t nb,
                      int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold_tokens_avx512(const float *cols, float *x, const int64_t *sx, int64_t nb,
                        int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);
void fold_tokens(const float *cols, float *x, const int64_t *sx, int64_t nb,
                 int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p);

/* ---- fused elementwise kernels (fused.c; fast versions fused_fast.c) ----
 * Legend: n elements; R rows of D (layer norm) or N (softmax) floats.
 * The fast versions split rows (GELU: blocks of 4096 elements) over threads
 * and run each row as vectors of 8 (AVX2) / 16 (AVX-512) floats.
 *   add_arrays           a, b (n,) -> y (n,) = a + b (the residual sums)
 *   sum_rows             x (R, D), row stride sx -> y (D,) = the sum of x's rows
 *                        (Linear's bias gradient)
 * GELU (exact): y = x * Phi(x), Phi the standard normal CDF, phi its density
 *   gelu_forward         x (n,) -> y (n,)
 *   gelu_backward        g, x (n,) -> gx = g * (Phi(x) + x * phi(x)) (n,)
 * Layer norm over the last dim: x (R, D) with row stride sx, columns
 * contiguous (likewise g with sg); w, b (D,)
 *   layer_norm_forward   -> y (R, D) contiguous = (x - mean) * rstd * w + b,
 *                           mean (R,), rstd (R,) = 1 / sqrt(var + eps)
 *   layer_norm_backward  g, x, w, mean, rstd -> gx (R, D) contiguous,
 *                           gw = sum_rows(g * xhat) (D,), gb = sum_rows(g) (D,)
 * Softmax over the last dim, rows contiguous:
 *   softmax_forward      x (R, N) -> y (R, N) = exp(x - max) / sum
 *   softmax_backward     g, y (R, N) -> gx = y * (g - sum(g * y)) (R, N)
 * Outputs are written, never read, and must not overlap any input. */
void add_arrays_ref(const float *a, const float *b, float *y, int64_t n);
void add_arrays_avx2(const float *a, const float *b, float *y, int64_t n);
void add_arrays_avx512(const float *a, const float *b, float *y, int64_t n);
void add_arrays(const float *a, const float *b, float *y, int64_t n);

void sum_rows_ref(const float *x, int64_t sx, float *y, int64_t r, int64_t d);
void sum_rows_avx2(const float *x, int64_t sx, float *y, int64_t r, int64_t d);
void sum_rows_avx512(const float *x, int64_t sx, float *y, int64_t r, int64_t d);
void sum_rows(const float *x, int64_t sx, float *y, int64_t r, int64_t d);

void gelu_forward_ref(const float *x, float *y, int64_t n);
void gelu_forward_avx2(const float *x, float *y, int64_t n);
void gelu_forward_avx512(const float *x, float *y, int64_t n);
void gelu_forward(const float *x, float *y, int64_t n);

/* gelu_forward on a block: x (rows, cols), row stride rx -> y (rows, cols),
 * row stride ry (y may be x); with h (not NULL), also h = x (row stride rh:
 * the values before GELU, kept for its backward). stream: rows of y and h
 * that start on a 64-byte line by streaming stores. No threads of its own:
 * the epilogue of sgemm_bias_gelu / sgemm_bf16_gelu, inside theirs. */
void gelu_block_ref(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                    int64_t rows, int64_t cols, int stream);
void gelu_block_avx2(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                     int64_t rows, int64_t cols, int stream);
void gelu_block_avx512(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                       int64_t rows, int64_t cols, int stream);
void gelu_block(const float *x, int64_t rx, float *y, int64_t ry, float *h, int64_t rh,
                int64_t rows, int64_t cols, int stream);

/* x + z on a block: x, z (rows, cols), row strides rx, rz -> y (rows, cols),
 * row stride ry (y may be x). stream as gelu_block's. No threads of its
 * own: the epilogue of sgemm_bias_add / sgemm_bf16_add, inside theirs. */
void add_block_ref(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
                   int64_t rows, int64_t cols, int stream);
void add_block_avx2(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
                    int64_t rows, int64_t cols, int stream);
void add_block_avx512(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
                      int64_t rows, int64_t cols, int stream);
void add_block(const float *x, int64_t rx, const float *z, int64_t rz, float *y, int64_t ry,
               int64_t rows, int64_t cols, int stream);

void gelu_backward_ref(const float *g, const float *x, float *gx, int64_t n);
void gelu_backward_avx2(const float *g, const float *x, float *gx, int64_t n);
void gelu_backward_avx512(const float *g, const float *x, float *gx, int64_t n);
void gelu_backward(const float *g, const float *x, float *gx, int64_t n);

/* gelu_backward of g, x (R, D) contiguous into gx (R, D), and y (D,) = the
 * sum of gx's rows (a Linear's bias gradient behind its GELU): the fast
 * versions give gelu_backward's gx and sum_rows' y bit for bit, in one pass.
 * Returns 0, or -1 (nothing computed) without working memory. */
int gelu_backward_sum_ref(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d);
int gelu_backward_sum_avx2(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d);
int gelu_backward_sum_avx512(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d);
int gelu_backward_sum(const float *g, const float *x, float *gx, float *y, int64_t r, int64_t d);

void layer_norm_forward_ref(const float *x, int64_t sx, const float *w, const float *b,
                            float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d);
void layer_norm_forward_avx2(const float *x, int64_t sx, const float *w, const float *b,
                             float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d);
void layer_norm_forward_avx512(const float *x, int64_t sx, const float *w, const float *b,
                               float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d);
void layer_norm_forward(const float *x, int64_t sx, const float *w, const float *b,
                        float eps, float *y, float *mean, float *rstd, int64_t r, int64_t d);

void layer_norm_backward_ref(const float *g, int64_t sg, const float *x, int64_t sx,
                             const float *w, const float *mean, const float *rstd,
                             float *gx, float *gw, float *gb, int64_t r, int64_t d);
void layer_norm_backward_avx2(const float *g, int64_t sg, const float *x, int64_t sx,
                              const float *w, const float *mean, const float *rstd,
                              float *gx, float *gw, float *gb, int64_t r, int64_t d);
void layer_norm_backward_avx512(const float *g, int64_t sg, const float *x, int64_t sx,
                                const float *w, const float *mean, const float *rstd,
                                float *gx, float *gw, float *gb, int64_t r, int64_t d);
void layer_norm_backward(const float *g, int64_t sg, const float *x, int64_t sx,
                         const float *w, const float *mean, const float *rstd,
                         float *gx, float *gw, float *gb, int64_t r, int64_t d);

void softmax_forward_ref(const float *x, float *y, int64_t r, int64_t n);
void softmax_forward_avx2(const float *x, float *y, int64_t r, int64_t n);
void softmax_forward_avx512(const float *x, float *y, int64_t r, int64_t n);
void softmax_forward(const float *x, float *y, int64_t r, int64_t n);

void softmax_backward_ref(const float *g, const float *y, float *gx, int64_t r, int64_t n);
void softmax_backward_avx2(const float *g, const float *y, float *gx, int64_t r, int64_t n);
void softmax_backward_avx512(const float *g, const float *y, float *gx, int64_t r, int64_t n);
void softmax_backward(const float *g, const float *y, float *gx, int64_t r, int64_t n);

/* ---- strided copy: dst[i] = src[i] for every index i of `shape` ----------
 * shape (nd,), 1 <= nd <= 8; ss, ds the element strides of src and dst (any
 * sign; a 0 in ss repeats src along that dim, e.g. a fill from one float).
 * dst must not overlap src. The fast versions merge dims that are
 * contiguous in both, copy the innermost runs with vectors, and split the
 * rows over threads. */
void copy_strided_ref(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                      const int64_t *shape, int64_t nd);
void copy_strided_avx2(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                       const int64_t *shape, int64_t nd);
void copy_strided_avx512(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                         const int64_t *shape, int64_t nd);
void copy_strided(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                  const int64_t *shape, int64_t nd);

/* ---- band products: each query's window of keys (band.c) -----------------
 * B (nb) batch, T tokens, d width, w window; slot t of query i holds key
 * j = i + lo + t, lo = -floor(w/2); keys outside 0..T-1 count as zeros.
 * All arrays contiguous.
 *   band_dot    a, b (B, T, d) -> s (B, T, w)   s[i, t] = a_i . b_j (0 off the ends)
 *   band_mix    p (B, T, w), v (B, T, d) -> y (B, T, d)   y_i = sum_t p[i, t] v_j
 *   band_mix_t  p (B, T, w), a (B, T, d) -> y (B, T, d)   the adjoint of band_mix in v:
 *               y_j = sum_t p[j - lo - t, t] a_{j - lo - t}
 * The fast versions take every shape (the tail of d masked), threads over rows. */
void band_dot_ref(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_dot_avx2(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_dot_avx512(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_dot(const float *a, const float *b, float *s, int64_t nb, int64_t T, int64_t d, int64_t w);

void band_mix_ref(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_mix_avx2(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_mix_avx512(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_mix(const float *p, const float *v, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);

void band_mix_t_ref(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_mix_t_avx2(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_mix_t_avx512(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);
void band_mix_t(const float *p, const float *a, float *y, int64_t nb, int64_t T, int64_t d, int64_t w);

/* ---- ToMe's bipartite soft matching (match.c; ops.ToMeMatch) ---------------
 * B (nb) batch, h heads, N tokens, d head width; k (B, h, N, d) float32 at element
 * strides (sb, sh, sn, 1); slot (B, N) int64 out: the output token of each token, N - r
 * of them, for r merged pairs (0 <= r <= (N - 1) / 2). Returns 0, or -1 when out of memory.
 * The fast versions take every shape: images on threads, vector dot products. */
int tome_match_ref(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
                   int64_t sb, int64_t sh, int64_t sn, int64_t r);
int tome_match_avx2(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
                    int64_t sb, int64_t sh, int64_t sn, int64_t r);
int tome_match_avx512(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
                      int64_t sb, int64_t sh, int64_t sn, int64_t r);
int tome_match(const float *k, int64_t *slot, int64_t nb, int64_t h, int64_t N, int64_t d,
               int64_t sb, int64_t sh, int64_t sn, int64_t r);

/* ---- attention: softmax(q k^T * scale) v per head, from packed qkv (attention.c)
 * B batch, N tokens, h heads, d head width, D = h * d; all arrays contiguous.
 *   qkv   (B, N, 3, h, d)   q, k, v of each head (the qkv Linear's output)
 *   kbias (B, N)            added to every score of key j (forward only), or NULL
 *   out   (B, N, h, d)      the heads' outputs, concatenated: (B, N, D)
 *   p     (B, h, N, Np)     the probabilities, written by the forward, read by the backward;
 *                           rows padded with zeros to Np = attention_row(N), N rounded up
 *                           to 16; NULL in a forward that need not keep them (inference)
 *   g     (B, N, h, d)      the gradient of out -> gqkv (B, N, 3, h, d)
 *   bf16  1: every product's operands rounded to bfloat16 (q, k, v, g, P after
 *         the softmax, gS before its products), float32 accumulation: the op
 *         under minit2t.autocast; the forward keeps P rounded. 0: float32
 * Each returns 0, or -1 when working memory ran out (nothing computed). The fast
 * versions take every shape, threads over heads. */
int64_t attention_row(int64_t N);
int attention_forward_ref(const float *qkv, const float *kbias, float *out, float *p,
                          int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);
int attention_forward_avx2(const float *qkv, const float *kbias, float *out, float *p,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);
int attention_forward_avx512(const float *qkv, const float *kbias, float *out, float *p,
                             int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);
int attention_forward(const float *qkv, const float *kbias, float *out, float *p,
                      int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);

int attention_backward_ref(const float *qkv, const float *p, const float *g, float *gqkv,
                           int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);
int attention_backward_avx2(const float *qkv, const float *p, const float *g, float *gqkv,
                            int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);
int attention_backward_avx512(const float *qkv, const float *p, const float *g, float *gqkv,
                              int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);
int attention_backward(const float *qkv, const float *p, const float *g, float *gqkv,
                       int64_t B, int64_t N, int64_t h, int64_t d, float scale, int bf16);

/* ---- instruction set and threads ----------------------------------------
 * ISA levels: 0 scalar (the _ref loops), 1 AVX2+FMA, 2 AVX-512F,
 * 3 AVX512-BF16 (with BW, VL), 4 AMX-BF16. The float32 kernels run their
 * _avx512 at levels 2-4; levels 3 and 4 pick the bf16 GEMM's versions.
 * minit2t_cpu_isa: the best level this CPU runs; minit2t_isa: the level the
 * dispatchers use now (AMX only once the OS lent this process the tiles,
 * else 3); minit2t_set_isa caps it (tests, comparisons) and returns the
 * level in force, never above what the CPU runs. */
int minit2t_cpu_isa(void);
int minit2t_isa(void);
int minit2t_set_isa(int level);
void minit2t_set_num_threads(int n);   /* n < 1 means 1 */
int minit2t_get_num_threads(void);

#endif
