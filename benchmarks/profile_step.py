"""Where a training step and an inference batch spend their time, by op family.

    python benchmarks/profile_step.py [--model t2t_vit_cifar] [--batch-size 128] [--infer-batch 256]
                                      [--repeats 3] [--threads N] [--backend c] [--torch]
                                      [--precision fp32|bf16] [--by-op N]

Every op runs through the seam of minit2t.backends (Function.apply asks
implementation(op) for the version to run); this script puts a profiling table
there that hands out a timing subclass of the active backend's version of each
op, so what is timed is the code as shipped. Each op's forward and backward are
added to its family (and, with --by-op, to its own row by input shapes); the
optimiser's step is timed apart; what remains of the wall time is Python:
building the graph, walking it, the loss.

Useful work: 2 * MACs of the forward (minit2t.profile, every matmul of the model)
per image at inference, 3 times that for a training step (the backward runs two
products per forward one). The machine's own GEMM rate is measured in the same run
(the active backend's matmul at 1024^3, the same threads), so the distance to the
limit is one number: achieved / GEMM rate.

--torch also profiles the PyTorch transcription (tests/torch_t2t.py, same weights, same
threads; in a checkout with torch installed) with torch.profiler: its wall time and the
self time of its costliest aten ops, so the two can be compared op for op.
"""
import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)                                  # this checkout's minit2t

import minit2t as mt  # noqa: E402
from minit2t import backends, ops  # noqa: E402

FAMILIES = {                  # op class name -> family
    "MatMul": "GEMM", "Linear": "GEMM",
    "Unfold": "unfold/fold", "Fold": "unfold/fold",
    "Softmax": "softmax", "LogSoftmax": "softmax",
    "LayerNorm": "layer norm", "GELU": "GELU",
    "Reshape": "copies and reshapes", "Permute": "copies and reshapes", "GetItem": "copies and reshapes",
    "Split": "copies and reshapes", "Concat": "copies and reshapes", "Expand": "copies and reshapes",
    "Cast": "copies and reshapes", "Attention": "attention (fused op)", "LinearGELU": "Linear + GELU (fused op)",
    "LinearAdd": "Linear + residual sum (fused op)",
}


class Profiler:
    """A backend for the seam: every op is the active backend's version, with its forward and backward timed."""

    def __init__(self, inner):
        self.inner, self.name = inner, f"profiled {inner.name}"
        self.seconds = defaultdict(float)                  # family -> seconds
        self.by_op = defaultdict(float)                    # (op, "forward" | "backward", shapes) -> seconds
        self.OPS = self                                    # implementation(op) calls self.OPS.get(op, op)
        self._timed = {}

    def get(self, op, default=None):
        if op not in self._timed:
            self._timed[op] = self._timing(self.inner.OPS.get(op, op))
        return self._timed[op]

    def _timing(self, impl):
        name, seconds, by_op = impl.__name__, self.seconds, self.by_op
        family = FAMILIES.get(name, "elementwise and reductions")

        def shapes(arrays):
            return tuple(a.shape for a in arrays if isinstance(a, np.ndarray))

        def forward(ctx, *arrays, **options):
            t0 = time.perf_counter()
            try:
                return impl.forward(ctx, *arrays, **options)
            finally:
                seconds[family] += time.perf_counter() - t0
                by_op[name, "forward", shapes(arrays)] += time.perf_counter() - t0

        def backward(ctx, *grads):
            t0 = time.perf_counter()
            try:
                return impl.backward(ctx, *grads)
            finally:
                seconds[family] += time.perf_counter() - t0
                by_op[name, "backward", shapes(grads)] += time.perf_counter() - t0
        return type(impl.__name__, (impl,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def gemm_rate(threads, n=1024, repeats=5):
    """GFLOP/s of the active backend's matmul at n^3 (best of `repeats`)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        ops.MatMul.compute(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def run_profiled(fn, repeats):
    """Median wall time of fn() and the per-family seconds of the median run."""
    inner = backends.get_backend()
    runs = []
    for _ in range(repeats + 1):                           # the first run warms up
        prof = Profiler(inner)
        backends._active = prof
        try:
            t0 = time.perf_counter()
            opt_s = fn()
            wall = time.perf_counter() - t0
        finally:
            backends._active = inner
        runs.append((wall, dict(prof.seconds), opt_s, dict(prof.by_op)))
    runs = sorted(runs[1:], key=lambda r: r[0])
    return runs[len(runs) // 2]


def report(title, wall, seconds, opt_s, by_op, images, flops, rate, top=0):
    print(f"\n{title}: {wall * 1e3:.1f} ms for {images} images ({images / wall:.1f} images/s)")
    rows = sorted(seconds.items(), key=lambda kv: -kv[1])
    if opt_s:
        rows.append(("optimizer (AdamW step)", opt_s))
    rows.append(("Python (graph, autograd walk, loss)", wall - sum(seconds.values()) - opt_s))
    for family, s in rows:
        print(f"  {family:<38} {s * 1e3:9.1f} ms {100 * s / wall:6.1f}%")
    achieved = flops / wall / 1e9
    print(f"  useful work {flops / 1e9:.1f} GFLOP: {achieved:.1f} GFLOP/s = {achieved / rate:.2f} of the "
          f"machine's GEMM rate ({rate:.1f} GFLOP/s at 1024^3)")
    if top:
        print(f"  the {top} costliest ops by input shapes (every call of the run summed):")
        for (name, way, shapes), s in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {s * 1e3:8.2f} ms  {name} {way} {' '.join(str(x) for x in shapes)}")


def torch_report(model, x, y, xi, threads, repeats, top=8, bf16=False):
    """The PyTorch transcription's step and inference (bf16: under torch.autocast): wall time and its
    costliest aten ops (self time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from minit2t import speed
    for title, fn, images in ((f"torch training step (batch {len(x)})", speed.torch_runners(model, x, y, threads, bf16)[0], len(x)),
                              (f"torch inference (batch {len(xi)}, no_grad)",
                               speed.torch_runners(model, xi, y[:1].repeat(len(xi)), threads, bf16)[1], len(xi))):
        fn()                                                      # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            wall = (time.perf_counter() - t0) / repeats
        print(f"\n{title}: {wall * 1e3:.1f} ms for {images} images ({images / wall:.1f} images/s), "
              f"torch {torch.__version__}, under the profiler")
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
        for e in ops:
            ms = e.self_cpu_time_total / 1e3 / repeats
            print(f"  {e.key:<38} {ms:9.1f} ms {100 * ms / 1e3 / wall:6.1f}%")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="t2t_vit_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--backend", default=None)
    parser.add_argument("--torch", action="store_true", help="profile the PyTorch transcription too")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: the forward (and loss) under mt.autocast / torch.autocast")
    parser.add_argument("--by-op", type=int, default=0, metavar="N",
                        help="also list the N costliest ops, each by its forward or backward and input shapes")
    return parser.parse_args()


def main():
    args = parse_args()
    if args.backend:
        mt.set_backend(args.backend)
    mt.set_num_threads(args.threads)
    mt.manual_seed(0)
    model = mt.create_model(args.model)
    C, H, W = model.default_cfg["input_size"]
    macs = mt.count_macs(model, (C, H, W))                         # per image
    opt = mt.optim.AdamW(mt.optim.param_groups_for_weight_decay(model, 0.05), lr=1e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, C, H, W)).astype(np.float32)
    y = rng.integers(0, model.num_classes, args.batch_size)
    xi = rng.standard_normal((args.infer_batch, C, H, W)).astype(np.float32)

    bf16 = args.precision == "bf16"

    def step():
        model.train()
        with mt.autocast("bfloat16", enabled=bf16):
            loss = mt.nn.functional.cross_entropy(model(mt.tensor(x)), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        t0 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t0

    def infer():
        model.eval()
        with mt.no_grad(), mt.autocast("bfloat16", enabled=bf16):
            model(mt.tensor(xi))
        return 0.0

    rate = gemm_rate(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else "?"
    isa = mt.get_backend("c").isa() if mt.get_backend().name == "c" else "-"
    print(f"model {args.model}, {args.threads} threads, backend {mt.get_backend().name} (ISA {isa}), {args.precision}, "
          f"CPU {cpu}; "
          f"{macs / 1e6:.1f}M MACs per image")
    report(f"training step (batch {args.batch_size})", *run_profiled(step, args.repeats), args.batch_size,
           3 * 2 * macs * args.batch_size, rate, args.by_op)
    report(f"inference (batch {args.infer_batch}, no_grad)", *run_profiled(infer, args.repeats), args.infer_batch,
           2 * macs * args.infer_batch, rate, args.by_op)
    print(f"\nmedian of {args.repeats} runs after a warm-up; the profiled wrappers add a few microseconds per op")
    if args.torch:
        torch_report(model, x, y, xi, args.threads, args.repeats, bf16=bf16)


if __name__ == "__main__":
    main()
