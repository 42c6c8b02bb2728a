"""minit2t: Tokens-to-Token ViT in NumPy and C, small enough to read.

    import minit2t as mt
    model = mt.create_model("t2t_vit_7")
    logits = model(mt.tensor(images))          # (B, 1000)
    mt.reduce_tokens(model, "mctf:r=8")        # fewer tokens in the backbone: ToMe, EViT, MCTF
    trained = mt.create_model("t2t_vit_cifar", pretrained=True)   # the shipped: mt.list_models(pretrained=True)
"""
from minit2t import amp, grad_mode
from minit2t.amp import autocast
from minit2t.grad_mode import enable_grad, no_grad
from minit2t.tensor import Tensor
from minit2t import ops  # noqa: E402  (ops import Tensor lazily)
from minit2t import data, exercises, nn, optim
from minit2t.backends import (available_backends, get_backend, get_num_threads, set_backend,
                              set_num_threads)
from minit2t.io import load, read_weights, save
from minit2t.hub import create_model, list_models, list_pretrained, pretrained, pretrained_log
from minit2t import reduction
from minit2t.reduction import reduce_tokens
from minit2t import approx
from minit2t.approx import swap_t2t_attention
from minit2t.random import manual_seed
from minit2t.profile import count_macs

__version__ = "0.1.0"


def tensor(data, requires_grad=False, dtype=None):
    """A Tensor from an array, list or number (float32 unless the array says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def cat(tensors, axis=0):
    """Concatenate tensors along an existing axis."""
    return ops.Concat.apply(*tensors, axis=axis)


def count_params(model):
    """Every parameter's size, trained or fixed (the paper counts the sinusoid pos_embed too)."""
    return int(sum(p.size for p in model.parameters()))


__all__ = ["Tensor", "amp", "autocast", "available_backends", "cat", "count_macs", "count_params", "create_model", "data",
           "enable_grad", "exercises", "get_backend", "grad_mode", "list_models", "load", "manual_seed", "nn",
           "no_grad", "ops", "optim", "pretrained", "pretrained_log", "list_pretrained", "read_weights",
           "reduce_tokens", "reduction", "approx", "swap_t2t_attention", "save", "set_backend", "set_num_threads",
           "get_num_threads", "tensor"]
