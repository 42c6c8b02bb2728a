"""Functional forms of the layers: each composes ops, none has a gradient of its own.

Legend: B batch, C classes or channels, D features, N tokens, k kernel, s stride, p padding.
"""
import numpy as np

from minit2t import ops
from minit2t.random import generator
from minit2t.tensor import Tensor


def _check_last_dim(x, n, what):
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != n:
        raise ValueError(f"{what} expects input of shape (..., {n}), got {x.shape}")


def _check_linear(x, weight, what):
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        got = weight.shape if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{what} expects weight as a (Dout, Din) Tensor, got {got}")
    _check_last_dim(x, weight.shape[1], what)


def _linear_op(op, x, weight, bias, what):
    _check_linear(x, weight, what)
    return op.apply(x, weight) if bias is None else op.apply(x, weight, bias)   # (..., Dout)


def linear(x, weight, bias=None):
    """x (..., Din) @ weight.T (Din, Dout) + bias (Dout,) -> (..., Dout), as one op."""
    return _linear_op(ops.Linear, x, weight, bias, "linear")


def linear_gelu(x, weight, bias=None):
    """gelu(linear(x, weight, bias)) -> (..., Dout) as one op (ops.LinearGELU): the same values
    and gradients as the two in turn."""
    return _linear_op(ops.LinearGELU, x, weight, bias, "linear_gelu")


def linear_add(x, weight, bias, residual):
    """residual + linear(x, weight, bias) -> (..., Dout) as one op (ops.LinearAdd): the same values
    and gradients as the two in turn. bias (Dout,) is required; residual is (..., Dout)."""
    if not isinstance(bias, Tensor) or not isinstance(residual, Tensor):
        raise TypeError(f"linear_add expects bias and residual as Tensors, got "
                        f"{type(bias).__name__} and {type(residual).__name__}")
    _check_linear(x, weight, "linear_add")
    return ops.LinearAdd.apply(x, weight, bias, residual)                # (..., Dout)


def layer_norm(x, weight, bias, eps=1e-5):
    _check_last_dim(x, weight.shape[0], "layer_norm")
    return ops.LayerNorm.apply(x, weight, bias, eps=eps)


def gelu(x):
    return ops.GELU.apply(x)


def softmax(x, axis=-1):
    return ops.Softmax.apply(x, axis=axis)


def attention(qkv, num_heads, scale, key_bias=None):
    """qkv (B, N, 3*D), packed as nn.Attention's qkv Linear returns it -> (B, N, D): each head's
    softmax(q k^T * scale + key_bias) v, heads concatenated, as one op (the probabilities are not
    kept). key_bias: None, or a constant array (B, N) added to every query's score of key j."""
    if key_bias is None:
        return ops.Attention.apply(qkv, num_heads=num_heads, scale=scale)
    return ops.Attention.apply(qkv, num_heads=num_heads, scale=scale, key_bias=key_bias)


def log_softmax(x, axis=-1):
    return ops.LogSoftmax.apply(x, axis=axis)


def dropout(x, p=0.5, training=True):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return ops.Dropout.apply(x, p=p, rng=generator())


def drop_path(x, p=0.0, training=True):
    """Stochastic depth: drop whole samples of a residual branch with probability p."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = generator().random((x.shape[0],) + (1,) * (x.ndim - 1)) < keep  # (B, 1, 1)
    return x * Tensor(mask.astype(x.dtype) / x.dtype.type(keep))


def unfold(x, kernel_size, stride=1, padding=0):
    """(B, C, H, W) -> (B, C*k*k, L): every k x k window as a column (soft split)."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        got = x.shape if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"unfold expects a (B, C, H, W) Tensor, got {got}")
    return ops.Unfold.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def fold(cols, output_size, kernel_size, stride=1, padding=0):
    """(B, C*k*k, L) -> (B, C, H, W), summing overlaps: the adjoint of unfold."""
    if not isinstance(cols, Tensor) or cols.ndim != 3:
        got = cols.shape if isinstance(cols, Tensor) else type(cols).__name__
        raise ValueError(f"fold expects a (B, C*k*k, L) Tensor, got {got}")
    return ops.Fold.apply(cols, output_size=tuple(output_size), kernel_size=kernel_size,
                          stride=stride, padding=padding)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Convolution as unfold + matmul: weight (Co, Ci, k, k), x (B, Ci, H, W)."""
    Co, Ci, k, _ = weight.shape
    if x.ndim != 4 or x.shape[1] != Ci:
        raise ValueError(f"conv2d expects input (B, {Ci}, H, W), got {x.shape}")
    B, _, H, W = x.shape
    Ho, Wo = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    cols = unfold(x, k, stride, padding)                             # (B, Ci*k*k, L)
    y = weight.reshape(Co, Ci * k * k) @ cols                        # (B, Co, L)
    if bias is not None:
        y = y + bias.reshape(Co, 1)
    return y.reshape(B, Co, Ho, Wo)                                  # (B, Co, Ho, Wo)


def cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean cross-entropy of logits (B, C) against int labels (B,) or probabilities (B, C)."""
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        got = logits.shape if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"cross_entropy expects logits of shape (B, C), got {got}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    B, C = logits.shape
    y = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    logp = log_softmax(logits, axis=-1)                              # (B, C)
    if y.shape == (B, C) and y.dtype.kind == "f":
        target = y * (1 - label_smoothing) + label_smoothing / C     # (B, C)
        return -(logp * Tensor(target.astype(logits.dtype))).sum(axis=-1).mean()
    if y.shape != (B,) or y.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy expects int labels of shape ({B},) or "
                         f"probabilities of shape ({B}, {C}), got {y.dtype} {y.shape}")
    if B and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"cross_entropy labels must be in [0, {C}), got [{y.min()}, {y.max()}]")
    nll = -logp[np.arange(B), y]                                     # (B,)
    if label_smoothing == 0.0:
        return nll.mean()
    smooth = -logp.mean(axis=-1)                                     # (B,)
    return (nll * (1 - label_smoothing) + smooth * label_smoothing).mean()
