"""`python -m minit2t bench`: images/s of a model, training and inference, beside the PyTorch
transcription with the same weights; without torch it says why in one line. Tiny batches, one run:
this checks the plumbing and the report, not the speed (never a timed assertion)."""
import re

import numpy as np
import pytest

import minit2t as mt
from minit2t import speed
from minit2t.cli import main as cli_main


@pytest.fixture(autouse=True)
def threads_restored():
    """bench sets the thread counts of minit2t and torch; the rest of the suite keeps its own."""
    try:
        import torch
    except ImportError:
        torch = None
    before = mt.get_num_threads(), torch and torch.get_num_threads()
    yield
    mt.set_num_threads(before[0])
    if torch is not None:
        torch.set_num_threads(before[1])


def test_bench_prints_both_frameworks_and_their_ratio(capsys):
    assert cli_main(["bench", "--model", "t2t_vit_cifar", "--batch-size", "2", "--infer-batch", "3",
                     "--repeats", "1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("t2t_vit_cifar: ") and "1 threads" in lines[0]
    for line, what, batch in ((lines[1], "training step", 2), (lines[2], "inference", 3)):
        m = re.match(rf"{what}, +batch {batch} +minit2t +([\d.]+) images/s +torch +([\d.]+) images/s +ratio ([\d.]+)",
                     line)
        assert m, line
        mine, theirs, ratio = map(float, m.groups())
        # the printed ratio is of the unrounded rates: within one hundredth of the printed rates' (in integer
        # hundredths, so that 0.99 - 0.98 is not 0.010000000000000009)
        assert mine > 0 and theirs > 0 and abs(round(100 * ratio) - round(100 * mine / theirs)) <= 1
    assert lines[3].startswith("medians of 1 runs")


def test_bench_without_torch_says_why(monkeypatch):
    def missing(*args):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(speed, "torch_runners", missing)
    rows, why_not, threads = speed.bench("t2t_vit_cifar", 2, 2, 1, 1)
    lines = speed.report("t2t_vit_cifar", rows, why_not, threads, 1)
    assert "torch" not in lines[1] and lines[-1] == "torch not measured: No module named 'torch'"


def test_the_torch_runner_holds_the_same_model():
    torch = pytest.importorskip("torch")
    mt.manual_seed(0)
    model = mt.create_model("t2t_vit_cifar", embed_dim=32, depth=1, num_heads=2, token_dim=8).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    _, _, tmodel = speed.torch_runners(model, x, np.zeros(2, np.int64), 1)
    with torch.no_grad(), mt.no_grad():
        np.testing.assert_allclose(tmodel.eval()(torch.from_numpy(x)).numpy(), model(mt.tensor(x)).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_bench_refuses_bad_flags():
    with pytest.raises(SystemExit):
        cli_main(["bench", "--batch-size", "0"])
    with pytest.raises(SystemExit):
        cli_main(["bench", "--model", "resnet50"])
