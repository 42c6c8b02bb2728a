"""Models trained with minit2t and shipped inside the package: mt.pretrained("t2t_vit_cifar"); and a
model with its weights from any minit2t weights file (load_model), or from a `train --init` spec.

Each shipped model is an .npz in minit2t/weights/ holding the state dict ("model.<name>" arrays), the
model's config ("config", JSON text) and its default_cfg ("default_cfg", JSON text: input size and
the normalisation its inputs need); the training log and curves lie beside it.
A saved model config is checked before a model is built from it (check_model_config): types, sizes
within CONFIG_INTS, and the sizes against the shapes the file declares for the weights, so a tampered
config can neither build a model the weights do not fit nor ask for an absurd one. Keys added since the
first files were saved (CONFIG_OPTIONS: DeiT III's layer_scale_init, drop_path_uniform; the backbone's
attention and its sr_ratio) may be absent: then they take their defaults, the model those files were trained as.
"""
import json
import os
import sys

import numpy as np

from minit2t.checkpoint import (CONFIG_KEYS, Invalid, _jsonable, from_text, meta_check, need, number, one_of,
                                read_checkpoint_meta, whole)
from minit2t.io import (CHECKPOINT, SHIPPED, STATE_DICT, LoadError, read_arrays, read_headers, read_weights, save,
                        weight_members, weights_kind)

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PRETRAINED = "pretrained:"
CONFIG_INTS = {"img_size": (1, 4096), "in_chans": (1, 64), "num_classes": (0, 100_000), "embed_dim": (1, 16_384),
               "depth": (0, 1024), "num_heads": (1, 1024), "token_dim": (1, 4096)}
CONFIG_RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")
# keys a config may hold beyond CONFIG_KEYS (DeiT III's options, the backbone's attention); files saved before
# them lack them: the defaults
CONFIG_OPTIONS = {"layer_scale_init": None, "drop_path_uniform": False, "attention": "standard", "sr_ratio": 2}
LAYER_SCALE_MAX = 1e3
SR_RATIO_MAX = 4096


def list_pretrained():
    """Names of the shipped models."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(f[:-4] for f in os.listdir(WEIGHTS_DIR) if f.endswith(".npz"))


def pretrained_path(name):
    """The file of the shipped model `name`."""
    path = os.path.join(WEIGHTS_DIR, f"{name}.npz")
    if not isinstance(name, str) or os.sep in name or not os.path.isfile(path):
        raise ValueError(f"no pretrained model {name!r}; shipped: {list_pretrained() or 'none'}")
    return path


def pretrained_log(name):
    """The training log of the shipped model `name`: one dict per epoch (test_acc, train_acc, wall_s, ...)."""
    from minit2t.runs import read_metrics
    return read_metrics(pretrained_path(name)[:-len(".npz")] + ".metrics.jsonl")


def pretrained(name):
    """The shipped model `name`, with its weights, in eval mode."""
    path = pretrained_path(name)
    model, kind = load_model(path)
    if kind != SHIPPED:
        raise LoadError(f"{path} is a {kind}, not a shipped model file")
    return model.eval()


def load_model(path, name=None, ema=False, **kwargs):
    """(model with the weights at `path`, kind) for any minit2t weights file: a shipped model or a training
    checkpoint builds the model from its own (checked) config; a plain state dict holds none, so it needs
    `name` (and create_model's kwargs). Every array's shape is checked against the model before reading.
    ema=True: the weights' average a training checkpoint of `train --ema` holds, instead of its weights."""
    from minit2t.models import create_model
    headers = read_headers(path)
    kind, default_cfg = weights_kind(headers), None
    if kind == STATE_DICT:
        if not name:
            raise LoadError(f"{path} is a {kind}, which holds no model config: name its model (--model NAME)")
        model = create_model(name, **kwargs)
    else:
        shapes = {k[len("model."):]: h[0] for k, h in headers.items() if k.startswith("model.")}
        try:
            if kind == CHECKPOINT:
                config = read_checkpoint_meta(path, headers)["model_config"]
            else:
                config, default_cfg = _shipped_meta(path)
            model = model_from_config(config, shapes)
        except Invalid as exc:
            raise LoadError(f"{path}: {exc}") from None
    state, _ = read_weights(path, model)
    model.load_state_dict({**state, **_average(path, kind, model)} if ema else state, strict=True)
    if default_cfg is not None:
        model.default_cfg = default_cfg
    return model, kind


def _average(path, kind, model):
    """The weights' average (optim.EMA) in the training checkpoint at `path`, shapes checked."""
    from minit2t.checkpoint import load_checkpoint
    if kind != CHECKPOINT:
        raise LoadError(f"{path} is a {kind}: only a training checkpoint holds a weights' average (train --ema)")
    average = load_checkpoint(path, model).get("ema")
    if not average:
        raise LoadError(f"{path} holds no weights' average: its run was trained without --ema")
    return {k: v for k, v in average.items() if k != "updates"}


def init_from(model, spec):
    """Load the weights named by `spec` (pretrained:NAME, or a path to any minit2t weights file) into
    `model`, their shapes checked against it first (train --init); returns the kind of file read."""
    state, kind = read_weights(init_source(spec), model)
    model.load_state_dict(state, strict=True)
    print(f"initialised the model from {spec} ({kind}, {len(state)} arrays)", file=sys.stderr)
    return kind


def init_source(spec):
    """The weights file a `train --init` spec names, checked to hold model weights (headers only)."""
    path = pretrained_path(spec[len(PRETRAINED):]) if spec.startswith(PRETRAINED) else spec
    kind, members = weight_members(read_headers(path))
    if not members:
        raise LoadError(f"{path} is a {kind} without model weights")
    return path


def export_pretrained(model, path):
    """Write `model` (weights, config, default_cfg) as a shippable .npz."""
    if not isinstance(getattr(model, "default_cfg", None), dict):
        raise ValueError("export_pretrained: the model has no default_cfg (input size, normalisation); "
                         "set one, e.g. model.default_cfg = mt.create_model(name).default_cfg")
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays["config"] = np.array(json.dumps(_jsonable(model.config)))
    arrays["default_cfg"] = np.array(json.dumps(model.default_cfg))
    save(arrays, path)


def _shipped_meta(path):
    """(config, default_cfg) of a shipped model file, the default_cfg checked; raises Invalid."""
    arrays = read_arrays(path, ("config", "default_cfg"), meta_check, max_bytes=1 << 20)
    config, cfg = from_text(arrays["config"], "config"), from_text(arrays["default_cfg"], "default_cfg")
    if not isinstance(cfg, dict) or not isinstance(config, dict):
        raise Invalid("config and default_cfg must be JSON objects")
    size = cfg.get("input_size")
    want = [config.get("in_chans"), config.get("img_size"), config.get("img_size")]
    if size != want:
        raise Invalid(f"default_cfg input_size {size!r} is not the config's {want}")
    for key in ("mean", "std"):
        values = cfg.get(key)
        if not (isinstance(values, list) and len(values) == want[0]
                and all(isinstance(v, (int, float)) and np.isfinite(v) and (key == "mean" or v > 0) for v in values)):
            raise Invalid(f"default_cfg {key} must be {want[0]} finite numbers, got {values!r}")
    cfg["input_size"] = tuple(size)
    return config, cfg


def model_from_config(config, shapes=None):
    """Rebuild a T2T_ViT from a saved config (lists back to tuples), checked first: types, ranges,
    and, given `shapes` (the weights' state-dict name -> shape), that it is the model they belong to."""
    from minit2t.models import T2T_ViT
    from minit2t.reduction import reduce_tokens
    config = check_model_config(config, shapes)
    reduce = config.pop("reduce", None)
    model = T2T_ViT(**config)
    return model if reduce is None else reduce_tokens(model, reduce)


def check_model_config(config, shapes=None):
    """A T2T_ViT config (as saved) with every size checked; soft_split as tuples; the CONFIG_OPTIONS
    it lacks (a file saved before them) at their defaults. Raises Invalid."""
    from minit2t.models.t2t import TOKENS_TYPES, split_sizes
    config = _with_options(need(config, dict, "model config"))
    if "reduce" in config:
        check_reduce(config["reduce"], "model config reduce")
    for key, (lo, hi) in CONFIG_INTS.items():
        whole(config[key], f"model config {key}", lo, hi)
    one_of(config["tokens_type"], TOKENS_TYPES, "model config tokens_type")
    number(config["mlp_ratio"], "model config mlp_ratio", lo=0.0, hi=64.0, strict=True)
    need(config["qkv_bias"], bool, "model config qkv_bias")
    if config["qk_scale"] is not None:
        number(config["qk_scale"], "model config qk_scale", strict=True)
    for key in CONFIG_RATES:
        number(config[key], f"model config {key}", hi=1.0)
    _check_options(config)
    config["soft_split"] = soft_split(config["soft_split"])
    if config["embed_dim"] % config["num_heads"]:
        raise Invalid(f"model config embed_dim {config['embed_dim']} is not divisible by num_heads "
                      f"{config['num_heads']}")
    try:
        sides = split_sizes(config["img_size"], config["soft_split"])
    except ValueError as exc:
        raise Invalid(f"model config: {exc}") from None
    _check_shunted(config, sides[-1])
    if shapes is not None:
        _check_against_weights(config, sides[-1] ** 2, shapes)
    return config


def _with_options(config):
    """A copy of the config, its keys checked: CONFIG_KEYS, maybe reduce, and CONFIG_OPTIONS (defaults where absent)."""
    optional = {"reduce", *CONFIG_OPTIONS}
    if not set(CONFIG_KEYS) <= set(config) or set(config) - set(CONFIG_KEYS) - optional:
        raise Invalid(f"model config must have the keys {sorted(CONFIG_KEYS)} "
                      f"(and maybe {', '.join(sorted(optional))}), got {sorted(config)}")
    return {**CONFIG_OPTIONS, **config}


def _check_options(config):
    """layer_scale_init: None or a number in (0, LAYER_SCALE_MAX]; drop_path_uniform: a bool; attention one of
    ATTENTIONS; sr_ratio an even whole number from 2 to SR_RATIO_MAX."""
    from minit2t.nn.transformer import ATTENTIONS
    scale, uniform = config["layer_scale_init"], config["drop_path_uniform"]
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not 0 < scale <= LAYER_SCALE_MAX):
        raise Invalid(f"model config layer_scale_init must be None or a number above 0 and at most "
                      f"{LAYER_SCALE_MAX:g}, got {scale!r}")
    if not isinstance(uniform, bool):
        raise Invalid(f"model config drop_path_uniform must be True or False, got {uniform!r}")
    one_of(config["attention"], ATTENTIONS, "model config attention")
    ratio = config["sr_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, int) or not 2 <= ratio <= SR_RATIO_MAX or ratio % 2:
        raise Invalid(f"model config sr_ratio must be an even whole number from 2 to {SR_RATIO_MAX}, got {ratio!r}")


def _check_shunted(config, side):
    """A shunted backbone: an even num_heads, sr_ratio dividing the token grid's side, no token reduction."""
    if config["attention"] != "shunted":
        return
    if config["num_heads"] % 2:
        raise Invalid(f"model config attention 'shunted' needs an even num_heads, got {config['num_heads']}")
    if side % config["sr_ratio"]:
        raise Invalid(f"model config sr_ratio {config['sr_ratio']} does not divide the token grid's side {side}")
    if "reduce" in config:
        raise Invalid("model config reduce needs attention 'standard', got 'shunted'")


def _check_against_weights(config, n_tokens, shapes):
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
        want[f"blocks.{depth - 1}.mlp.fc1.weight"] = (int(D * config["mlp_ratio"]), D)
    _check_layer_scale(config, shapes, want)
    _check_attention(config, shapes, want)
    if config["num_classes"]:
        want["head.weight"] = (config["num_classes"], D)
    blocks = {name.split(".")[1] for name in shapes if name.startswith("blocks.")}
    if len(blocks) != depth:
        raise Invalid(f"model config depth {depth} but the weights hold {len(blocks)} blocks")
    for name, shape in want.items():
        if tuple(shapes.get(name, ())) != shape:
            raise Invalid(f"model config gives {name} the shape {shape}, the weights "
                          f"{tuple(shapes[name]) if name in shapes else 'do not have it'}")


def _check_layer_scale(config, shapes, want):
    """LayerScale in the config (layer_scale_init) if and only if in the weights; its gammas' shapes into `want`."""
    D, depth, scaled = config["embed_dim"], config["depth"], config["layer_scale_init"] is not None
    if not scaled and any(name.endswith((".ls1.gamma", ".ls2.gamma")) for name in shapes):
        raise Invalid("model config layer_scale_init is None but the weights hold LayerScale gammas (ls1, ls2)")
    if scaled and depth:
        want[f"blocks.{depth - 1}.ls1.gamma"] = want[f"blocks.{depth - 1}.ls2.gamma"] = (D,)


def _check_attention(config, shapes, want):
    """The config's attention is the weights': the last block's attention weights' shapes into `want`."""
    D, depth, r = config["embed_dim"], config["depth"], config["sr_ratio"]
    if not depth:
        return
    attn = f"blocks.{depth - 1}.attn"
    if config["attention"] == "shunted":
        want[f"{attn}.q.weight"], want[f"{attn}.sr1.weight"] = (D, D), (D, D, r, r)
        want[f"{attn}.local_conv2.weight"] = (D // 2, 1, 3, 3)
    else:
        want[f"{attn}.qkv.weight"] = (3 * D, D)


def check_reduce(spec, what):
    """A token reduction spec (minit2t.reduction) that parses; raises Invalid."""
    from minit2t.reduction import SpecError, parse_spec
    need(spec, str, what)
    try:
        parse_spec(spec)
    except SpecError as exc:
        raise Invalid(f"{what}: {exc}") from None


def soft_split(value):
    """Three (kernel, stride, padding) triples of sane whole numbers, as tuples; raises Invalid."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(s, (list, tuple)) and len(s) == 3 for s in value)
    if not ok:
        raise Invalid(f"model config soft_split must be three (kernel, stride, padding) triples, got {value!r}")
    for k, s, p in value:
        whole(k, "soft_split kernel", 1, 64)
        whole(s, "soft_split stride", 1, 64)
        whole(p, "soft_split padding", 0, k - 1)
    return tuple(tuple(s) for s in value)
