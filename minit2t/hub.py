"""Models trained with minit2t and shipped inside the package: mt.pretrained("t2t_vit_cifar"); and a
model with its weights from any minit2t weights file (load_model), or from a `train --init` spec.
mt.create_model and mt.list_models are this module's, as timm has them: create_model(name, pretrained=True)
and list_models("t2t*", pretrained=True); minit2t.models.create_model stays the plain builder.

Each shipped model is an .npz in minit2t/weights/ holding the state dict ("model.<name>" arrays), the
model's config ("config", JSON text) and its default_cfg ("default_cfg", JSON text: input size and
the normalisation its inputs need); the training log and curves lie beside it.
A saved model config is checked before a model is built from it (checkpoint.check_saved_model_config:
every option by its declaration in minit2t.models.config, the sizes against the shapes the file
declares for the weights), so a tampered config can neither build a model the weights do not fit nor
ask for an absurd one. Persistence, each importing only what is below it: io (files) -> checkpoint ->
runs (a run's folder) and hub (models from files), both beside runlog (a run's log) -> export.
"""
import json
import os
import sys
from fnmatch import fnmatchcase

import numpy as np

from minit2t.checkpoint import (check_saved_model_config, from_text, load_checkpoint, meta_check,
                                read_checkpoint_meta)
from minit2t.io import (CHECKPOINT, SHIPPED, STATE_DICT, LoadError, read_arrays, read_headers, read_weights, save,
                        weight_members, weights_kind)
from minit2t import models
from minit2t.models import T2T_ViT
from minit2t.models.config import config_to_json
from minit2t.options import Invalid
from minit2t.reduction import reduce_tokens
from minit2t.runlog import read_metrics

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PRETRAINED = "pretrained:"


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
    return read_metrics(pretrained_path(name)[:-len(".npz")] + ".metrics.jsonl")


def pretrained(name):
    """The shipped model `name`, with its weights, in eval mode."""
    path = pretrained_path(name)
    model, kind = load_model(path)
    if kind != SHIPPED:
        raise LoadError(f"{path} is a {kind}, not a shipped model file")
    return model.eval()


_shipped = pretrained                 # the function, which create_model's argument `pretrained` hides
TRAINING_ONLY = ("drop_rate", "attn_drop_rate", "drop_path_rate", "drop_path_uniform")   # change no weight


def create_model(name, pretrained=False, **kwargs):
    """timm's create_model: the zoo's model `name`, randomly initialised (minit2t.models.create_model, which
    takes the kwargs); with pretrained=True the shipped model `name` (mt.pretrained: its weights, in eval
    mode), which takes only the options that change no weight, the dropout rates (TRAINING_ONLY)."""
    shipped = list_pretrained()
    if not pretrained:
        if name in shipped and name not in models.list_models():
            raise ValueError(f"{name!r} names shipped weights, not a zoo model: "
                             f"create_model({name!r}, pretrained=True)")
        return models.create_model(name, **kwargs)
    if name not in shipped:
        raise ValueError(f"no shipped weights named {name!r}; shipped: {', '.join(shipped) or 'none'} "
                         f"(mt.list_models(pretrained=True))")
    fixed = sorted(set(kwargs) - set(TRAINING_ONLY))
    if fixed:
        raise TypeError(f"create_model({name!r}, pretrained=True) got {fixed}, which the shipped weights fix; "
                        f"it takes only {', '.join(TRAINING_ONLY)}")
    model = _shipped(name)
    if not kwargs:
        return model
    try:
        rebuilt = model_from_config({**config_to_json(model.config), **kwargs})   # the rates checked
    except Invalid as exc:
        raise Invalid(f"create_model({name!r}, pretrained=True): {exc}") from None
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.default_cfg = model.default_cfg
    return rebuilt.eval()


def list_models(filter="", module="", pretrained=False, exclude_filters=""):
    """timm's list_models: the zoo's model names (with pretrained=True the shipped models') that match
    `filter` and none of `exclude_filters`, each a shell pattern ("t2t*") or a list of them, matched with
    case, in the zoo's order. `module`: "" or "zoo" (every model is in minit2t.models.zoo)."""
    if module not in ("", None, "zoo"):
        raise ValueError(f"list_models: module must be '' or 'zoo' (every model is in minit2t.models.zoo), "
                         f"got {module!r}")
    keep, drop = _patterns("filter", filter), _patterns("exclude_filters", exclude_filters)
    names = list_pretrained() if pretrained else models.list_models()
    return [n for n in names if (not keep or any(fnmatchcase(n, p) for p in keep))
            and not any(fnmatchcase(n, p) for p in drop)]


def _patterns(what, value):
    """A list_models pattern argument as a list of non-empty patterns."""
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"list_models: {what} must be a pattern or a list of patterns (str), got {value!r}")
    return [p for p in patterns if p]


def load_model(path, name=None, ema=False, **kwargs):
    """(model with the weights at `path`, kind) for any minit2t weights file: a shipped model or a training
    checkpoint builds the model from its own (checked) config; a plain state dict holds none, so it needs
    `name` (and create_model's kwargs). Every array's shape is checked against the model before reading.
    ema=True: the weights' average a training checkpoint of `train --ema` holds, instead of its weights."""
    headers = read_headers(path)
    kind, default_cfg = weights_kind(headers), None
    if kind == STATE_DICT:
        if not name:
            raise LoadError(f"{path} is a {kind}, which holds no model config: name its model (--model NAME)")
        model = models.create_model(name, **kwargs)
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
    arrays["config"] = np.array(json.dumps(config_to_json(model.config)))
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
    config = check_saved_model_config(config, shapes)
    reduce = config.pop("reduce", None)
    model = T2T_ViT(**config)
    return model if reduce is None else reduce_tokens(model, reduce)
