"""`train --steps N`: a run's budget in optimizer steps (the paper-claims comparison gives every model
the steps it runs in the same minutes). The schedule spans N, the last epoch ends early, the checkpoint
says so, and a killed run resumes to the weights an uninterrupted one ends with."""
import os

import numpy as np
import pytest

import minit2t as mt
from minit2t import runs, train
from minit2t.checkpoint import load_checkpoint
from minit2t.options import Invalid
from minit2t.recipe import check_run_config
from minit2t.cli import main as cli_main
from helpers import killed_at_step, run_config


def test_a_budget_of_steps_ends_inside_an_epoch_with_the_schedule_done(dataset, tmp_path):
    history = train.run(run_config(steps=25), dataset, str(tmp_path))    # 200 images, batch 20: 10 a epoch
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["steps"] for h in history] == [10, 20, 25]
    assert history[-1]["lr"] == pytest.approx(1e-5)                       # the cosine reached min_lr at 25
    saved = load_checkpoint(os.path.join(str(tmp_path), runs.CHECKPOINT))
    assert saved["schedule"]["total_steps"] == 25 and saved["run_config"]["epochs"] == 3


def test_a_killed_budget_run_resumes_exactly(dataset, tmp_path, monkeypatch):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    train.run(run_config(steps=25), dataset, full)
    killed_at_step(monkeypatch, 23, lambda: train.run(run_config(steps=25), dataset, killed))   # in the last epoch
    history = train.run(run_config(steps=25), dataset, killed, resume=True)
    assert history[-1]["steps"] == 25
    a, b = (load_checkpoint(os.path.join(d, runs.CHECKPOINT))["model"] for d in (full, killed))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_epochs_and_steps_together_are_one_line(tmp_path, capsys):
    assert cli_main(["train", "--epochs", "3", "--steps", "20", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--epochs 3 and --steps 20: give one" in err
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.parametrize("steps", [0, -3, 2.5, "ten", True])
def test_a_saved_budget_is_checked(steps):
    with pytest.raises(Invalid, match="run config steps"):
        check_run_config(dict(run_config(), steps=steps))
