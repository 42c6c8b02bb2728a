"""`python -m minit2t export`: a training run becomes a shipped model file (what mt.pretrained reads), its
log and curves beside it; the weights or their average; nothing overwritten without --overwrite; bad
input is one line. A tiny run on the learnable dataset of conftest.py."""
import os

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub, runs, train
from minit2t.checkpoint import load_checkpoint
from minit2t.cli import main as cli_main
from minit2t.io import SHIPPED, read_headers, weights_kind
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
