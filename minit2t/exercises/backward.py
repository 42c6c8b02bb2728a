"""Exercises on backward passes: LayerNorm, softmax, GELU, and the loss (cross-entropy with label smoothing).

Legend: B batch, C classes, D normalised (last) dim, N softmax (last) dim, "..." any leading dims (maybe none).
Each reference is the library's: an op's NumPy backward (minit2t/ops/), or autograd through
minit2t.nn.functional.cross_entropy.
"""
import numpy as np

from minit2t import ops
from minit2t.exercises.core import array, exercise, lead, run, side, strided
from minit2t.grad_mode import enable_grad
from minit2t.nn.functional import cross_entropy
from minit2t.ops.function import Context
from minit2t.tensor import Tensor


def _layer_norm_backward(g, x, weight, eps):
    _, ctx = run(ops.LayerNorm, x, weight, np.zeros_like(weight), eps=eps)
    return ops.LayerNorm.backward(ctx, g)


@exercise("layer_norm_backward", """layer_norm_backward(g, x, weight, eps) -> (gx, gweight, gbias)
The backward of y = (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased) var taken over
the last dim. g (..., D) is the gradient of the loss with respect to y, x (..., D) the input,
weight (D,), eps a float. Return gx (..., D), and gweight and gbias (D,) summed over the leading dims.""",
          ("gx", "gweight", "gbias"), _layer_norm_backward, (ops.LayerNorm,),
          ("Write xhat = (x - mean) / sigma, sigma = sqrt(var + eps), means over the last dim (keepdims=True). "
           "gbias sums g over every leading dim, gweight sums g * xhat the same way.",
           "With d = g * weight: gx = (d - mean(d) - xhat * mean(d * xhat)) / sigma, both means over the "
           "last dim: the two terms are the paths through the mean and through the variance."))
def _draw_layer_norm(rng, i):
    shape = lead(rng, i) + (side(rng, i, 1, 7),)
    return dict(g=array(rng, shape), x=array(rng, shape, 3.0), weight=array(rng, shape[-1:]), eps=1e-5)


def _softmax_backward(g, y):
    ctx = Context(ops.Softmax)
    ctx.axis = -1
    ctx.save_for_backward(y)
    return ops.Softmax.backward(ctx, g)


@exercise("softmax_backward", """softmax_backward(g, y) -> ga
The backward of y = softmax(a) along the last dim. g (..., N) is the gradient of the loss with
respect to y, y (..., N) the softmax's output (every row sums to 1). Return ga (..., N).""", ("ga",),
          _softmax_backward, (ops.Softmax,),
          ("A row's Jacobian is diag(y) - y y^T. You never build it: multiply g by it, row by row.",
           "ga = y * (g - s), with s = (g * y).sum(axis=-1, keepdims=True), one number per row."))
def _draw_softmax(rng, i):
    shape = lead(rng, i) + (side(rng, i, 1, 7),)
    y, _ = run(ops.Softmax, rng.standard_normal(shape) * 2)
    return dict(g=array(rng, shape), y=strided(rng, y))


def _gelu_backward(g, a):
    _, ctx = run(ops.GELU, a)
    return ops.GELU.backward(ctx, g)


@exercise("gelu_backward", """gelu_backward(g, a) -> ga
The backward of the exact GELU y = a * Phi(a), Phi the standard normal CDF (Phi(a) = (1 + erf(a / sqrt 2)) / 2;
math.erf works element by element). g (...) is the gradient of the loss with respect to y, a (...) the
input, any shape. Return ga, a's shape.""", ("ga",),
          _gelu_backward, (ops.GELU, ops.activation.normal_cdf, ops.activation.normal_pdf),
          ("The product rule: d/da [a Phi(a)] = Phi(a) + a phi(a), phi the standard normal density; "
           "then multiply by g.",
           "Phi(a) = 0.5 * (1 + erf(a / sqrt(2))) (np.vectorize(math.erf) takes arrays), "
           "phi(a) = exp(-a**2 / 2) / sqrt(2 pi); ga = g * (Phi(a) + a * phi(a))."))
def _draw_gelu(rng, i):
    shape = lead(rng, i) + (side(rng, i, 1, 6),)
    return dict(g=array(rng, shape), a=array(rng, shape, 3.0))


def _cross_entropy_backward(logits, labels, label_smoothing):
    z = Tensor(np.array(logits, dtype=np.float64), requires_grad=True)   # (B, C)
    with enable_grad():
        cross_entropy(z, labels, label_smoothing).backward()
    return z.grad


@exercise("cross_entropy_backward", """cross_entropy_backward(logits, labels, label_smoothing) -> glogits
The gradient of the mean cross-entropy loss (minit2t.nn.functional.cross_entropy, as torch's) with
respect to the logits. logits (B, C), labels (B,) ints in [0, C), label_smoothing a float eps in [0, 1]:
row b's target is (1 - eps) on its label plus eps / C on every class, and the loss is the mean over the
B rows of -sum_c target_c log softmax(logits_b)_c. Return glogits (B, C).""", ("glogits",),
          _cross_entropy_backward, (cross_entropy, ops.LogSoftmax),
          ("For one row, d/dz of -sum_c target_c log softmax(z)_c is softmax(z) - target (the targets sum "
           "to 1). The loss is a mean over B rows, so each row's gradient is divided by B.",
           "p = softmax(logits) along axis 1 (subtract the row max first); target = np.full((B, C), eps / C); "
           "target[np.arange(B), labels] += 1 - eps; glogits = (p - target) / B."))
def _draw_cross_entropy(rng, i):
    B, C = side(rng, i, 1, 5), side(rng, i, 1, 7)
    eps = 0.0 if i == 0 else float(rng.choice([0.0, 0.1, rng.random()]))
    return dict(logits=array(rng, (B, C), 3.0), labels=rng.integers(0, C, B), label_smoothing=eps)
