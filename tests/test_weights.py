"""Weights files: one story for the three kinds (plain state dict, shipped model, training checkpoint),
checked reading (sizes before allocation, no pickles, zip bombs), checked checkpoint metadata,
Module.to's dtypes, convert's errors, and train --init."""
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
from minit2t import hub, runs, train
from minit2t.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from minit2t.cli import main as cli_main
from minit2t.data import cifar
from minit2t.io import CHECKPOINT, SHIPPED, STATE_DICT, LoadError, read_weights
from helpers import run_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FILE = os.path.join(hub.WEIGHTS_DIR, "t2t_vit_cifar_8ep.npz")
TINY = dict(embed_dim=16, depth=1, num_heads=2, token_dim=4)
PER_FILE = 20
DROP = object()                      # a metadata key to remove


def _cfg(**over):
    return run_config(**dict(dict(epochs=2, batch_size=10, lr=1e-3, model_kwargs=TINY), **over))


def _files(tmp_path):
    """A tiny model and its weights as each of the three kinds: {kind: path}, model."""
    model, opt, sched = train.build(_cfg(), steps_per_epoch=2)
    for p in model.parameters():
        p.grad = np.zeros_like(p.data)
    opt.step()
    for _ in range(2):                                           # one epoch of two steps
        sched.step()
    history = [dict(epoch=1, train_loss=2.0, train_acc=0.1, test_acc=0.1, images_per_s=9.0, lr=1e-3,
                    wall_s=1.0, total_s=1.5)]
    paths = {kind: str(tmp_path / f"{name}.npz") for kind, name in
             ((STATE_DICT, "plain"), (SHIPPED, "shipped"), (CHECKPOINT, "last"))}
    mt.save(model.state_dict(), paths[STATE_DICT])
    model.default_cfg = mt.create_model("t2t_vit_cifar").default_cfg
    hub.export_pretrained(model, paths[SHIPPED])
    save_checkpoint(paths[CHECKPOINT], model, opt, sched, 1, history, _cfg())
    return paths, model


def _tamper(path, **members):
    """Rewrite members of an .npz: JSON-able values become JSON text, arrays stay arrays."""
    arrays = mt.load(path)
    for name, value in members.items():
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


def test_optimizer_learning_rate_is_checked(tmp_path):
    paths, model = _files(tmp_path)
    _tamper(paths[CHECKPOINT], **{"optimizer.param_groups.0.lr": np.array(-0.25)})
    with pytest.raises(LoadError, match="optimizer group 0 lr"):
        load_checkpoint(paths[CHECKPOINT], model)


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
