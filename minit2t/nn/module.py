"""Module and Parameter: PyTorch's bookkeeping for layers, in NumPy.

A Module registers the Parameters, buffers and sub-Modules assigned to its
attributes, so state_dict() names every array by its dotted path
("blocks.0.attn.qkv.weight"), exactly as torch does.

Forward hooks let code outside a layer watch it run, as torch's do:
    handle = model.blocks[0].attn.softmax.register_forward_hook(fn)   # fn(module, inputs, output)
    model(x)                                                          # fn sees the attention
    handle.remove()
Hooks only observe (what they return is ignored). They fire for every call, from any thread;
registering or removing one while other threads run the model is safe, because each module
keeps its hooks in a tuple that is replaced, never changed in place. minit2t.analysis builds
its thread-safe captures on them.
"""
import threading
from collections import OrderedDict

import numpy as np

from minit2t.io import listing, model_weights
from minit2t.tensor import Tensor

_hooks_lock = threading.Lock()      # serialises writers of the hook tuples; readers need no lock


class StateDictError(KeyError, ValueError):
    """load_state_dict's names do not match the model's (a KeyError, as before, and a ValueError)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class Parameter(Tensor):
    """A Tensor a Module owns and trains (requires_grad=True unless told otherwise)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("Tensor("):]


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", ())      # ((handle, fn), ...)
        object.__setattr__(self, "_forward_hooks", ())

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A named array saved in state_dict but not trained (e.g. running statistics)."""
        self._buffers[name] = np.asarray(array)
        object.__setattr__(self, name, self._buffers[name])

    def __call__(self, *args, **kwargs):
        for _, hook in self._forward_pre_hooks:
            hook(self, args)
        out = self.forward(*args, **kwargs)
        for _, hook in self._forward_hooks:
            hook(self, args, out)
        return out

    # ---- hooks --------------------------------------------------------------
    def register_forward_pre_hook(self, fn):
        """Call fn(module, inputs) before every forward; returns a handle whose .remove() stops it."""
        return RemovableHandle(self, "_forward_pre_hooks", fn)

    def register_forward_hook(self, fn):
        """Call fn(module, inputs, output) after every forward; returns a handle whose .remove() stops it."""
        return RemovableHandle(self, "_forward_hooks", fn)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # ---- traversal --------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return list(self._modules.values())

    def named_parameters(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def apply(self, fn):
        """Call fn on every sub-module (children first) and on self, as torch does."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad on every parameter (False: freeze them), the fixed ones too (T2T-ViT's sinusoid
        pos_embed), as torch does; returns the module."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, dtype):
        """Cast every parameter and floating buffer to float32 or float64 (np.float32, "float64", ...).

        "cpu" is accepted and changes nothing, as torch users type it (minit2t computes on the CPU);
        anything else is refused with a TypeError naming it."""
        if isinstance(dtype, str) and dtype.strip().lower() == "cpu":
            return self
        dtype = _float_dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = None
            for name, b in list(m._buffers.items()):
                if b.dtype.kind == "f":
                    m.register_buffer(name, b.astype(dtype))
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ---- state ------------------------------------------------------------
    def state_dict(self):
        """name -> ndarray (a copy) for every parameter and buffer, in registration order."""
        return OrderedDict((k, np.array(v, copy=True)) for k, v in self._state_arrays().items())

    def _state_arrays(self):
        """name -> the array itself (no copy) for every parameter and buffer, in registration order."""
        out = OrderedDict()
        for mname, m in self.named_modules():
            for name, p in list(m._parameters.items()) + list(m._buffers.items()):
                out[f"{mname}.{name}" if mname else name] = p.data if isinstance(p, Tensor) else p
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters and buffers of the same names; returns (missing, unexpected).

        `state` is a state dict, or a dict as mt.load returns it for a shipped model or a training
        checkpoint (its "model."-prefixed weights are used). Shapes must match exactly; each array is
        cast to the dtype its parameter has (use model.to(np.float64) for a float64 model). With
        strict=True every key must be present and no other key may be. Everything is checked before
        anything is copied, so a refused load leaves the model as it was.
        """
        own = self._state_arrays()
        if not any(k in state for k in own):
            state = model_weights(state)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise StateDictError(f"load_state_dict: missing keys {listing(missing)}, "
                                 f"unexpected keys {listing(unexpected)}")
        values = {key: _checked_value(key, value, own[key]) for key, value in state.items() if key in own}
        targets = self._state_targets()
        for key, value in values.items():
            targets[key](np.array(value, dtype=own[key].dtype, copy=True))
        return missing, unexpected

    def _state_targets(self):
        """state_dict key -> a setter that stores an array there."""
        setters = {}
        for mname, m in self.named_modules():
            for name, p in m._parameters.items():
                setters[f"{mname}.{name}" if mname else name] = _param_setter(p)
            for name in m._buffers:
                setters[f"{mname}.{name}" if mname else name] = _buffer_setter(m, name)
        return setters

    # ---- printing ---------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class RemovableHandle:
    """One registered hook; remove() unregisters it (a second call does nothing)."""

    def __init__(self, module, table, fn):
        self.module, self.table = module, table
        with _hooks_lock:
            object.__setattr__(module, table, getattr(module, table) + ((self, fn),))

    def remove(self):
        with _hooks_lock:
            kept = tuple(entry for entry in getattr(self.module, self.table) if entry[0] is not self)
            object.__setattr__(self.module, self.table, kept)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _float_dtype(dtype):
    """np.float32 or np.float64 for anything naming one of them; a TypeError for the rest."""
    try:
        resolved = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None
    if resolved is None or resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        name = f"np.{dtype.__name__}" if isinstance(dtype, type) else repr(dtype)
        raise TypeError(f"Module.to: minit2t models compute in float32 or float64 (or take \"cpu\", "
                        f"which changes nothing); got {name}")
    return resolved.type


def _checked_value(key, value, current):
    """`value` as an ndarray, after checking it can replace `current` (shape, a numeric dtype)."""
    value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if value.shape != current.shape:
        raise ValueError(f"load_state_dict: {key} has shape {current.shape} in the model "
                         f"but {value.shape} in the state dict")
    if value.dtype.kind not in "fiu":
        raise TypeError(f"load_state_dict: {key} must be numeric, got dtype {value.dtype}")
    return value


def _param_setter(p):
    def set_(array):
        p.data, p.grad = array, None
    return set_


def _buffer_setter(module, name):
    return lambda array: module.register_buffer(name, array)
