"""Training checkpoints: model, optimiser, schedule, epoch, RNG state and history in one .npz.

Everything is a plain array (numbers, or JSON text as a 0-d string array), written atomically
with mt.save and read back through minit2t.io's checked reader, so no pickle is involved either way.
Nothing read is trusted: the metadata is checked before it is used (the run config by the recipe's
declarations, minit2t.recipe; the model config by the model's, with its sizes against the weights'
shapes, minit2t.models.config), and every array's dtype and shape before it is read: the weights and
their average floating point, the optimizer's per-parameter state AdamW's (step, exp_avg, exp_avg_sq)
and its groups' options numbers. Once read, the stored fields must agree: the run config's lr is the
schedule's base_lrs and every optimizer group's initial_lr, its min_lr the schedule's; no step count
(a parameter's step, the average's updates) passes the schedule's last_step; the moments are finite,
exp_avg_sq >= 0. Every failure is one LoadError line naming the file and the field. Above this module:
runs (a run's folder), hub (models from files).
"""
import json

import numpy as np

from minit2t import random
from minit2t.io import (CHECKPOINT, CHECKPOINT_KEYS, PREFIX, LoadError, listing, model_shapes, read_arrays,
                        read_headers, save, weight_complaint, weights_kind)
from minit2t.models.config import check_model_config, config_to_json
from minit2t.optim import optimizer_state_from_arrays, optimizer_state_to_arrays
from minit2t.optim.optimizer import state_complaint
from minit2t.options import Invalid, need, number, whole
from minit2t.recipe import check_run_config, same_model_kwargs
from minit2t.reduction.spec import SpecError, parse_spec

MAX_TEXT = 1 << 24                   # 16 MiB of JSON metadata at most
EMA_PREFIX = "ema."                  # the weights' average (train --ema): ema.<weight name>, ema.updates
EMA_UPDATES = EMA_PREFIX + "updates"
OPT_PREFIX = "optimizer."            # optimizer.state.<i>.<key>, optimizer.param_groups.<g>.<key>
STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")                         # AdamW's, per parameter
GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "initial_lr", "params")
HISTORY_KEYS = ("train_loss", "train_acc", "images_per_s", "lr", "wall_s")   # and test_acc where scored

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
    names = [n for n in headers if n.startswith((PREFIX, OPT_PREFIX, EMA_PREFIX))]
    try:
        _check_average_names(names)
        arrays = read_arrays(path, names, _array_check(model, optimizer))
        meta["optimizer"] = optimizer_state_from_arrays(arrays)
        _check_optimizer(meta["optimizer"], meta, optimizer)
        average = {k[len(EMA_PREFIX):]: v for k, v in arrays.items() if k.startswith(EMA_PREFIX)}
        if average:
            last = meta["schedule"]["last_step"]
            whole(int(average["updates"]), f"{EMA_UPDATES} (at most the schedule's last_step)", 0, last)
            meta["ema"] = average
    except LoadError:
        raise
    except ValueError as exc:                           # Invalid, and optimizer_state_from_arrays' errors
        raise LoadError(f"{path}: {exc}") from None
    meta["model"] = {k[len(PREFIX):]: v for k, v in arrays.items() if k.startswith(PREFIX)}
    return meta


def check_meta(meta, shapes):
    """Every field of a checkpoint's metadata checked; raises Invalid."""
    run = check_run_config(meta["run_config"])
    meta["epoch"] = whole(int(meta["epoch"]), "epoch", 0, run["epochs"])    # a whole number: meta_check
    _check_schedule(meta["schedule"], meta["epoch"], run)
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


def _check_schedule(sched, epoch, run):
    """The schedule's fields, each in its range, its lrs the run config's, its steps the epoch's."""
    epochs, steps = run["epochs"], run.get("steps")
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
    for g, lr in enumerate(lrs):
        if number(lr, f"schedule base_lrs[{g}]", strict=True) != run["lr"]:
            raise Invalid(f"run config lr {run['lr']!r} but schedule base_lrs[{g}] is {lr!r} (the lr it trains with)")
    if sched["min_lr"] != run["min_lr"]:
        raise Invalid(f"run config min_lr {run['min_lr']!r} but schedule min_lr is {sched['min_lr']!r}")
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
        for key in HISTORY_KEYS + tuple(k for k in ("test_acc", "total_s", "ema_test_acc", "steps") if k in row):
            number(row.get(key), f"history entry {i + 1} {key}")


def _check_rng(state):
    try:
        np.random.default_rng().bit_generator.state = state        # a scratch generator: all checks, no effect
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise Invalid(f"rng is not a state of numpy's {type(random.generator().bit_generator).__name__} "
                      f"({type(exc).__name__})") from None


def _check_average_names(names):
    """The weights' average, if any: an ema.<name> for each model.<name>, and ema.updates."""
    average = {n[len(EMA_PREFIX):] for n in names if n.startswith(EMA_PREFIX)} - {"updates"}
    weights = {n[len(PREFIX):] for n in names if n.startswith(PREFIX)}
    if (average or EMA_UPDATES in names) and (average != weights or EMA_UPDATES not in names):
        missing = sorted(weights - average) + ([] if EMA_UPDATES in names else ["updates"])
        raise Invalid(f"the weights' average must hold {EMA_PREFIX}<name> for every weight and {EMA_UPDATES}: "
                      f"missing {listing([EMA_PREFIX + n for n in missing])}, unexpected "
                      f"{listing([EMA_PREFIX + n for n in sorted(average - weights)])}")


def _check_optimizer(state, meta, optimizer):
    """The optimizer state against itself, the schedule, the run config and (if given) `optimizer`."""
    groups, sched, run = state["param_groups"], meta["schedule"], meta["run_config"]
    if len(groups) != len(sched["base_lrs"]):
        raise Invalid(f"optimizer has {len(groups)} parameter groups but the schedule's base_lrs has "
                      f"{len(sched['base_lrs'])} entries")
    own = [] if optimizer is None else [len(g["params"]) for g in optimizer.param_groups]
    if own and own != [len(g.get("params", ())) for g in groups]:
        raise Invalid(f"optimizer groups of {[len(g.get('params', ())) for g in groups]} parameters, "
                      f"but this model's optimizer has groups of {own}")
    top = max(sched["base_lrs"] + [sched["min_lr"], sched["warmup_start_lr"]])
    for g, group in enumerate(groups):
        _check_group(group, g, sched["base_lrs"][g], top, run["weight_decay"])
    n = sum(len(g["params"]) for g in groups)
    if sorted(i for g in groups for i in g["params"]) != list(range(n)):
        raise Invalid(f"{OPT_PREFIX}param_groups.*.params must number the {n} parameters 0 to {n - 1} once each")
    for i, entries in state["state"].items():
        where = f"{OPT_PREFIX}state.{i}"
        if i >= n:
            raise Invalid(f"{where}.* is the state of parameter {i}, but the groups hold {n} parameters")
        if sorted(entries) != sorted(STATE_KEYS):
            raise Invalid(f"{where}.* holds {sorted(entries)}; AdamW keeps {list(STATE_KEYS)} for a parameter")
        for key, value in entries.items():
            complaint = state_complaint(key, value)
            if complaint:
                raise Invalid(f"{where}.{key} {complaint}")
        whole(int(entries["step"]), f"{where}.step (at most the schedule's last_step)", 0, sched["last_step"])
        if (entries["exp_avg_sq"] < 0).any():
            raise Invalid(f"{where}.exp_avg_sq must be >= 0 (a mean of squared gradients), "
                          f"got {int((entries['exp_avg_sq'] < 0).sum()):,} negative values")


def _check_group(group, g, base_lr, top, weight_decay):
    where = f"{OPT_PREFIX}param_groups.{g}"
    missing = [k for k in GROUP_KEYS if k not in group]
    if missing:
        raise Invalid(f"{where}.* lacks {missing}")
    number(group["lr"], f"{where}.lr", hi=top, hi_included=True)      # the schedule's lr at last_step
    if number(group["initial_lr"], f"{where}.initial_lr", strict=True) != base_lr:
        raise Invalid(f"{where}.initial_lr {group['initial_lr']!r} but schedule base_lrs[{g}] is {base_lr!r}")
    number(group["eps"], f"{where}.eps")
    if number(group["weight_decay"], f"{where}.weight_decay") not in (0.0, weight_decay):
        raise Invalid(f"{where}.weight_decay {group['weight_decay']!r} but the run config's weight_decay is "
                      f"{weight_decay!r} (0 in the group without decay)")
    for beta in group["betas"]:
        number(beta, f"{where}.betas", hi=1.0)


def meta_check(name, shape, dtype):
    """read_arrays' check for metadata members: "epoch" a whole number, the rest JSON text."""
    return _want(name, shape, dtype, (), "iu", "a whole number") if name == "epoch" else \
        _want(name, shape, dtype, (), "U", "JSON text")


def _want(name, shape, dtype, want_shape, kinds, what):
    """None if the array is of shape want_shape and a dtype of one of the kinds, else the complaint."""
    ok = shape == want_shape and dtype.kind in kinds
    return None if ok else f"{name} must be {what}, got an array of dtype {dtype} and shape {shape}"


def _array_check(model, optimizer):
    """check(name, shape, dtype) for read_arrays: weights as the model's, optimizer state as its parameters'."""
    shapes = None if model is None else model_shapes(model)
    params = [] if optimizer is None else [p for g in optimizer.param_groups for p in g["params"]]

    def check(name, shape, dtype):
        if name == EMA_UPDATES:
            return _want(name, shape, dtype, (), "iu", "a whole number")
        if name.startswith(OPT_PREFIX):
            return _optimizer_check(name, shape, dtype, params)
        key = name[len(PREFIX if name.startswith(PREFIX) else EMA_PREFIX):]    # a weight, or its average
        if shapes is not None and shapes.get(key) != shape:
            return (f"{name} has shape {shape} in the file but {shapes[key]} in the model"
                    if key in shapes else f"{name} is not one of the model's weights")
        return weight_complaint(name, dtype)
    return check


def _optimizer_check(name, shape, dtype, params):
    """optimizer.state.<i>.<key>: step a whole number, exp_avg(_sq) floats of parameter i's shape;
    optimizer.param_groups.<g>.<key>: a number, two (betas) or the parameters' indices (params)."""
    kind, index, key = (name[len(OPT_PREFIX):].split(".") + ["", "", ""])[:3]
    if name.count(".") != 3 or kind not in ("state", "param_groups") or not index.isdigit():
        return f"{name} is not an optimizer member ({OPT_PREFIX}state.<i>.<key> or {OPT_PREFIX}param_groups.<g>.<key>)"
    if kind == "param_groups":
        if key not in GROUP_KEYS:
            return f"{name}: an optimizer group holds {list(GROUP_KEYS)}, not {key!r}"
        if key == "params":                             # an empty list is saved as a float64 array
            ok = len(shape) == 1 and (dtype.kind in "iu" or shape == (0,))
            return None if ok else _want(name, shape, dtype, None, "", "a list of parameter indices")
        return _want(name, shape, dtype, (2,) if key == "betas" else (), "iuf",
                     "two numbers" if key == "betas" else "a number")
    if key == "step":
        return _want(name, shape, dtype, (), "iu", "a whole number")
    if key not in STATE_KEYS:
        return f"{name}: AdamW keeps {list(STATE_KEYS)} for a parameter, not {key!r}"
    if dtype.kind != "f":
        return f"{name} must be a floating-point array, got {dtype}"
    i = int(index)
    if params and i >= len(params):
        return f"{name}: state for parameter {i}, but the optimizer has {len(params)}"
    want = tuple(params[i].shape) if params else shape
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
