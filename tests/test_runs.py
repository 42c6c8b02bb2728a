"""Runs lose nothing and surprise no one: `python -m minit2t train / eval` as a user meets them.

Each CLI test runs `python -m minit2t` in a subprocess (so exit codes, stderr and tracebacks are
the user's) on a tiny CIFAR-format dataset (200 training, 40 test images) and a tiny model: a
prelude patches the record count, the model size and, where a test needs it, a fault (Ctrl-C as a
real SIGINT, a NaN loss). No network: the download URL points nowhere.
"""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import minit2t as mt
from minit2t import runs, train

ROOT = Path(__file__).resolve().parent.parent
PER_FILE = 40                                     # records per batch file: 200 training, 40 test images
TINY = dict(embed_dim=32, depth=1, num_heads=2, token_dim=8)
PRELUDE = f"""
import os, signal, sys
import minit2t.data.cifar as cifar, minit2t.data.download as download, minit2t.runs as runs, minit2t.train as train
import minit2t.runlog as runlog
import minit2t as mt
from minit2t.cli import main
cifar.RECORDS_PER_FILE = {PER_FILE}
download.CIFAR10_URL = "file:///nonexistent/cifar-10-python.tar.gz"
_build = train.build
train.build = lambda cfg, steps: _build({{**cfg, "model_kwargs": {TINY!r}}}, steps)
"""
FAST = ["--batch-size", "20", "--warmup-epochs", "0.5", "--lr", "3e-3"]       # 10 steps an epoch


def write_dataset(folder):
    """A learnable CIFAR-format folder (binary layout): each class is a colour plus noise."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (10, 3))
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, PER_FILE)
        images = np.clip(colours[labels][:, :, None] + rng.normal(0, 40, (PER_FILE, 3, 1024)), 0, 255)
        records = np.concatenate([labels[:, None], images.reshape(PER_FILE, -1)], axis=1).astype(np.uint8)
        (folder / name).write_bytes(records.tobytes())
    return str(folder)


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "cifar-10-batches-bin")


def command(tmp_path, *args, hook=""):
    """(argv, env) of `python -m minit2t ARGS` with the prelude and an optional hook."""
    env = {k: v for k, v in os.environ.items() if k != "MINIT2T_DATA"}
    env["MINIT2T_CACHE"] = str(tmp_path / "empty-cache")              # no cached CIFAR-10
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = PRELUDE + textwrap.dedent(hook) + f"\nsys.exit(main({[str(a) for a in args]!r}))\n"
    return [sys.executable, "-c", code], env


def cli(tmp_path, *args, hook=""):
    """(exit code, stdout, stderr) of `python -m minit2t ARGS` with the prelude and an optional hook."""
    argv, env = command(tmp_path, *args, hook=hook)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


def lines(stream):
    """The lines of a stream as a terminal leaves them (a carriage return starts the line again)."""
    return [part.rsplit("\r", 1)[-1] for part in stream.rstrip("\n").split("\n")]


def assert_one_error_line(rc, err, *words, code=2):
    assert rc == code, err
    assert "Traceback" not in err, err
    errors = [line for line in lines(err) if line.startswith("error:")]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def checkpoint(out):
    return mt.load(os.path.join(out, runs.CHECKPOINT))


def history(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


# ---- an existing run is never overwritten without --overwrite -------------------------------------------
def test_existing_run_needs_resume_or_overwrite(tmp_path, dataset):
    out = str(tmp_path / "run")
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "2", *FAST)
    assert rc == 0, err
    before = Path(out, "last.npz").read_bytes()
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST)
    line = assert_one_error_line(rc, err, os.path.join(out, "last.npz"), "--resume", "--overwrite",
                                 "epoch 2 of 2")
    assert "epoch 1/" not in err, "trained before refusing"
    assert Path(out, "last.npz").read_bytes() == before, line
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", "--overwrite", *FAST)
    assert rc == 0, err
    assert "--overwrite: removed the previous run (epoch 2 of 2)" in err
    assert [h["epoch"] for h in history(out)] == [1] and int(checkpoint(out)["epoch"]) == 1


# ---- --resume with other settings: --epochs extends (said), others are refused (named) --------------------
def test_resume_extends_epochs_and_states_the_schedule(tmp_path, dataset):
    out = str(tmp_path / "run")
    assert cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "2", *FAST)[0] == 0
    rc, stdout, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--resume", "--epochs", "3")
    assert rc == 0, err
    said = [line for line in lines(err) if line.startswith("--epochs 2 -> 3")]
    assert len(said) == 1 and "recomputed over 3 epochs (30 steps" in said[0], err
    assert [h["epoch"] for h in history(out)] == [1, 2, 3]
    assert json.loads(str(checkpoint(out)["run_config"]))["epochs"] == 3
    assert stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--resume")       # finished: said so
    assert rc == 0 and "the run has done all its 3 epochs, nothing to train" in err, err


def test_resume_refuses_changed_settings_naming_each(tmp_path, dataset):
    out = str(tmp_path / "run")
    assert cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST)[0] == 0
    before = Path(out, "last.npz").read_bytes()
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--resume", "--epochs", "2",
                     "--lr", "0.01", "--batch-size", "10", "--seed", "0")
    line = assert_one_error_line(rc, err, "--lr 0.01 (the run's: 0.003)", "--batch-size 10 (the run's: 20)",
                                 "--overwrite")
    assert "--seed" not in line and "--epochs" not in line                # the same, or changeable
    assert Path(out, "last.npz").read_bytes() == before
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--resume", "--epochs", "2", *FAST)
    assert rc == 0, err                                                   # the same settings, given again


# ---- Ctrl-C: one line saying how to resume, exit code 130, no traceback -------------------------------------
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, dataset):
    out = str(tmp_path / "run")
    hook = """
    _step, _calls = mt.optim.AdamW.step, [0]
    def step(self):
        _calls[0] += 1
        if _calls[0] == 14:                                   # epoch 2, step 4: a real SIGINT, as Ctrl-C sends
            os.kill(os.getpid(), signal.SIGINT)
        _step(self)
    mt.optim.AdamW.step = step
    """
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "3", *FAST, hook=hook)
    assert rc == 130, err
    assert "Traceback" not in err, err
    assert lines(err)[-1] == (f"interrupted at epoch 2, step 4 of 10; the last checkpoint is "
                              f"{os.path.join(out, 'last.npz')} (epoch 1): rerun with --resume"), err
    assert not Path(out, runs.LOCK).exists()                              # the lock goes with the run
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "3", "--resume", *FAST)
    assert rc == 0, err
    assert [h["epoch"] for h in history(out)] == [1, 2, 3]


def test_ctrl_c_before_the_first_checkpoint_leaves_no_folder(tmp_path, dataset):
    out = tmp_path / "new" / "run"
    hook = """
    _step = mt.optim.AdamW.step
    def step(self):
        os.kill(os.getpid(), signal.SIGINT)
        _step(self)
    mt.optim.AdamW.step = step
    """
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "2", *FAST, hook=hook)
    assert rc == 130 and "Traceback" not in err, err
    assert lines(err)[-1] == ("interrupted at epoch 1, step 1 of 10, before the first checkpoint: nothing was "
                              "saved; rerun the command to start again"), err
    assert not (tmp_path / "new").exists()


# ---- one run at a time in a folder; a run that died leaves its lock to the next -----------------------------
def test_a_second_run_in_the_folder_is_refused_naming_the_first(tmp_path, dataset):
    out, gate = tmp_path / "run", tmp_path / "gate"
    hook = f"""
    import time
    _step = mt.optim.AdamW.step
    def step(self):                                           # the first run waits at its first step
        open({str(gate)!r} + ".reached", "w").close()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        _step(self)
    mt.optim.AdamW.step = step
    """
    argv, env = command(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "2", *FAST, hook=hook)
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not Path(f"{gate}.reached").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1]
        for flags in ([], ["--overwrite"]):
            rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST, *flags)
            assert_one_error_line(rc, err, str(out), f"(pid {first.pid}, ", "one run at a time")
            assert "epoch 1/" not in err, "trained beside the first run"
    finally:
        gate.touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert [h["epoch"] for h in history(out)] == [1, 2] and int(checkpoint(out)["epoch"]) == 2
    assert not (out / runs.LOCK).exists()


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path, dataset):
    out = tmp_path / "run"
    out.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    (out / ".lock").write_text(f"{dead}\n")                               # DIR/.lock, as docs/training.md says
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST)
    assert rc == 0, err
    said = [line for line in lines(err) if "taking over the lock" in line]
    assert len(said) == 1 and f"pid {dead}, which is no longer running" in said[0], err
    assert not (out / runs.LOCK).exists() and [h["epoch"] for h in history(out)] == [1]


# ---- --resume brings metrics.jsonl and curves.png back in line with the checkpoint ------------------------
def test_resume_repairs_the_files_a_kill_after_the_last_save_left(tmp_path, dataset):
    out = tmp_path / "run"
    hook = """
    _write = runlog.write_metrics
    def write_metrics(path, history):
        if len(history) == 2:                                 # killed between the checkpoint's save and the log's
            os.kill(os.getpid(), signal.SIGKILL)
        _write(path, history)
    runlog.write_metrics = write_metrics
    """
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "2", *FAST, hook=hook)
    assert rc == -9, err
    saved = json.loads(str(checkpoint(out)["history"]))
    assert len(saved) == 2 and len(history(out)) == 1                    # what the kill left
    curves = out / "curves.png"
    for broken in ("killed", "edited"):
        rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--resume")
        said = [line for line in lines(err) if "out of line with last.npz" in line]
        assert rc == 0 and len(said) == 1 and "nothing to train" in err, err
        assert said[0].startswith(f"{out}: metrics.jsonl and curves.png out of line with last.npz (2 epochs; "
                                  f"metrics.jsonl held {1 if broken == 'killed' else 2})"), said[0]
        assert ("taking over the lock" in err) == (broken == "killed"), err           # the killed run's lock
        assert history(out) == saved and os.path.getmtime(curves) >= os.path.getmtime(out / "last.npz")
        edited = (out / "metrics.jsonl").read_text().replace('"epoch": 2, "', '"epoch": 2, "note": 0, "')
        (out / "metrics.jsonl").write_text(edited)
        os.utime(curves, (1e9, 1e9))
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in saved))
    curves.touch()
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--resume")
    assert rc == 0 and "out of line" not in err, err                     # in line: not a word


# ---- the output folder: checked writable first; a failed run leaves no empty folder ----------------------------
def test_unwritable_out_is_an_error_before_any_training(tmp_path, dataset, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()
    real = runs.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and os.path.abspath(dir) == str(out):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("trained before finding that --out cannot be written")

    monkeypatch.setattr(runs.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(train, "train_one_epoch", never)
    monkeypatch.setattr(train, "load_data", lambda *a, **k: never())
    with pytest.raises(OSError, match=f"cannot write to --out {out}: Permission denied"):
        train.run(dict(model="t2t_vit_cifar", epochs=1, batch_size=20, lr=3e-3, min_lr=1e-5, weight_decay=0.05,
                       warmup_epochs=0.5, label_smoothing=0.1, clip_grad=1.0, mixup=False, seed=0, backend=None,
                       train_subset=None, crop_padding=4, model_kwargs=TINY), dataset, str(out))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to a read-only folder")
def test_read_only_out_through_the_cli(tmp_path, dataset):
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST)
    finally:
        out.chmod(0o755)
    assert_one_error_line(rc, err, f"cannot write to --out {out}")
    assert "epoch 1/" not in err


def test_failed_run_leaves_no_folder_it_made(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    rc, _, err = cli(tmp_path, "train", "--data", tmp_path / "nowhere", "--out", out, "--epochs", "1")
    assert_one_error_line(rc, err, "nowhere")
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    rc, _, err = cli(tmp_path, "train", "--data", tmp_path / "nowhere", "--out", kept, "--epochs", "1")
    assert rc == 2 and kept.is_dir()                                      # not made by the run: kept


# ---- temporary files a killed save left are removed at the next start or save --------------------------------
def test_stale_temp_files_are_removed(tmp_path, dataset):
    out = tmp_path / "run"
    out.mkdir()
    old = time.time() - 3600
    stale = [out / ".tmp-k1ll3d.npz", out / ".tmp-0a1b2c.npz", out / "metrics.jsonl.tmp"]
    keep = [out / ".tmp-notes.txt", out / "mine.npz", out / ".tmp-in-progress.npz"]
    for path in stale + keep:
        path.write_bytes(b"x" * 1000)
        os.utime(path, (old, old))
    future = time.time() + 3600                                           # a save being written right now
    os.utime(keep[-1], (future, future))
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST)
    assert rc == 0, err
    assert "removed 3 temporary files" in err and "interrupted save" in err, err
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    (out / ".tmp-later.npz").write_bytes(b"y")                            # killed during the next save
    os.utime(out / ".tmp-later.npz", (old, old))
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "2", "--resume")
    assert rc == 0 and "removed 1 temporary file" in err, err
    assert not (out / ".tmp-later.npz").exists()


# ---- eval: a progress line; NaN outputs are an error -------------------------------------------------------
def test_eval_shows_progress_and_refuses_nan(tmp_path, dataset):
    out = str(tmp_path / "run")
    assert cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "1", *FAST)[0] == 0
    ckpt = os.path.join(out, "last.npz")
    rc, stdout, err = cli(tmp_path, "eval", "--data", dataset, "--checkpoint", ckpt)
    assert rc == 0, err
    progress = [line for line in lines(err) if line.startswith("eval [")]
    assert progress and "40/40 images" in progress[-1] and "img/s" in progress[-1], err
    assert stdout.strip().splitlines()[-1].startswith("test accuracy: 0.")
    arrays = mt.load(ckpt)
    arrays["model.head.weight"] = np.full_like(arrays["model.head.weight"], np.nan)
    bad = str(tmp_path / "nan.npz")
    mt.save(arrays, bad)
    rc, stdout, err = cli(tmp_path, "eval", "--data", dataset, "--checkpoint", bad)
    assert_one_error_line(rc, err, "NaN")
    assert "test accuracy" not in stdout


def test_nan_logits_are_an_error_not_class_0():
    mt.manual_seed(0)
    model = mt.create_model("t2t_vit_cifar", **TINY)
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    labels = np.zeros(6, np.int64)
    assert 0.0 <= train.evaluate(model, images, labels) <= 1.0
    model.head.bias.data[3] = np.nan
    with pytest.raises(train.NonFiniteOutput, match=r"NaN or inf for 6 of 6 images .*head\.bias"):
        train.evaluate(model, images, labels)


# ---- the NaN guard's message starts its own line -----------------------------------------------------------
def test_nan_guard_message_starts_its_own_line(tmp_path, dataset):
    out = str(tmp_path / "run")
    hook = """
    _ce, _calls = train.cross_entropy, [0]
    def poisoned(logits, labels, label_smoothing=0.0):
        _calls[0] += 1
        loss = _ce(logits, labels, label_smoothing)
        return loss * float("nan") if _calls[0] > 15 else loss
    train.cross_entropy = poisoned
    """
    rc, _, err = cli(tmp_path, "train", "--data", dataset, "--out", out, "--epochs", "3", *FAST, hook=hook)
    assert_one_error_line(rc, err, "loss became nan at epoch 2, step 6")
    assert "\nerror: loss became nan" in err, repr(err[-300:])             # not glued to the progress line
    assert int(checkpoint(out)["epoch"]) == 1


# ---- no data given or found: the sample shipped in the package, said in one line ---------------------------
def test_train_and_eval_run_on_the_shipped_sample(tmp_path):
    out = str(tmp_path / "run")
    rc, stdout, err = cli(tmp_path, "train", "--out", out, "--epochs", "1", "--train-subset", "40", *FAST)
    assert rc == 0, err
    said = [line for line in lines(err) if "using the sample shipped with minit2t" in line]
    assert len(said) == 1 and "--data" in said[0] and "--download" in said[0], err
    run_config = json.loads(str(checkpoint(out)["run_config"]))
    assert run_config["data"] == "sample" and run_config["train_images"] == 40
    rc, stdout, err = cli(tmp_path, "eval", "--checkpoint", os.path.join(out, "last.npz"))
    assert rc == 0 and "500/500 images" in err, err
    assert stdout.strip().splitlines()[-1].startswith("test accuracy: 0.")
