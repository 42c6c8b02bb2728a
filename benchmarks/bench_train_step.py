"""One training step of a model in minit2t against the identical model in PyTorch eager (CPU).

    python benchmarks/bench_train_step.py [--model t2t_vit_cifar] [--batch-size 128] [--repeats 7]
                                          [--img-size 32] [--tokens-type transformer]

A step is forward, cross-entropy (label smoothing 0.1), backward and an AdamW step. Both
frameworks get the same weights, the same batch and the same number of threads; steps are
timed alternately in one process so that the machine's noise hits both alike, and the ratio
of median images/s is printed.

Fairness of the alternation:
  - The first two rounds are warm-up, untimed: the first steps of each framework fault in
    fresh memory (glibc returns large blocks to the OS until its thresholds adapt).
  - The order within a round alternates (minit2t first in even rounds, torch first in odd
    ones), so neither always runs right after the other.
  - Threads that spin after a parallel region could steal a core from the next step. The
    C extension and torch resolve to one shared libgomp (the script checks /proc/self/maps
    and prints how many OpenMP runtimes are loaded), so there is one OpenMP thread pool and
    no cross-stealing between them. OPENBLAS_NUM_THREADS=1 is set before NumPy is imported:
    neither step calls NumPy's BLAS, whose idle helper threads would otherwise only compete.
    Each timed step is still preceded by a 50 ms pause, past GNU OpenMP's default spin
    (about 300k iterations), so both start with sleeping workers.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")        # before NumPy loads OpenBLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]        # this checkout's minit2t; torch_t2t

import minit2t as mt  # noqa: E402

PAUSE_S = 0.05


def minit2t_step(model, opt, x, y):
    loss = mt.nn.functional.cross_entropy(model(mt.tensor(x)), y, label_smoothing=0.1)
    opt.zero_grad()
    loss.backward()
    opt.step()


def torch_step(torch, model, opt, x, y):
    loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
    opt.zero_grad()
    loss.backward()
    opt.step()


def build_torch(torch, model):
    import torch_t2t
    cfg = dict(model.config)
    cfg["soft_split"] = tuple(tuple(s) for s in cfg["soft_split"])
    tmodel = torch_t2t.T2T_ViT(**cfg)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    return tmodel.train()


def openmp_runtimes():
    """Distinct OpenMP runtime files mapped into this process (Linux; else '?')."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return "?"
    return str(len(paths))


def timed(fn):
    time.sleep(PAUSE_S)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="t2t_vit_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--backend", default=None)
    parser.add_argument("--img-size", type=int, default=None, help="e.g. 32 for a release variant")
    parser.add_argument("--tokens-type", default=None, choices=["performer", "transformer", "convolution"])
    return parser.parse_args()


def main():
    args = parse_args()
    import torch
    torch.set_num_threads(args.threads)
    mt.backends.set_num_threads(args.threads)
    if args.backend:
        mt.set_backend(args.backend)
    kwargs = {k: v for k, v in (("img_size", args.img_size), ("tokens_type", args.tokens_type)) if v}
    if kwargs.get("img_size") and not args.model.endswith("cifar"):
        kwargs["num_classes"] = 10
    mt.manual_seed(0)
    model = mt.create_model(args.model, **kwargs).train()
    tmodel = build_torch(torch, model)
    C, H, W = model.default_cfg["input_size"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, C, H, W)).astype(np.float32)
    y = rng.integers(0, model.num_classes, args.batch_size)
    opt = mt.optim.AdamW(mt.optim.param_groups_for_weight_decay(model, 0.05), lr=1e-4)
    topt = torch.optim.AdamW(tmodel.parameters(), lr=1e-4, weight_decay=0.05)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    steps = {"minit2t": lambda: minit2t_step(model, opt, x, y),
             "torch": lambda: torch_step(torch, tmodel, topt, tx, ty)}
    rates = {"minit2t": [], "torch": []}
    for i in range(args.repeats + 2):                      # two warm-up rounds
        order = ["minit2t", "torch"] if i % 2 == 0 else ["torch", "minit2t"]
        for name in order:
            seconds = timed(steps[name])
            if i >= 2:
                rates[name].append(args.batch_size / seconds)
    a, b = statistics.median(rates["minit2t"]), statistics.median(rates["torch"])
    extra = "".join(f", {k} {v}" for k, v in kwargs.items() if k != "num_classes")
    print(f"model {args.model}{extra}, batch {args.batch_size}, {args.threads} threads, "
          f"backend {mt.get_backend().name}, OpenMP runtimes loaded: {openmp_runtimes()}")
    for name, vals in rates.items():
        print(f"{name:9s} {statistics.median(vals):8.1f} images/s   (steps: {', '.join(f'{v:.0f}' for v in vals)})")
    print(f"ratio minit2t/torch: {a / b:.2f}")


if __name__ == "__main__":
    main()
