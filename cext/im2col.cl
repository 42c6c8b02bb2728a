/* unfold (im2col) and fold (col2im) on float32, torch.nn.functional semantics.
 *
 * Legend: x (B, C, H, W), cols (B, C*k*k, L), both contiguous; k kernel,
 * s stride, p padding, Ho = (H + 2p - k) / s + 1, Wo likewise, L = Ho * Wo.
 *   cols[b, (c*k + i)*k + j, oh*Wo + ow] = x[b, c, oh*s - p + i, ow*s - p + j]
 * (0 in the padding). A work-item owns one row of its output (Wo entries of
 * cols, or W pixels of x) and walks it with increments only: no division
 * per element, a short loop a CPU runs well. Dimension 2 of the grid is
 * b*C + c, launched in slabs from z0 (some GPUs allow at most 65535 groups
 * there); the grid is rounded up to the work-group size and work-items past
 * the real sizes do nothing. */

/* Grid (Ho, k*k, B*C): work-item (oh, i*k + j, b*C + c) writes
 * cols[b, (c*k + i)*k + j, oh*Wo : oh*Wo + Wo]. */
__kernel void unfold(const int z0, const int nz, const int C, const int H,
                     const int W, const int k, const int s, const int p,
                     const int Ho, const int Wo, __global const float* x,
                     __global float* cols)
{
    const int oh = get_global_id(0), ij = get_global_id(1);
    const int bc = get_global_id(2) + z0;            /* b*C + c */
    if (oh >= Ho || ij >= k * k || bc >= nz) return;
    const int i = ij / k, j = ij % k, h = oh * s - p + i;
    __global float* dst = cols + (((size_t)bc * k * k + ij) * Ho + oh) * Wo;   /* (Wo,) */
    const bool row_inside = h >= 0 && h < H;
    const __global float* src = x + ((size_t)bc * H + (row_inside ? h : 0)) * W;  /* row h */
    for (int ow = 0, w = j - p; ow < Wo; ow++, w += s)
        dst[ow] = (row_inside && w >= 0 && w < W) ? src[w] : 0.0f;
}

/* Grid (H, 1, B*C): work-item (h, 0, b*C + c) writes x[b, c, h, :], each
 * pixel the sum, in (i, j) order as the reference adds them, of the cols
 * entries that unfold reads from it (a gather: no atomics). In padded
 * coordinates hp = oh*s + i: the windows over hp are i = hp % s,
 * oh = hp / s, then i += s, oh -= 1 while i < k and oh >= 0 (same for wp). */
__kernel void fold(const int z0, const int nz, const int C, const int H,
                   const int W, const int k, const int s, const int p,
                   const int Ho, const int Wo, __global const float* cols,
                   __global float* x)
{
    const int h = get_global_id(0), bc = get_global_id(2) + z0;   /* b*C + c */
    if (h >= H || bc >= nz) return;
    const int i0 = (h + p) % s, oh0 = (h + p) / s;
    const __global float* src = cols + (size_t)bc * k * k * Ho * Wo;   /* (k*k, L) */
    __global float* dst = x + ((size_t)bc * H + h) * W;                /* (W,) */
    for (int w = 0, j0 = p % s, u = p / s; w < W; w++) {   /* w + p = u*s + j0 */
        float sum = 0.0f;
        for (int i = i0, oh = oh0; i < k && oh >= 0; i += s, oh--) {
            if (oh >= Ho) continue;
            for (int j = j0, ow = u; j < k && ow >= 0; j += s, ow--)
                if (ow < Wo) sum += src[((size_t)(i * k + j) * Ho + oh) * Wo + ow];
        }
        dst[w] = sum;
        if (++j0 == s) { j0 = 0; u++; }
    }
}
