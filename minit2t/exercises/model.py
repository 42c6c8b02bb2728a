"""Exercises on the model around the pieces: the sinusoid position table, and the whole T2T module
(three soft splits, two T2T transformer layers, re-structurization, the projection) end to end.

Legend: B batch, C channels, H image size (square), (k, s, p) a soft split, T tokens, Din a T2T layer's
input width, E token_dim, D embed_dim, n positions, d features.
"""
import numpy as np

from minit2t import random
from minit2t.exercises.core import array, exercise, side
from minit2t.grad_mode import no_grad
from minit2t.models import t2t
from minit2t.models.config import split_sizes
from minit2t.models.token_transformer import TokenTransformer
from minit2t.tensor import Tensor


def _sinusoid_table(n_position, d_hid):
    return t2t.get_sinusoid_encoding(n_position, d_hid)


@exercise("sinusoid_table", """sinusoid_table(n_position, d_hid) -> table
The fixed position table T2T-ViT adds to its tokens (get_sinusoid_encoding): feature j of position pos
is pos / 10000^(2 (j // 2) / d_hid), through sin for even j and cos for odd j (features 2i and 2i + 1
share a frequency). n_position and d_hid ints >= 1. Return table (1, n_position, d_hid), float32 as the
library's (compute in float64, then cast).""", ("table",), _sinusoid_table, (t2t.get_sinusoid_encoding,),
          ("Every position gets d_hid angles pos / rate_j; the rate depends on j // 2, so the columns come in "
           "pairs, sin then cos of the same angle.",
           "angles = np.arange(n)[:, None] / 10000 ** (2 * (np.arange(d) // 2) / d); sin of columns 0::2, "
           "cos of columns 1::2 (interleaved, not halves); return table[None].astype(np.float32)."),
          tolerance=(1e-6, 1e-6))                                      # float32
def _draw_sinusoid(rng, i):
    return dict(n_position=side(rng, i, 1, 20), d_hid=side(rng, i, 1, 12))


def _t2t_module(x, weights, splits):
    B, C, H, _ = x.shape
    E, D = weights["attention1.attn.proj.weight"].shape[0], weights["project.weight"].shape[0]
    state = random.get_state()                                        # building draws initial weights:
    module = t2t.T2TModule(img_size=H, tokens_type="transformer", in_chans=C, embed_dim=D, token_dim=E,
                           soft_split=splits).to(np.float64)
    random.set_state(state)                                           # leave mt.manual_seed's stream alone
    module.load_state_dict(weights)
    with no_grad():
        return module.eval()(Tensor(x)).data                          # (B, N, D)


@exercise("t2t_module", """t2t_module(x, weights, splits) -> tokens
The Tokens-to-Token module end to end (T2TModule, tokens_type "transformer"), from your own unfold,
t2t_attention and restructurize. x (B, C, H, H) images; splits ((k0, s0, p0), (k1, s1, p1), (k2, s2, p2));
weights a dict of arrays under the library's state-dict names. For split i = 0, 1, 2:
  tokens = unfold(image, ki, si, pi) transposed to (B, T, Din);
  after splits 0 and 1, a T2T layer with the weights under "attention1." (then "attention2."):
    h = layer_norm(tokens, norm1.weight, norm1.bias)
    a = t2t_attention(h, attn.qkv.weight, attn.proj.weight, attn.proj.bias, scale=Din ** -0.5)
    out = a + mlp.fc2(gelu(mlp.fc1(layer_norm(a, norm2.weight, norm2.bias))))   (Linear: y @ w.T + b)
  and restructurize(out, side) is the next image (E channels; side = (side + 2p - k) // s + 1);
after split 2, tokens @ project.weight.T + project.bias. layer_norm over the last dim with eps 1e-5,
gelu exact. Return tokens (B, N, D), N = (last side)^2, D = project.weight.shape[0].""",
          ("tokens",), _t2t_module, (t2t.T2TModule.forward, TokenTransformer.forward),
          ("Three rounds of unfold -> (transpose to tokens) -> T2T layer -> restructurize, except that the "
           "last round has no T2T layer and ends in the projection. Check the shapes after each step.",
           "Pass the weights under their full names, e.g. weights['attention1.attn.qkv.weight']; the scale is "
           "Din ** -0.5 with Din the layer's input width (C*k*k), not E; the attention's skip is its v, the "
           "MLP's skip is the attention's output."))
def _draw_t2t_module(rng, i):
    B, C, E, D = side(rng, i, 1, 2), side(rng, i, 1, 3), side(rng, i, 1, 4), side(rng, i, 1, 5)
    H = side(rng, i, 2, 9)
    splits = ((1, 1, 0),) * 3 if i == 0 else _splits(rng, H)
    return dict(x=array(rng, (B, C, H, H)), weights=_weights(rng, C, E, D, splits), splits=splits)


def _splits(rng, H):
    """Three soft splits (k, s, p), k <= 3, s <= 2, p <= k // 2, that leave at least one token."""
    while True:
        ks = rng.integers(1, 4, 3)
        splits = tuple((int(k), int(rng.integers(1, 3)), int(rng.integers(0, k // 2 + 1))) for k in ks)
        try:
            split_sizes(H, splits)
            return splits
        except ValueError:                                            # a split left no tokens: draw again
            continue


def _weights(rng, C, E, D, splits):
    """Every array of the T2T module: LayerNorm scales near 1, the rest N(0, 1/fan_in)."""
    weights = {}
    for j, width in (("1", C * splits[0][0] ** 2), ("2", E * splits[1][0] ** 2)):
        layer = f"attention{j}."
        for norm, n in (("norm1", width), ("norm2", E)):
            weights[layer + norm + ".weight"] = 1 + 0.1 * rng.standard_normal(n)
            weights[layer + norm + ".bias"] = 0.1 * rng.standard_normal(n)
        for name, (rows, cols) in (("attn.qkv", (3 * E, width)), ("attn.proj", (E, E)),
                                   ("mlp.fc1", (E, E)), ("mlp.fc2", (E, E))):
            weights[layer + name + ".weight"] = rng.standard_normal((rows, cols)) / np.sqrt(cols)
            if name != "attn.qkv":                                    # the release's qkv has no bias
                weights[layer + name + ".bias"] = 0.1 * rng.standard_normal(rows)
    width = E * splits[2][0] ** 2
    weights["project.weight"] = rng.standard_normal((D, width)) / np.sqrt(width)
    weights["project.bias"] = 0.1 * rng.standard_normal(D)
    return weights
