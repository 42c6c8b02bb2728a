"""A T2T-ViT's options, each declared once, and the checks of a config as saved with weights.

Legend: k/s/p kernel/stride/padding of a soft split, D embed dim, E token_dim, N the tokens after the
last soft split.

MODEL_OPTIONS is the model's whole configuration: T2T_ViT(**options) takes exactly these (model_config
fills the defaults and checks each given value), model.config holds them, and a shipped model or a
training checkpoint stores them as JSON. check_model_config reads such a stored config back: every
option checked, then the sizes against each other and against the shapes the file gives its weights,
so that a tampered config is refused in one line before any model is built. Options added after
files were first saved (added_later) take their defaults when a file lacks them.
"""
from dataclasses import replace
from numbers import Integral, Real

from minit2t.nn.transformer import ATTENTIONS
from minit2t.options import Invalid, Option, WrongType, by_name

RELEASE_SOFT_SPLIT = ((7, 4, 2), (3, 2, 1), (3, 2, 1))            # (k, s, p) of the three soft splits
TOKENS_TYPES = ("performer", "transformer", "convolution", "hard")


def check_soft_split(value):
    """Three (kernel, stride, padding) triples of sane whole numbers, as tuples; raises Invalid."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(s, (list, tuple)) and len(s) == 3 for s in value)
    if not ok:
        raise Invalid(f"must be three (kernel, stride, padding) triples, got {value!r}")
    for k, s, p in value:
        for what, v, lo, hi in (("kernel", k, 1, 64), ("stride", s, 1, 64), ("padding", p, 0, k - 1)):
            if isinstance(v, bool) or not isinstance(v, Integral) or not lo <= v <= hi:
                raise Invalid(f"must have each {what} a whole number from {lo} to {hi}, got {v!r}")
    return tuple(tuple(int(v) for v in kps) for kps in value)


def check_sr_ratio(ratio):
    """Shunted attention's aggregation ratio: even (two groups of heads), from 2 to 4096."""
    if isinstance(ratio, bool) or not isinstance(ratio, Integral) or not 2 <= ratio <= 4096 or ratio % 2:
        raise Invalid(f"must be an even whole number from 2 to 4096, got {ratio!r}")


def _rate(name, help):
    return Option(name, "float", 0.0, help, lo=0.0, hi=1.0)


MODEL_OPTIONS = (
    Option("img_size", "int", 224, "side of the square input image", lo=1, hi=4096),
    Option("tokens_type", "choice", "performer", "the T2T layers (performer, transformer), or the paper's "
           "comparisons: convolution, or ViT's hard split", choices=TOKENS_TYPES),
    Option("in_chans", "int", 3, "channels of the input image", lo=1, hi=64),
    Option("num_classes", "int", 1000, "classes of the head (0: no head, the features)", lo=0, hi=100_000),
    Option("embed_dim", "int", 768, "D, the backbone's width", lo=1, hi=16_384),
    Option("depth", "int", 12, "backbone blocks", lo=0, hi=1024),
    Option("num_heads", "int", 12, "attention heads of a backbone block (dividing embed_dim)", lo=1, hi=1024),
    Option("mlp_ratio", "float", 4.0, "an MLP's hidden width over D", lo=0.0, hi=64.0, lo_open=True),
    Option("qkv_bias", "bool", False, "a bias in the backbone's q, k, v projections"),
    Option("qk_scale", "float", None, "the attention logits' scale (None: head dim ** -0.5)", lo=0.0,
           lo_open=True, optional=True),
    _rate("drop_rate", "dropout after the embedding and in the MLPs"),
    _rate("attn_drop_rate", "dropout of the attention probabilities"),
    _rate("drop_path_rate", "stochastic depth: the last block's rate"),
    Option("token_dim", "int", 64, "E, the T2T layers' width", lo=1, hi=4096),
    Option("soft_split", "any", RELEASE_SOFT_SPLIT, "(kernel, stride, padding) of the three soft splits",
           parse=check_soft_split),
    Option("layer_scale_init", "float", None, "LayerScale in every block, its gammas starting here (DeiT III)",
           lo=0.0, hi=1e3, lo_open=True, hi_closed=True, optional=True, added_later=True),
    Option("drop_path_uniform", "bool", False, "every block drops paths at drop_path_rate, not 0 rising to it",
           added_later=True),
    Option("attention", "choice", "standard", "the backbone's attention: the release's, or shunted",
           choices=ATTENTIONS, added_later=True),
    Option("sr_ratio", "any", 2, "shunted attention's aggregation ratio: even, dividing the grid's side",
           parse=check_sr_ratio, added_later=True),
)
OPTIONS = by_name(MODEL_OPTIONS)


def model_option(option, **changes):
    """The declaration of the model option named `option`, with `changes`: a recipe option that sets it."""
    return replace(OPTIONS[option], sets=option, **changes)


def model_config(options, who="T2T_ViT"):
    """The full config of a model built with `options`: unknown names refused (TypeError), every value
    checked by its declaration (Invalid, a ValueError; WrongType for a wrong type), defaults filled in."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{who} got unexpected arguments {unknown}; accepted: {sorted(OPTIONS)}")
    config = {}
    for o in MODEL_OPTIONS:
        value = options.get(o.name, o.default)
        if isinstance(value, (Integral, Real)) and not isinstance(value, (bool, int, float)):
            value = value.item() if hasattr(value, "item") else value   # a NumPy scalar
        config[o.name] = o.check(value, o.name)
    config["soft_split"] = check_soft_split(config["soft_split"])
    return config


def split_sizes(img_size, soft_split):
    """Side of the token grid after each soft split: [H0, H1, H2]."""
    sides, side = [], img_size
    for k, s, p in soft_split:
        side = (side + 2 * p - k) // s + 1
        if side < 1:
            raise ValueError(f"soft split (k={k}, s={s}, p={p}) leaves no tokens for img_size {img_size}")
        sides.append(side)
    return sides


def check_model_config(config, shapes=None, also=()):
    """A stored config (JSON: lists for tuples) checked: its keys, every option, the sizes against each
    other and, given `shapes` (the weights' state-dict name -> shape), against the weights it came with.
    `also`: further keys it may hold, which the caller checks. Returns the full config (soft_split as
    tuples, absent later options at their defaults, the keys of `also` as given); raises Invalid."""
    if not isinstance(config, dict):
        raise WrongType(f"model config must be a dict, got {type(config).__name__}")
    needed = {o.name for o in MODEL_OPTIONS if not o.added_later}
    maybe = sorted({o.name for o in MODEL_OPTIONS if o.added_later} | set(also))
    if not needed <= set(config) or set(config) - set(OPTIONS) - set(also):
        raise Invalid(f"model config must have the keys {sorted(needed)} (and maybe {', '.join(maybe)}), "
                      f"got {sorted(config)}")
    extra = {k: config[k] for k in also if k in config}
    config = {o.name: o.check(config.get(o.name, o.default), f"model config {o.name}") for o in MODEL_OPTIONS}
    config["soft_split"] = check_soft_split(config["soft_split"])
    if config["embed_dim"] % config["num_heads"]:
        raise Invalid(f"model config embed_dim {config['embed_dim']} is not divisible by num_heads "
                      f"{config['num_heads']}")
    try:
        side = split_sizes(config["img_size"], config["soft_split"])[-1]
    except ValueError as exc:
        raise Invalid(f"model config: {exc}") from None
    if config["attention"] == "shunted":
        if config["num_heads"] % 2:
            raise Invalid(f"model config attention 'shunted' needs an even num_heads, got {config['num_heads']}")
        if side % config["sr_ratio"]:
            raise Invalid(f"model config sr_ratio {config['sr_ratio']} does not divide the token grid's side {side}")
    if shapes is not None:
        check_against_weights(config, side * side, shapes)
    return {**config, **extra}


def config_to_json(config):
    """A model.config as JSON takes it (soft_split's tuples as lists)."""
    return {k: ([list(t) for t in v] if k == "soft_split" else v) for k, v in config.items()}


def check_against_weights(config, n_tokens, shapes):
    """The config is the model of these weights: its sizes against their shapes, before it is built."""
    D, depth, E = config["embed_dim"], config["depth"], config["token_dim"]
    k0, k1, k2 = (kernel for kernel, _, _ in config["soft_split"])
    want = {"cls_token": (1, 1, D), "pos_embed": (1, n_tokens + 1, D), "norm.weight": (D,)}
    if config["tokens_type"] == "hard":
        patch = config["img_size"] // int(round(n_tokens ** 0.5))
        want["tokens_to_token.project.weight"] = (D, config["in_chans"] * patch * patch)
    elif config["tokens_type"] == "convolution":
        want["tokens_to_token.soft_split0.weight"] = (E, config["in_chans"], k0, k0)
        want["tokens_to_token.project.weight"] = (D, E, k2, k2)
    else:
        want["tokens_to_token.attention1.norm1.weight"] = (config["in_chans"] * k0 * k0,)
        want["tokens_to_token.attention2.norm1.weight"] = (E * k1 * k1,)
        want["tokens_to_token.project.weight"] = (D, E * k2 * k2)
    if depth:
        last = f"blocks.{depth - 1}"
        want[f"{last}.mlp.fc1.weight"] = (int(D * config["mlp_ratio"]), D)
        if config["layer_scale_init"] is not None:
            want[f"{last}.ls1.gamma"] = want[f"{last}.ls2.gamma"] = (D,)
        if config["attention"] == "shunted":
            r = config["sr_ratio"]
            want[f"{last}.attn.q.weight"], want[f"{last}.attn.sr1.weight"] = (D, D), (D, D, r, r)
            want[f"{last}.attn.local_conv2.weight"] = (D // 2, 1, 3, 3)
        else:
            want[f"{last}.attn.qkv.weight"] = (3 * D, D)
    if config["layer_scale_init"] is None and any(n.endswith((".ls1.gamma", ".ls2.gamma")) for n in shapes):
        raise Invalid("model config layer_scale_init is None but the weights hold LayerScale gammas (ls1, ls2)")
    if config["num_classes"]:
        want["head.weight"] = (config["num_classes"], D)
    blocks = {name.split(".")[1] for name in shapes if name.startswith("blocks.")}
    if len(blocks) != depth:
        raise Invalid(f"model config depth {depth} but the weights hold {len(blocks)} blocks")
    for name, shape in want.items():
        if tuple(shapes.get(name, ())) != shape:
            raise Invalid(f"model config gives {name} the shape {shape}, the weights "
                          f"{tuple(shapes[name]) if name in shapes else 'do not have it'}")
