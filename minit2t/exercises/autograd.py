"""An exercise on the engine itself: backprop, the loop of Tensor.backward over a graph it has to order.

Legend: B batch, D features; x (B, D) and w, b (D,) the leaves (w and b broadcast over x's rows).
The reference is Tensor.backward (run with retain_graph=True, so the graph survives for the learner's
function, which check() calls afterwards on the same tensors).
"""
import numpy as np

from minit2t.exercises.core import exercise, side
from minit2t.grad_mode import enable_grad
from minit2t.tensor import Tensor


def _backprop(L, *leaves):
    for t in leaves:
        t.grad = None
    L.backward(retain_graph=True)
    grads = tuple(t.grad for t in leaves)
    for t in leaves:
        t.grad = None
    return grads


@exercise("backprop", """backprop(L, x, w, b) -> (gx, gw, gb)
Reverse mode by hand over any graph: L is a scalar Tensor made by ops from the leaves x (B, D), w (D,)
and b (D,) (float64, requires_grad=True); a tensor t made by an op has t._ctx (t._ctx.inputs, its input
tensors; t._ctx.fn.backward(t._ctx, g), the gradients of its inputs, one per input, given the gradient g
of t), a leaf has t._ctx None. Tensors may be used by several ops (their gradients add up). Return the
gradients dL/dx, dL/dw, dL/db, each its leaf's shape, without calling L.backward(); write it as
backprop(L, *leaves) and it serves any graph.""", ("gx", "gw", "gb"), _backprop,
          (Tensor.backward, Tensor._pass_back, Tensor._ops_last_first),
          ("Visit every tensor after all the tensors that use it: a depth-first search from L through "
           "t._ctx.inputs that appends a tensor after its inputs gives the leaves-first order; reverse it.",
           "grads = {id(L): np.ones_like(L.data)}; for t in that order, last first, with t._ctx: for inp, g in "
           "zip(t._ctx.inputs, t._ctx.fn.backward(t._ctx, grads[id(t)])): grads[id(inp)] = "
           "grads.get(id(inp), 0) + g. Then return grads[id(leaf)] for each leaf."))
def _draw_backprop(rng, i):
    B, D = side(rng, i, 1, 3), side(rng, i, 1, 4)
    x, w, b = (Tensor(rng.standard_normal(shape), requires_grad=True) for shape in ((B, D), (D,), (D,)))
    steps = [] if i == 0 else rng.choice(sorted(STEPS), size=int(rng.integers(1, 4)))
    with enable_grad():
        h = x * w + b                                                 # (B, D)
        for step in steps:
            h = STEPS[step](h, x, w, b)                               # (B, D)
        L = h.sum()                                                   # ()
    return dict(L=L, x=x, w=w, b=b)


STEPS = {"tanh": lambda h, x, w, b: h.tanh(),
         "square": lambda h, x, w, b: h * h,                          # h used twice
         "plus x": lambda h, x, w, b: h + x,                          # x used again: paths meet
         "times w": lambda h, x, w, b: h * w,
         "over b": lambda h, x, w, b: h / (b * b + 1)}

