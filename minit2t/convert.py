"""Moving weights between the PyTorch release and minit2t (torch is imported only here).

    release checkpoint (.pth, .pth.tar, .pt) -> .npz    torch_to_npz (plain tensors only: torch.load
                                                        with weights_only=True, never a pickle's code)
    any minit2t weights file (.npz) -> PyTorch .pth     npz_to_torch (a plain state dict, the shipped
                                                        file or a training checkpoint: its model weights)
A file either side cannot read is one LoadError line naming it; a file name with another ending is refused.
"""
import argparse
import os
import pickle
import tempfile
import warnings

import numpy as np

from minit2t.io import LoadError, read_weights, save

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
    checkpoint = _torch_load(torch, src)
    try:
        tensors = unwrap_state_dict(checkpoint)
    except ValueError as exc:
        raise LoadError(f"{src}: {exc}") from None
    state = {k: _to_numpy(torch, k, v, src) for k, v in tensors.items()}
    save(state, dst)
    return state


def _torch_load(torch, src):
    """torch.load(src) of plain tensors and containers only; any failure one line naming the file."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")                   # timm checkpoints keep their args (Namespace)
            return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LoadError(f"{src} holds Python objects other than tensors, numbers and containers; "
                        f"minit2t never runs code from a checkpoint, so it cannot convert it") from None
    except Exception as exc:                                  # torch raises many kinds for a damaged file
        raise LoadError(f"{src} is not a PyTorch checkpoint torch can read (damaged, truncated or another "
                        f"format: torch.load raised {type(exc).__name__})") from None


def _to_numpy(torch, key, tensor, src):
    if not isinstance(tensor, torch.Tensor):
        raise LoadError(f"{src}: entry {key!r} is not a tensor ({type(tensor).__name__})")
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()                               # minit2t computes in float32 / float64
    return tensor.numpy()


def npz_to_torch(src, dst):
    """Write the model weights of any minit2t weights file as a PyTorch state_dict file (torch.load)."""
    torch = _import_torch()
    weights, _ = read_weights(src)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
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


TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt")                # what torch.save writes, by its usual names


def convert(src, dst):
    """Pick the direction from the file names: .npz in -> a PyTorch file out, a PyTorch file in -> .npz out;
    any other name is refused before anything is read or written."""
    if _kind(src) == "npz":
        if _kind(dst) != "torch":
            raise ValueError(f"output {dst} must end in {_names(TORCH_SUFFIXES)} (a PyTorch file) when converting "
                             f"the minit2t weights {src}")
        return npz_to_torch(src, dst)
    if _kind(src) != "torch":
        raise ValueError(f"input {src} must end in .npz (minit2t weights) or {_names(TORCH_SUFFIXES)} "
                         f"(a PyTorch checkpoint)")
    if _kind(dst) != "npz":
        raise ValueError(f"output {dst} must end in .npz when converting the PyTorch checkpoint {src}")
    return torch_to_npz(src, dst)


def _kind(path):
    name = str(path).lower()
    return "npz" if name.endswith(".npz") else "torch" if name.endswith(TORCH_SUFFIXES) else None


def _names(suffixes):
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1]
