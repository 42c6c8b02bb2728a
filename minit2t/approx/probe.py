"""Looking at one T2T layer's attention and at how well an approximation reproduces it.

Legend: B batch, T tokens, Din the layer's input width, E its q/k/v width, tau its softmax scale.

    attention_inputs(model, x, layer)   q, k, v (B, T, E) ndarrays and tau, for images x
    attention_fn(spec, dim)             f(q, k, v, tau) for a one-layer spec ("local:window=16")
    implied_attention(fn, q, k, tau)    (B, T, T): the matrix f applies (its output for v = I)
    relative_error(y, ref)              ||y - ref|| / ||ref|| over the whole batch, in float64
"""
import numpy as np

from minit2t.analysis import capture
from minit2t.approx.exact import exact
from minit2t.approx.spec import layer_options, parse_attention_spec
from minit2t.approx.swap import LAYERS, make_attention
from minit2t.grad_mode import no_grad
from minit2t.tensor import Tensor


def attention_inputs(model, x, layer="attention1"):
    """(q, k, v, tau): the inputs of the softmax attention of model.tokens_to_token.<layer> for
    images x (B, 3, H, W), as float ndarrays (B, T, E) and the layer's scale, from one pass.
    attention1 takes images of any size (its input is the first soft split's); attention2 runs
    the whole T2T module, which takes the model's image size."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}; got {layer!r}")
    t2t = getattr(model, "tokens_to_token", None)
    if not hasattr(getattr(t2t, layer, None), "attn"):
        raise ValueError(f"attention_inputs: expected a T2T-ViT with transformer T2T layers; "
                         f"{type(model).__name__} has no tokens_to_token.{layer} attention")
    attn = getattr(t2t, layer).attn
    attn = getattr(attn, "original", attn)                          # a swapped layer: its exact self
    x = x if isinstance(x, Tensor) else Tensor(x)
    with capture([attn.qkv], lambda inputs, output: output) as (seen,), no_grad():
        if layer == "attention1":                                   # soft split, then the T2T layer
            t2t.attention1(t2t.soft_split0(x).transpose(1, 2))      # (B, T0, C*k0*k0) in
        else:
            t2t(x)
    qkv = seen[0].numpy()                                           # (B, T, 3E)
    B, T, _ = qkv.shape
    q, k, v = qkv.reshape(B, T, 3, attn.in_dim).transpose(2, 0, 1, 3)   # (B, T, E) each
    return np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v), float(attn.scale)


def attention_fn(spec, dim):
    """f(q, k, v, tau) -> (B, T, dv) for a spec with one value per option (random parts from its seed)."""
    method, options = parse_attention_spec(spec)
    if method == "exact":
        return exact
    return make_attention(method, layer_options(options, 0, 1), dim)


def implied_attention(fn, q, k, tau):
    """(B, T, T) float64: row i is the weights fn gives query i over the keys (fn applied to v = I)."""
    B, T, _ = q.shape
    eye = np.broadcast_to(np.eye(T), (B, T, T))                      # v = I: the output is the matrix
    with no_grad():
        return fn(Tensor(q.astype(np.float64)), Tensor(k.astype(np.float64)), Tensor(eye.copy()), tau).numpy()


def relative_error(y, ref):
    """||y - ref|| / ||ref|| (Frobenius, the whole batch), in float64."""
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
