"""Attention budgets: how much of a query's attention row a method keeps, under two accountings.

    entries_per_query(spec, layer=0, feature_cost=1, tokens=None)   the budget of one layer's setting
    sb_split(budget, ratio, feature_cost=1)                         Scatterbrain's (window, features)
    lsh_bucket(budget, hashes=2)                                    LSH's bucket for a budget
    settings(budgets, feature_cost=1)                               every method's specs at a budget

A budget is counted in band entries per query: local attention with a window of w keeps w scores
per query, LSH with bucket b and n hash rounds lets each query see its own chunk and the one before
in every round, 2 b n keys. What a random feature costs depends on what is counted:

    feature_cost=1  one feature counts as one band entry: a query holds w scores or m features
                    (the budget minit2t's figures were first laid out in);
    feature_cost=2  one feature counts as two band entries: the features are stored for the
                    queries and for the keys, phi(Q) and phi(K) (T, m) each, where the band holds one
                    (T, w) array of scores. This is the accounting of the Scatterbrain configs
                    (HazyResearch/fly, configs/model/t2tattn_cfg): 1/32 of the memory at 3136 tokens
                    is local 98, Performer 49 features, Scatterbrain local 49 + 24 features
                    (49 + 2 x 24 = 97).
Exact attention keeps all T keys (`tokens`).
"""
from minit2t.approx.spec import AttentionSpecError, layer_options, parse_attention_spec

FEATURE_COSTS = (1, 2)
LSH_HASHES = 2                                                       # the paper's Reformer setting


def _check_cost(feature_cost):
    if feature_cost not in FEATURE_COSTS:
        raise ValueError(f"feature_cost must be one of {FEATURE_COSTS} (band entries per random feature); "
                         f"got {feature_cost!r}")


def entries_per_query(spec, layer=0, feature_cost=1, tokens=None):
    """Band entries per query that `spec` keeps in T2T layer `layer` (0-based; a per-layer list gives
    its entry), a random feature counted as `feature_cost` entries."""
    _check_cost(feature_cost)
    method, options = parse_attention_spec(spec)
    if method == "exact":
        if tokens is None:
            raise AttentionSpecError(f"entries_per_query({spec!r}): exact keeps every key; pass tokens=T")
        return tokens
    o = layer_options(options, layer) if any(isinstance(v, list) for v in options.values()) else options
    if method == "local":
        return o["window"]
    if method == "performer":
        return feature_cost * o["features"]
    if method == "scatterbrain":
        return o["window"] + feature_cost * o["features"]
    return 2 * o["bucket"] * o["hashes"]                             # lsh


def sb_split(budget, ratio, feature_cost=1):
    """(window, features) of a Scatterbrain budget split window : features-cost = ratio : 1; features
    even (the cosh map) and >= 2, the window the rest (>= 0)."""
    _check_cost(feature_cost)
    m = max(2, 2 * round(budget / (2 * feature_cost * (ratio + 1))))
    return max(0, budget - feature_cost * m), m


def lsh_bucket(budget, hashes=LSH_HASHES):
    """The bucket (chunk) size b of an LSH budget 2 b n (n = hashes), rounded down, >= 1."""
    return max(1, budget // (2 * hashes))


def _value(values):
    return str(values[0]) if len(values) == 1 else "[" + ",".join(str(v) for v in values) + "]"


def settings(budgets, feature_cost=1):
    """[(method, label, spec)]: local, Performer, Scatterbrain split 1:1 and 2:1 (the paper's ratio;
    one row where both give the same split) and LSH at `budgets` (one per layer: a tuple of one or
    two), laid out under `feature_cost`; the label describes the first layer."""
    _check_cost(feature_cost)
    rows = [("local", f"window {budgets[0]}", f"local:window={_value(budgets)}")]
    m = [max(1, b // feature_cost) for b in budgets]
    rows.append(("performer", f"{m[0]} features", f"performer:features={_value(m)}"))
    seen = set()
    for ratio, name in ((1, "1:1"), (2, "2:1")):
        split = [sb_split(b, ratio, feature_cost) for b in budgets]
        if tuple(split) in seen:
            continue
        seen.add(tuple(split))
        (w, f), ws, fs = split[0], [s[0] for s in split], [s[1] for s in split]
        rows.append(("scatterbrain", f"{name}: window {w} + {f} features",
                     f"scatterbrain:window={_value(ws)},features={_value(fs)}"))
    c = [lsh_bucket(b) for b in budgets]
    rows.append(("lsh", f"bucket {c[0]} x {LSH_HASHES} hashes ({2 * c[0] * LSH_HASHES} entries)",
                 f"lsh:bucket={_value(c)},hashes={LSH_HASHES}"))
    return rows
