"""What people type from timm and PyTorch habits: list_models with patterns and pretrained=True,
create_model(name, pretrained=True), Tensor.size / numel / torch_size, view, dim, argmax, dim= for axis=,
Module.requires_grad_, eval --pretrained's choices, convert's file names; and the test suite as installed
(the [test] extra holds what the notebook test needs; skip reasons name no path outside the repository)."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub, models
from minit2t.cli import build_parser
from minit2t.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = hub.list_pretrained()


# ---- list_models and create_model as timm has them ------------------------------------------------------------
def test_list_models_takes_timm_filters():
    every = mt.list_models()
    assert every == models.list_models()                                   # no filter: all, in the zoo's order
    assert mt.list_models("t2t*") == [n for n in every if n.startswith("t2t")]
    assert mt.list_models("*cifar*", exclude_filters="vit_cifar*") == [
        n for n in every if "cifar" in n and not n.startswith("vit_cifar")]
    assert mt.list_models(["t2t_vit_7", "vit_*"]) == [n for n in every if n == "t2t_vit_7" or n.startswith("vit_")]
    assert mt.list_models("T2T*") == []                                    # case matters, as in timm
    assert mt.list_models(pretrained=True) == SHIPPED
    assert mt.list_models("*_8ep", pretrained=True) == ["t2t_vit_cifar_8ep"]
    assert mt.list_models("", "zoo", False, "") == every                   # timm's positional order
    for bad, error in ((dict(filter=3), TypeError), (dict(exclude_filters=[None]), TypeError),
                       (dict(module="vision_transformer"), ValueError)):
        with pytest.raises(error) as info:
            mt.list_models(**bad)
        assert "\n" not in str(info.value) and "list_models" in str(info.value)


def test_create_model_pretrained_loads_the_shipped_weights():
    model = mt.create_model("t2t_vit_cifar", pretrained=True)
    shipped = mt.pretrained("t2t_vit_cifar")
    assert not model.training and model.default_cfg == shipped.default_cfg
    for (k, a), (_, b) in zip(model.state_dict().items(), shipped.state_dict().items()):
        assert np.array_equal(a, b), k
    plain = mt.create_model("t2t_vit_cifar")                               # pretrained=False: the zoo's builder
    assert plain.training and type(plain) is type(model)
    # a rate that changes no weight may be given: the model is rebuilt with it, the weights the same
    tuned = mt.create_model("t2t_vit_cifar", pretrained=True, drop_path_rate=0.1)
    assert tuned.config["drop_path_rate"] == 0.1
    assert all(np.array_equal(a, b) for a, b in zip(tuned.state_dict().values(), model.state_dict().values()))


def test_create_model_pretrained_errors_are_one_line():
    with pytest.raises(ValueError) as info:
        mt.create_model("t2t_vit_14", pretrained=True)
    line = str(info.value)
    assert "\n" not in line and "t2t_vit_14" in line and all(name in line for name in SHIPPED)
    with pytest.raises(TypeError) as info:
        mt.create_model("t2t_vit_cifar", pretrained=True, embed_dim=64, num_classes=3)
    line = str(info.value)
    assert "\n" not in line and "embed_dim" in line and "num_classes" in line and "drop_path_rate" in line
    with pytest.raises(ValueError, match="pretrained=True"):                # shipped weights' name, no pretrained
        mt.create_model("t2t_vit_cifar_8ep")


# ---- Tensor: size and the PyTorch spellings --------------------------------------------------------------
def test_size_is_numpys_count_and_torch_size_is_pytorchs():
    t = mt.tensor(np.zeros((2, 3, 4)))
    assert t.size == 24 and t.size == np.zeros((2, 3, 4)).size and isinstance(t.size, int)
    assert t.numel() == 24
    assert t.torch_size() == (2, 3, 4) and t.torch_size(1) == 3 and t.torch_size(-1) == 4
    with pytest.raises(IndexError, match="axis 3"):
        t.torch_size(3)
    with pytest.raises(TypeError) as info:                                  # the PyTorch habit: a clear line
        t.size()
    assert "torch_size" in str(info.value) and "shape" in str(info.value)
    assert mt.count_params(mt.create_model("t2t_vit_cifar")) == 1_008_992  # code counting with .size


def test_view_dim_argmax():
    x = mt.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4), requires_grad=True)
    v = x.view(6, 4)
    assert v.shape == (6, 4) and x.view((4, -1)).shape == (4, 6) and x.dim() == 3
    v.sum().backward()
    assert np.array_equal(x.grad, np.ones((2, 3, 4)))
    scores = mt.tensor([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]])
    idx = scores.argmax(dim=1)
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.tolist() == [1, 0]
    assert (scores.argmax(dim=1) == np.array([1, 2])).mean() == 0.5    # compares as NumPy does
    assert scores.argmax(1, keepdim=True).shape == (2, 1)
    assert scores.argmax() == 3 and scores.argmax(axis=0).tolist() == [1, 0, 0]
    with pytest.raises(TypeError, match="both"):
        scores.argmax(dim=1, axis=1)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sum", "mean", "max"])
def test_dim_is_an_alias_of_axis(name):
    data = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    t = mt.tensor(data)
    by_axis, by_dim = getattr(t, name)(axis=1), getattr(t, name)(dim=1)
    assert np.array_equal(by_axis.data, by_dim.data)
    assert np.array_equal(getattr(t, name)(1).data, by_axis.data)
    with pytest.raises(TypeError) as info:
        getattr(t, name)(axis=1, dim=1)
    assert "\n" not in str(info.value) and "dim" in str(info.value) and "axis" in str(info.value)
    if name in ("sum", "mean", "max"):
        assert getattr(t, name)(dim=1, keepdim=True).shape == (3, 1, 5)
        with pytest.raises(TypeError, match="keepdim"):
            getattr(t, name)(dim=1, keepdim=True, keepdims=True)


def test_module_requires_grad_():
    model = mt.create_model("t2t_vit_cifar")
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    model.head.requires_grad_()                                            # fine-tune the head only
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


# ---- the command line ---------------------------------------------------------------------------------------
def test_eval_pretrained_names_the_shipped_models(capsys):
    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    action = next(a for a in eval_parser._actions if "--pretrained" in a.option_strings)
    assert list(action.choices) == SHIPPED and all(name in action.help for name in SHIPPED)
    with pytest.raises(SystemExit) as info:
        cli_main(["eval", "--pretrained", "t2t_vit_nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "t2t_vit_nope" in err[0] and SHIPPED[0] in err[0]


def test_convert_refuses_unknown_extensions(tmp_path, capsys):
    src = tmp_path / "sd.npz"
    mt.save(mt.create_model("t2t_vit_cifar").state_dict(), src)
    for args in ([src, tmp_path / "out.txt"], [tmp_path / "sd.ckpt", tmp_path / "out.npz"]):
        assert cli_main(["convert", *map(str, args)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ".pth" in err[0] and ".npz" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd.npz"]           # nothing written


# ---- the suite as installed -----------------------------------------------------------------------------------
def _extras():
    """setup.py's extras_require, read from its source."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "extras_require")
    return ast.literal_eval(call.value)


def test_the_test_extra_holds_what_the_notebook_test_needs():
    needed = re.findall(r'importorskip\("(\w+)"', (ROOT / "tests" / "test_notebooks.py").read_text())
    assert {"nbformat", "nbclient", "ipykernel", "matplotlib"} <= set(needed)
    test_extra = {re.split(r"[<>=!\[ ]", r)[0] for r in _extras()["test"]}
    assert set(needed) <= test_extra, f"the [test] extra lacks {sorted(set(needed) - test_extra)}"
    assert "jupyter" not in test_extra
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[test]" && python -m pytest -q' in readme


PATHY = re.compile(r"shared|environ|Path\(|os\.path")                        # a module name bound to a path


def _path_names(source):
    """The module-level names `source` binds to a file system path."""
    return {t.id for n in ast.parse(source).body if isinstance(n, ast.Assign)
            and PATHY.search(ast.get_source_segment(source, n)) for t in n.targets if isinstance(t, ast.Name)}


def _path_reasons(path):
    """The skip reasons in a test file that format a name bound to a file system path (its own or helpers.py's)."""
    source = path.read_text()
    tree = ast.parse(source)
    helpers = _path_names((ROOT / "tests" / "helpers.py").read_text())
    names = _path_names(source) | {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom)
                                   and n.module == "helpers" for a in n.names if a.name in helpers}
    reasons = [k.value for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg == "reason"]
    reasons += [n.args[0] for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args
                and isinstance(n.func, ast.Attribute) and n.func.attr == "skip"]
    return [ast.get_source_segment(source, r) for r in reasons if isinstance(r, ast.JoinedStr)
            and any(isinstance(v, ast.Name) and v.id in names for f in r.values if isinstance(f, ast.FormattedValue)
                    for v in ast.walk(f.value))]


def test_skip_reasons_name_no_path_of_this_machine(tmp_path):
    bad = tmp_path / "t.py"
    bad.write_text('import os\nDATA = os.environ.get("X") or "/x"\n'
                   '@pytest.mark.skipif(True, reason=f"no data at {DATA}")\ndef test(): pass\n')
    assert _path_reasons(bad) == ['f"no data at {DATA}"']
    found = {p.name: _path_reasons(p) for p in sorted((ROOT / "tests").glob("*.py"))}
    assert not {k: v for k, v in found.items() if v}
