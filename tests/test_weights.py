"""Weights files: one story for the three kinds (plain state dict, shipped model, training checkpoint),
checked reading (sizes before allocation, no pickles, zip bombs, floating-point weights), checked
checkpoint metadata and arrays (every member tampered with once), Module.to's dtypes, convert's errors,
and train --init."""
import io
import json
import os
import pickle
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub, optim, runs, train
from minit2t.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from minit2t.cli import main as cli_main
from minit2t.data import cifar
from minit2t.io import CHECKPOINT, SHIPPED, STATE_DICT, LoadError, read_weights
from helpers import run_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FILE = os.path.join(hub.WEIGHTS_DIR, "t2t_vit_cifar_8ep.npz")
TINY = dict(embed_dim=16, depth=1, num_heads=2, token_dim=4)
PER_FILE = 20
DROP = object()                      # a metadata key or a member to remove


def _cfg(**over):
    return run_config(**dict(dict(epochs=2, batch_size=10, lr=1e-3, model_kwargs=TINY), **over))


def _files(tmp_path):
    """A tiny model and its weights as each of the three kinds: {kind: path}, model. The checkpoint
    holds the optimizer's state after one step and the weights' average after one update."""
    model, opt, sched = train.build(_cfg(), steps_per_epoch=2)
    for p in model.parameters():
        p.grad = np.full_like(p.data, 0.5)
    opt.step()
    ema = optim.EMA(model, 0.9)
    ema.update(model)
    for _ in range(2):                                           # one epoch of two steps
        sched.step()
    history = [dict(epoch=1, train_loss=2.0, train_acc=0.1, test_acc=0.1, images_per_s=9.0, lr=1e-3,
                    wall_s=1.0, total_s=1.5)]
    paths = {kind: str(tmp_path / f"{name}.npz") for kind, name in
             ((STATE_DICT, "plain"), (SHIPPED, "shipped"), (CHECKPOINT, "last"))}
    mt.save(model.state_dict(), paths[STATE_DICT])
    model.default_cfg = mt.create_model("t2t_vit_cifar").default_cfg
    hub.export_pretrained(model, paths[SHIPPED])
    save_checkpoint(paths[CHECKPOINT], model, opt, sched, 1, history, _cfg(), ema)
    return paths, model


def _tamper(path, **members):
    """Rewrite members of an .npz: JSON-able values become JSON text, arrays stay arrays, DROP removes."""
    arrays = mt.load(path)
    for name, value in members.items():
        if value is DROP:
            del arrays[name]
        else:
            arrays[name] = value if isinstance(value, np.ndarray) else np.array(json.dumps(value))
    mt.save(arrays, path)


def _meta(path, name):
    return json.loads(str(mt.load(path)[name]))


def _cli(*args):
    """python -m minit2t ARGS in a fresh process: (rc, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "minit2t", *args], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=300)
    return done.returncode, done.stdout, done.stderr


def _one_error_line(rc, err, *words):
    lines = err.strip().splitlines()
    assert rc != 0 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def _dataset(root):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (PER_FILE, 3073)).astype(np.uint8)
        records[:, 0] %= 10
        (folder / name).write_bytes(records.tobytes())
    return str(folder)


def _header(shape):
    """The .npy header of a float32 array of `shape`."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr="<f4", fortran_order=False, shape=shape))
    return header.getvalue()


def _npz_with_header(path, shape, data=b""):
    """An .npz whose one member declares `shape` in its header but holds `data`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", _header(shape) + data)


# ---- one story for the three kinds ------------------------------------------------------------

def test_every_kind_reads_as_the_models_state_dict(tmp_path):
    paths, model = _files(tmp_path)
    want = model.state_dict()
    for kind, path in paths.items():
        state, got_kind = read_weights(path, model)
        assert got_kind == kind and list(state) == list(want)
        assert all(np.array_equal(state[k], want[k]) for k in want)
        fresh = mt.create_model("t2t_vit_cifar", **TINY)
        fresh.load_state_dict(mt.load(path), strict=True)        # mt.load's dict, as it is
        assert all(np.array_equal(v, want[k]) for k, v in fresh.state_dict().items())


def test_load_state_dict_takes_the_shipped_file():
    model = mt.create_model("t2t_vit_cifar")
    model.load_state_dict(mt.load(SHIPPED_FILE), strict=True)
    np.testing.assert_array_equal(model.head.weight.data, mt.pretrained("t2t_vit_cifar_8ep").head.weight.data)


def test_eval_checkpoint_takes_every_kind(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", PER_FILE)
    data = _dataset(tmp_path)
    paths, _ = _files(tmp_path)
    for kind, path in paths.items():
        extra = ["--model", "t2t_vit_cifar"] if kind == STATE_DICT else []
        if kind == STATE_DICT:                                  # a tiny model is not the named one
            mt.save(mt.create_model("t2t_vit_cifar").state_dict(), path)
        assert cli_main(["eval", "--data", data, "--checkpoint", path, *extra]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test accuracy: ")


def test_eval_of_a_plain_state_dict_without_model_says_what_it_needs(tmp_path):
    paths, _ = _files(tmp_path)
    rc, _, err = _cli("eval", "--checkpoint", paths[STATE_DICT], "--data", str(tmp_path / "none"))
    _one_error_line(rc, err, paths[STATE_DICT], "plain state dict", "--model")


def test_convert_takes_every_kind(tmp_path):
    torch = pytest.importorskip("torch")
    paths, model = _files(tmp_path)
    for kind, path in paths.items():
        out = str(tmp_path / "out.pth")
        assert cli_main(["convert", path, out]) == 0
        state = torch.load(out, weights_only=True)
        assert list(state) == list(model.state_dict()), kind


# ---- checked reading ----------------------------------------------------------------------------

def test_huge_declared_shape_is_one_line_not_a_memory_error(tmp_path):
    path = str(tmp_path / "huge.npz")
    _npz_with_header(path, (10 ** 12,))
    with pytest.raises(LoadError, match="huge.npz") as info:
        mt.load(path)
    assert "\n" not in str(info.value)


def test_zip_bomb_is_refused_before_it_is_expanded(tmp_path):
    path = str(tmp_path / "bomb.npz")
    n = 2 ** 28 + 2 ** 20                                        # float32 zeros: just over 1 GiB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z, \
            z.open("w.npy", "w", force_zip64=True) as f:
        f.write(_header((n,)))
        chunk = bytes(1 << 24)
        for start in range(0, 4 * n, len(chunk)):
            f.write(chunk[:min(len(chunk), 4 * n - start)])
    assert os.path.getsize(path) < 8 << 20
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match="limit"):
            mt.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak:,} bytes allocated"


def test_zip_entry_must_hold_exactly_the_declared_bytes(tmp_path):
    path = str(tmp_path / "odd.npz")
    _npz_with_header(path, (4,), data=bytes(16 + 4096))
    with pytest.raises(LoadError, match="declares 16 bytes"):
        mt.load(path)


def test_pickles_are_never_loaded(tmp_path):
    path = str(tmp_path / "obj.npz")
    np.savez(path, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(LoadError, match="never loaded"):
        mt.load(path)


def test_damaged_files_are_one_line_naming_the_file(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, a=np.arange(1000.0))
    data = good.read_bytes()
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    (tmp_path / "flipped.npz").write_bytes(data[:60] + bytes([data[60] ^ 0xFF]) + data[61:])
    for name in ("single.npy", "cut.npz", "flipped.npz"):
        with pytest.raises(LoadError, match=name) as info:
            mt.load(tmp_path / name)
        assert "\n" not in str(info.value)


def test_shapes_are_checked_against_the_model_before_reading(tmp_path, monkeypatch):
    paths, model = _files(tmp_path)
    other = mt.create_model("t2t_vit_cifar", **dict(TINY, embed_dim=8))
    monkeypatch.setattr("minit2t.io._Npz._read", lambda *a: pytest.fail("read data before checking"))
    for path in paths.values():
        with pytest.raises(LoadError, match=r"has shape \(1, 1, 16\) in the file but \(1, 1, 8\)"):
            read_weights(path, other)


# ---- checkpoint metadata ------------------------------------------------------------------------

@pytest.mark.parametrize("member,value,words", [
    ("schedule", dict(last_step=-1000), "schedule last_step"),
    ("epoch", np.array(1e30), "epoch"),
    ("epoch", np.array(1.7), "epoch"),
    ("epoch", np.array(10 ** 9), "epoch"),
    ("history", "not a list", "history must be a list"),
    ("history", {}, "history must be a list"),
    ("history", [dict(epoch=1, train_loss=2.0, train_acc=0.1, test_acc=0.1, images_per_s=9.0, lr=1e-3)],
     "wall_s"),
    ("run_config", dict(mixup=DROP), r"lacks \['mixup'\]"),
    ("run_config", dict(mixup=None), "mixup must be True or False, got None"),
    ("run_config", dict(lr=-0.25), "run config lr"),
    ("run_config", dict(lr=float("nan")), "NaN"),
    ("model_config", dict(depth=100000), "depth"),
    ("model_config", dict(depth=2), "2 but the weights hold 1 blocks"),
    ("rng", dict(bit_generator="PCG64", state=-1), "rng"),
    ("run_config", dict(lr=1e9), r"run config lr 1000000000.0 but schedule base_lrs\[0\] is 0.001"),
    ("schedule", dict(base_lrs=[1e9, 1e9]), r"run config lr 0.001 but schedule base_lrs\[0\] is 1000000000.0"),
    ("schedule", dict(min_lr=0.5), "run config min_lr 1e-05 but schedule min_lr is 0.5"),
])
def test_checkpoint_metadata_is_checked(tmp_path, member, value, words):
    paths, _ = _files(tmp_path)
    path = paths[CHECKPOINT]
    if isinstance(value, dict) and value and member != "rng":
        value = {k: v for k, v in {**_meta(path, member), **value}.items() if v is not DROP}
    _tamper(path, **{member: value})
    with pytest.raises(LoadError, match=words) as info:
        read_checkpoint_meta(path)
    assert path in str(info.value) and "\n" not in str(info.value)


def _edit(arr, how):
    """`arr` tampered with as `how` says: cast to another dtype, or its first entry changed."""
    if how in ("int64", "bool", "uint8", "complex128"):
        return arr.astype(how)
    out = arr.copy()
    out.flat[0] = {"nan": np.nan, "inf": np.inf, "negative": -1.0, "repeat": out.flat[-1]}[how]
    return out


@pytest.mark.parametrize("member,value,words", [
    ("model.head.weight", "int64", r"'model.head.weight' must be a floating-point array \(float32 or float64\), "
                                   "got int64"),
    ("model.head.weight", "bool", "must be a floating-point array .*got bool"),
    ("model.head.weight", "complex128", "'model.head.weight': dtype complex128 is not a plain number"),
    ("ema.head.weight", "int64", "'ema.head.weight' must be a floating-point array .*got int64"),
    ("ema.head.weight", DROP, r"must hold ema.<name> for every weight .*missing \[ema.head.weight\]"),
    ("ema.updates", DROP, r"missing \[ema.updates\]"),
    ("ema.updates", np.array(-1), "ema.updates .* from 0 to 2, got -1"),
    ("ema.updates", np.array(3), r"ema.updates \(at most the schedule's last_step\) .* from 0 to 2, got 3"),
    ("ema.updates", np.array(1.0), "ema.updates must be a whole number, got an array of dtype float64"),
    ("optimizer.state.0.step", np.array(-3), "optimizer.state.0.step must be a whole number >= 0, got -3"),
    ("optimizer.state.0.step", np.array(1.5), "state.0.step must be a whole number, got an array of dtype float64"),
    ("optimizer.state.0.step", np.array(3), r"optimizer.state.0.step \(at most .*last_step\) .* got 3"),
    ("optimizer.state.0.step", DROP, r"optimizer.state.0.\* holds \['exp_avg', 'exp_avg_sq'\]; AdamW keeps"),
    ("optimizer.state.0.exp_avg", "nan", "optimizer.state.0.exp_avg must be finite, got 1 NaN or inf"),
    ("optimizer.state.0.exp_avg", "int64", "optimizer.state.0.exp_avg must be a floating-point array, got int64"),
    ("optimizer.state.0.exp_avg", np.zeros(3, np.float32), r"exp_avg has shape \(3,\) in the file but"),
    ("optimizer.state.0.exp_avg_sq", "negative", "optimizer.state.0.exp_avg_sq must be >= 0 .*got 1 negative"),
    ("optimizer.state.0.exp_avg_sq", "inf", "optimizer.state.0.exp_avg_sq must be finite"),
    ("optimizer.state.0.momentum", np.zeros(1, np.float32), "AdamW keeps .* not 'momentum'"),
    ("optimizer.state.99.step", np.array(1), r"state.99.\* is the state of parameter 99, but the groups hold 40"),
    ("optimizer.param_groups.0.lr", np.array(-0.25), "optimizer.param_groups.0.lr must be .* at least 0"),
    ("optimizer.param_groups.0.lr", np.array(1e9), "optimizer.param_groups.0.lr .* at most 0.001, got 1000000000.0"),
    ("optimizer.param_groups.0.initial_lr", np.array(1e9),
     r"optimizer.param_groups.0.initial_lr 1000000000.0 but schedule base_lrs\[0\] is 0.001"),
    ("optimizer.param_groups.0.initial_lr", DROP, r"optimizer.param_groups.0.\* lacks \['initial_lr'\]"),
    ("optimizer.param_groups.0.betas", np.array([1.0, 0.999]), "optimizer.param_groups.0.betas .* below 1, got 1.0"),
    ("optimizer.param_groups.0.betas", np.array([0.9, 0.999, 0.5]), "betas must be two numbers"),
    ("optimizer.param_groups.0.eps", np.array(-1e-8), "optimizer.param_groups.0.eps .* at least 0, got -1e-08"),
    ("optimizer.param_groups.0.eps", np.array("1e-8"), "eps must be a number, got an array of dtype <U4"),
    ("optimizer.param_groups.1.weight_decay", np.array(0.5),
     "param_groups.1.weight_decay 0.5 but the run config's weight_decay is 0.05"),
    ("optimizer.param_groups.0.params", "repeat", "number the 40 parameters 0 to 39 once each"),
    ("optimizer.param_groups.0.params", np.zeros((2, 2), np.int64), "params must be a list of parameter indices"),
    ("optimizer.param_groups.0.amsgrad", np.array(True), "not 'amsgrad'"),
    ("optimizer.param_groups.2.lr", np.array(1e-3), "3 parameter groups but the schedule's base_lrs has 2 entries"),
    ("optimizer.bogus", np.array(1.0), "optimizer.bogus is not an optimizer member"),
])
def test_checkpoint_arrays_are_checked(tmp_path, member, value, words):
    """Each member of a training checkpoint tampered with once: one line naming the file, the member (or
    field), what it must be and what came, before the model or optimizer sees it."""
    paths, _ = _files(tmp_path)
    path = paths[CHECKPOINT]
    if isinstance(value, str):
        value = _edit(mt.load(path)[member], value)
    _tamper(path, **{member: value})
    model, opt, _ = train.build(_cfg(), steps_per_epoch=2)
    with pytest.raises(LoadError, match=words) as info:
        load_checkpoint(path, model, opt)
    assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_optimizer_load_state_dict_checks_each_state_entry():
    """The same checks for a state dict in memory (Optimizer.load_state_dict), before anything changes."""
    model, opt, _ = train.build(_cfg(), steps_per_epoch=2)
    for p in model.parameters():
        p.grad = np.full_like(p.data, 0.5)
    opt.step()
    for key, value, words in (("step", -3, "parameter 0's state step must be a whole number >= 0, got -3"),
                              ("step", True, "step must be a whole number >= 0, got True"),
                              ("exp_avg", np.full((1, 1, 16), np.nan), "parameter 0's state exp_avg must be finite"),
                              ("exp_avg_sq", np.zeros((1, 1, 16), np.int64), "must be a floating-point array")):
        state = opt.state_dict()
        state["state"][0][key] = value
        with pytest.raises(ValueError, match=words):
            opt.load_state_dict(state)
    assert all(s["step"] == 1 for s in opt.state.values())


@pytest.mark.parametrize("dtype", ["int64", "bool", "uint8"])
def test_weights_must_be_floating_point_in_every_kind(tmp_path, dtype):
    paths, model = _files(tmp_path)
    for kind, path in paths.items():
        name = "head.weight" if kind == STATE_DICT else "model.head.weight"
        _tamper(path, **{name: mt.load(path)[name].astype(dtype)})
        readers = [lambda: read_weights(path, model), lambda: read_weights(path),
                   lambda: hub.load_model(path, "t2t_vit_cifar", **TINY)]
        if kind != STATE_DICT:
            readers.append(lambda: mt.load(path))               # a plain .npz of any arrays reads as it is
        for read in readers:
            with pytest.raises(LoadError, match=f"'{name}' must be a floating-point array .*got {dtype}") as info:
                read()
            assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_float64_weights_load_into_a_float32_model_as_torch_casts(tmp_path):
    paths, model = _files(tmp_path)
    path = paths[STATE_DICT]
    mt.save({k: v.astype(np.float64) for k, v in model.state_dict().items()}, path)
    loaded, _ = hub.load_model(path, "t2t_vit_cifar", **TINY)
    assert all(v.dtype == np.float32 and np.array_equal(v, model.state_dict()[k])
               for k, v in loaded.state_dict().items())


def test_a_run_ending_at_min_lr_0_loads(tmp_path):
    """At the end of a cosine to min_lr 0 every group's lr is 0: a learning rate, not a broken file."""
    cfg = _cfg(min_lr=0.0, epochs=1)
    model, opt, sched = train.build(cfg, steps_per_epoch=2)
    for _ in range(2):
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    history = [dict(epoch=1, train_loss=2.0, train_acc=0.1, test_acc=0.1, images_per_s=9.0, lr=0.0, wall_s=1.0)]
    path = str(tmp_path / "last.npz")
    save_checkpoint(path, model, opt, sched, 1, history, cfg)
    assert load_checkpoint(path, model, opt)["optimizer"]["param_groups"][0]["lr"] == 0.0


def test_resume_and_eval_refuse_a_tampered_checkpoint_in_one_line(tmp_path):
    paths, _ = _files(tmp_path)
    path = paths[CHECKPOINT]
    _tamper(path, schedule={**_meta(path, "schedule"), "last_step": -1000})
    rc, _, err = _cli("train", "--out", str(tmp_path), "--resume", "--data", str(tmp_path / "none"))
    _one_error_line(rc, err, path, "last_step")
    _tamper(path, schedule={**_meta(path, "schedule"), "last_step": 2},
            model_config={**_meta(path, "model_config"), "depth": 100000})
    rc, _, err = _cli("eval", "--checkpoint", path, "--data", str(tmp_path / "none"))
    _one_error_line(rc, err, path, "depth")


def test_resume_refuses_integer_weights_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", PER_FILE)
    data = _dataset(tmp_path)
    paths, _ = _files(tmp_path)
    path = paths[CHECKPOINT]
    _tamper(path, **{"model.head.weight": mt.load(path)["model.head.weight"].astype(np.int64)})
    rc = cli_main(["train", "--out", str(tmp_path), "--resume", "--data", data])
    _one_error_line(rc, capsys.readouterr().err, path, "model.head.weight", "floating-point", "int64")


# ---- Module.to and load_state_dict's dtypes ---------------------------------------------------

def test_to_takes_float32_float64_and_cpu_only():
    model = mt.create_model("t2t_vit_cifar", **TINY)
    before = model.state_dict()
    for bad, name in ((np.int32, "int32"), ("float16", "float16"), (None, "None"), ("cuda", "cuda")):
        with pytest.raises(TypeError, match=name):
            model.to(bad)
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.to("cpu") is model and model.head.weight.dtype == np.float32
    assert model.to("float64").head.weight.dtype == np.float64
    assert model.to(np.float32).head.weight.dtype == np.float32


def test_load_state_dict_casts_to_the_parameters_dtype():
    model = mt.create_model("t2t_vit_cifar", **TINY)
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}


def test_refused_load_changes_nothing_and_says_it_in_one_short_line():
    model = mt.create_model("t2t_vit_cifar", **TINY)
    before = model.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    bad["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="head.weight"):
        model.load_state_dict(bad)
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(KeyError) as info:
        mt.create_model("t2t_vit_cifar").load_state_dict({"x": np.zeros(1)})
    assert "(107 in all)" in str(info.value) and len(str(info.value)) < 300


# ---- convert's errors ---------------------------------------------------------------------------

def test_convert_bad_pth_is_one_line(tmp_path):
    pytest.importorskip("torch")
    garbage, pickled = tmp_path / "garbage.pth", tmp_path / "pickled.pth"
    garbage.write_bytes(b"not a checkpoint " * 8)
    pickled.write_bytes(pickle.dumps({"w": os.getcwd}))              # a reference to code, not data
    for src in (garbage, pickled):
        rc, _, err = _cli("convert", str(src), str(tmp_path / "out.npz"))
        line = _one_error_line(rc, err, str(src))
        assert "weights_only=False" not in line and not (tmp_path / "out.npz").exists()


# ---- train --init -------------------------------------------------------------------------------

def test_train_init_starts_from_the_given_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", PER_FILE)
    monkeypatch.setattr(train, "train_one_epoch", lambda *a: (1.0, 0.5, 10.0))   # no steps: weights as loaded
    monkeypatch.setattr(runs, "plot_curves", lambda *a: None)
    data = _dataset(tmp_path)
    paths, model = _files(tmp_path)
    cases = [("pretrained:t2t_vit_cifar", {}, mt.pretrained("t2t_vit_cifar").state_dict()),
             (paths[CHECKPOINT], TINY, model.state_dict())]
    for i, (spec, kwargs, want) in enumerate(cases):
        out = str(tmp_path / f"run{i}")
        train.run(_cfg(epochs=1, model_kwargs=kwargs), data, out, init=spec)
        got = mt.load(os.path.join(out, runs.CHECKPOINT))
        assert all(np.array_equal(got[f"model.{k}"], v) for k, v in want.items())
        assert not any(k.startswith("optimizer.state") for k in got)     # a fresh optimiser


def test_train_init_errors_are_one_line(tmp_path):
    paths, _ = _files(tmp_path)
    none = str(tmp_path / "none")
    rc, _, err = _cli("train", "--out", str(tmp_path / "o"), "--init", paths[STATE_DICT], "--resume", "--data", none)
    _one_error_line(rc, err, "--init", "--resume")
    rc, _, err = _cli("train", "--out", str(tmp_path / "o"), "--init", "pretrained:nope", "--data", none)
    _one_error_line(rc, err, "nope")
