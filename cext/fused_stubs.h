/* The fused kernels' fast names on CPUs other than x86-64: never dispatched
 * to (the dispatchers see ISA level 0), they run the references. Included
 * by avx2.c / avx512.c after they define FUSED_NAME(f). */
void FUSED_NAME(gelu_forward)(const float *x, float *y, int64_t n)
{
    gelu_forward_ref(x, y, n);
}
void FUSED_NAME(gelu_backward)(const float *g, const float *x, float *gx, int64_t n)
{
    gelu_backward_ref(g, x, gx, n);
}
void FUSED_NAME(layer_norm_forward)(const float *x, int64_t sx, const float *w, const float *b,
                                    float eps, float *y, float *mean, float *rstd, int64_t r,
                                    int64_t d)
{
    layer_norm_forward_ref(x, sx, w, b, eps, y, mean, rstd, r, d);
}
void FUSED_NAME(layer_norm_backward)(const float *g, int64_t sg, const float *x, int64_t sx,
                                     const float *w, const float *mean, const float *rstd,
                                     float *gx, float *gw, float *gb, int64_t r, int64_t d)
{
    layer_norm_backward_ref(g, sg, x, sx, w, mean, rstd, gx, gw, gb, r, d);
}
void FUSED_NAME(softmax_forward)(const float *x, float *y, int64_t r, int64_t n)
{
    softmax_forward_ref(x, y, r, n);
}
void FUSED_NAME(softmax_backward)(const float *g, const float *y, float *gx, int64_t r, int64_t n)
{
    softmax_backward_ref(g, y, gx, r, n);
}
void FUSED_NAME(copy_strided)(const float *src, const int64_t *ss, float *dst, const int64_t *ds,
                              const int64_t *shape, int64_t nd)
{
    copy_strided_ref(src, ss, dst, ds, shape, nd);
}
