"""Exercises a learner can check: write a piece of T2T-ViT in NumPy, test it against the library's code.

    import minit2t.exercises as ex                # or mt.exercises
    ex.list_exercises()                           # the names
    print(ex.describe("unfold"))                  # what to write: signature, shapes, what to return
    ex.check("unfold", my_unfold)                 # 25 drawn cases; raises AssertionError saying what is off
    ex.hint("unfold")                             # the next rung of the ladder: a hint, a bigger hint, the code
    ex.hint("unfold", 2)                          # one rung: 1 a hint, 2 a bigger hint, 3 the library's code
    ex.reveal("unfold")                           # the library's own code for it (inspect.getsource)
    ex.solution("unfold")                         # the reference, a function with the statement's signature

Exercises: backprop (autograd.py); layer_norm_backward, softmax_backward, gelu_backward, cross_entropy_backward (backward.py);
unfold, fold, restructurize, t2t_attention, prm_exp (tokens.py); sinusoid_table, t2t_module (model.py);
adamw_step, warmup_cosine (training.py).

check() draws every case from numpy's Generator with a fixed seed (no hypothesis needed): random shapes
within small bounds, plus the edge cases (case 0 has every size 1; odd sizes, batch dims and non-contiguous
views come up at random). Inputs are float64; the reference is the library's own code (its ops' NumPy
forward and backward, its layers, its optimizer and schedule), compared element-wise:
|got - want| <= atol + rtol |want|. fn gets the arguments positionally, in the statement's order. On the
first failing case check() raises AssertionError naming the exercise, the case (its inputs' shapes), the
output, the largest error with its index, and how far off it is, with a guess at the mistake where the
error has a recognisable pattern. On success it prints and returns one line, e.g. "unfold: 25 cases passed".

Build cells. A notebook has the learner write a piece where it introduces it, in a cell of this form:

    def my_unfold(x, k, s, p):
        # YOUR CODE: every k x k window of x as a column (B, C*k*k, L)
        return ex.solution("unfold")(x, k, s, p)
    ex.check("unfold", my_unfold)

Everything in the function body after the "# YOUR CODE" comment line is the filled-in reference, so that
the committed, executed notebook passes its checks in CI; the learner's copy (notebooks/build.py --learner
OUTDIR) replaces it with `...`, and check() then says that the body is not written yet. The reference is
never pasted in a notebook: ex.reveal(name), or the third hint, prints it from the library's source.
"""
import inspect
import textwrap

from minit2t.exercises import autograd, backward, model, tokens, training  # noqa: F401  (they register the exercises)
from minit2t.exercises.checking import check, get
from minit2t.exercises.core import EXERCISES

__all__ = ["EXERCISES", "check", "describe", "hint", "list_exercises", "reveal", "solution"]
LEVELS = 3                                                            # a hint, a bigger hint, the code
_given = {}                                                           # name -> the last hint level shown


def list_exercises():
    return sorted(EXERCISES)


def describe(name):
    """The statement of exercise `name`: signature, shapes, what to return."""
    return get(name).statement


def solution(name):
    """The reference for exercise `name`: a function with the statement's signature, computed by the
    library's code (a committed notebook's build cell calls it, so that the executed notebook passes)."""
    return get(name).reference


def reveal(name):
    """Print the library's own code that exercise `name` is checked against."""
    ex = get(name)
    where = ", ".join(f"{obj.__module__}.{obj.__qualname__}" for obj in ex.source)
    print(f"{name}: checked against the library's {where}\n")
    for obj in ex.source:
        print(inspect.getsource(obj))


def hint(name, level=None):
    """Print one rung of exercise `name`'s hint ladder: without `level`, the one after the last shown
    (1, 2, then 3, which stays); level 1 is a hint, 2 a bigger hint, 3 the library's code (reveal)."""
    ex = get(name)
    if level is None:
        level = min(_given.get(name, 0) + 1, LEVELS)
    if level not in range(1, LEVELS + 1):
        raise ValueError(f"hint level must be 1, 2 or 3 (3 shows the library's code), got {level!r}")
    _given[name] = max(_given.get(name, 0), level)
    if level == LEVELS:
        print(f"{name}, hint 3 of 3: the library's code.")
        return reveal(name)
    more = "ex.hint again for a bigger one" if level == 1 else "ex.hint again shows the library's code"
    print(textwrap.fill(f"{name}, hint {level} of 3: {ex.hints[level - 1]}", 100) + f"\n({more})")
