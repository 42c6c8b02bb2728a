"""Images per second of a zoo model, training and inference, beside PyTorch when it is at hand.

    python -m minit2t bench --model t2t_vit_cifar [--batch-size 128] [--infer-batch 256] [--repeats 5]
                            [--precision fp32|bf16|all] [--no-torch]

A training step is forward, cross-entropy (label smoothing 0.1), backward and an AdamW step; inference
is a forward pass in eval mode under no_grad. In bf16 the forward and the loss run under
mt.autocast("bfloat16"), and torch's under torch.autocast("cpu", dtype=torch.bfloat16), the optimiser
outside it in both. The PyTorch model is the repository's own transcription (tests/torch_t2t.py, in a
checkout) holding the same weights, with the same number of threads, in eager mode. All are timed in
turn in one process (the order swapped every round, a pause before each call so that no thread still
spins from the last), so the machine's noise hits each alike; each figure is the median of --repeats
runs after two warm-up rounds, and a ratio is minit2t's median over torch's in the same precision.
"""
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import minit2t as mt

PAUSE_S = 0.05                     # longer than GNU OpenMP's spin after a parallel region
WARMUP = 2


def cpu_name():
    """The CPU's model name as lscpu gives it (e.g. "AMD EPYC"), else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def minit2t_runners(model, x, y, bf16=False):
    """(train step, inference) of a minit2t model on the batch x (B, C, H, W), labels y (B,); bf16:
    the forward and the loss under mt.autocast("bfloat16")."""
    opt = mt.optim.AdamW(mt.optim.param_groups_for_weight_decay(model, 0.05), lr=1e-4)

    def step():
        model.train()
        with mt.autocast("bfloat16", enabled=bf16):
            loss = mt.nn.functional.cross_entropy(model(mt.tensor(x)), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with mt.no_grad(), mt.autocast("bfloat16", enabled=bf16):
            model(mt.tensor(x))
    return step, infer


def torch_runners(model, x, y, threads, bf16=False):
    """(train step, inference, the torch model) of the PyTorch transcription with model's weights
    (bf16: under torch.autocast, as minit2t_runners); ImportError (saying what is missing) without
    torch or outside a checkout of the repository."""
    import torch
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    if not os.path.exists(os.path.join(tests, "torch_t2t.py")):
        raise ImportError("the PyTorch transcription tests/torch_t2t.py is in a checkout of the repository only")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import torch_t2t
    torch.set_num_threads(threads)
    cfg = {k: v for k, v in model.config.items() if k != "reduce"}
    cfg["soft_split"] = tuple(tuple(s) for s in cfg["soft_split"])
    tmodel = torch_t2t.T2T_ViT(**cfg)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    opt = torch.optim.AdamW(tmodel.parameters(), lr=1e-4, weight_decay=0.05)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        tmodel.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(tmodel(tx), ty, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer():
        tmodel.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            tmodel(tx)
    return step, infer, tmodel


def alternate(calls, repeats):
    """{name: [seconds of each timed call]}: every call once a round, in an order swapped every round."""
    names, seconds = list(calls), {name: [] for name in calls}
    for r in range(WARMUP + repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            calls[name]()
            if r >= WARMUP:
                seconds[name].append(time.perf_counter() - t0)
    return seconds


def bench(name, batch_size=128, infer_batch=256, repeats=5, threads=None, seed=0, precisions=("fp32",),
          with_torch=True):
    """Rows (what, batch, precision, {framework: images/s}) for the zoo model `name`, and why torch was
    left out (None when it was measured)."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mt.set_num_threads(threads)
    mt.manual_seed(seed)
    model = mt.create_model(name)
    C, H, W = model.default_cfg["input_size"]
    rng = np.random.default_rng(seed)
    rows, why_not = [], None if with_torch else "--no-torch was given"
    for what, batch in (("training step", batch_size), ("inference", infer_batch)):
        x = rng.standard_normal((batch, C, H, W)).astype(np.float32)
        y = rng.integers(0, model.num_classes, batch)
        calls = {}
        for precision in precisions:
            bf16 = precision == "bf16"
            calls["minit2t", precision] = minit2t_runners(model, x, y, bf16)[what == "inference"]
            try:
                if with_torch:
                    calls["torch", precision] = torch_runners(model, x, y, threads, bf16)[what == "inference"]
            except ImportError as exc:
                why_not = str(exc)
        seconds = alternate(calls, repeats)
        for precision in precisions:
            rows.append((what, batch, precision, {k[0]: batch / statistics.median(v)
                                                  for k, v in seconds.items() if k[1] == precision}))
    return rows, why_not, threads


def report(name, rows, why_not, threads, repeats):
    """The lines `python -m minit2t bench` prints."""
    backend = mt.get_backend()
    isa = f" ({backend.isa()})" if hasattr(backend, "isa") else ""
    lines = [f"{name}: {cpu_name()}, {threads} threads, backend {backend.name}{isa}"]
    for what, batch, precision, rate in rows:
        line = f"{what + ',':<15} batch {batch:<4} {precision}  minit2t {rate['minit2t']:8.1f} images/s"
        if "torch" in rate:
            line += f"   torch {rate['torch']:8.1f} images/s   ratio {rate['minit2t'] / rate['torch']:.2f}"
        lines.append(line)
    lines.append(f"medians of {repeats} runs each after {WARMUP} warm-up rounds, minit2t and torch in turn"
                 if why_not is None else f"torch not measured: {why_not}")
    return lines
