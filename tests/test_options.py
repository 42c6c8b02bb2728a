"""One declaration per option: the command line, the run's defaults, the resume rules and the checks of a
saved run or model config all come from minit2t.recipe's and minit2t.models.config's Option lists."""
import inspect
import math

import pytest

import minit2t as mt
from minit2t import recipe, runs
from minit2t.checkpoint import check_saved_model_config
from minit2t.cli import build_parser
from minit2t.cli import main as cli_main
from minit2t.models import T2T_ViT
from minit2t.models.config import MODEL_OPTIONS
from minit2t.options import Invalid, Option, WrongType
from helpers import run_config

NOT_RECIPE = {"data", "download", "out", "resume", "overwrite", "init", "fn", "command"}


def _bad(option):
    """A value the option's declaration refuses."""
    if option.kind == "int":
        return option.lo - 1
    if option.kind == "float":
        return option.lo if option.lo_open else (option.lo - 1 if option.lo > -math.inf else math.nan)
    if option.kind == "choice":
        return "nonesuch"
    if option.kind == "bool":
        return "yes"
    return 3                                         # text and any: not what they take


def _train_args(argv):
    return build_parser().parse_args(["train", "--out", "o"] + argv)


def test_train_flags_are_the_recipe():
    args = vars(_train_args([]))
    assert set(args) - NOT_RECIPE == set(recipe.RUN_KEYS)
    assert all(args[key] is None for key in recipe.RUN_KEYS)             # a caller sees what was given
    assert recipe.DEFAULTS == {o.name: o.default for o in recipe.RECIPE}
    assert runs.CHANGEABLE_ON_RESUME == ("epochs", "eval_every", "backend")


@pytest.mark.parametrize("option", recipe.RECIPE, ids=lambda o: o.name)
def test_a_flag_reads_and_checks_by_its_declaration(option, capsys):
    if option.kind == "bool":
        assert getattr(_train_args([option.flag]), option.name) is True
        return
    good = {"model": "vit_cifar", "backend": "numpy", "reduce": "tome:r=2",
            "distill": "pretrained:t2t_vit_cifar"}.get(option.name)
    if good is None:
        top = option.hi if option.hi < math.inf else option.lo + 2
        middle = option.lo + 1 if option.kind == "int" else (option.lo + top) / 2
        good = option.choices[-1] if option.choices else (middle if option.default is None else option.default)
    assert getattr(_train_args([option.flag, str(good)]), option.name) == good
    with pytest.raises(SystemExit) as stop:
        _train_args([option.flag, str(_bad(option)) if option.kind != "text" else "fast:r=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and option.flag in err[0], err


@pytest.mark.parametrize("option", recipe.RECIPE, ids=lambda o: o.name)
def test_a_saved_run_config_is_checked_by_the_same_declaration(option):
    run = run_config()
    assert recipe.check_run_config(run) is run
    with pytest.raises(Invalid, match=f"run config {option.name}") as info:
        recipe.check_run_config({**run, option.name: _bad(option)})
    assert "\n" not in str(info.value)
    if not option.added_later:                                          # always saved: its absence is damage
        with pytest.raises(Invalid, match=f"lacks \\['{option.name}'\\]"):
            recipe.check_run_config({k: v for k, v in run.items() if k != option.name})


def test_the_model_takes_exactly_its_declared_options():
    names = [o.name for o in MODEL_OPTIONS]
    assert list(inspect.signature(T2T_ViT).parameters) == names       # help(T2T_ViT) shows them
    assert list(mt.create_model("t2t_vit_cifar").config) == names
    with pytest.raises(TypeError, match=r"unexpected arguments \['patch_size'\]"):
        T2T_ViT(patch_size=16)


@pytest.mark.parametrize("option", MODEL_OPTIONS, ids=lambda o: o.name)
def test_a_model_option_is_refused_alike_when_built_and_when_read(option):
    config = mt.create_model("t2t_vit_cifar").config
    bad = _bad(option)
    with pytest.raises(ValueError, match=option.name) as built:
        T2T_ViT(**{**config, option.name: bad})
    with pytest.raises(Invalid, match=f"model config {option.name}") as read:
        check_saved_model_config({**config, option.name: bad})
    assert str(read.value) == "model config " + str(built.value)       # the same words, from one declaration


def test_a_declaration_that_contradicts_itself_is_an_error():
    with pytest.raises(Invalid, match="default of rate must be a finite number at least 0 and below 1"):
        Option("rate", "float", 1.5, "a rate", lo=0.0, hi=1.0)
    with pytest.raises(WrongType):
        Option("flag", "bool", 0, "a switch")


def test_optional_options_say_so():
    with pytest.raises(Invalid, match="run config ema must be None or a finite number above 0 and below 1, got 1.5"):
        recipe.check_run_config({**run_config(), "ema": 1.5})


def test_the_recipe_sets_its_model_options():
    cfg = {**recipe.DEFAULTS, "layer_scale": 1e-4, "drop_path": 0.1, "drop_path_uniform": True}
    assert recipe.model_kwargs(cfg) == {"layer_scale_init": 1e-4, "drop_path_rate": 0.1, "drop_path_uniform": True}
    assert recipe.model_kwargs(recipe.DEFAULTS) == {}


def test_resume_help_names_what_may_change(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    assert "--epochs, --eval-every and --backend may change" in " ".join(capsys.readouterr().out.split())


def test_the_training_docs_list_every_flag():
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| `--")]
    missing = [o.flag for o in recipe.RECIPE if not any(f"`{o.flag}" in row or f" {o.flag}" in row for row in table)]
    assert not missing, f"docs/training.md's table of options lacks {missing}"
