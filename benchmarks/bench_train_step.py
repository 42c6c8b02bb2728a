"""One training step of a model in minit2t against the identical model in PyTorch eager (CPU).

    python benchmarks/bench_train_step.py [--model t2t_vit_cifar] [--batch-size 128] [--repeats 7]
                                          [--img-size 32] [--tokens-type transformer]

A step is forward, cross-entropy (label smoothing 0.1), backward and an AdamW step. Both
frameworks get the same weights, the same batch and the same number of threads; steps are
timed alternately in one process so that the machine's noise hits both alike, and the ratio
of median images/s is printed. The steps, the PyTorch model (tests/torch_t2t.py with the same
weights) and the alternation are minit2t.speed's, as `python -m minit2t bench` runs them.

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

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)                                  # this checkout's minit2t

import minit2t as mt  # noqa: E402
from minit2t import speed  # noqa: E402  (the steps, the torch model and the alternation)


def openmp_runtimes():
    """Distinct OpenMP runtime files mapped into this process (Linux; else '?')."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return "?"
    return str(len(paths))


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
    mt.backends.set_num_threads(args.threads)
    if args.backend:
        mt.set_backend(args.backend)
    kwargs = {k: v for k, v in (("img_size", args.img_size), ("tokens_type", args.tokens_type)) if v}
    if kwargs.get("img_size") and not args.model.endswith("cifar"):
        kwargs["num_classes"] = 10
    mt.manual_seed(0)
    model = mt.create_model(args.model, **kwargs).train()
    C, H, W = model.default_cfg["input_size"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, C, H, W)).astype(np.float32)
    y = rng.integers(0, model.num_classes, args.batch_size)
    steps = {"minit2t": speed.minit2t_runners(model, x, y)[0],
             "torch": speed.torch_runners(model, x, y, args.threads)[0]}
    seconds = speed.alternate(steps, args.repeats)                # minit2t and torch in turn
    rates = {name: [args.batch_size / s for s in runs] for name, runs in seconds.items()}
    a, b = statistics.median(rates["minit2t"]), statistics.median(rates["torch"])
    extra = "".join(f", {k} {v}" for k, v in kwargs.items() if k != "num_classes")
    print(f"model {args.model}{extra}, batch {args.batch_size}, {args.threads} threads, "
          f"backend {mt.get_backend().name}, OpenMP runtimes loaded: {openmp_runtimes()}")
    for name, vals in rates.items():
        print(f"{name:9s} {statistics.median(vals):8.1f} images/s   (steps: {', '.join(f'{v:.0f}' for v in vals)})")
    print(f"ratio minit2t/torch: {a / b:.2f}")


if __name__ == "__main__":
    main()
