"""DeiT III's two model options: LayerScale in the backbone blocks (layer_scale_init) and the same
stochastic-depth rate in every block (drop_path_uniform). Off by default, where nothing changes;
on, held to PyTorch, named as timm names them, saved in the config and checked when read back."""
import json
import math
import os

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub
from minit2t.checkpoint import check_saved_model_config
from minit2t.options import Invalid
from minit2t.io import SHIPPED, LoadError, read_headers
from minit2t.models.zoo import CIFAR_SOFT_SPLIT
from minit2t.nn import Block, DropPath, LayerScale
from minit2t.optim import param_groups_for_weight_decay
from helpers import F64, TINY, assert_close

NAME = "t2t_vit_cifar"
SHIPPED_FILE = os.path.join(hub.WEIGHTS_DIR, f"{NAME}_8ep.npz")            # saved before LayerScale
DEIT3 = dict(layer_scale_init=1e-4, drop_path_rate=0.1, drop_path_uniform=True)


def _images(n=2, seed=0):
    return mt.tensor(np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32))


def _gammas(model):
    return {k: v for k, v in model.state_dict().items() if k.endswith(".gamma")}


def _rates(model):
    """Each backbone block's drop-path rate (0 where the block has no DropPath)."""
    return [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.0 for b in model.blocks]


# ---- the block, against an independent PyTorch transcription ------------------------------------

def _torch_block(x, p, num_heads):                                   # (B, N, D)
    """timm's Block with LayerScale, written out: x + ls1 * attn(norm1(x)), then x + ls2 * mlp(norm2(x))."""
    import torch.nn.functional as F
    B, N, D = x.shape
    d = D // num_heads
    h = F.layer_norm(x, (D,), p["norm1.weight"], p["norm1.bias"], 1e-5)
    qkv = F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).reshape(B, N, 3, num_heads, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                   # (B, h, N, d) each
    attn = (q @ k.transpose(-2, -1) * d ** -0.5).softmax(dim=-1)     # (B, h, N, N)
    out = (attn @ v).transpose(1, 2).reshape(B, N, D)                # (B, N, D)
    x = x + p["ls1.gamma"] * F.linear(out, p["attn.proj.weight"], p["attn.proj.bias"])
    h = F.layer_norm(x, (D,), p["norm2.weight"], p["norm2.bias"], 1e-5)
    h = F.linear(F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    return x + p["ls2.gamma"] * h                                    # (B, N, D)


def test_block_with_layer_scale_matches_torch_forward_and_gradients():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    block = Block(8, num_heads=2, mlp_ratio=2.0, qkv_bias=True, layer_scale_init=0.1).double()
    for p in block.parameters():                                     # gammas (and all else) off their init
        p.data = p.data + rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((2, 5, 8))
    params = {k: torch.tensor(v, requires_grad=True) for k, v in block.state_dict().items()}
    xt = torch.tensor(x, requires_grad=True)
    want = _torch_block(xt, params, num_heads=2)
    xm = mt.tensor(x, requires_grad=True)
    out = block(xm)
    assert_close(out.data, want.detach().numpy(), *F64, "forward")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    want.backward(torch.from_numpy(g))
    assert_close(xm.grad, xt.grad.numpy(), *F64, "gradient of x")
    for name, p in block.named_parameters():
        assert_close(p.grad, params[name].grad.numpy(), *F64, f"gradient of {name}")


def test_layer_scale_is_x_times_gamma_and_its_gradient_the_sum_over_tokens():
    rng = np.random.default_rng(1)
    ls = LayerScale(4, 0.5).double()
    ls.gamma.data = rng.standard_normal(4)
    x, g = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 5, 4))
    out = ls(mt.tensor(x))
    np.testing.assert_allclose(out.data, x * ls.gamma.data, rtol=1e-15)
    out.backward(g)
    np.testing.assert_allclose(ls.gamma.grad, (g * x).sum(axis=(0, 1)), rtol=1e-12)


@pytest.mark.parametrize("value", [0, -1e-4, math.inf, math.nan, True, "1e-4"])
def test_layer_scale_refuses_a_bad_init_in_one_line(value):
    with pytest.raises(ValueError, match="LayerScale init_values must be a finite number above 0") as info:
        LayerScale(4, value)
    assert "\n" not in str(info.value)


# ---- the model: off by default, named as timm names it when on ----------------------------------

def test_default_model_is_the_release_model():
    shipped = sorted(k[len("model."):] for k in read_headers(SHIPPED_FILE) if k.startswith("model."))
    assert sorted(mt.create_model(NAME).state_dict()) == shipped        # the names of a file saved before
    mt.manual_seed(0)
    plain = mt.create_model(NAME, **TINY)
    mt.manual_seed(0)
    off = mt.create_model(NAME, layer_scale_init=None, drop_path_uniform=False, **TINY)
    assert list(off.state_dict()) == list(plain.state_dict())
    assert all(np.array_equal(v, off.state_dict()[k]) for k, v in plain.state_dict().items())
    assert not any(".ls" in name for name, _ in off.named_modules()) and not _gammas(off)
    assert (off.config["layer_scale_init"], off.config["drop_path_uniform"]) == (None, False)


def test_layer_scale_names_and_init():
    model = mt.create_model(NAME, layer_scale_init=1e-4, **dict(TINY, depth=3))
    D = model.embed_dim
    want = sorted(f"blocks.{i}.ls{j}.gamma" for i in range(3) for j in (1, 2))
    assert sorted(_gammas(model)) == want                            # the backbone only, not the T2T module
    for gamma in _gammas(model).values():
        assert gamma.shape == (D,) and gamma.dtype == np.float32 and np.all(gamma == np.float32(1e-4))
    plain = mt.create_model(NAME, **dict(TINY, depth=3))
    assert set(model.state_dict()) - set(plain.state_dict()) == set(want)
    assert mt.count_params(model) - mt.count_params(plain) == 2 * 3 * D
    assert mt.count_macs(model, (3, 32, 32)) == mt.count_macs(plain, (3, 32, 32))  # no matmul added
    assert model.config["layer_scale_init"] == 1e-4


@pytest.mark.parametrize("name", mt.list_models())
def test_every_variant_takes_both_options(name):
    small = dict(img_size=32, num_classes=10, soft_split=CIFAR_SOFT_SPLIT)
    model = mt.create_model(name, layer_scale_init=1e-5, drop_path_rate=0.2, drop_path_uniform=True, **small)
    assert len(_gammas(model)) == 2 * len(model.blocks) and _rates(model) == [0.2] * len(model.blocks)
    assert model.config["layer_scale_init"] == 1e-5 and model.config["drop_path_uniform"] is True


def test_drop_path_rates_uniform_or_rising():
    kw = dict(TINY, depth=4, drop_path_rate=0.3)
    assert _rates(mt.create_model(NAME, **kw)) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert _rates(mt.create_model(NAME, drop_path_uniform=True, **kw)) == [0.3] * 4
    assert _rates(mt.create_model(NAME, drop_path_uniform=True, **dict(kw, drop_path_rate=0.0))) == [0.0] * 4
    with pytest.raises(TypeError, match="drop_path_uniform must be True or False, got 'yes'"):
        mt.create_model(NAME, drop_path_uniform="yes", **TINY)


def test_gamma_gets_no_weight_decay():
    model = mt.create_model(NAME, layer_scale_init=1e-4, **dict(TINY, depth=2))
    no_decay, decay = param_groups_for_weight_decay(model, 0.05)
    gammas = [p for name, p in model.named_parameters() if name.endswith(".gamma")]
    assert len(gammas) == 4 and no_decay["weight_decay"] == 0.0
    assert all(any(p is q for q in no_decay["params"]) for p in gammas)
    assert not any(p is q for p in gammas for q in decay["params"])


def test_one_training_step_trains_gamma():
    mt.manual_seed(0)
    model = mt.create_model(NAME, **DEIT3, **TINY)
    opt = mt.optim.AdamW(param_groups_for_weight_decay(model, 0.05), lr=1e-3)
    loss = mt.nn.functional.cross_entropy(model(_images(4)), np.array([0, 1, 2, 3]))
    loss.backward()
    before = {k: v.copy() for k, v in _gammas(model).items()}
    for name, p in model.named_parameters():
        if name.endswith(".gamma"):
            assert p.grad.shape == p.shape and np.isfinite(p.grad).all() and np.abs(p.grad).sum() > 0, name
    opt.step()
    assert all(not np.array_equal(before[k], v) for k, v in _gammas(model).items())


# ---- saved and read back --------------------------------------------------------------------------

def _exported(tmp_path, **kw):
    model = mt.create_model(NAME, **kw, **TINY)
    for name, p in model.named_parameters():
        if name.endswith(".gamma"):                                  # trained gammas, not the init
            p.data = np.random.default_rng(2).uniform(0.5, 1.5, p.shape).astype(np.float32)
    path = str(tmp_path / "model.npz")
    hub.export_pretrained(model, path)
    return model.eval(), path


def test_export_and_load_round_trip_the_options(tmp_path):
    model, path = _exported(tmp_path, **DEIT3)
    again, kind = hub.load_model(path)
    assert kind == SHIPPED and again.config == model.config
    assert again.config["layer_scale_init"] == 1e-4 and again.config["drop_path_uniform"] is True
    assert _rates(again) == [0.1] and sorted(_gammas(again)) == ["blocks.0.ls1.gamma", "blocks.0.ls2.gamma"]
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v, err_msg=k)
    with mt.no_grad():
        np.testing.assert_array_equal(again.eval()(_images()).data, model(_images()).data)


def test_a_config_saved_before_the_options_means_the_defaults():
    config = {k: v for k, v in mt.create_model(NAME, **TINY).config.items()
              if k not in ("layer_scale_init", "drop_path_uniform")}
    checked = check_saved_model_config(config)
    assert (checked["layer_scale_init"], checked["drop_path_uniform"]) == (None, False)
    stored = json.loads(str(mt.load(SHIPPED_FILE)["config"]))
    assert "layer_scale_init" not in stored and "drop_path_uniform" not in stored   # a file saved before them
    model = mt.pretrained(NAME)
    assert (model.config["layer_scale_init"], model.config["drop_path_uniform"]) == (None, False)
    assert not _gammas(model)


@pytest.mark.parametrize("key, value, words", [
    ("layer_scale_init", 0, "None or a finite number above 0 and at most 1000"),
    ("layer_scale_init", -1e-4, "None or a finite number above 0"),
    ("layer_scale_init", 1e4, "at most 1000"),
    ("layer_scale_init", "1e-4", "None or a finite number"),
    ("layer_scale_init", True, "None or a finite number"),
    ("layer_scale_init", math.nan, "None or a finite number"),
    ("drop_path_uniform", "yes", "True or False"),
    ("drop_path_uniform", 1, "True or False"),
    ("drop_path_uniform", None, "True or False"),
])
def test_a_bad_saved_option_is_refused_in_one_line(key, value, words):
    config = {**mt.create_model(NAME, **TINY).config, key: value}
    with pytest.raises(Invalid, match=words) as info:
        check_saved_model_config(config)
    message = str(info.value)
    assert "\n" not in message and f"model config {key}" in message and message.endswith(f"got {value!r}")


def test_an_unknown_key_is_still_refused():
    config = {**mt.create_model(NAME, **TINY).config, "layer_scale": 1e-4}
    with pytest.raises(Invalid, match=r"maybe attention, drop_path_uniform, layer_scale_init, reduce, sr_ratio\), "
                                         r"got .*'layer_scale'"):
        check_saved_model_config(config)


@pytest.mark.parametrize("kw, config_value, words", [
    (DEIT3, None, "layer_scale_init is None but the weights hold LayerScale gammas"),
    ({}, 1e-4, r"gives blocks.0.ls1.gamma the shape \(32,\), the weights do not have it"),
])
def test_config_and_weights_must_agree_on_layer_scale(tmp_path, kw, config_value, words):
    _, path = _exported(tmp_path, **kw)
    arrays = mt.load(path)
    config = json.loads(str(arrays["config"]))
    arrays["config"] = np.array(json.dumps({**config, "layer_scale_init": config_value}))
    mt.save(arrays, path)
    with pytest.raises(LoadError, match=words) as info:
        hub.load_model(path)
    assert "\n" not in str(info.value)
