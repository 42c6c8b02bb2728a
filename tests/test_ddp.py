"""examples/ddp_train.py: 2 processes x 3 steps of DistributedDataParallel (gloo, CPU) on the shipped sample.
The ranks hold the same weights after every step (the script's all-gathered checksums, written per rank),
the weights moved, last.npz and last.pth give the same logits in minit2t and in PyTorch, `eval --checkpoint
last.npz` scores it, --resume continues, and a rank killed (or stopped) ends the run with one line within
the process-group timeout instead of a hang."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minit2t as mt
from minit2t import hub
from minit2t.io import SHIPPED

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available in this torch build",
                allow_module_level=True)
interop = pytest.importorskip("minit2t.interop")

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "ddp_train.py"
INIT = "t2t_vit_cifar_8ep"
COMMON = ["--data", mt.data.SAMPLE_DIR, "--batch-size", "8", "--warmup-epochs", "0", "--threads", "1",
          "--check-sync"]
RTOL, ATOL = 1e-4, 1e-5


def torchrun(*args, timeout=120):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
           *COMMON, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def sync_log(out, rank):
    return [json.loads(line) for line in (out / f"sync.rank{rank}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = torchrun("--init", INIT, "--steps", "3", "--timeout", "30", "--out", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def test_ranks_hold_the_same_weights_after_every_step(run):
    rank0, rank1 = sync_log(run, 0), sync_log(run, 1)
    assert [r["step"] for r in rank0] == [1, 2, 3]
    assert rank0 == rank1                                   # exact float64 sums, step by step
    assert len({tuple(r["checksum"]) for r in rank0}) == 3  # and the weights moved each step


def test_weights_moved_and_both_files_give_the_same_logits(run):
    model, kind = hub.load_model(str(run / "last.npz"))
    assert kind == SHIPPED
    start = mt.pretrained(INIT).state_dict()
    assert any(not np.array_equal(start[k], v) for k, v in model.state_dict().items())
    module = interop.TorchT2TViT(model.config)
    module.load_state_dict(torch.load(run / "last.pth", weights_only=True), strict=True)
    module.eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, model.eval()(mt.tensor(x)).data, rtol=RTOL, atol=ATOL)


def test_eval_scores_last_npz(run):
    result = subprocess.run([sys.executable, "-m", "minit2t", "eval", "--checkpoint", str(run / "last.npz"),
                             "--data", mt.data.SAMPLE_DIR], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout


def test_refuses_an_existing_run_then_resumes_it(run, tmp_path):
    again = torchrun("--init", INIT, "--steps", "3", "--out", str(run))
    assert again.returncode != 0
    assert "already holds ckpt.pt, last.pth, last.npz: --resume" in again.stderr
    resumed = torchrun("--resume", "--steps", "4", "--out", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["step"] for r in sync_log(run, 0)] == [1, 2, 3, 4] and sync_log(run, 0) == sync_log(run, 1)


def test_help_says_which_recipe_options_are_ignored():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "recipe options this script ignores" in text and "--mixup IGNORED here" in text
    assert "--lr" in text and "--label-smoothing" in text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
def test_a_lost_rank_stops_the_other_within_the_timeout(tmp_path, sig):
    """Two processes as torchrun starts them (its environment), without torchrun's own supervision, so
    that only the process group's timeout can stop rank 0: a killed rank (its socket closes) or a stopped
    one (silent: --timeout 5 must end the wait)."""
    port, out, timeout = free_port(), tmp_path / "run", 5
    procs = []
    try:
        for rank in range(2):
            env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            procs.append(subprocess.Popen([sys.executable, str(SCRIPT), *COMMON, "--init", INIT, "--steps",
                                           "100000", "--save-every", "100000", "--timeout", str(timeout),
                                           "--out", str(out)], env=env, stderr=subprocess.PIPE, text=True))
        log, deadline = out / "sync.rank1.jsonl", time.monotonic() + 60
        while not (log.exists() and log.read_text().count("\n") >= 2):
            assert time.monotonic() < deadline and procs[0].poll() is None, "the run did not start"
            time.sleep(0.1)
        procs[1].send_signal(getattr(signal, sig))
        lost = time.monotonic()
        rc = procs[0].wait(timeout=timeout + 30)               # a hang fails here, not forever
        waited = time.monotonic() - lost
        err = procs[0].stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert rc == 1
    assert waited < timeout + 10
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddp_train.py: rank 0 stopped (lost the other ranks"), err
