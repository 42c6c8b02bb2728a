"""Training checkpoints: model, optimiser, schedule, epoch, RNG state and history in one .npz.

Everything is a plain array (numbers, or JSON text as a 0-d string array), written atomically
with mt.save and read back through minit2t.io's checked reader, so no pickle is involved either way.
Nothing read is trusted: the metadata is checked before it is used (the run config by the recipe's
declarations, minit2t.recipe; the model config by the model's, with its sizes against the weights'
shapes, minit2t.models.config), and the arrays' shapes before they are read. Every failure is one
LoadError line naming the file. Above this module: runs (a run's folder), hub (models from files).
"""
import json

import numpy as np

from minit2t import random
from minit2t.io import (CHECKPOINT, CHECKPOINT_KEYS, PREFIX, LoadError, model_shapes, read_arrays, read_headers,
                        save, weights_kind)
from minit2t.models.config import check_model_config, config_to_json
from minit2t.optim import optimizer_state_from_arrays, optimizer_state_to_arrays
from minit2t.options import Invalid, need, number, whole
from minit2t.recipe import check_run_config, same_model_kwargs
from minit2t.reduction.spec import SpecError, parse_spec

MAX_TEXT = 1 << 24                   # 16 MiB of JSON metadata at most
EMA_PREFIX = "ema."                  # the weights' average (train --ema): ema.<weight name>, ema.updates
HISTORY_KEYS = ("train_loss", "train_acc", "test_acc", "images_per_s", "lr", "wall_s")

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
    arrays["model_config"] = _text(config_to_json(model.config))
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
    meta["model_config"] = config = check_saved_model_config(meta["model_config"], shapes)
    same_model_kwargs(run, config)
    return meta


def check_saved_model_config(config, shapes=None):
    """A model config as a file stores it: the model's options (models.config.check_model_config), and the
    token reduction a reduced model was saved with ("reduce": a spec minit2t.reduction parses, which needs
    the standard attention). Raises Invalid."""
    config = check_model_config(config, shapes, also=("reduce",))
    reduce = config.get("reduce")
    if reduce is None:
        return config
    try:
        parse_spec(need(reduce, str, "model config reduce"))
    except SpecError as exc:
        raise Invalid(f"model config reduce: {exc}") from None
    if config["attention"] != "standard":
        raise Invalid(f"model config reduce needs attention 'standard', got {config['attention']!r}")
    return config


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
