"""erf, erfc and the normal CDF in NumPy (NumPy has none): Cephes' rational
approximations, accurate to double precision, evaluated in the input's float
dtype (float32 stays float32; other dtypes become float64).

    |x| <= 1:      erf(x)  = x * T(x^2) / U(x^2)
    1 < |x| < 8:   erfc(x) = exp(-x^2) * P(|x|) / Q(|x|)
    |x| >= 8:      erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_n (-1)^n (2n-1)!! / (2x^2)^n
                   (the asymptotic series; 12 terms reach ~1e-14 at x = 8)
exp(-x^2) is taken as exp(-m^2) exp(-(x - m)(x + m)), m = x rounded to 1/16:
m^2 is exact, so the rounding of x^2 (up to 2 x^2 ulps of erfc) is avoided;
normal_cdf takes exp(-x^2 / 2) from x the same way, not from a rounded x / sqrt 2.
(coefficients from S. L. Moshier, Cephes Math Library, ndtr.c)
"""
import numpy as np

_T = [9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
      7.00332514112805075473e3, 5.55923013010394962768e4]
_U = [1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
      2.26290000613890934246e4, 4.92673942608635921086e4]
_P = [2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
      4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
      9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2]
_Q = [1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
      9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
      1.65666309194161350182e3, 5.57535340817727675546e2]


def _float(x):
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _poly(coefs, x):
    out = np.full_like(x, coefs[0])
    for c in coefs[1:]:
        out *= x
        out += c                                                   # Horner, in place
    return out


def _exp_neg_square(x, half=False):
    """exp(-x^2), or exp(-x^2 / 2), without the rounding error of x^2 (see the module doc)."""
    m = np.floor(x * 16 + 0.5) / 16                                # 1/16 steps: m*m is exact
    s = 0.5 if half else 1.0
    with np.errstate(under="ignore"):
        return np.exp(-(m * m) * s) * np.exp(-((x - m) * (x + m)) * s)


def _erfc_ratio(a):
    """erfc(a) * exp(a^2) for a > 1: a rational function, or the asymptotic series."""
    a = np.minimum(a, 30)                                          # erfc(30) ~ 1e-393: 0, also for inf
    out = np.empty_like(a)
    mid = a < 8
    out[mid] = _poly(_P, a[mid]) / _poly(_Q, a[mid])
    b = a[~mid]
    inv, term, series = 1 / (2 * b * b), np.ones_like(b), np.ones_like(b)
    for n in range(1, 13):
        term *= -(2 * n - 1) * inv
        series += term
    out[~mid] = series / (b * np.sqrt(np.pi, dtype=b.dtype))
    return out


def _erfc_tail(ax):
    """erfc(ax) for 1 < ax."""
    return _erfc_ratio(ax) * _exp_neg_square(np.minimum(ax, 30))


def _erf_small(x):
    z = x * x
    return x * _poly(_T, z) / _poly(_U, z)


def erf(x):
    """erf(x) elementwise, in x's float dtype."""
    x = _float(x)
    ax = np.abs(x)
    out = np.empty_like(x)
    small = ax <= 1                                                # each branch only where it applies
    out[small] = _erf_small(x[small])
    big = ~small & ~np.isnan(x)
    out[big] = np.sign(x[big]) * (1 - _erfc_tail(ax[big]))
    out[np.isnan(x)] = np.nan
    return out


def erfc(x):
    """erfc(x) = 1 - erf(x) elementwise, in x's float dtype, accurate for large x too."""
    x = _float(x)
    ax = np.abs(x)
    out = np.empty_like(x)
    small = ax <= 1
    out[small] = 1 - _erf_small(x[small])
    big = ~small & ~np.isnan(x)
    tail = _erfc_tail(ax[big])
    out[big] = np.where(x[big] > 0, tail, 2 - tail)
    out[np.isnan(x)] = np.nan
    return out


def normal_cdf(x):
    """Phi(x) = P(X <= x) for X ~ N(0, 1) = erfc(z) / 2, z = -x / sqrt 2. Past |z| = 1
    the factor exp(-z^2) = exp(-x^2 / 2) comes from x itself, not from the rounded z."""
    x = _float(x)
    z = x * -np.sqrt(0.5, dtype=x.dtype)
    out = erfc(z)
    tail = (np.abs(z) > 1) & ~np.isnan(x)
    xt, zt = x[tail], z[tail]
    ec = _erfc_ratio(np.abs(zt)) * _exp_neg_square(np.minimum(np.abs(xt), 42), half=True)
    out[tail] = np.where(zt > 0, ec, 2 - ec)
    return out * x.dtype.type(0.5)


def normal_pdf(x):
    """phi(x) = exp(-x^2 / 2) / sqrt(2 pi), the standard normal density, in x's float dtype."""
    x = _float(x)
    return _exp_neg_square(np.minimum(np.abs(x), 42), half=True) / np.sqrt(2 * np.pi, dtype=x.dtype)
