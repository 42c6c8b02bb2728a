"""Moving weights between the PyTorch release and minit2t (torch is imported only here).

    release checkpoint (.pth / .pth.tar) -> .npz   torch_to_npz
    .npz -> PyTorch state_dict file (.pth)         npz_to_torch
"""
import argparse
import os
import tempfile

import numpy as np

from minit2t.io import load, save

WRAPPERS = ("state_dict_ema", "state_dict", "model")


def _import_torch():
    try:
        import torch
    except ImportError:
        raise RuntimeError("converting PyTorch checkpoints needs torch: pip install torch") from None
    return torch


def unwrap_state_dict(checkpoint):
    """The state dict inside a checkpoint: 'state_dict_ema' / 'state_dict' / 'model' wrappers and
    'module.' prefixes (DataParallel) removed."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a checkpoint dict, got {type(checkpoint).__name__}")
    for key in WRAPPERS:
        if isinstance(checkpoint.get(key), dict) and checkpoint[key]:
            checkpoint = checkpoint[key]
            break
    out = {}
    for key, value in checkpoint.items():
        if not hasattr(value, "shape"):
            raise ValueError(f"checkpoint entry {key!r} is not a tensor ({type(value).__name__}); "
                             f"expected a state dict, optionally under one of {WRAPPERS}")
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def torch_to_npz(src, dst):
    """Convert a PyTorch checkpoint to .npz; returns the state dict as ndarrays."""
    torch = _import_torch()
    if not os.path.isfile(src):
        raise FileNotFoundError(f"no such checkpoint: {src}")
    with torch.serialization.safe_globals([argparse.Namespace]):  # timm checkpoints keep their args
        checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    state = {k: v.detach().cpu().numpy() for k, v in unwrap_state_dict(checkpoint).items()}
    save(state, dst)
    return state


def npz_to_torch(src, dst):
    """Write a .npz state dict as a PyTorch state_dict file loadable with torch.load."""
    torch = _import_torch()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in load(src).items()}
    folder = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pth")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return state


def convert(src, dst):
    """Pick the direction from the file names: .npz in -> torch out, else torch in -> .npz out."""
    if str(src).endswith(".npz"):
        if str(dst).endswith(".npz"):
            raise ValueError(f"both {src} and {dst} are .npz; one side must be a PyTorch file")
        return npz_to_torch(src, dst)
    if not str(dst).endswith(".npz"):
        raise ValueError(f"output {dst} must end in .npz when converting a PyTorch checkpoint")
    return torch_to_npz(src, dst)
