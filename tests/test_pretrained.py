"""The shipped model: mt.pretrained("t2t_vit_cifar") loads, and scores on CIFAR-10's test set what its
training log says it scored; export_pretrained round-trips; bad names are refused."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub
from minit2t.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
CIFAR = os.environ.get("MINIT2T_DATA") or str(ROOT.parent / "shared" / "data" / "cifar-10-binary.tar.gz")
NAME = "t2t_vit_cifar"


def _log():
    with open(os.path.join(hub.WEIGHTS_DIR, f"{NAME}.metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_shipped_model_loads_in_eval_mode():
    assert NAME in mt.list_pretrained()
    path = os.path.join(hub.WEIGHTS_DIR, f"{NAME}.npz")
    assert os.path.getsize(path) < 8_000_000, "the shipped weights should stay a few MB"
    model = mt.pretrained(NAME)
    assert not model.training and all(not m.training for m in model.modules())
    assert model.config == mt.create_model(NAME).config
    assert model.default_cfg["input_size"] == (3, 32, 32)
    assert model.default_cfg["mean"] == list(mt.data.CIFAR10_MEAN)
    x = mt.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    with mt.no_grad():
        out = model(x).data
    assert out.shape == (2, 10) and np.isfinite(out).all()
    fresh = mt.create_model(NAME)
    assert not np.allclose(fresh.state_dict()["head.weight"], model.state_dict()["head.weight"])


def test_training_log_and_curves_lie_beside_it():
    log = _log()
    assert [row["epoch"] for row in log] == list(range(1, len(log) + 1))
    assert all(0.0 <= row["test_acc"] <= 1.0 for row in log)
    assert os.path.getsize(os.path.join(hub.WEIGHTS_DIR, f"{NAME}.curves.png")) > 1000


@pytest.mark.skipif(not os.path.exists(CIFAR), reason=f"needs CIFAR-10 at {CIFAR} or $MINIT2T_DATA")
def test_eval_cli_reproduces_the_logged_test_accuracy(capsys):
    assert cli_main(["eval", "--pretrained", NAME, "--data", CIFAR]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    # the same images and weights; only the order of float32 sums may differ (threads), which can
    # flip a near-tie or two among 10,000 images
    assert abs(float(last.split(": ")[1]) - _log()[-1]["test_acc"]) <= 0.0005


def test_export_round_trip(tmp_path, monkeypatch):
    model = mt.create_model(NAME, embed_dim=32, depth=1, num_heads=2, token_dim=8)
    monkeypatch.setattr(hub, "WEIGHTS_DIR", str(tmp_path))
    hub.export_pretrained(model, str(tmp_path / "tiny.npz"))
    assert mt.list_pretrained() == ["tiny"]
    back = mt.pretrained("tiny")
    assert back.config == model.config and not back.training
    x = mt.tensor(np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32))
    model.eval()
    with mt.no_grad():
        np.testing.assert_array_equal(back(x).data, model(x).data)
    with pytest.raises(ValueError, match=r"no pretrained model 'nope'; shipped: \['tiny'\]"):
        mt.pretrained("nope")
