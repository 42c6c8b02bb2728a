"""`python -m minit2t bench`: images/s of a model, training and inference, beside the PyTorch
transcription with the same weights; without torch it says why in one line. Tiny batches, one run:
this checks the plumbing and the report, not the speed (never a timed assertion)."""
import os
import re
import shutil
import subprocess
import sys

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
    """Every precision by default: fp32 beside torch eager, bf16 beside torch's bf16 autocast."""
    assert cli_main(["bench", "--model", "t2t_vit_cifar", "--batch-size", "2", "--infer-batch", "3",
                     "--repeats", "1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("t2t_vit_cifar: ") and "1 threads" in lines[0]
    rows = ((lines[1], "training step", 2, "fp32"), (lines[2], "training step", 2, "bf16"),
            (lines[3], "inference", 3, "fp32"), (lines[4], "inference", 3, "bf16"))
    for line, what, batch, precision in rows:
        m = re.match(rf"{what}, +batch {batch} +{precision} +minit2t +([\d.]+) images/s +torch +([\d.]+) images/s "
                     rf"+ratio ([\d.]+)", line)
        assert m, line
        mine, theirs, ratio = map(float, m.groups())
        # the printed ratio is of the unrounded rates: within one hundredth of the printed rates' (in integer
        # hundredths, so that 0.99 - 0.98 is not 0.010000000000000009)
        assert mine > 0 and theirs > 0 and abs(round(100 * ratio) - round(100 * mine / theirs)) <= 1
    assert lines[5].startswith("medians of 1 runs")


def test_bench_one_precision_without_torch(capsys):
    assert cli_main(["bench", "--batch-size", "2", "--infer-batch", "2", "--repeats", "1", "--threads", "1",
                     "--precision", "bf16", "--no-torch"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(" bf16  minit2t " in line and "torch" not in line for line in lines[1:3])
    assert lines[3] == "torch not measured: --no-torch was given"


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
    with pytest.raises(SystemExit):
        cli_main(["bench", "--precision", "fp16"])


def test_ab_builds_times_builds_in_turn(tmp_path):
    """benchmarks/ab_builds.py with two copies of the installed build, one round on one thread: a line
    per build with its time and its ratios to the first; a missing build is a one-line refusal."""
    cext = pytest.importorskip("minit2t._cext", reason="the C extension is not built")
    builds = [str(tmp_path / name) for name in ("a.so", "b.so")]
    for path in builds:
        shutil.copy(cext.__file__, path)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "ab_builds.py")
    env = dict(os.environ, MINIT2T_NUM_THREADS="1")
    run = subprocess.run([sys.executable, script, *builds, "--rounds", "1"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.strip().startswith(str(tmp_path))]
    assert len(rows) == 2 and all(re.search(r"\d+\.\d ms .*\d\.\d{3} \(medians\)", row) for row in rows), run.stdout
    assert "1.000 (medians), 1.000" in rows[0]
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none.so"), builds[0]], capture_output=True,
                             text=True, env=env, timeout=600)
    assert missing.returncode != 0 and "no build at" in missing.stderr and missing.stderr.count("\n") == 1


def test_ab_fusion_times_a_fusion_on_and_off():
    """benchmarks/ab_fusion.py, one round on one thread: the two ways' times and their ratios; a bad
    --rounds is a one-line refusal."""
    pytest.importorskip("minit2t._cext", reason="the C extension is not built")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "ab_fusion.py")
    env = dict(os.environ, MINIT2T_NUM_THREADS="1")
    run = subprocess.run([sys.executable, script, "--rounds", "1", "--off", "both"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert re.search(r"on +\d+\.\d ms +off +\d+\.\d ms +off / on: \d\.\d{3} \(medians\), \d\.\d{3}", run.stdout), run.stdout
    bad = subprocess.run([sys.executable, script, "--rounds", "0"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert bad.returncode != 0 and "expected --rounds >= 1, got 0" in bad.stderr and bad.stderr.count("\n") == 1
