"""The exercises' registry and the helpers that draw their cases.

Legend: B batch, "..." any leading dims (maybe none).

An exercise is registered by decorating its draw(rng, i) -> dict of arguments (in the statement's order):

    @exercise("name", statement, outputs=("out",), reference=fn, source=(library objects,),
              hints=("a hint", "a bigger hint"))

reference(*arguments) is the answer, with the learner's signature, computed by the library's own code;
`source` is what reveal() prints of that code. `call(fn, args)`, when given, says how check() applies a
function to a case (the default: fn(*args.values())), e.g. once per step of a schedule; `tolerance` is the
(rtol, atol) check() compares with, for an exercise whose reference is float32.
"""
from collections import namedtuple

import numpy as np

from minit2t.ops.function import Context

Exercise = namedtuple("Exercise", "statement outputs draw reference source hints call tolerance")
EXERCISES = {}
TOLERANCE = (1e-7, 1e-9)                                              # float64 against float64


def positional(fn, args):
    return fn(*args.values())


def exercise(name, statement, outputs, reference, source, hints, call=positional, tolerance=TOLERANCE):
    """Register draw(rng, i) -> dict of arguments as exercise `name`."""
    if len(hints) != 2:
        raise ValueError(f"exercise {name!r} needs two hints (a hint, then a bigger one), got {len(hints)}")

    def register(draw):
        EXERCISES[name] = Exercise(statement, outputs, draw, reference, tuple(source), tuple(hints), call,
                                   tolerance)
        return draw
    return register


def run(op, *arrays, **options):
    """The library's forward of `op` on ndarrays; returns (output, ctx) for its backward."""
    ctx = Context(op)
    return op.forward(ctx, *arrays, **options), ctx


# ---- drawing cases ----------------------------------------------------------------

def side(rng, i, low=1, high=5):
    """A size in [low, high]; 1 in case 0, which has every size 1."""
    return 1 if i == 0 else int(rng.integers(low, high + 1))


def lead(rng, i):
    """Leading (batch) dims: none to two of them."""
    return () if i == 0 else tuple(side(rng, i, 1, 3) for _ in range(rng.integers(0, 3)))


def array(rng, shape, scale=1.0):
    """Standard normal values; half the time a non-contiguous (strided) view of them."""
    return strided(rng, rng.standard_normal(shape) * scale)


def strided(rng, x):
    """x, or half the time a non-contiguous view with the same values."""
    if rng.random() < 0.5 and x.ndim >= 1:
        shape = x.shape
        big = np.zeros(shape[:-1] + (2 * shape[-1],))
        big[..., ::2] = x
        x = big[..., ::2]
    return x


def window(rng, i):
    """(B, C, H, W, k, s, p) with the padded image at least one window big."""
    k, s, p = (1, 1, 0) if i == 0 else (side(rng, i, 1, 3), side(rng, i, 1, 3), int(rng.integers(0, 3)))
    B, C = side(rng, i, 1, 2), side(rng, i, 1, 3)
    H, W = (side(rng, i, max(1, k - 2 * p), 6) for _ in range(2))
    return B, C, H, W, k, s, p


def formula(t, names):
    """How Tensor t was made, as ops of the tensors in `names` (id -> name), e.g. Sum(Tanh(Add(Mul(x, w), b)))."""
    if id(t) in names:
        return names[id(t)]
    if t._ctx is None:
        return f"{float(t.data):g}" if t.data.size == 1 else f"a constant {t.shape}"
    return f"{t._ctx.fn.__name__}({', '.join(formula(i, names) for i in t._ctx.inputs)})"
