"""erf in NumPy (NumPy has none): Cephes' rational approximations, accurate
to double precision, evaluated in float64 and returned in the input's dtype.

    |x| <= 1:      erf(x)  = x * T(x^2) / U(x^2)
    1 < |x| < 8:   erfc(x) = exp(-x^2) * P(|x|) / Q(|x|)
    |x| >= 8:      erf(x)  = sign(x)   (erfc(8) ~ 1e-29 is below double precision)
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


def _poly(coefs, x):
    out = np.full_like(x, coefs[0])
    for c in coefs[1:]:
        out *= x
        out += c                                                   # Horner, in place
    return out


def erf(x):
    x = np.asarray(x)
    x64 = x.astype(np.float64)
    ax = np.abs(x64)
    out = np.empty_like(x64)
    small = ax <= 1.0                                              # each branch only where it applies
    xs = x64[small]
    z = xs * xs
    out[small] = xs * _poly(_T, z) / _poly(_U, z)
    mid = (ax > 1.0) & (ax < 8.0)
    out[mid] = _erf_from_erfc(x64[mid], _P, _Q)
    far = ~(small | mid)                                           # |x| >= 8, inf and nan
    out[far] = np.sign(x64[far])                                   # erfc(8) < 1.2e-29: 1 - erfc == 1
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)


def _erf_from_erfc(x, num, den):
    ax = np.abs(x)
    with np.errstate(under="ignore"):
        erfc = np.exp(-x * x) * _poly(num, ax) / _poly(den, ax)
    return np.sign(x) * (1.0 - erfc)
