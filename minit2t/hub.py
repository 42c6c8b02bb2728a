"""Models trained with minit2t and shipped inside the package: mt.pretrained("t2t_vit_cifar").

Each one is an .npz in minit2t/weights/ holding the state dict ("model.<name>" arrays), the
model's config ("config", JSON text) and its default_cfg ("default_cfg", JSON text: input
size and the normalisation its inputs need); the training log and curves lie beside it.
"""
import json
import os

import numpy as np

from minit2t.io import load

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def list_pretrained():
    """Names of the shipped models."""
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    return sorted(f[:-4] for f in os.listdir(WEIGHTS_DIR) if f.endswith(".npz"))


def pretrained(name):
    """The shipped model `name`, with its weights, in eval mode."""
    from minit2t.checkpoint import model_from_checkpoint_config
    path = os.path.join(WEIGHTS_DIR, f"{name}.npz")
    if not os.path.isfile(path):
        raise ValueError(f"no pretrained model {name!r}; shipped: {list_pretrained() or 'none'}")
    arrays = load(path)
    config = json.loads(str(arrays["config"]))
    model = model_from_checkpoint_config(config)
    model.load_state_dict({k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}, strict=True)
    default_cfg = json.loads(str(arrays["default_cfg"]))
    default_cfg["input_size"] = tuple(default_cfg["input_size"])
    model.default_cfg = default_cfg
    return model.eval()


def export_pretrained(model, path):
    """Write `model` (weights, config, default_cfg) as a shippable .npz."""
    from minit2t.checkpoint import _jsonable
    from minit2t.io import save
    if not isinstance(getattr(model, "default_cfg", None), dict):
        raise ValueError("export_pretrained: the model has no default_cfg (input size, normalisation); "
                         "set one, e.g. model.default_cfg = mt.create_model(name).default_cfg")
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays["config"] = np.array(json.dumps(_jsonable(model.config)))
    arrays["default_cfg"] = np.array(json.dumps(model.default_cfg))
    save(arrays, path)
