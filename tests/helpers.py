"""Shared checks for the op tests: against torch, and against finite differences.

Both run an op forward, send one random upstream gradient back through it,
and compare every input gradient. Comparisons are norm-wise:
    ||got - want|| <= atol + rtol * ||want||
"""
import os

import numpy as np
import pytest

import minit2t as mt
import minit2t.backends as backends
from minit2t.ops.function import Context

F64 = (1e-10, 1e-12)            # (rtol, atol) of a float64 comparison with torch


def relative_error(a, b):
    """||a - b|| / max(||b||, tiny), norm-wise over all elements."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def assert_close(got, want, rtol, atol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    diff = float(np.linalg.norm(got.astype(np.float64) - want.astype(np.float64)))
    bound = atol + rtol * float(np.linalg.norm(want.astype(np.float64)))
    assert diff <= bound, (f"{what}: ||got - want|| = {diff:.3e} > {bound:.3e} "
                           f"(relative error {relative_error(got, want):.3e})")


class on_backend:
    """with on_backend(name): ... runs the ops on that backend (skips when it cannot load)."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.previous = backends.get_backend().name
        try:
            backends.set_backend(self.name)
        except (ImportError, RuntimeError) as exc:
            pytest.skip(str(exc))

    def __exit__(self, *exc):
        backends.set_backend(self.previous)


def _is_float(a):
    return np.asarray(a).dtype.kind == "f"


def _upstream(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check_against_torch(mt_fn, torch_fn, arrays, rtol, atol, grad_out_seed=0):
    """Run mt_fn on minit2t tensors and torch_fn on torch tensors made from the same
    ndarrays; compare outputs, then the gradients of every float input for one random
    upstream gradient. Returns the minit2t output."""
    import torch
    mt_in = [mt.tensor(a, requires_grad=_is_float(a)) for a in arrays]
    th_in = [torch.tensor(np.array(a), requires_grad=_is_float(a)) for a in arrays]
    out, ref = mt_fn(*mt_in), torch_fn(*th_in)
    want = ref.detach().numpy()
    assert out.dtype == want.dtype, f"output dtype {out.dtype} != torch's {want.dtype}"
    assert_close(out.data, want, rtol, atol, "forward")
    g = _upstream(out.shape, out.dtype, grad_out_seed)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    for i, (t, r) in enumerate(zip(mt_in, th_in)):
        if not t.requires_grad:
            continue
        assert t.grad is not None, f"input {i}: no gradient"
        assert t.grad.dtype == t.dtype, f"input {i}: gradient dtype {t.grad.dtype} != {t.dtype}"
        assert_close(t.grad, r.grad.numpy(), rtol, atol, f"gradient of input {i}")
    return out


def numerical_grad_check(fn, arrays, eps=1e-6, rtol=1e-6, atol=1e-8, seed=0):
    """Central finite differences (float64) of s = <fn(x), R> against the engine's gradient.

    The float arrays are perturbed in place (and restored), so non-contiguous views
    stay non-contiguous; integer arrays are passed through as constants."""
    arrays = [np.asarray(a) for a in arrays]
    for a in arrays:
        assert a.dtype.kind != "f" or a.dtype == np.float64, f"finite differences need float64, got {a.dtype}"
    inputs = [mt.tensor(a, requires_grad=_is_float(a)) for a in arrays]
    out = fn(*inputs)
    R = _upstream(out.shape, np.float64, seed)
    out.backward(R)

    def s():
        with mt.no_grad():
            return float(np.sum(fn(*[mt.tensor(a) for a in arrays]).data * R))

    for i, a in enumerate(arrays):
        if not _is_float(a):
            continue
        num = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + eps
            plus = s()
            a[idx] = old - eps
            minus = s()
            a[idx] = old
            num[idx] = (plus - minus) / (2 * eps)
        assert inputs[i].grad is not None, f"input {i}: no gradient"
        assert_close(inputs[i].grad, num, rtol, atol, f"input {i} vs finite differences")


def layer_run(layer, x, g, bf16=False):
    """layer(x) (under autocast with bf16) and its backward for upstream g -> (y, gx, [param grads]): what
    a fused path and the steps it stands for are compared on."""
    layer.zero_grad()
    xt = mt.tensor(x, requires_grad=True)
    with mt.autocast("bfloat16", enabled=bf16):
        y = layer(xt)
    y.backward(g)
    return y.data, xt.grad, [p.grad.copy() for p in layer.parameters()]


def reference(op, *arrays, grad=None, **options):
    """The reference op's output on float64 copies of `arrays`; with `grad`, also its
    input gradients (one per array)."""
    ctx = Context(op)
    y = op.forward(ctx, *(a.astype(np.float64) for a in arrays), **options)
    return y if grad is None else (y, op.backward(ctx, grad.astype(np.float64)))


TINY = dict(embed_dim=32, depth=1, num_heads=2, token_dim=8)       # a one-block t2t_vit_cifar


def killed_at_step(monkeypatch, n, run):
    """Call run() with AdamW's n-th step raising KeyboardInterrupt (a run killed there), then restore it."""
    real_step, calls = mt.optim.AdamW.step, {"n": 0}

    def dying_step(self):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        real_step(self)

    monkeypatch.setattr(mt.optim.AdamW, "step", dying_step)
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        monkeypatch.setattr(mt.optim.AdamW, "step", real_step)


def run_config(**over):
    """The settings of a short training run of a tiny model (minit2t.train's run config)."""
    cfg = dict(model="t2t_vit_cifar", epochs=3, batch_size=20, lr=3e-3, min_lr=1e-5, weight_decay=0.05,
               warmup_epochs=0.5, label_smoothing=0.1, clip_grad=1.0, mixup=False, seed=0, backend=None,
               train_subset=None, model_kwargs=TINY)
    cfg.update(over)
    return cfg


CIFAR = os.environ.get("MINIT2T_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                       "cifar-10-binary.tar.gz")       # for the shipped models' scores


def shipped_score(name, cli_main, capsys):
    """(the test accuracy `eval --pretrained name` prints on CIFAR, the last line of the model's log)."""
    assert cli_main(["eval", "--pretrained", name, "--data", CIFAR]) == 0
    got = float(capsys.readouterr().out.strip().splitlines()[-1].split(": ")[1])
    return got, mt.pretrained_log(name)[-1]
