"""Training checkpoints: model, optimiser, schedule, epoch, RNG state and history in one .npz.

Everything is a plain array (numbers, or JSON text as a 0-d string array), written atomically
with mt.save and read back with mt.load, so no pickle is involved either way.
"""
import json

import numpy as np

from minit2t import random
from minit2t.io import load, save
from minit2t.optim import optimizer_state_from_arrays, optimizer_state_to_arrays


def _text(obj):
    return np.array(json.dumps(obj))


def _from_text(arr):
    return json.loads(str(np.asarray(arr)))


def save_checkpoint(path, model, optimizer, schedule, epoch, history, run_config):
    """Write everything needed to resume after `epoch` completed epochs."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update(optimizer_state_to_arrays(optimizer))
    arrays["schedule"] = _text(schedule.state_dict())
    arrays["epoch"] = np.array(epoch)
    arrays["rng"] = _text(random.get_state())
    arrays["history"] = _text(history)
    arrays["model_config"] = _text(_jsonable(model.config))
    arrays["run_config"] = _text(run_config)
    save(arrays, path)


def load_checkpoint(path):
    """The checkpoint at `path` as a dict: model (state dict), optimizer, schedule, epoch, rng, history, configs."""
    arrays = load(path)
    needed = ("epoch", "schedule", "rng", "history", "model_config", "run_config")
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not a minit2t training checkpoint (missing {missing})")
    return {
        "model": {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")},
        "optimizer": optimizer_state_from_arrays(arrays),
        "schedule": _from_text(arrays["schedule"]),
        "epoch": int(arrays["epoch"]),
        "rng": _from_text(arrays["rng"]),
        "history": _from_text(arrays["history"]),
        "model_config": _from_text(arrays["model_config"]),
        "run_config": _from_text(arrays["run_config"]),
    }


def model_from_checkpoint_config(config):
    """Rebuild a T2T_ViT from the config saved in a checkpoint (lists back to tuples)."""
    from minit2t.models import T2T_ViT
    config = dict(config)
    config["soft_split"] = tuple(tuple(s) for s in config["soft_split"])
    return T2T_ViT(**config)


def _jsonable(config):
    return {k: (list(map(list, v)) if k == "soft_split" else v) for k, v in config.items()}
