/* Vector exp, the normal CDF and the dot product, written once for any
 * vector width in the vocabulary of vec_avx2.h (VF, VSET1, VFMA, VSEL, ...),
 * which the including template (fused_fast.c, ..., through fast_isa.h)
 * has included first.
 * Coefficients: least-squares fits of relative error on Chebyshev nodes
 * (float64), rounded to float32; measured against double precision they
 * stay within a few float32 ulps (see tests/test_fused.py). */

/* a . b over n floats: a vector of partial sums (the tail masked), summed
 * across lanes at the end. */
static inline float vdot(const float *a, const float *b, int64_t n)
{
    VF acc = VSET1(0.0f);
    int64_t j = 0;
    for (; j + VW <= n; j += VW) acc = VFMA(VLOAD(a + j), VLOAD(b + j), acc);
    if (j < n) {
        VTAIL m = VTAILMASK(n - j);
        acc = VFMA(VLOADT(a + j, m, 0.0f), VLOADT(b + j, m, 0.0f), acc);
    }
    return VHSUM(acc);
}

/* exp(x), lane by lane, for x <= 0 or NaN: every exp here is of a value
 * never positive (a softmax's score less its row's maximum, -x^2 / 2 in
 * the normal CDF), so no lane can overflow. r = x - n ln2 with |r| <= ln2
 * / 2 (ln2 split in a high part exact in n * hi and a low part), exp(r) a
 * degree-6 polynomial, then times 2^n (VSCALE_OR_0: on AVX-512 one
 * vscalefps, on AVX2 2^n added to the exponent bits); n >= -125, so the
 * result stays normal: results below exp(-86.64) ~ 2.4e-38 (and -inf) give
 * 0. NaN stays NaN: VMAX returns its second operand, x, for a NaN lane,
 * every step after keeps it, and VNLT keeps the lane. */
static inline VF vexp_nonpos(VF x)
{
    const VF lo = VSET1(-86.643f);
    VF xc = VMAX(lo, x);
    VF n = VROUND(VMUL(xc, VSET1(1.44269504f)));
    VF r = VFNMA(n, VSET1(0.693145752f), xc);
    r = VFNMA(n, VSET1(1.42860682e-6f), r);
    VF p = VSET1(1.38368306e-3f);
    p = VFMA(p, r, VSET1(8.37481581e-3f));
    p = VFMA(p, r, VSET1(4.16682251e-2f));
    p = VFMA(p, r, VSET1(1.66664198e-1f));
    p = VFMA(p, r, VSET1(4.99999911e-1f));
    p = VFMA(p, r, VSET1(1.0f));
    p = VFMA(p, r, VSET1(1.0f));
    return VSCALE_OR_0(p, n, VNLT(x, lo));
}

/* Phi(x) = P(X <= x) for X ~ N(0, 1), and in *pdf its density
 * phi(x) = exp(-x^2 / 2) / sqrt(2 pi). One formula for every x, with
 * z = |x| / sqrt 2 and t = 1 / (1 + z/2):
 *   erfc(z) = exp(-z^2) t W(t),  W a degree-8 polynomial fitted on the t
 *   of 0 <= z <= 14 / sqrt 2 (relative error 7e-8 with its float32
 *   coefficients, which hold W / 2),
 *   Phi = erfc(z) / 2 for x < 0, 1 - erfc(z) / 2 for x >= 0,
 * so the lower tail keeps its relative accuracy (no 1 + erf cancellation),
 * and no lane evaluates a second branch. exp(-z^2) = exp(-x^2 / 2) is
 * exp(-h/2) (1 - l/2) with x^2 = h + l split exactly by an FMA: a rounded
 * z would cost 2 z^2 ulps of erfc(z) in the tail. |x| is capped at 14,
 * where Phi is 0 or 1 in float32. NaN stays NaN (VMIN returns its second
 * operand, |x|, for a NaN lane). */
static inline VF vnormcdf(VF x, VF *pdf)
{
    VF ax = VMIN(VSET1(14.0f), VABS(x));
    VF h = VMUL(ax, ax);
    VF l = VFMS(ax, ax, h);
    VF ez = VMUL(vexp_nonpos(VMUL(h, VSET1(-0.5f))), VFNMA(l, VSET1(0.5f), VSET1(1.0f)));
    *pdf = VMUL(ez, VSET1(0.398942280f));                           /* exp(-z^2) / sqrt(2 pi) */
    VF t = VRECIP(VFMA(ax, VSET1(0.353553391f), VSET1(1.0f)));
    VF w = VSET1(-2.951927483e-02f);                                 /* erfc(z) e^{z^2} / (2 t) */
    w = VFMA(w, t, VSET1(1.422130316e-01f));
    w = VFMA(w, t, VSET1(-2.434451729e-01f));
    w = VFMA(w, t, VSET1(1.388557106e-01f));
    w = VFMA(w, t, VSET1(-1.318968460e-02f));
    w = VFMA(w, t, VSET1(1.012910381e-01f));
    w = VFMA(w, t, VSET1(1.215652078e-01f));
    w = VFMA(w, t, VSET1(1.411858052e-01f));
    w = VFMA(w, t, VSET1(1.410433203e-01f));
    VF half = VMUL(ez, VMUL(t, w));                                  /* erfc(z) / 2 */
    return VSEL(VLT(x, VSET1(0.0f)), VSUB(VSET1(1.0f), half), half);
}
