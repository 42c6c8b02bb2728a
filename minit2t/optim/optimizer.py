"""The Optimizer base class: parameter groups, per-parameter state, state_dict.

As in torch.optim, `params` is a list of Parameters or a list of group dicts
({"params": [...], "lr": ..., ...}); a group's missing options come from the
optimizer's defaults. state_dict() names parameters by their position across
all groups, so it holds only ints, floats, bools, tuples and ndarrays, and
`optimizer_state_to_arrays` flattens it to {name: ndarray} for an .npz file.
"""
import numpy as np

from minit2t.tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}                                   # Parameter -> {name: value}
        groups = [params] if isinstance(params, Tensor) else list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with a 'params' key, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimise Tensors/Parameters, "
                                f"got {type(p).__name__}")
            if p.data.dtype not in (np.float32, np.float64):
                raise TypeError(f"{type(self).__name__} needs float32/float64 parameters, got {p.data.dtype}")
            if id(p) in seen:
                raise ValueError("a parameter appears in more than one parameter group (or twice in one)")
            seen.add(id(p))
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}, "params": params}
        self._check_options(full)
        self.param_groups.append(full)

    def _check_options(self, group):
        """Validate one group's options (subclasses raise ValueError on bad values)."""

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = np.asarray(p.grad)
                if grad.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: gradient of shape {grad.shape} "
                                     f"for a parameter of shape {p.data.shape}")
                self._update(p, grad.astype(p.data.dtype, copy=False), group, self.state.setdefault(p, {}))

    def _update(self, p, grad, group, state):
        raise NotImplementedError

    # ---- state --------------------------------------------------------------
    def _all_params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{"state": {index: {name: value}}, "param_groups": [{option: value, "params": [indices]}]}."""
        index = {id(p): i for i, p in enumerate(self._all_params())}
        state = {index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for p, s in self.state.items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(groups)} parameter groups saved, "
                             f"{len(self.param_groups)} in this optimizer")
        for saved, own in zip(groups, self.param_groups):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"load_state_dict: a group with {len(saved['params'])} parameters saved, "
                                 f"{len(own['params'])} in this optimizer's group")
        params = self._all_params()
        new_state = {}
        for i, entries in state_dict["state"].items():
            i = int(i)
            if not 0 <= i < len(params):
                raise ValueError(f"load_state_dict: state for parameter {i}, but there are {len(params)}")
            new_state[params[i]] = {k: _state_value(k, v, params[i], i) for k, v in entries.items()}
        for saved, own in zip(groups, self.param_groups):
            own.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state


def _state_value(key, value, p, i):
    """A saved state entry as the optimizer keeps it: "step" an int, the rest arrays like p (a float64
    state cast to a float32 parameter's dtype, as the weights are); state_complaint's checks first."""
    complaint = state_complaint(key, value)
    if complaint:
        raise ValueError(f"load_state_dict: parameter {i}'s state {key} {complaint}")
    if key == "step":
        return int(value)
    if np.shape(value) != p.data.shape:
        raise ValueError(f"load_state_dict: state {key!r} of parameter {i} has shape {np.shape(value)}, "
                         f"the parameter has {p.data.shape}")
    return np.array(value, dtype=p.data.dtype)


def state_complaint(key, value):
    """Why a saved per-parameter state entry is refused, as "must be ..., got ..." (its name goes before
    it), or None: "step" a whole number >= 0 (a 0-d integer), any other entry (a moment, a momentum
    buffer) a finite floating-point array."""
    arr = np.asarray(value)
    if key == "step":
        if isinstance(value, bool) or arr.ndim or arr.dtype.kind not in "iu" or arr < 0:
            return f"must be a whole number >= 0, got {_shown(arr)}"
        return None
    if arr.dtype.kind != "f":
        return f"must be a floating-point array, got {arr.dtype}"
    if not np.isfinite(arr).all():
        return f"must be finite, got {int(arr.size - np.isfinite(arr).sum()):,} NaN or inf values"
    return None


def _shown(arr):
    """A short text for a value: the number itself for a scalar, else its dtype and shape."""
    return repr(arr.item()) if arr.size == 1 and arr.dtype.kind in "biuf" else f"a {arr.dtype} array {arr.shape}"


def optimizer_state_to_arrays(opt, prefix="optimizer."):
    """Flatten opt.state_dict() to {name: ndarray} (save with mt.save / np.savez)."""
    sd, out = opt.state_dict(), {}
    for i, entries in sd["state"].items():
        for key, value in entries.items():
            out[f"{prefix}state.{i}.{key}"] = np.asarray(value)
    for g, group in enumerate(sd["param_groups"]):
        for key, value in group.items():
            out[f"{prefix}param_groups.{g}.{key}"] = np.asarray(value)
    return out


def optimizer_state_from_arrays(arrays, prefix="optimizer."):
    """Inverse of optimizer_state_to_arrays: {name: ndarray} -> a state_dict for load_state_dict."""
    state, groups = {}, {}
    for name, value in arrays.items():
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"optimizer_state_from_arrays: unexpected entry {name!r} (expected "
                             f"{prefix}state.<i>.<key> or {prefix}param_groups.<i>.<key>)")
        kind, index, key = parts
        value = np.asarray(value)
        if kind == "state":
            state.setdefault(int(index), {})[key] = value
        elif kind == "param_groups":
            groups.setdefault(int(index), {})[key] = _group_value(key, value)
        else:
            raise ValueError(f"optimizer_state_from_arrays: unexpected entry {name!r}")
    if not groups:
        raise ValueError(f"optimizer_state_from_arrays: no '{prefix}param_groups.*' entries")
    return {"state": state, "param_groups": [groups[g] for g in sorted(groups)]}


def _group_value(key, value):
    """Group options back to Python values: scalars, tuples (betas), lists of ints (params)."""
    if key == "params":
        return [int(i) for i in value.reshape(-1)]
    if value.ndim == 0:
        return value.item()
    return tuple(v.item() for v in value)
