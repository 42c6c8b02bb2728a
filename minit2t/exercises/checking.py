"""check(): run a learner's function on drawn cases and say what is off, where and by how much.

On the first failing case the AssertionError names the exercise, the case (its inputs' shapes), the
output, the largest error with its index and both values, the relative error, how many elements are off,
and a guess at the mistake where the error has a recognisable pattern (outputs swapped, a transpose, a
constant factor, the right values in the wrong places).
"""
import numpy as np

from minit2t.exercises.core import EXERCISES, formula
from minit2t.tensor import Tensor


def get(name):
    if name not in EXERCISES:
        raise ValueError(f"no exercise {name!r}; the exercises are: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[name]


def _describe_case(args):
    tensors = {id(v): key for key, v in args.items() if isinstance(v, Tensor)}

    def one(key, v):
        if isinstance(v, Tensor):                                        # a graph's output: how it was made
            made = formula(v, {i: n for i, n in tensors.items() if n != key}) if v._ctx else "a leaf"
            return f"{key} {v.shape}" + ("" if made == "a leaf" else f" = {made}")
        if isinstance(v, np.ndarray):
            return f"{key} {v.shape}" + ("" if v.flags.c_contiguous else " non-contiguous")
        if isinstance(v, dict):
            return f"{key} (a dict of {len(v)} arrays)"
        return f"{key}={v!r}"
    return ", ".join(one(key, v) for key, v in args.items())


def _simple(c):
    """Whether c is +-n or +-1/n for a small n: unlikely by chance."""
    return any(abs(abs(c) - r) <= 1e-6 * r for n in range(1, 17) for r in (n, 1 / n))


def _pattern(got, want, others):
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
        return f"shape {got.shape}, expected {want.shape}" + _pattern(got, want, others)
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
            f"{int(bad.sum())} of {bad.size} elements off" + _pattern(got, want, others))


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


def _copy(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    return {key: _copy(x) for key, x in v.items()} if isinstance(v, dict) else v


def _check_case(name, ex, fn, args, rtol, atol):
    """'' when fn passes this case, else the message's tail."""
    want = ex.call(ex.reference, {key: _copy(v) for key, v in args.items()})
    want = want if isinstance(want, tuple) else (want,)
    try:
        result = ex.call(fn, args)                                       # in describe()'s order
    except Exception as e:                                               # the learner's code raised
        return f"raised {type(e).__name__}: {e}"
    if result is None:                                                   # a body of `...` returns None
        unwritten = f" (no return yet? ex.hint({name!r}) gives a hint)"
        if len(want) == 1:
            return f"output {ex.outputs[0]}: got None" + unwritten
        return f"returned None, expected a tuple of {len(want)} outputs ({', '.join(ex.outputs)})" + unwritten
    got, problem = _outputs(result, len(want))
    if problem:
        return f"{problem} ({', '.join(ex.outputs)})"
    for output, g, w in zip(ex.outputs, got, want):
        others = {o: x for o, x in zip(ex.outputs, want) if o != output}
        problem = _compare(g, np.asarray(w), others, rtol, atol)
        if problem:
            return f"output {output}: {problem}"
    return ""


def check(name, fn, cases=25, seed=0, rtol=None, atol=None):
    """Run fn on `cases` drawn cases (positional arguments, as in describe(name)) and compare every
    output with the library's. Raises AssertionError on the first failure; on success prints and
    returns the line "<name>: <cases> cases passed". rtol, atol: the exercise's own unless given."""
    ex = get(name)
    rtol = ex.tolerance[0] if rtol is None else rtol
    atol = ex.tolerance[1] if atol is None else atol
    rng = np.random.default_rng(seed)
    for i in range(cases):
        args = ex.draw(rng, i)
        problem = _check_case(name, ex, fn, args, rtol, atol)
        if problem:
            raise AssertionError(f"{name}, case {i} of {cases} ({_describe_case(args)}): {problem}")
    line = f"{name}: {cases} cases passed"
    print(line)
    return line
