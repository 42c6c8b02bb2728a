"""`python -m minit2t eval --t2t-attention SPEC`: the T2T attention swapped after loading, named in the
images/s line; a bad spec or a model whose T2T module is the release's performer: rc 2, one stderr line.
No --data: the shipped 500-image test sample (a few seconds)."""
import minit2t as mt
from minit2t.cli import main as cli_main
from minit2t.hub import export_pretrained
from helpers import TINY


def test_eval_with_a_t2t_attention_names_it_and_ends_with_the_accuracy(capsys):
    spec = "scatterbrain:window=16,features=8"
    assert cli_main(["eval", "--pretrained", "t2t_vit_cifar", "--t2t-attention", spec]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("images/s: ") and spec in lines[-2]
    assert lines[-1].startswith("test accuracy: 0.") and len(lines[-1]) == len("test accuracy: 0.0000")


def test_eval_with_a_bad_t2t_attention_is_one_line(capsys):
    assert cli_main(["eval", "--pretrained", "t2t_vit_cifar", "--t2t-attention", "lsh:bucket=0"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "bucket" in err[0] and ">= 1" in err[0]
    assert "test accuracy" not in captured.out


def test_eval_t2t_attention_on_a_performer_t2t_module_is_one_line(tmp_path, capsys):
    path = str(tmp_path / "performer.npz")
    export_pretrained(mt.create_model("t2t_vit_cifar", tokens_type="performer", **TINY), path)
    assert cli_main(["eval", "--checkpoint", path, "--t2t-attention", "local:window=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokens_type='transformer'" in err[0]
