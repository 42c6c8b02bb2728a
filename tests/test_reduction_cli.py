"""Token reduction end to end: the spec travels with the weights (config, checkpoint, shipped file),
`eval --reduce` and `train --reduce` on the command line, MCTF's fine-tuning loss in the loop."""
import json
import os

import numpy as np
import pytest

import minit2t as mt
from minit2t import runs, train
from minit2t.checkpoint import check_saved_model_config
from minit2t.options import Invalid
from minit2t.cli import main as cli_main
from minit2t.hub import export_pretrained, load_model
from minit2t.reduction import ReducedT2T_ViT, reduce_tokens, training_loss, uses_consistency
from helpers import CIFAR, TINY, run_config, shipped_score


def _images(n=4, seed=0):
    return mt.tensor(np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32))


def test_the_spec_is_saved_with_the_weights_and_rebuilds_the_reduced_model(tmp_path):
    model = reduce_tokens(mt.create_model("t2t_vit_cifar", **TINY), "tome:r=3").eval()
    assert model.config["reduce"] == "tome:r=3,prop=1"
    path = str(tmp_path / "reduced.npz")
    export_pretrained(model, path)
    again, _ = load_model(path)
    assert isinstance(again, ReducedT2T_ViT) and again.config == model.config
    with mt.no_grad():
        assert np.array_equal(again.eval()(_images()).data, model(_images()).data)
    reduce_tokens(again, "none")
    assert "reduce" not in again.config and type(again) is mt.models.T2T_ViT


@pytest.mark.parametrize("spec, words", [("tome:r=x", "whole number"), ("fast:r=2", "unknown token reduction"),
                                         (7, "must be a str")])
def test_a_bad_saved_spec_is_refused_in_one_line(spec, words):
    config = {**mt.create_model("t2t_vit_cifar", **TINY).config, "reduce": spec}
    with pytest.raises(Invalid, match=words) as info:
        check_saved_model_config(config)
    assert "\n" not in str(info.value) and "reduce" in str(info.value)


def test_eval_reduce_prints_images_per_second_then_accuracy_last(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    train.run(run_config(epochs=1), dataset, out)
    capsys.readouterr()
    ckpt = os.path.join(out, runs.CHECKPOINT)
    assert cli_main(["eval", "--data", dataset, "--checkpoint", ckpt, "--reduce", "mctf:r=4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("images/s: ") and "mctf:r=4" in lines[-2]
    assert lines[-1].startswith("test accuracy: 0.") and len(lines[-1]) == len("test accuracy: 0.0000")


def test_eval_reduce_with_a_bad_spec_is_one_line(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:                      # the parser refuses it, before any loading
        cli_main(["eval", "--data", dataset, "--pretrained", "t2t_vit_cifar", "--reduce", "tome:q=1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad option 'q=1'" in err[0] and "expected r=" in err[0]


def test_train_reduce_fine_tunes_the_reduced_model_and_its_checkpoint_says_so(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    history = train.run(run_config(epochs=2, reduce="mctf:r=4"), dataset, out)
    assert len(history) == 2 and all(np.isfinite(h["train_loss"]) for h in history)
    model, _ = load_model(os.path.join(out, runs.CHECKPOINT))
    assert isinstance(model, ReducedT2T_ViT) and model.config["reduce"].startswith("mctf:r=4,")
    capsys.readouterr()
    assert cli_main(["train", "--data", dataset, "--out", out, "--resume", "--reduce", "tome:r=4"]) == 2
    assert "reduce" in capsys.readouterr().err                     # a resumed run keeps its reduction


def test_mctf_fine_tuning_loss_is_both_passes_plus_consistency(monkeypatch):
    mt.manual_seed(0)
    model = reduce_tokens(mt.create_model("t2t_vit_cifar", **{**TINY, "depth": 3}), "mctf:r=6")
    assert uses_consistency(model) and not uses_consistency(mt.create_model("t2t_vit_cifar", **TINY))
    x, y = _images(6), np.arange(6) % 10
    teacher_r = []
    real = ReducedT2T_ViT.forward_tokens

    def spy(self, tokens, r=None, trace=False):
        teacher_r.append(r)
        return real(self, tokens, r, trace)

    monkeypatch.setattr(ReducedT2T_ViT, "forward_tokens", spy)
    loss, logits = training_loss(model, x, y, teacher_r_max=3)
    assert teacher_r[0] is None and teacher_r[1] in (0, 1, 2)      # the student, then a teacher r' < 3
    model.zero_grad()
    loss.backward()
    assert all(p.grad is not None for p in model.blocks[1].parameters())
    with mt.no_grad():
        assert np.allclose(logits.data, model(x).data, atol=1e-5)   # the student is the model as it runs


def test_shipped_models_have_card_and_log_and_the_reduced_ones_their_spec():
    for name in mt.list_pretrained():
        model = mt.pretrained(name)
        card = os.path.join(os.path.dirname(mt.hub.pretrained_path(name)), f"{name}.md")
        assert os.path.exists(card), f"{name} ships without its card"
        log = json.loads(open(card.replace(".md", ".metrics.jsonl")).read().splitlines()[-1])
        assert "test_acc" in log                                      # the last epoch is always scored
        method = name[len("t2t_vit_cifar_"):].split("_")[0] if name.startswith("t2t_vit_cifar_") else ""
        if method in ("tome", "evit", "mctf"):                       # a reduced model is named by its method
            assert isinstance(model, ReducedT2T_ViT) and model.config["reduce"].startswith(method + ":")
        else:
            assert "reduce" not in model.config and not isinstance(model, ReducedT2T_ViT), name


@pytest.mark.skipif(not os.path.exists(CIFAR), reason="needs the full CIFAR-10: set $MINIT2T_DATA "
                                                      "(default ../shared/data/cifar-10-binary.tar.gz)")
@pytest.mark.parametrize("name", ["t2t_vit_cifar_tome", "t2t_vit_cifar_tome_r8"])
def test_the_shipped_reduced_model_scores_what_its_log_says(name, capsys):
    got, logged = shipped_score(name, cli_main, capsys)
    assert abs(got - logged["test_acc"]) <= 0.0005                 # float32 sums in another order may flip a tie
