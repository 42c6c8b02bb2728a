"""Training checkpoints: model, optimiser, schedule, epoch, RNG state and history in one .npz.

Everything is a plain array (numbers, or JSON text as a 0-d string array), written atomically
with mt.save and read back through minit2t.io's checked reader, so no pickle is involved either way.
Nothing read is trusted: the metadata is checked (types, ranges, the model config's sizes against
the weights' shapes: hub.check_model_config) before it is used, and the arrays' shapes before they
are read. Every failure is one LoadError line naming the file.
"""
import json
import math

import numpy as np

from minit2t import random
from minit2t.io import (CHECKPOINT, CHECKPOINT_KEYS, PREFIX, LoadError, model_shapes, read_arrays, read_headers,
                        save, weights_kind)
from minit2t.optim import optimizer_state_from_arrays, optimizer_state_to_arrays

MAX_TEXT = 1 << 24                   # 16 MiB of JSON metadata at most
EMA_PREFIX = "ema."                  # the weights' average (train --ema): ema.<weight name>, ema.updates
CONFIG_KEYS = ("img_size", "tokens_type", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio",
               "qkv_bias", "qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate", "token_dim", "soft_split")
HISTORY_KEYS = ("train_loss", "train_acc", "test_acc", "images_per_s", "lr", "wall_s")
RUN_CHECKS = {"epochs": ("int", 1), "batch_size": ("int", 1), "seed": ("int", 0), "lr": ("pos",),
              "min_lr": ("num",), "weight_decay": ("num",), "warmup_epochs": ("num",),
              "label_smoothing": ("num",), "clip_grad": ("num",)}


class Invalid(ValueError):
    """A bad field; the reader adds the file's name."""


def _text(obj):
    return np.array(json.dumps(obj))


def save_checkpoint(path, model, optimizer, schedule, epoch, history, run_config, ema=None):
    """Write everything needed to resume after `epoch` completed epochs (and ema, the weights' average
    of optim.EMA, as ema.<name> arrays and ema.updates)."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        arrays.update({f"{EMA_PREFIX}{k}": v for k, v in ema.state_dict().items()})
    arrays.update(optimizer_state_to_arrays(optimizer))
    arrays["schedule"] = _text(schedule.state_dict())
    arrays["epoch"] = np.array(epoch)
    arrays["rng"] = _text(random.get_state())
    arrays["history"] = _text(history)
    arrays["model_config"] = _text(_jsonable(model.config))
    arrays["run_config"] = _text(run_config)
    save(arrays, path)


def read_checkpoint_meta(path, headers=None):
    """The checked metadata of the checkpoint at `path`: epoch, schedule, rng, history, model_config,
    run_config; only those members are read."""
    headers = read_headers(path) if headers is None else headers
    kind = weights_kind(headers)
    if kind != CHECKPOINT:
        raise LoadError(f"{path} is a {kind}, not a training checkpoint (DIR/last.npz of `train --out DIR`)")
    missing = [k for k in CHECKPOINT_KEYS if k not in headers]
    if missing:
        raise LoadError(f"{path} is not a complete training checkpoint: it lacks {missing}")
    arrays = read_arrays(path, CHECKPOINT_KEYS, meta_check, MAX_TEXT)
    try:
        meta = {k: (arrays[k] if k == "epoch" else from_text(arrays[k], k)) for k in CHECKPOINT_KEYS}
        return check_meta(meta, _weight_shapes(headers))
    except Invalid as exc:
        raise LoadError(f"{path}: {exc}") from None


def load_checkpoint(path, model=None, optimizer=None):
    """The checkpoint at `path` as a dict: model (state dict), optimizer (state dict), and the checked
    metadata. With `model` / `optimizer`, every array's shape is checked against theirs before reading."""
    headers = read_headers(path)
    meta = read_checkpoint_meta(path, headers)
    names = [n for n in headers if n.startswith((PREFIX, "optimizer.", EMA_PREFIX))]
    arrays = read_arrays(path, names, _array_check(model, optimizer))
    try:
        meta["optimizer"] = optimizer_state_from_arrays(arrays)
        _check_groups(meta["optimizer"]["param_groups"])
    except ValueError as exc:
        raise LoadError(f"{path}: {exc}") from None
    meta["model"] = {k[len(PREFIX):]: v for k, v in arrays.items() if k.startswith(PREFIX)}
    average = {k[len(EMA_PREFIX):]: v for k, v in arrays.items() if k.startswith(EMA_PREFIX)}
    if average:
        meta["ema"] = average
    return meta


def check_meta(meta, shapes):
    """Every field of a checkpoint's metadata checked; raises Invalid."""
    run = check_run_config(meta["run_config"])
    meta["epoch"] = whole(int(meta["epoch"]), "epoch", 0, run["epochs"])    # a whole number: meta_check
    _check_schedule(meta["schedule"], meta["epoch"], run["epochs"], run.get("steps"))
    _check_history(meta["history"], meta["epoch"])
    _check_rng(meta["rng"])
    from minit2t.hub import check_model_config, soft_split
    meta["model_config"] = config = check_model_config(meta["model_config"], shapes)
    for key, value in run.get("model_kwargs", {}).items():
        if (soft_split(value) if key == "soft_split" else value) != config[key]:
            raise Invalid(f"run config model_kwargs {key}={value!r} but the model config has {config[key]!r}")
    return meta


def check_run_config(run):
    """The run settings a checkpoint resumes with, checked (the keys train reads). Raises Invalid."""
    from minit2t.models import list_models
    run = need(run, dict, "run config")
    missing = [k for k in ("model", "mixup", "backend", "train_subset", *RUN_CHECKS) if k not in run]
    if missing:
        raise Invalid(f"run config lacks {missing}")
    one_of(run["model"], list_models(), "run config model")
    for key, (kind, *lo) in RUN_CHECKS.items():
        if kind == "int":
            whole(run[key], f"run config {key}", lo[0], 10 ** 9)
        else:
            number(run[key], f"run config {key}", strict=kind == "pos")
    need(run["mixup"], bool, "run config mixup")
    if run["backend"] is not None:
        one_of(run["backend"], ("numpy", "c", "opencl"), "run config backend")
    if run["train_subset"] is not None:
        whole(run["train_subset"], "run config train_subset", 1, 10 ** 9)
    if "crop_padding" in run:
        whole(run["crop_padding"], "run config crop_padding", 0, 16)
    if "train_images" in run:
        whole(run["train_images"], "run config train_images", 1, 10 ** 9)
    if run.get("data") is not None:
        need(run["data"], str, "run config data")
    if run.get("reduce") is not None:
        from minit2t.hub import check_reduce
        check_reduce(run["reduce"], "run config reduce")
    _check_recipe(run)
    from minit2t.hub import CONFIG_OPTIONS
    kwargs = need(run.get("model_kwargs", {}), dict, "run config model_kwargs")
    if not set(kwargs) <= set(CONFIG_KEYS) | set(CONFIG_OPTIONS):
        raise Invalid(f"run config model_kwargs has unknown keys {sorted(kwargs)}")
    return run


def _check_recipe(run):
    """The recipe settings (absent in runs saved before them: their defaults)."""
    one_of(run.get("aug", "basic"), ("basic", "3aug"), "run config aug")
    one_of(run.get("pad_mode", "zero"), ("zero", "reflect"), "run config pad_mode")
    if run.get("layer_scale") is not None:
        from minit2t.hub import LAYER_SCALE_MAX
        number(run["layer_scale"], "run config layer_scale", hi=LAYER_SCALE_MAX, strict=True)
    number(run.get("drop_path", 0.0), "run config drop_path", hi=1.0)
    need(run.get("drop_path_uniform", False), bool, "run config drop_path_uniform")
    if run.get("ema") is not None:
        number(run["ema"], "run config ema", hi=1.0, strict=True)
    if run.get("steps") is not None:
        whole(run["steps"], "run config steps", 1, 10 ** 12)


def _check_schedule(sched, epoch, epochs, steps=None):
    sched = need(sched, dict, "schedule")
    total = whole(sched.get("total_steps"), "schedule total_steps", 1, 10 ** 12)
    if steps is not None and total != steps:
        raise Invalid(f"schedule total_steps {total} but the run's budget is {steps} steps")
    whole(sched.get("warmup_steps"), "schedule warmup_steps", 0, total - 1)
    step = whole(sched.get("last_step"), "schedule last_step", 0, total)
    for key in ("min_lr", "warmup_start_lr"):
        number(sched.get(key), f"schedule {key}")
    lrs = need(sched.get("base_lrs"), list, "schedule base_lrs")
    if not lrs:
        raise Invalid("schedule base_lrs is empty")
    for lr in lrs:
        number(lr, "schedule base_lrs entry", strict=True)
    if steps is None and total % epochs == 0 and step != epoch * (total // epochs):
        raise Invalid(f"schedule last_step {step} does not match epoch {epoch} of {epochs} "
                      f"({total // epochs} steps an epoch)")


def _check_history(history, epoch):
    history = need(history, list, "history")
    if len(history) != epoch:
        raise Invalid(f"history has {len(history)} entries for {epoch} epochs")
    for i, row in enumerate(history):
        row = need(row, dict, f"history entry {i + 1}")
        if row.get("epoch") != i + 1 or isinstance(row.get("epoch"), bool):
            raise Invalid(f"history entry {i + 1} says epoch {row.get('epoch')!r}")
        for key in HISTORY_KEYS + tuple(k for k in ("total_s", "ema_test_acc", "steps") if k in row):
            number(row.get(key), f"history entry {i + 1} {key}")


def _check_rng(state):
    try:
        np.random.default_rng().bit_generator.state = state        # a scratch generator: all checks, no effect
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise Invalid(f"rng is not a state of numpy's {type(random.generator().bit_generator).__name__} "
                      f"({type(exc).__name__})") from None


def _check_groups(groups):
    for i, group in enumerate(groups):
        for key in ("lr", "initial_lr", "eps"):
            if key in group:
                number(group[key], f"optimizer group {i} {key}", strict=True)
        if "weight_decay" in group:
            number(group["weight_decay"], f"optimizer group {i} weight_decay")
        for beta in group.get("betas", ()):
            number(beta, f"optimizer group {i} betas", hi=1.0)


def meta_check(name, shape, dtype):
    """read_arrays' check for metadata members: "epoch" a whole number, the rest JSON text."""
    if name == "epoch":
        ok, want = shape == () and dtype.kind in "iu", "a whole number"
    else:
        ok, want = shape == () and dtype.kind == "U", "JSON text"
    return None if ok else f"{name} must be {want}, got a {dtype} array of shape {shape}"


def _array_check(model, optimizer):
    """check(name, shape, dtype) for read_arrays: weights as the model's, optimizer state as its parameters'."""
    shapes = None if model is None else model_shapes(model)
    params = [] if optimizer is None else [p for g in optimizer.param_groups for p in g["params"]]

    def check(name, shape, dtype):
        if dtype.kind not in "biuf":
            return f"{name} is not numeric (dtype {dtype})"
        if name == EMA_PREFIX + "updates":
            return None if shape == () and dtype.kind in "iu" else f"{name} must be a whole number"
        if name.startswith(EMA_PREFIX):                 # an average of a weight: that weight's shape
            name = PREFIX + name[len(EMA_PREFIX):]
        if not name.startswith(PREFIX):
            return _optimizer_check(name, shape, dtype, params)
        if shapes is not None and shapes.get(name[len(PREFIX):]) != shape:
            return (f"{name} has shape {shape} in the file but {shapes[name[len(PREFIX):]]} in the model"
                    if name[len(PREFIX):] in shapes else f"{name} is not one of the model's weights")
        return None
    return check


def _optimizer_check(name, shape, dtype, params):
    """An optimizer.state.<i>.<key> array: "step" a whole number, the rest parameter i's shape."""
    parts = name.split(".")
    if len(parts) != 4 or parts[1] != "state":
        return None                                  # param_groups.*: a few numbers, checked once read
    if parts[3] == "step":
        return None if shape == () and dtype.kind in "iu" else f"{name} must be a whole number"
    if not params:
        return None
    i = int(parts[2]) if parts[2].isdigit() else len(params)
    if i >= len(params):
        return f"{name}: state for parameter {parts[2]}, but the optimizer has {len(params)}"
    want = tuple(params[i].shape)
    return None if shape == want else f"{name} has shape {shape} in the file but {want} for its parameter"


def _weight_shapes(headers):
    return {k[len(PREFIX):]: h[0] for k, h in headers.items() if k.startswith(PREFIX)}


def from_text(arr, what):
    """The JSON text in a 0-d string array; NaN and infinities refused."""
    def refuse(constant):
        raise Invalid(f"{what} holds {constant}")
    try:
        return json.loads(str(np.asarray(arr)), parse_constant=refuse)
    except Invalid:
        raise
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"{what} is not readable JSON ({type(exc).__name__})") from None


def need(value, kind, what):
    if not isinstance(value, kind):
        raise Invalid(f"{what} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def whole(value, what, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Invalid(f"{what} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def number(value, what, lo=0.0, hi=math.inf, strict=False):
    """A finite number in [lo, hi) (above lo when strict); hi=inf for no upper bound."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < lo or (strict and value == lo) or (hi != math.inf and value >= hi):
        bounds = f"{'above' if strict else 'at least'} {lo:g}" + (f" and below {hi:g}" if hi != math.inf else "")
        raise Invalid(f"{what} must be a finite number {bounds}, got {value!r}")
    return value


def one_of(value, choices, what):
    if value not in choices or not isinstance(value, str):
        raise Invalid(f"{what} must be one of {list(choices)}, got {value!r}")
    return value


def _jsonable(config):
    return {k: (list(map(list, v)) if k == "soft_split" else v) for k, v in config.items()}

