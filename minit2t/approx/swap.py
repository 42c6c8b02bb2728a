"""Swap the attention inside the T2T module's transformer layers, parameters untouched.

Legend: B batch, T tokens, Din input width, E = in_dim (token_dim), tau = the layer's scale
(Din ** -0.5, the input width's, as released).

ApproxTokenAttention is TokenAttention (models/token_transformer.py) with
softmax(tau q k^T) v replaced by an approximation. It holds the very same qkv and proj
modules under the same names, so state_dict is unchanged; the original module is kept
(unregistered) and "exact" puts it back, so that path is the original, bit for bit.
Attention dropout has no matrix to act on and is not applied (0 in every release).
"""
import functools

from minit2t.approx.features import feature_rows, gaussian_orthogonal
from minit2t.approx.local import local
from minit2t.approx.lsh import lsh, lsh_n_buckets, lsh_rotations
from minit2t.approx.performer import performer
from minit2t.approx.scatterbrain import scatterbrain
from minit2t.approx.spec import AttentionSpecError, layer_options, parse_attention_spec
from minit2t.models.token_transformer import TokenAttention, TokenTransformer
from minit2t.nn.module import Module

LAYERS = ("attention1", "attention2")


def make_attention(method, options, dim):
    """A function (q, k, v, tau) -> out for one layer's options (no lists); dim = width of q, k."""
    if method == "local":
        return functools.partial(local, window=options["window"])
    if method == "performer":
        W = gaussian_orthogonal(feature_rows("positive", options["features"]), dim, options["seed"])
        return functools.partial(performer, W=W, feature_map="positive")
    if method == "scatterbrain":
        W = gaussian_orthogonal(feature_rows("cosh", options["features"]), dim, options["seed"])
        return functools.partial(scatterbrain, window=options["window"], W=W)
    if method == "lsh":
        return LSHAttention(options["bucket"], options["hashes"], options["seed"], dim)
    raise AttentionSpecError(f"no approximation for method {method!r}")


class LSHAttention:
    """(q, k, v, tau) -> lsh(...): the buckets' count depends on T, known at the first call, so the
    rotations R are drawn then, from the seed, once per T (the same R every call)."""

    def __init__(self, bucket, hashes, seed, dim):
        self.bucket, self.hashes, self.seed, self.dim, self.rotations = bucket, hashes, seed, dim, {}

    def __call__(self, q, k, v, tau):
        nb = lsh_n_buckets(q.shape[1], self.bucket)
        if nb not in self.rotations:
            self.rotations[nb] = lsh_rotations(self.dim, nb, self.hashes, self.seed)   # (n, d, nb/2)
        return lsh(q, k, v, tau, self.bucket, self.rotations[nb])


class ApproxTokenAttention(Module):
    def __init__(self, original, spec, fn):
        super().__init__()
        object.__setattr__(self, "original", original)              # not a submodule: no new state
        self.dim, self.num_heads, self.in_dim = original.dim, original.num_heads, original.in_dim
        self.scale, self.spec, self.fn = original.scale, spec, fn
        self.qkv = original.qkv                                      # shared, same names and order
        self.softmax = original.softmax
        self.attn_drop = original.attn_drop
        self.proj = original.proj
        self.proj_drop = original.proj_drop

    def forward(self, x):                                            # (B, T, Din)
        B, T, _ = x.shape
        E = self.in_dim
        q, k, v = self.qkv(x).reshape(B, T, 3, E).permute(2, 0, 1, 3).unbind(0)   # (B, T, E) each
        y = self.fn(q, k, v, self.scale)                             # (B, T, E)
        return v + self.proj_drop(self.proj(y))                      # (B, T, E) value skip

    def __repr__(self):
        return f"ApproxTokenAttention({self.spec!r})"


def swap_t2t_attention(model, spec):
    """Replace the attention of model.tokens_to_token.attention1/2 in place; returns model."""
    t2t = getattr(model, "tokens_to_token", model)
    kind = getattr(t2t, "tokens_type", None)
    if kind == "performer":
        raise ValueError("swap_t2t_attention: this T2T module uses the release's performer, not softmax "
                         "attention; build the model with tokens_type='transformer'")
    layers = [getattr(t2t, name, None) for name in LAYERS]
    if not all(isinstance(layer, TokenTransformer) for layer in layers):
        raise ValueError(f"swap_t2t_attention: expected a T2T module with transformer layers "
                         f"(tokens_type='transformer'); got tokens_type={kind!r}")
    method, options = parse_attention_spec(spec)
    for i, layer in enumerate(layers):
        attn = layer.attn
        original = attn.original if isinstance(attn, ApproxTokenAttention) else attn
        assert isinstance(original, TokenAttention)
        if method == "exact":
            _replace(layer, "attn", original)
        else:
            opts = layer_options(options, i, len(LAYERS))
            if "seed" in opts:
                opts["seed"] += i                                    # each layer its own features
            fn = make_attention(method, opts, original.in_dim)
            _replace(layer, "attn", ApproxTokenAttention(original, spec, fn))
    return model


def _replace(parent, name, module):
    """parent.name = module, keeping its place in the registration order (so state_dict's order)."""
    parent._modules[name] = module                                   # an existing key keeps its slot
    object.__setattr__(parent, name, module)
