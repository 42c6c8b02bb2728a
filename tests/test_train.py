"""The training job: loss falls on a small set, kill-and-resume ends with the same weights, the NaN guard."""
import json
import os

import numpy as np
import pytest

import minit2t as mt
from minit2t import runs, train
from minit2t.cli import main as cli_main
from helpers import killed_at_step, run_config

def _cfg(**over):
    return run_config(**over)


def _weights(out):
    return mt.load(os.path.join(out, runs.CHECKPOINT))


def test_loss_falls_and_outputs_are_written(dataset, tmp_path):
    out = str(tmp_path / "run")
    history = train.run(_cfg(epochs=4), dataset, out)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1
    lines = [json.loads(s) for s in open(os.path.join(out, "metrics.jsonl"))]
    assert [h["epoch"] for h in lines] == [1, 2, 3, 4]
    assert all(0.0 <= h["test_acc"] <= 1.0 for h in lines)
    assert os.path.exists(os.path.join(out, runs.CHECKPOINT))


def test_eval_every_scores_every_nth_epoch_and_the_last(dataset, tmp_path, capsys):
    """--eval-every 2 over 3 epochs: epochs 2 and 3 scored, epoch 1's row without test accuracy; the
    checkpoint, log and curves take such rows, and --resume --epochs 4 goes on from them (epoch 4 scored)."""
    out = str(tmp_path / "run")
    history = train.run(_cfg(epochs=3, eval_every=2), dataset, out)
    assert ["test_acc" in h for h in history] == [False, True, True]
    assert "test not scored (--eval-every 2)" in capsys.readouterr().out
    lines = [json.loads(s) for s in open(os.path.join(out, "metrics.jsonl"))]
    assert lines == json.loads(json.dumps(history))
    assert os.path.exists(os.path.join(out, "curves.png"))
    history = train.run(_cfg(epochs=4, eval_every=2), dataset, out, resume=True)
    assert ["test_acc" in h for h in history] == [False, True, True, True]


def test_a_run_saved_before_later_options_existed_resumes_with_their_defaults(dataset, tmp_path):
    """A checkpoint whose run config predates --precision and --eval-every (added_later) resumes, in
    fp32 and scoring every epoch, as its settings were then."""
    out = str(tmp_path / "run")
    train.run(_cfg(epochs=1), dataset, out)
    path = os.path.join(out, runs.CHECKPOINT)
    arrays = dict(np.load(path))
    run = json.loads(str(arrays["run_config"]))
    del run["precision"], run["eval_every"]
    arrays["run_config"] = np.array(json.dumps(run))
    np.savez(path, **arrays)
    history = train.run(_cfg(epochs=2), dataset, out, resume=True, given={"epochs": 2})
    assert ["test_acc" in h for h in history] == [True, True]
    saved = train.read_checkpoint_meta(path)["run_config"]
    assert (saved["precision"], saved["eval_every"]) == ("fp32", 1)


def test_killed_run_resumes_to_the_same_weights(dataset, tmp_path, monkeypatch):
    full = str(tmp_path / "full")
    train.run(_cfg(), dataset, full)
    killed = str(tmp_path / "killed")
    killed_at_step(monkeypatch, 23, lambda: train.run(_cfg(), dataset, killed))   # 10 steps an epoch: in epoch 3
    assert int(_weights(killed)["epoch"]) == 2
    history = train.run(_cfg(), dataset, killed, resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    a, b = _weights(full), _weights(killed)
    weights = [k for k in a if k.startswith("model.") or k.startswith("optimizer.state")]
    assert weights and all(np.array_equal(a[k], b[k]) for k in weights)


def test_bf16_run_records_its_precision_and_resumes_in_it(dataset, tmp_path, monkeypatch):
    """--precision bf16: the products run in bf16 (the weights end elsewhere than fp32's), the
    checkpoint records it, and a killed run resumes in bf16 to the same weights bit for bit;
    resuming it as fp32 is refused."""
    runs_ = {}
    for precision in ("fp32", "bf16"):
        runs_[precision] = str(tmp_path / precision)
        train.run(_cfg(epochs=2, precision=precision), dataset, runs_[precision])
    a, b = _weights(runs_["fp32"]), _weights(runs_["bf16"])
    assert not np.array_equal(a["model.head.weight"], b["model.head.weight"])
    assert train.read_checkpoint_meta(os.path.join(runs_["bf16"], runs.CHECKPOINT))["run_config"]["precision"] == "bf16"
    killed = str(tmp_path / "killed")
    killed_at_step(monkeypatch, 13, lambda: train.run(_cfg(epochs=2, precision="bf16"), dataset, killed))
    train.run(_cfg(epochs=2, precision="bf16"), dataset, killed, resume=True)
    c = _weights(killed)
    assert all(np.array_equal(b[k], c[k]) for k in b if k.startswith("model."))
    with pytest.raises(ValueError, match="precision"):
        train.run(_cfg(epochs=3, precision="fp32"), dataset, killed, resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(dataset, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    real_ce, calls = train.cross_entropy, {"n": 0}

    def poisoned(logits, labels, label_smoothing=0.0):
        calls["n"] += 1
        loss = real_ce(logits, labels, label_smoothing)
        return loss * float("nan") if calls["n"] > 15 else loss

    monkeypatch.setattr(train, "cross_entropy", poisoned)
    code = cli_main(["train", "--data", dataset, "--out", out, "--epochs", "3", "--batch-size", "20"])
    assert code == 2
    assert "loss became nan at epoch 2, step 6" in capsys.readouterr().err
    assert int(_weights(out)["epoch"]) == 1


def test_bad_flags_get_one_line(tmp_path, capsys):
    assert cli_main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
    with pytest.raises(SystemExit):
        cli_main(["train", "--epochs", "0", "--out", str(tmp_path)])


def test_eval_prints_accuracy_last(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    train.run(_cfg(epochs=1), dataset, out)
    capsys.readouterr()
    assert cli_main(["eval", "--data", dataset, "--checkpoint", os.path.join(out, runs.CHECKPOINT)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: 0.") and len(last) == len("test accuracy: 0.0000")


def test_eval_in_bf16_says_so_and_scores_close(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    train.run(_cfg(epochs=1), dataset, out)
    scores = {}
    for precision in ("fp32", "bf16"):
        capsys.readouterr()
        assert cli_main(["eval", "--data", dataset, "--checkpoint", os.path.join(out, runs.CHECKPOINT),
                         "--precision", precision]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert ("bf16 autocast" in lines[-2]) == (precision == "bf16")
        scores[precision] = float(lines[-1].split()[-1])
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.1        # 40 images: a few may change class at most
