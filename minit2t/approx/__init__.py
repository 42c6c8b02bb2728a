"""Attention approximations for the T2T layers, one interface: f(q, k, v, tau) -> out.

Legend: B batch, T tokens, d query/key width, dv value width, tau the softmax scale.
    exact(q, k, v, tau)                              softmax(tau q k^T) v            exact.py
    local(q, k, v, tau, window)                      band over the token order        local.py
    performer(q, k, v, tau, W, feature_map)          FAVOR+ random features           performer.py
    scatterbrain(q, k, v, tau, window, W)            band + features, corrected       scatterbrain.py
    lsh(q, k, v, tau, bucket, R)                     Reformer hashing, chunked        lsh.py
q, k (B, T, d), v (B, T, dv) -> (B, T, dv); every one is built from ops, so backward() works.
swap_t2t_attention(model, "scatterbrain:window=[49,12],features=[24,6]") puts one into a
T2T-ViT's T2T module (parameters untouched); "exact" restores the original.
probe.py looks at one layer: attention_inputs, attention_fn(spec), implied_attention, relative_error.
budget.py counts what a setting keeps: entries_per_query(spec, feature_cost=1 or 2), a random feature as one
band entry or as two (phi(q) and phi(k) both stored: the Scatterbrain configs' accounting).
"""
from minit2t.approx.budget import entries_per_query
from minit2t.approx.exact import exact
from minit2t.approx.features import gaussian_orthogonal, log_features
from minit2t.approx.local import local
from minit2t.approx.lsh import lsh, lsh_n_buckets, lsh_rotations
from minit2t.approx.performer import performer
from minit2t.approx.probe import attention_fn, attention_inputs, implied_attention, relative_error
from minit2t.approx.scatterbrain import scatterbrain, scatterbrain_parts
from minit2t.approx.spec import AttentionSpecError, parse_attention_spec
from minit2t.approx.swap import ApproxTokenAttention, make_attention, swap_t2t_attention

__all__ = ["ApproxTokenAttention", "AttentionSpecError", "attention_fn", "attention_inputs", "entries_per_query",
           "exact", "gaussian_orthogonal", "implied_attention", "local", "log_features", "lsh", "lsh_n_buckets",
           "lsh_rotations", "make_attention", "parse_attention_spec", "performer", "relative_error",
           "scatterbrain", "scatterbrain_parts", "swap_t2t_attention"]
