"""DeiT III's recipe in `train` and `eval`: the weights' average (EMA), flip test-time augmentation,
the recipe flags reaching the model and the data, their checks in a saved run, and LayerScale
models under token reduction. A tiny learnable dataset as in test_train.py."""
import os

import numpy as np
import pytest

import minit2t as mt
from minit2t import optim, recipe, runs, train
from minit2t.checkpoint import load_checkpoint
from minit2t.cli import main as cli_main
from minit2t.hub import load_model
from minit2t.reduction import reduce_tokens
from helpers import CIFAR, TINY, killed_at_step, run_config, shipped_score


def tiny(**kwargs):
    mt.manual_seed(0)
    return mt.create_model("t2t_vit_cifar", **TINY, **kwargs)


# ---- the weights' average ---------------------------------------------------------------------

def test_ema_follows_its_formula_and_swaps_in_and_out():
    model = tiny()
    ema = optim.EMA(model, 0.9)
    start = model.state_dict()
    steps = []
    for t in range(3):
        for p in model.parameters():
            p.data += np.float32(0.1 * (t + 1))
        ema.update(model)
        steps.append(model.state_dict())
    want = {k: v.astype(np.float64) for k, v in start.items()}
    for t, state in enumerate(steps):                                  # d_t = min(0.9, (1 + t) / (10 + t))
        d = min(0.9, (1 + t) / (10 + t))
        want = {k: d * want[k] + (1 - d) * state[k] for k in want}
    name = "head.weight"
    np.testing.assert_allclose(ema.average[name], want[name], rtol=1e-6)
    own = model.state_dict()
    with ema.swapped_in(model):
        np.testing.assert_array_equal(model.state_dict()[name], ema.average[name])
    assert all(np.array_equal(model.state_dict()[k], own[k]) for k in own)
    copy = optim.EMA(tiny(), 0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 3 and np.array_equal(copy.average[name], ema.average[name])


@pytest.mark.parametrize("decay", [0.0, 1.0, 1, "0.9", -0.5])
def test_ema_refuses_a_bad_decay(decay):
    with pytest.raises(ValueError, match="decay"):
        optim.EMA(tiny(), decay)


def test_a_run_with_ema_scores_it_saves_it_and_resumes_it_exactly(dataset, tmp_path, monkeypatch):
    full = str(tmp_path / "full")
    history = train.run(run_config(ema=0.9), dataset, full)
    assert all(0.0 <= h["ema_test_acc"] <= 1.0 for h in history)
    saved = load_checkpoint(os.path.join(full, runs.CHECKPOINT))
    assert int(saved["ema"]["updates"]) == 30 and saved["ema"]["head.weight"].shape == (10, 32)
    killed = str(tmp_path / "killed")
    killed_at_step(monkeypatch, 23, lambda: train.run(run_config(ema=0.9), dataset, killed))   # inside epoch 3
    train.run(run_config(ema=0.9), dataset, killed, resume=True)
    resumed = load_checkpoint(os.path.join(killed, runs.CHECKPOINT))
    assert all(np.array_equal(saved["ema"][k], resumed["ema"][k]) for k in saved["ema"])


def test_eval_ema_scores_the_average(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    history = train.run(run_config(ema=0.9, epochs=2), dataset, out)
    path = os.path.join(out, runs.CHECKPOINT)
    averaged, _ = load_model(path, ema=True)
    weights, _ = load_model(path)
    saved = load_checkpoint(path)
    np.testing.assert_array_equal(averaged.state_dict()["head.weight"], saved["ema"]["head.weight"])
    assert not np.array_equal(averaged.state_dict()["head.weight"], weights.state_dict()["head.weight"])
    capsys.readouterr()
    assert cli_main(["eval", "--data", dataset, "--checkpoint", path, "--ema"]) == 0
    out_lines = capsys.readouterr().out.strip().splitlines()
    assert "the weights' average" in out_lines[-2]
    assert out_lines[-1] == f"test accuracy: {history[-1]['ema_test_acc']:.4f}"


def test_eval_ema_without_an_average_is_one_line(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    train.run(run_config(epochs=1), dataset, out)
    capsys.readouterr()
    assert cli_main(["eval", "--data", dataset, "--checkpoint", os.path.join(out, runs.CHECKPOINT), "--ema"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without --ema" in err[0]
    assert cli_main(["eval", "--data", dataset, "--pretrained", "t2t_vit_cifar", "--ema"]) == 2
    assert "--checkpoint" in capsys.readouterr().err


# ---- flip test-time augmentation --------------------------------------------------------------

def test_flip_tta_is_the_mean_of_the_two_views():
    model = tiny().eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    both = train.predict(model, images, tta="flip")
    plain = train.predict(model, images)
    mirrored = train.predict(model, np.ascontiguousarray(images[..., ::-1]))
    np.testing.assert_allclose(both, 0.5 * (plain + mirrored), rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, plain)
    with pytest.raises(ValueError, match="tta"):
        train.predict(model, images, tta="crop")


def test_eval_tta_flag(dataset, capsys):
    assert cli_main(["eval", "--data", dataset, "--pretrained", "t2t_vit_cifar", "--tta", "flip"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "flip TTA" in lines[-2] and lines[-1].startswith("test accuracy: 0.")


# ---- the recipe flags ---------------------------------------------------------------------------

def test_recipe_flags_reach_the_model_data_and_saved_run(dataset, tmp_path, monkeypatch):
    seen = {}
    real_loader = train.data.DataLoader

    def loader(*args, **kwargs):
        seen.update(kwargs)
        return real_loader(*args, **kwargs)

    monkeypatch.setattr(train.data, "DataLoader", loader)
    out = str(tmp_path / "run")
    argv = ["train", "--data", dataset, "--out", out, "--epochs", "1", "--batch-size", "20", "--aug", "3aug",
            "--pad-mode", "reflect", "--layer-scale", "1e-4", "--drop-path", "0.1", "--drop-path-uniform",
            "--ema", "0.99", "--model", "t2t_vit_cifar"]
    assert cli_main(argv) == 0
    assert seen["three_augment"] is True and seen["pad_mode"] == "reflect"
    meta = load_checkpoint(os.path.join(out, runs.CHECKPOINT))
    run = meta["run_config"]
    assert (run["aug"], run["pad_mode"], run["layer_scale"], run["drop_path"], run["drop_path_uniform"],
            run["ema"]) == ("3aug", "reflect", 1e-4, 0.1, True, 0.99)
    assert meta["model_config"]["layer_scale_init"] == 1e-4 and meta["model_config"]["drop_path_uniform"] is True
    model, _ = load_model(os.path.join(out, runs.CHECKPOINT))
    rates = [blk.drop_path.drop_prob for blk in model.blocks]
    assert rates == [0.1] * len(model.blocks)
    assert "blocks.0.ls1.gamma" in model.state_dict()
    assert cli_main(argv[:-2] + ["--aug", "basic", "--resume"]) == 2           # a different recipe: refused


def test_a_default_run_builds_the_default_model():
    model, _, _ = train.build(run_config(), 10)
    assert model.state_dict().keys() == tiny().state_dict().keys()
    assert recipe.model_kwargs(run_config()) == {}


def test_bad_recipe_values_in_a_saved_run_are_refused(dataset, tmp_path):
    from minit2t.options import Invalid
    from minit2t.recipe import check_run_config
    out = str(tmp_path / "run")
    train.run(run_config(epochs=1), dataset, out)
    run = load_checkpoint(os.path.join(out, runs.CHECKPOINT))["run_config"]
    for key, value in (("aug", "autoaugment"), ("pad_mode", "edge"), ("ema", 1.5), ("drop_path", -0.1),
                       ("drop_path_uniform", "yes"), ("layer_scale", 0.0)):
        with pytest.raises(Invalid, match=key):
            check_run_config({**run, key: value})


@pytest.mark.parametrize("flag", [["--drop-path", "1.0"], ["--ema", "1"], ["--layer-scale", "0"], ["--aug", "x"]])
def test_bad_recipe_flags_stop_the_parser(flag, tmp_path):
    with pytest.raises(SystemExit):
        cli_main(["train", "--out", str(tmp_path / "o")] + flag)


# ---- LayerScale under token reduction -----------------------------------------------------------

@pytest.mark.parametrize("spec", ["tome:r=0", "evit:keep=1.0", "mctf:r=0", "none"])
def test_reduction_keeps_layer_scale(spec):
    model = tiny(layer_scale_init=0.5).eval()
    for blk in model.blocks:
        blk.ls1.gamma.data[...] = np.linspace(0.1, 2.0, blk.ls1.gamma.shape[0], dtype=np.float32)
    x = mt.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    with mt.no_grad():
        want = model(x).numpy()
    keys = list(model.state_dict())
    reduce_tokens(model, spec)
    assert list(model.state_dict()) == keys
    with mt.no_grad():
        np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-5, atol=1e-5)


def test_reduction_with_layer_scale_changes_the_output_as_the_scale_says():
    model = tiny(layer_scale_init=1e-3).eval()
    reduce_tokens(model, "tome:r=4")
    x = mt.tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    with mt.no_grad():
        small = model(x).numpy()
        for blk in model.blocks:
            blk.ls1.gamma.data[...] = 0.0
            blk.ls2.gamma.data[...] = 0.0
        skipped = model(x).numpy()                                    # every branch scaled to nothing
    assert not np.allclose(small, skipped, atol=0)


# ---- soft distillation (--distill) --------------------------------------------------------------------

def test_distilled_targets_are_the_two_cross_entropies_torch_computes():
    """CE(s, (1 - w) label + w p_teacher) = (1 - w) CE(s, label) + w CE(s, p_teacher), as torch has them."""
    torch = pytest.importorskip("torch")
    teacher = tiny().eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = np.array([3, 0, 9, 3])
    targets = train.distilled_targets(teacher, x, y, 0.1, 0.3)              # (B, K)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)              # a float32 softmax
    with mt.no_grad():
        t_logits = torch.tensor(teacher(mt.tensor(x)).numpy(), dtype=torch.float64)
    s = np.random.default_rng(1).standard_normal((4, 10))
    got = mt.nn.functional.cross_entropy(mt.tensor(s), targets).item()
    st = torch.tensor(s)
    want = 0.7 * torch.nn.functional.cross_entropy(st, torch.tensor(y), label_smoothing=0.1) + \
        0.3 * torch.nn.functional.cross_entropy(st, t_logits.softmax(-1))
    assert abs(got - want.item()) < 1e-6                             # the teacher ran in float32


def test_a_student_that_is_its_teacher_has_nothing_to_learn_at_weight_one():
    model, teacher = tiny(), tiny().eval()                           # the same seed: the same weights
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    loss, _ = train.batch_loss(model, x, train.distilled_targets(teacher, x, np.arange(4), 0.0, 1.0), 0.0)
    loss.backward()
    learned = [p for p in model.parameters() if p.requires_grad]       # not the fixed sinusoid pos_embed
    assert max(float(np.abs(p.grad).max()) for p in learned) < 1e-6
    loss, _ = train.batch_loss(model, x, train.distilled_targets(teacher, x, np.arange(4), 0.0, 0.5), 0.0)
    model.zero_grad()
    loss.backward()
    assert max(float(np.abs(p.grad).max()) for p in learned) > 1e-4   # the label still pulls


def test_a_reduced_run_distils_from_the_unreduced_model_and_resumes(dataset, tmp_path):
    base = str(tmp_path / "base")
    train.run(run_config(epochs=1), dataset, base)
    teacher = os.path.join(base, runs.CHECKPOINT)
    out = str(tmp_path / "student")
    cfg = run_config(epochs=1, reduce="tome:r=2", distill=teacher, distill_weight=0.7)
    train.run(cfg, dataset, out, init=teacher)
    run = load_checkpoint(os.path.join(out, runs.CHECKPOINT))["run_config"]
    assert (run["distill"], run["distill_weight"], run["reduce"]) == (teacher, 0.7, "tome:r=2")
    train.run(dict(cfg, epochs=2), dataset, out, resume=True)
    assert len(load_checkpoint(os.path.join(out, runs.CHECKPOINT))["history"]) == 2


def test_distill_refuses_a_missing_teacher_and_mctf_in_one_line(dataset, tmp_path, capsys):
    missing = str(tmp_path / "nothing.npz")
    assert cli_main(["train", "--data", dataset, "--out", str(tmp_path / "a"), "--distill", missing]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing.npz" in err[0]
    base = str(tmp_path / "base")
    train.run(run_config(epochs=1), dataset, base)
    with pytest.raises(ValueError, match="MCTF"):
        train.run(run_config(epochs=1, reduce="mctf:r=2", distill=os.path.join(base, runs.CHECKPOINT)), dataset,
                  str(tmp_path / "b"))
    assert not os.path.exists(tmp_path / "b")


@pytest.mark.parametrize("flag", [["--distill-weight", "1.5"], ["--distill-weight", "-0.1"]])
def test_a_distill_weight_outside_0_1_stops_the_parser(flag, tmp_path):
    with pytest.raises(SystemExit):
        cli_main(["train", "--out", str(tmp_path / "o")] + flag)


# ---- the shipped hour -------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(CIFAR), reason="needs the full CIFAR-10: set $MINIT2T_DATA "
                                                      "(default ../shared/data/cifar-10-binary.tar.gz)")
def test_the_shipped_hour_scores_what_its_log_says(capsys):
    """t2t_vit_cifar_hour ships the better of its run's last weights and their average (--ema)."""
    got, last = shipped_score("t2t_vit_cifar_hour", cli_main, capsys)
    assert abs(got - max(last["test_acc"], last["ema_test_acc"])) <= 0.0005   # float32 sums may flip a tie
