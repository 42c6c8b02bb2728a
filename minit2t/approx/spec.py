"""Attention specs: "method:option=value,...", as swap_t2t_attention takes them.

    exact                                 softmax(tau q k^T) v
    local:window=98                       band of 98 keys (window=[98,24]: one per T2T layer)
    performer:features=49                 FAVOR+ positive features
    scatterbrain:window=49,features=24    band + cosh features, corrected on the band
    lsh:bucket=49,hashes=2                Reformer LSH: chunks of 49 queries, 2 hash rounds
    seed=S (performer, scatterbrain, lsh) the random matrices' seed (layer l draws from S + l)
Defaults: the Scatterbrain paper's T2T-ViT settings (attention1 / attention2).
"""
import re

from minit2t import specs

# method: {option: default}; a list default means one value per T2T layer
OPTIONS = {
    "exact": {},
    "local": {"window": [98, 24]},
    "performer": {"features": [49, 12], "seed": 0},
    "scatterbrain": {"window": [49, 12], "features": [24, 6], "seed": 0},
    "lsh": {"bucket": [49, 12], "hashes": 2, "seed": 0},
}
LOW = {"window": 1, "features": 1, "seed": 0, "bucket": 1, "hashes": 1}   # smallest allowed value
LISTS = ("window", "features", "bucket", "hashes")                  # options that may be per layer


class AttentionSpecError(ValueError):
    pass


def parse_attention_spec(spec):
    """(method, options) from a spec string, every option checked and given its default."""
    method, options = specs.parse_spec(spec, OPTIONS, _value, AttentionSpecError, "attention", "local:window=49",
                                       "window=[49,12]")
    if method == "scatterbrain":
        low = 0                                                      # window=0: low rank only
        for f in _as_list(options["features"]):
            if f % 2:
                raise AttentionSpecError(f"scatterbrain: features={f} in {spec!r}: expected an even number "
                                         "(the cosh map has two features per random row)")
    else:
        low = 1
    if "window" in options and min(_as_list(options["window"])) < low:
        raise AttentionSpecError(f"{method}: window in {spec!r}: expected a whole number >= {low}")
    return method, options


def layer_options(options, layer, layers=2):
    """The options of layer `layer` (0-based): a per-layer list gives its entry."""
    out = {}
    for key, value in options.items():
        if isinstance(value, list):
            if len(value) != layers:
                raise AttentionSpecError(f"{key}={value}: expected one value per layer ({layers}), got {len(value)}")
            value = value[layer]
        out[key] = value
    return out


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _value(method, key, text, spec):
    where = f"{method}: {key}={text!r} in {spec!r}"
    if text.startswith("["):
        if key not in LISTS or not text.endswith("]"):
            raise AttentionSpecError(f"{where}: expected a whole number, not a list")
        return [_whole(x.strip(), where, key) for x in text[1:-1].split(",")]
    return _whole(text, where, key)


def _whole(text, where, key):
    if not re.fullmatch(r"\d+", text):
        raise AttentionSpecError(f"{where}: expected a whole number >= {LOW[key]}")
    value = int(text)
    if value < LOW[key] and key != "window":                         # window's floor depends on the method
        raise AttentionSpecError(f"{where}: expected a whole number >= {LOW[key]}")
    return value
