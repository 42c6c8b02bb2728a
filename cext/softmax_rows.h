/* One softmax row forward and backward in the vector vocabulary of
 * vec_avx2.h (vexp_nonpos and vdot from vmath.h, included first): shared by fused_fast.c
 * (softmax over rows) and attention_fast.c (the rows of one head's
 * probabilities). n the row length; y may be x, gx may be g. */
#ifndef MINIT2T_SOFTMAX_ROWS_H
#define MINIT2T_SOFTMAX_ROWS_H

/* One row: y = exp(x - max) / sum. Tail lanes load -inf: exp gives 0. */
static inline void softmax_row(const float *x, float *y, int64_t n)
{
    const float ninf = -__builtin_inff();
    VF mx = VSET1(ninf);
    int64_t j = 0;
    for (; j + VW <= n; j += VW) mx = VMAX(mx, VLOAD(x + j));
    if (j < n) mx = VMAX(mx, VLOADT(x + j, VTAILMASK(n - j), ninf));
    VF vm = VSET1(VHMAX(mx)), acc = VSET1(0.0f);
    for (j = 0; j + VW <= n; j += VW) {
        VF e = vexp_nonpos(VSUB(VLOAD(x + j), vm));
        VSTORE(y + j, e);
        acc = VADD(acc, e);
    }
    if (j < n) {
        VTAIL m = VTAILMASK(n - j);
        VF e = vexp_nonpos(VSUB(VLOADT(x + j, m, ninf), vm));
        VSTORET(y + j, m, e);
        acc = VADD(acc, e);
    }
    VF inv = VSET1(1.0f / VHSUM(acc));
    for (j = 0; j + VW <= n; j += VW) VSTORE(y + j, VMUL(VLOAD(y + j), inv));
    if (j < n) {
        VTAIL m = VTAILMASK(n - j);
        VSTORET(y + j, m, VMUL(VLOADT(y + j, m, 0.0f), inv));
    }
}

/* One row: gx = y (g - sum(g y)). */
static inline void softmax_row_backward(const float *g, const float *y, float *gx, int64_t n)
{
    VF dot = VSET1(vdot(g, y, n));
    int64_t j;
    for (j = 0; j + VW <= n; j += VW)
        VSTORE(gx + j, VMUL(VLOAD(y + j), VSUB(VLOAD(g + j), dot)));
    if (j < n) {
        VTAIL m = VTAILMASK(n - j);
        VSTORET(gx + j, m, VMUL(VLOADT(y + j, m, 0.0f), VSUB(VLOADT(g + j, m, 0.0f), dot)));
    }
}

#endif
