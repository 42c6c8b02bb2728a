"""`python -m minit2t export`: a training run becomes a shipped model file (what mt.pretrained reads), its
log and curves beside it; the weights or their average; nothing overwritten without --overwrite; bad
input is one line. A tiny run on the learnable dataset of conftest.py."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import minit2t as mt
from minit2t import export, hub, runs, train
from minit2t.checkpoint import load_checkpoint
from minit2t.data import cifar
from minit2t.cli import main as cli_main
from minit2t.io import SHIPPED, read_headers, weights_kind
from conftest import PER_FILE, _write_dataset as write_dataset
from helpers import run_config


@pytest.fixture
def run_dir(dataset, tmp_path):
    out = str(tmp_path / "run")
    train.run(run_config(ema=0.9, epochs=2), dataset, out)
    return out


@pytest.mark.parametrize("ema", [False, True])
def test_export_writes_what_pretrained_reads(run_dir, tmp_path, monkeypatch, capsys, ema):
    checkpoint = os.path.join(run_dir, runs.CHECKPOINT)
    shipped = tmp_path / "weights"
    shipped.mkdir()
    assert cli_main(["export", "--checkpoint", checkpoint, "--out", str(shipped / "mine.npz")]
                    + (["--ema"] if ema else [])) == 0
    assert capsys.readouterr().out.startswith(f"wrote {shipped / 'mine.npz'}, ")
    assert weights_kind(read_headers(str(shipped / "mine.npz"))) == SHIPPED
    monkeypatch.setattr(hub, "WEIGHTS_DIR", str(shipped))
    model = mt.pretrained("mine")
    saved = load_checkpoint(checkpoint)
    want = saved["ema"] if ema else saved["model"]
    assert all(np.array_equal(v, want[k]) for k, v in model.state_dict().items())
    assert model.config == mt.create_model("t2t_vit_cifar", **run_config()["model_kwargs"]).config
    assert model.default_cfg["mean"] == list(mt.data.CIFAR10_MEAN) and model.default_cfg["input_size"] == (3, 32, 32)
    assert mt.pretrained_log("mine") == saved["history"]          # the log, from the checkpoint's history
    assert os.path.getsize(shipped / "mine.curves.png") > 1000


def test_nothing_is_overwritten_without_the_flag(run_dir, tmp_path, capsys):
    checkpoint = os.path.join(run_dir, runs.CHECKPOINT)
    out = tmp_path / "mine.npz"
    log = tmp_path / "mine.metrics.jsonl"
    log.write_text("a user's file\n")
    assert cli_main(["export", "--checkpoint", checkpoint, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{log} exists: pass --overwrite" in err[0]
    assert log.read_text() == "a user's file\n" and not out.exists()
    assert cli_main(["export", "--checkpoint", checkpoint, "--out", str(out), "--overwrite"]) == 0
    assert out.exists() and log.read_text().startswith('{"epoch": 1')


@pytest.mark.parametrize("args, words", [
    (["--out", "{tmp}/mine.pt"], "--out must name the model file, NAME.npz; got"),
    (["--out", "{tmp}/mine.npz", "--checkpoint", "{tmp}/none.npz"], "none.npz"),
    (["--out", "{tmp}/mine.npz", "--checkpoint", "{shipped}"], "is a shipped model file, not a training checkpoint"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, args, words):
    given = [a.format(tmp=tmp_path, shipped=hub.pretrained_path("t2t_vit_cifar_8ep")) for a in args]
    if "--checkpoint" not in given:
        given += ["--checkpoint", os.path.join(run_dir, runs.CHECKPOINT)]
    assert cli_main(["export"] + given) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "mine.npz").exists()


def test_ema_of_a_run_without_an_average_is_one_line(dataset, tmp_path, capsys):
    out = str(tmp_path / "plain")
    train.run(run_config(epochs=1), dataset, out)
    capsys.readouterr()
    assert cli_main(["export", "--checkpoint", os.path.join(out, runs.CHECKPOINT), "--out",
                     str(tmp_path / "mine.npz"), "--ema"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without --ema" in err[0]
    assert not (tmp_path / "mine.npz").exists()


# ---- an export is all its files or none: a failure or a kill at any point puts back what was there ----------
def snapshot(folder):
    """What a folder holds: each file's bytes (a folder, e.g. an export's own, as 'folder')."""
    return {p.name: p.read_bytes() if p.is_file() else "folder" for p in folder.iterdir()}


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """The checkpoint of one short run with a weights' average, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("one-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cifar, "RECORDS_PER_FILE", PER_FILE)
        train.run(run_config(ema=0.9, epochs=1), str(write_dataset(root)), str(root / "run"))
    return str(root / "run" / runs.CHECKPOINT)


@pytest.fixture
def shipped(one_run, tmp_path):
    """A folder with a user's file in it, and the checkpoint to export into it."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "notes.txt").write_text("a user's file\n")
    return folder, one_run


def faults(overwrite):
    steps = [(step, None) for step in ("export_pretrained", "write_metrics", "plot_curves")]
    return [(overwrite, step, n) for step, n in steps + [("_move", n) for n in ((1, 4, 6) if overwrite else (1, 3))]]


@pytest.mark.parametrize("overwrite, step, n", faults(False) + faults(True))
def test_a_failed_export_puts_back_what_was_there(shipped, monkeypatch, capsys, overwrite, step, n):
    folder, checkpoint = shipped
    out = str(folder / "mine.npz")
    if overwrite:                                             # an earlier export of another run, to be replaced
        export.export_run(checkpoint, out, ema=True)
    before, real, calls = snapshot(folder), getattr(export, step), []

    def fail(*args):
        calls.append(args)
        if n is None or len(calls) == n:
            raise (KeyboardInterrupt if len(calls) % 2 else SystemExit)()
        return real(*args)

    monkeypatch.setattr(export, step, fail)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        export.export_run(checkpoint, out, overwrite=overwrite)
    assert snapshot(folder) == before                        # nothing lost, nothing half-written, no temporaries
    monkeypatch.setattr(export, step, real)
    assert cli_main(["export", "--checkpoint", checkpoint, "--out", out] + ["--overwrite"] * overwrite) == 0
    assert sorted(snapshot(folder)) == ["mine.curves.png", "mine.metrics.jsonl", "mine.npz", "notes.txt"]


KILL = """
import os, signal, sys
import minit2t.export as export, minit2t.io as io
def kill(*args):
    os.kill(os.getpid(), signal.SIGKILL)
_move, calls = export._move, []
def move(src, dst):
    calls.append(dst)
    if len(calls) == {n}:
        kill()
    _move(src, dst)
export._move, io.os.fsync = move, (kill if {n} == 0 else io.os.fsync)   # 0: inside the model file's write
if {n} == -1:
    export._remove = lambda stage: kill()                                 # -1: after the last move
from minit2t.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize("overwrite, n", [(False, 0), (False, 3), (False, -1), (True, 2), (True, 6)])
def test_an_export_killed_outright_is_undone_at_the_next(shipped, capsys, overwrite, n):
    folder, checkpoint = shipped
    out = str(folder / "mine.npz")
    if overwrite:
        export.export_run(checkpoint, out, ema=True)
    before, root = snapshot(folder), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = ["export", "--checkpoint", checkpoint, "--out", out] + ["--overwrite"] * overwrite
    killed = subprocess.run([sys.executable, "-c", KILL.format(n=n, argv=argv)], cwd=root, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(folder) != before                        # a folder of its own left, files maybe moved
    capsys.readouterr()
    assert cli_main(["export", "--checkpoint", checkpoint, "--out", out]) == (2 if overwrite or n < 0 else 0)
    said = capsys.readouterr().err.strip().splitlines()
    assert said[0].startswith(f"{out}: an earlier export (pid ") and "; removed its temporary files (" in said[0]
    assert ("what was there before is back" in said[0]) == (n > 0), said
    assert ("that export is whole" in said[0]) == (n < 0), said
    if overwrite:                                             # the earlier export is back, whole: --overwrite it
        assert snapshot(folder) == before and "exists: pass --overwrite" in said[-1]
        assert cli_main(["export", "--checkpoint", checkpoint, "--out", out, "--overwrite"]) == 0
    assert sorted(snapshot(folder)) == ["mine.curves.png", "mine.metrics.jsonl", "mine.npz", "notes.txt"]
