"""minit2t.interop: the torch twin gives minit2t's logits on the same weights (float32, rtol 1e-4, atol 1e-5)
for every shipped model and every zoo variant (at img_size 32, so the 224 ones stay quick), round trips keep
every weight exactly, what it cannot express is refused in one line, and `import minit2t` never imports torch."""
import subprocess
import sys

import numpy as np
import pytest

import minit2t as mt
from minit2t import models
from minit2t.hub import model_from_config
from minit2t.models.config import config_to_json

torch = pytest.importorskip("torch")
interop = pytest.importorskip("minit2t.interop")

RTOL, ATOL = 1e-4, 1e-5
SMALL = dict(img_size=32, soft_split=((3, 1, 1), (3, 2, 1), (3, 2, 1)), num_classes=10)


def images(model, n=2, seed=0):
    c, h, w = model.config["in_chans"], model.config["img_size"], model.config["img_size"]
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)


def logits_both(model, x):
    module = interop.to_torch(model)
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).numpy()
    return model(mt.tensor(x)).data, theirs


def perturb(model, seed=1):
    """Every weight moved, so that zeros and ones of an init (biases, norms, gammas) are tested too."""
    rng = np.random.default_rng(seed)
    state = {k: (v + rng.normal(0, 0.02, v.shape)).astype(v.dtype) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model


def unreduced(model):
    """The shipped model rebuilt without its token reduction (the same weights)."""
    plain = model_from_config({k: v for k, v in config_to_json(model.config).items() if k != "reduce"})
    plain.load_state_dict(model.state_dict())
    return plain.eval()


@pytest.mark.parametrize("name", mt.list_pretrained())
def test_shipped_models_give_minit2t_logits(name):
    model = mt.pretrained(name)
    if "reduce" in model.config:
        with pytest.raises(ValueError, match="does not support token reduction"):
            interop.to_torch(model)
        model = unreduced(model)
    ours, theirs = logits_both(model, images(model, 4))
    np.testing.assert_allclose(theirs, ours, rtol=RTOL, atol=ATOL)
    assert ours.argmax(1).tolist() == theirs.argmax(1).tolist()


@pytest.mark.parametrize("name", models.list_models())
def test_zoo_variants_give_minit2t_logits(name):
    mt.manual_seed(0)
    model = perturb(models.create_model(name, **SMALL)).eval()
    ours, theirs = logits_both(model, images(model))
    np.testing.assert_allclose(theirs, ours, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("options", [dict(layer_scale_init=0.5), dict(attention="shunted", sr_ratio=4),
                                     dict(attention="shunted", layer_scale_init=1e-3, qkv_bias=True),
                                     dict(tokens_type="performer", qk_scale=0.1, num_classes=0)])
def test_backbone_options_give_minit2t_logits(options):
    mt.manual_seed(0)
    model = perturb(models.create_model("t2t_vit_cifar", depth=2, **options)).eval()
    ours, theirs = logits_both(model, images(model))
    np.testing.assert_allclose(theirs, ours, rtol=RTOL, atol=ATOL)


def test_float64_model_stays_float64():
    model = perturb(models.create_model("t2t_vit_cifar", depth=1)).eval().double()
    x = images(model).astype(np.float64)
    ours, theirs = logits_both(model, x)
    assert theirs.dtype == np.float64
    np.testing.assert_allclose(theirs, ours, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["t2t_vit_cifar_shunted", "t2t_vit_cifar_performer", "t2t_vit_cifar_conv",
                                  "vit_cifar", "t2t_vit_7"])
@pytest.mark.parametrize("training", [True, False])
def test_round_trip_keeps_every_weight_and_the_mode(name, training):
    model = perturb(models.create_model(name, **SMALL, layer_scale_init=0.1)).train(training)
    module = interop.to_torch(model)
    assert module.training is training
    assert set(module.state_dict()) == set(model.state_dict())      # the release's names, one for one
    back = interop.from_torch(module, model.config)
    assert back.training is training and back.config == model.config
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)


def test_from_torch_reads_a_trained_module_and_a_ddp_prefix():
    model = models.create_model("t2t_vit_cifar", depth=1)
    module = interop.to_torch(model)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5)
    prefixed = {f"module.{k}": v for k, v in module.state_dict().items()}
    holder = torch.nn.Module()
    holder.state_dict = lambda: prefixed                              # as DistributedDataParallel names them
    holder.training = False
    back = interop.from_torch(holder, model.config)
    np.testing.assert_allclose(back.state_dict()["head.bias"], model.state_dict()["head.bias"] + 0.5, rtol=1e-6)
    assert interop.from_torch(module).config == model.config         # the module's own config


def test_refusals_are_one_line():
    model = models.create_model("t2t_vit_cifar", depth=1)
    mt.swap_t2t_attention(model, "performer:features=16")
    with pytest.raises(ValueError, match="does not support swapped T2T attention") as info:
        interop.to_torch(model)
    assert "\n" not in str(info.value)
    mt.swap_t2t_attention(model, "exact")
    interop.to_torch(model)                                           # back to exact: accepted
    with pytest.raises(ValueError, match="does not support token reduction"):
        interop.TorchT2TViT({**model.config, "reduce": "tome:r=8"})
    with pytest.raises(TypeError, match="expects a minit2t T2T_ViT"):
        interop.to_torch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="unexpected arguments"):
        interop.TorchT2TViT({**model.config, "colour": 1})


def run_python(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


def test_import_minit2t_never_imports_torch():
    rc, out = run_python("import sys, minit2t; print('torch' in sys.modules)")
    assert rc == 0 and out.strip() == "False", out


def test_without_torch_the_import_says_how_to_get_it():
    rc, out = run_python("import sys; sys.modules['torch'] = None\n"
                         "try:\n    import minit2t.interop\nexcept ImportError as e:\n    print('ERR', e)")
    assert rc == 0, out
    assert out.strip() == 'ERR minit2t.interop needs PyTorch: pip install -e ".[torch]"', out
