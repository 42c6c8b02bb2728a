"""Exercises a student can check: write a layer's NumPy code, test it against the library's ops.

    import minit2t.exercises as ex
    ex.list_exercises()                        # the names
    print(ex.describe("layer_norm_backward"))  # what to write: signature, shapes, what to return
    ex.check("layer_norm_backward", my_fn)     # 25 drawn cases; raises AssertionError saying what is wrong

Legend: B batch, T tokens, D normalised (last) dim, N softmax (last) dim, "..." any leading dims (maybe none),
C channels, H/W image size, k kernel, s stride, p padding, L = Ho * Wo windows,
Din input width, E token width (output of the T2T attention).

check() draws every case from numpy's Generator with a fixed seed (no hypothesis needed): random
shapes within small bounds, plus the edge cases (case 0 has every size 1; odd sizes, batch dims and
non-contiguous views come up at random). Inputs are float64; the reference is the library's own ops
(minit2t.ops, their NumPy forward and backward), compared element-wise: |got - want| <= atol + rtol |want|.
fn gets the arguments positionally, in the statement's order. On the first failing case check()
raises AssertionError naming the exercise, the case (its inputs' shapes), the output, and how far
off it is, with a hint where the error has a recognisable pattern.
On success it prints and returns one line, e.g. "layer_norm_backward: 25 cases passed".
"""
from collections import namedtuple

import numpy as np

from minit2t import ops
from minit2t.ops.function import Context

Exercise = namedtuple("Exercise", "statement outputs draw reference")
EXERCISES = {}


def exercise(name, statement, outputs, reference):
    """Register draw(rng, i) -> dict of arguments as exercise `name`, reference(**arguments) its answer."""
    def register(draw):
        EXERCISES[name] = Exercise(statement, outputs, draw, reference)
        return draw
    return register


def _run(op, *arrays, **options):
    """The library's forward of `op` on ndarrays; returns (output, ctx) for its backward."""
    ctx = Context(op)
    return op.forward(ctx, *arrays, **options), ctx


# ---- drawing cases ----------------------------------------------------------------

def _side(rng, i, low=1, high=5):
    return 1 if i == 0 else int(rng.integers(low, high + 1))


def _lead(rng, i):
    """Leading (batch) dims: none to two of them."""
    return () if i == 0 else tuple(_side(rng, i, 1, 3) for _ in range(rng.integers(0, 3)))


def _array(rng, shape, scale=1.0):
    """Standard normal values; half the time a non-contiguous (strided) view of them."""
    return _strided(rng, rng.standard_normal(shape) * scale)


def _strided(rng, x):
    """x, or half the time a non-contiguous view with the same values."""
    if rng.random() < 0.5 and x.ndim >= 1:
        shape = x.shape
        big = np.zeros(shape[:-1] + (2 * shape[-1],))
        big[..., ::2] = x
        x = big[..., ::2]
    return x


# ---- the exercises ------------------------------------------------------------------

def _layer_norm_backward(g, x, weight, eps):
    _, ctx = _run(ops.LayerNorm, x, weight, np.zeros_like(weight), eps=eps)
    return ops.LayerNorm.backward(ctx, g)


@exercise("layer_norm_backward", """layer_norm_backward(g, x, weight, eps) -> (gx, gweight, gbias)
The backward of y = (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased) var taken over
the last dim. g (..., D) is the gradient of the loss with respect to y, x (..., D) the input,
weight (D,), eps a float. Return gx (..., D), and gweight and gbias (D,) summed over the leading dims.""",
          ("gx", "gweight", "gbias"),
          _layer_norm_backward)
def _draw_layer_norm(rng, i):
    shape = _lead(rng, i) + (_side(rng, i, 1, 7),)
    return dict(g=_array(rng, shape), x=_array(rng, shape, 3.0), weight=_array(rng, shape[-1:]), eps=1e-5)


def _softmax_backward(g, y):
    ctx = Context(ops.Softmax)
    ctx.axis = -1
    ctx.save_for_backward(y)
    return ops.Softmax.backward(ctx, g)


@exercise("softmax_backward", """softmax_backward(g, y) -> ga
The backward of y = softmax(a) along the last dim. g (..., N) is the gradient of the loss with
respect to y, y (..., N) the softmax's output (every row sums to 1). Return ga (..., N).""", ("ga",),
          _softmax_backward)
def _draw_softmax(rng, i):
    shape = _lead(rng, i) + (_side(rng, i, 1, 7),)
    y, _ = _run(ops.Softmax, rng.standard_normal(shape) * 2)
    return dict(g=_array(rng, shape), y=_strided(rng, y))


def _gelu_backward(g, a):
    _, ctx = _run(ops.GELU, a)
    return ops.GELU.backward(ctx, g)


@exercise("gelu_backward", """gelu_backward(g, a) -> ga
The backward of the exact GELU y = a * Phi(a), Phi the standard normal CDF (Phi(a) = (1 + erf(a / sqrt 2)) / 2;
math.erf works element by element). g (...) is the gradient of the loss with respect to y, a (...) the
input, any shape. Return ga, a's shape.""", ("ga",),
          _gelu_backward)
def _draw_gelu(rng, i):
    shape = _lead(rng, i) + (_side(rng, i, 1, 6),)
    return dict(g=_array(rng, shape), a=_array(rng, shape, 3.0))


def _window(rng, i):
    """(B, C, H, W, k, s, p) with the padded image at least one window big."""
    k, s, p = (1, 1, 0) if i == 0 else (_side(rng, i, 1, 3), _side(rng, i, 1, 3), int(rng.integers(0, 3)))
    B, C = _side(rng, i, 1, 2), _side(rng, i, 1, 3)
    H, W = (_side(rng, i, max(1, k - 2 * p), 6) for _ in range(2))
    return B, C, H, W, k, s, p


def _unfold(x, k, s, p):
    return _run(ops.Unfold, x, k, s, p)[0]


@exercise("unfold", """unfold(x, k, s, p) -> cols
im2col, the soft split: every k x k window of x (B, C, H, W), zero-padded by p on every side,
taken at stride s, as one column. Return cols (B, C*k*k, L), L = Ho * Wo, Ho = (H + 2p - k) // s + 1
(Wo likewise); windows in row-major order, a column's rows ordered (channel, kernel row, kernel column)
as torch.nn.functional.unfold.""", ("cols",),
          _unfold)
def _draw_unfold(rng, i):
    B, C, H, W, k, s, p = _window(rng, i)
    return dict(x=_array(rng, (B, C, H, W)), k=k, s=s, p=p)


def _fold(cols, H, W, k, s, p):
    return _run(ops.Fold, cols, (H, W), k, s, p)[0]


@exercise("fold", """fold(cols, H, W, k, s, p) -> x
col2im, unfold's adjoint: every column of cols (B, C*k*k, L) added back onto its k x k window of a
zero image, padded by p, at stride s; overlapping windows sum. Return x (B, C, H, W), the padding
cropped off. Columns are laid out as unfold's (see describe("unfold")).""", ("x",),
          _fold)
def _draw_fold(rng, i):
    B, C, H, W, k, s, p = _window(rng, i)
    L = ((H + 2 * p - k) // s + 1) * ((W + 2 * p - k) // s + 1)
    return dict(cols=_array(rng, (B, C * k * k, L)), H=H, W=W, k=k, s=s, p=p)


def _t2t_attention(x, wqkv, wproj, bproj, scale):
    E = wproj.shape[0]
    qkv, _ = _run(ops.Linear, x, wqkv)                                 # (B, T, 3E)
    q, k, v = qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]          # (B, T, E) each
    scores, _ = _run(ops.MatMul, q * scale, np.swapaxes(k, -1, -2))      # (B, T, T)
    attn, _ = _run(ops.Softmax, scores)
    mixed, _ = _run(ops.MatMul, attn, v)                                 # (B, T, E)
    return v + _run(ops.Linear, mixed, wproj, bproj)[0]                  # (B, T, E)


@exercise("t2t_attention", """t2t_attention(x, wqkv, wproj, bproj, scale) -> out
One T2T transformer attention forward (one head, minit2t/models/token_transformer.py): q, k, v =
the three E-wide slices of x @ wqkv^T (in that order), attn = softmax(q k^T * scale) over the last dim,
out = v + (attn @ v) @ wproj^T + bproj (the value skip). x (B, T, Din), wqkv (3E, Din), wproj (E, E),
bproj (E,), scale a float. Return out (B, T, E).""", ("out",),
          _t2t_attention)
def _draw_attention(rng, i):
    B, T, Din, E = _side(rng, i, 1, 2), _side(rng, i, 1, 5), _side(rng, i, 1, 6), _side(rng, i, 1, 4)
    return dict(x=_array(rng, (B, T, Din)), wqkv=_array(rng, (3 * E, Din)), wproj=_array(rng, (E, E)),
                bproj=_array(rng, (E,)), scale=Din ** -0.5)


# ---- checking ----------------------------------------------------------------------

def list_exercises():
    return sorted(EXERCISES)


def _get(name):
    if name not in EXERCISES:
        raise ValueError(f"no exercise {name!r}; the exercises are: {', '.join(list_exercises())}")
    return EXERCISES[name]


def describe(name):
    """The statement of exercise `name`: signature, shapes, what to return."""
    return _get(name).statement


def _describe_case(args):
    def one(key, v):
        if isinstance(v, np.ndarray):
            return f"{key} {v.shape}" + ("" if v.flags.c_contiguous else " non-contiguous")
        return f"{key}={v!r}"
    return ", ".join(one(key, v) for key, v in args.items())


def _simple(c):
    """Whether c is +-n or +-1/n for a small n: unlikely by chance."""
    return any(abs(abs(c) - r) <= 1e-6 * r for n in range(1, 17) for r in (n, 1 / n))


def _hint(got, want, others):
    """A guess at the error's pattern, or ''. `others`: the other expected outputs, by name."""
    for other, w in others.items():
        if w.shape == got.shape and np.allclose(got, w, rtol=1e-6, atol=1e-8):
            return f"; hint: it matches the expected {other} (outputs swapped?)"
    flipped = got.shape[:-2] + got.shape[:-3:-1]
    if got.ndim >= 2 and flipped == want.shape and np.allclose(np.swapaxes(got, -1, -2), want, rtol=1e-6, atol=1e-8):
        return "; hint: its last two axes are swapped (a transpose?)"
    if got.shape != want.shape:
        return "; hint: same number of elements (a reshape or transpose?)" if got.size == want.size else ""
    ww = float(np.vdot(want, want))
    c = float(np.vdot(got, want)) / ww if ww > 0 else 0.0
    if abs(c - 1) > 1e-6 and abs(c) > 1e-9 and np.allclose(got, c * want, rtol=1e-6, atol=1e-8):
        if got.size >= 2 or _simple(c):                                  # one number: any c fits
            return f"; hint: off by a factor of {c:.6g}"
    if np.allclose(np.sort(got, axis=None), np.sort(want, axis=None), rtol=1e-6, atol=1e-8):
        return "; hint: the right values in the wrong places (an order of axes or channels?)"
    return ""


def _compare(got, want, others, rtol, atol):
    """'' when got matches want, else what is wrong with it."""
    if got is None:
        return "got None"
    got = np.asarray(got)
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}" + _hint(got, want, others)
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    err = np.abs(got - want)
    bad = ~(err <= atol + rtol * np.abs(want))                           # NaN counts as bad
    if not bad.any():
        return ""
    where = np.unravel_index(np.argmax(np.where(np.isnan(err), np.inf, err)), err.shape)
    norm = np.linalg.norm(want)
    rel = f"relative error {np.linalg.norm(got - want) / norm:.3g}" if norm > 0 else "expected all zeros"
    return (f"max abs error {err[where]:.3g} at index {tuple(int(j) for j in where)} "
            f"(got {got[where]:.6g}, expected {want[where]:.6g}), {rel}, "
            f"{int(bad.sum())} of {bad.size} elements off" + _hint(got, want, others))


def _outputs(result, n):
    """fn's result as a tuple of n outputs, or a message saying why it is not."""
    if n == 1 and not isinstance(result, (tuple, list)):
        return (result,), ""
    if n == 1 and len(result) == 1:
        return tuple(result), ""
    if not isinstance(result, (tuple, list)):
        return None, f"returned one {type(result).__name__}, expected a tuple of {n} outputs"
    if len(result) != n:
        return None, f"returned {len(result)} outputs, expected {n}"
    return tuple(result), ""


def _check_case(ex, fn, args, rtol, atol):
    """'' when fn passes this case, else the message's tail."""
    want = ex.reference(**{key: v.copy() if isinstance(v, np.ndarray) else v for key, v in args.items()})
    want = want if isinstance(want, tuple) else (want,)
    try:
        result = fn(*args.values())                                      # in describe()'s order
    except Exception as e:                                               # the student's code raised
        return f"raised {type(e).__name__}: {e}"
    got, problem = _outputs(result, len(want))
    if problem:
        return f"{problem} ({', '.join(ex.outputs)})"
    for name, g, w in zip(ex.outputs, got, want):
        others = {o: x for o, x in zip(ex.outputs, want) if o != name}
        problem = _compare(g, w, others, rtol, atol)
        if problem:
            return f"output {name}: {problem}"
    return ""


def check(name, fn, cases=25, seed=0, rtol=1e-7, atol=1e-9):
    """Run fn on `cases` drawn cases (positional arguments, as in describe(name)) and compare every
    output with the library's. Raises AssertionError on the first failure; on success prints and
    returns the line "<name>: <cases> cases passed"."""
    ex = _get(name)
    rng = np.random.default_rng(seed)
    for i in range(cases):
        args = ex.draw(rng, i)
        problem = _check_case(ex, fn, args, rtol, atol)
        if problem:
            raise AssertionError(f"{name}, case {i} of {cases} ({_describe_case(args)}): {problem}")
    line = f"{name}: {cases} cases passed"
    print(line)
    return line
