"""Kernel benchmarks: minit2t backends against NumPy's BLAS and torch, side by side.

    python benchmarks/bench_kernels.py            # 1 and 2 threads
    python benchmarks/bench_kernels.py --quick    # smoke run: 1 thread, 2 repeats
    python benchmarks/bench_kernels.py --bf16 --threads 2     # only the bf16 GEMM's table

matmul: GFLOP/s (2*M*K*N / time) of each minit2t backend, NumPy (OpenBLAS)
and torch on the model's shapes, and the geometric mean of backend / NumPy.
bf16 matmul: the C backend's bf16 GEMM (matmul(..., bf16=True)) at each ISA
level this CPU has, against its float32 GEMM, on the GEMMs of a
t2t_vit_cifar training step at batch 128: ms, and float32 time / bf16 time.
unfold+fold: time of one unfold plus one fold, effective GB/s
(2 * (input + columns bytes) / time: each op reads one and writes the other)
and torch's time / the backend's.
opencl: its columns time whole calls (upload, kernels, download); a last
table splits them by event profiling (PoCL uses POCL_MAX_PTHREAD_COUNT threads).

Each thread count runs in its own process, with OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MINIT2T_NUM_THREADS set before NumPy loads, and
torch.set_num_threads. Every figure is the best of the repeats (see
best_times). NumPy and torch write into a preallocated output (out=), as
the C backend reuses its output buffers.

Legend: M/K/N matrix sides, B batch, C channels, H/W height/width,
k kernel, s stride, p padding, L = Ho*Wo windows.
"""
import argparse
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)                                  # this checkout's minit2t

# The minit2t backends that get a column (those that load). The NumPy and
# torch references are always there.
BACKENDS = ["c", "opencl"]

MATMUL_SHAPES = [  # (M, K, N); "T": A given transposed, as in a weight gradient g^T x
    (8192, 128, 384), (8192, 128, 256), (8192, 256, 128),
    (32768, 288, 96), (131072, 27, 96), (1024, 1024, 1024), (384, 8320, 128, "T"),
]
BF16_SHAPES = [  # (M, K, N, how): "W" B given transposed (x @ weight.T), "T" A given transposed (g^T x)
    (8320, 128, 384, "W"), (8320, 128, 256, "W"), (8320, 256, 128, "W"), (8320, 128, 128, "W"),
    (8320, 384, 128, ""), (384, 8320, 128, "T"), (128, 8320, 256, "T"),
    (8192, 288, 128, "W"), (128, 8192, 288, "T"), (32768, 27, 96, "W"), (32768, 32, 32, "W"),
]
BF16_LEVELS = ["avx2", "avx512", "avx512_bf16", "amx"]    # those this CPU has get a column
WINDOW_SHAPES = [  # ((B, C, H, W), k, s, p)
    ((128, 3, 32, 32), 3, 1, 1), ((128, 32, 32, 32), 3, 2, 1),
    ((128, 32, 16, 16), 3, 2, 1), ((8, 3, 224, 224), 7, 4, 2),
]


def best_times(fns, repeats, settle=0.25):
    """Best wall time of each function over `repeats` calls after a warm-up.

    The worker threads of a library (OpenMP, OpenBLAS, PoCL) spin for up to
    ~0.1 s after their work, and on 2 cores that takes a core from whatever
    runs next; so each function's calls run back to back, after `settle`
    seconds of idling that let the previous library's threads fall asleep.
    """
    best = []
    for fn in fns:
        time.sleep(settle)
        fn()                                  # warm up: caches, buffers, threads
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        best.append(min(times))
    return best


def loaded_backends():
    from minit2t.backends import get_backend
    found = []
    for name in BACKENDS:
        try:
            found.append((name, get_backend(name)))
        except (ImportError, RuntimeError) as exc:
            print(f"  ({name} backend skipped: {exc})")
    return found


def bench_matmul(backends, repeats):
    import numpy as np
    import torch
    names = [n for n, _ in backends] + ["numpy", "torch"]
    print("\nmatmul GFLOP/s".ljust(17) + "".join(f"{n:>10}" for n in names)
          + "".join(f"{n + '/np':>10}" for n, _ in backends))
    ratios = {n: [] for n, _ in backends}
    rng = np.random.default_rng(0)
    for m, k, n, *how in MATMUL_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)            # (M, K)
        if how:
            a = rng.standard_normal((k, m), dtype=np.float32).T      # (M, K), rows contiguous
        b = rng.standard_normal((k, n), dtype=np.float32)            # (K, N)
        out, ta, tb = np.empty((m, n), np.float32), torch.from_numpy(a), torch.from_numpy(b)
        tout = torch.empty((m, n))
        fns = [lambda be=be: be.matmul(a, b) for _, be in backends]
        fns += [lambda: np.matmul(a, b, out=out), lambda: torch.matmul(ta, tb, out=tout)]
        times = best_times(fns, repeats)
        rates = [2.0 * m * k * n / t / 1e9 for t in times]
        for (name, _), t in zip(backends, times):
            ratios[name].append(times[-2] / t)
        print(f"{m}x{k}x{n}{' A^T' if how else ''}".ljust(16) + "".join(f"{r:10.1f}" for r in rates)
              + "".join(f"{ratios[nm][-1]:10.2f}" for nm, _ in backends))
    for name, rs in ratios.items():
        gmean = math.exp(sum(math.log(r) for r in rs) / len(rs))
        print(f"geometric mean {name}/numpy: {gmean:.2f}")


def bench_bf16(be, repeats):
    """The bf16 GEMM at each level against the float32 GEMM (at the best level), in turn."""
    import numpy as np
    best = be.isa()
    levels = [lv for lv in BF16_LEVELS if be.set_isa(lv) == lv]
    be.set_isa(best)
    print("\nbf16 matmul ms".ljust(20) + f"{'float32':>9}" + "".join(f"{lv:>12}{'x':>6}" for lv in levels))
    rng = np.random.default_rng(0)
    for m, k, n, how in BF16_SHAPES:
        a = rng.standard_normal((k, m) if how == "T" else (m, k), dtype=np.float32)
        a = a.T if how == "T" else a                                  # (M, K)
        b = rng.standard_normal((n, k) if how == "W" else (k, n), dtype=np.float32)
        b = b.T if how == "W" else b                                  # (K, N)
        times = best_times([lambda: be.matmul(a, b)], repeats)
        for lv in levels:
            be.set_isa(lv)
            times += best_times([lambda: be.matmul(a, b, bf16=True)], repeats)
        be.set_isa(best)
        line = f"{m}x{k}x{n}{' ' + how if how else ''}".ljust(20) + f"{times[0] * 1e3:9.2f}"
        print(line + "".join(f"{t * 1e3:12.2f}{times[0] / t:6.2f}" for t in times[1:]))


def bench_windows(backends, repeats):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from minit2t.ops import conv

    class reference:                                   # the reference ops' NumPy unfold and fold
        unfold = staticmethod(conv.unfold)
        fold = staticmethod(lambda cols, hw, k, s, p: conv.fold(cols, *hw, k, s, p))
    cols_of = backends + [("numpy", reference)]
    names = [n for n, _ in cols_of] + ["torch"]
    print("\nunfold+fold ms".ljust(23) + "".join(f"{n:>9}" for n in names)
          + "".join(f"{n + ' GB/s':>12}{'torch/' + n:>13}" for n, _ in backends))
    rng = np.random.default_rng(0)
    for shape, k, s, p in WINDOW_SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)              # (B, C, H, W)
        cols = conv.unfold(x, k, s, p)                                # (B, C*k*k, L)
        tx, tc = torch.from_numpy(x), torch.from_numpy(cols)
        hw = shape[2:]
        fns = []
        for _, be in cols_of:
            fns += [lambda be=be: be.unfold(x, k, s, p), lambda be=be: be.fold(cols, hw, k, s, p)]
        fns += [lambda: F.unfold(tx, k, stride=s, padding=p),
                lambda: F.fold(tc, hw, k, stride=s, padding=p)]
        times = best_times(fns, repeats)
        pair = [times[i] + times[i + 1] for i in range(0, len(times), 2)]  # unfold + fold
        nbytes = 2 * (x.nbytes + cols.nbytes)
        line = f"{'x'.join(map(str, shape))} k{k}s{s}p{p}".ljust(23)
        line += "".join(f"{t * 1e3:9.2f}" for t in pair)
        for i in range(len(backends)):
            line += f"{nbytes / pair[i] / 1e9:12.1f}{pair[-1] / pair[i]:13.2f}"
        print(line)


def bench_opencl_transfers(be, repeats):
    """The OpenCL calls above, split by event profiling into host -> device
    copies, kernels and device -> host copy (ms, of the fastest call)."""
    import numpy as np
    print(f"\nopencl ms on {be.device_name()}".ljust(30)
          + "".join(f"{h:>10}" for h in ("upload", "kernel", "download", "kernel %")))
    rng = np.random.default_rng(0)
    cases = [(f"matmul {m}x{k}x{n}", be.matmul, (rng.standard_normal((m, k), dtype=np.float32),
              rng.standard_normal((k, n), dtype=np.float32))) for m, k, n, *_ in MATMUL_SHAPES]
    cases += [(f"unfold {'x'.join(map(str, shape))} k{k}", be.unfold,
               (rng.standard_normal(shape, dtype=np.float32), k, s, p))
              for shape, k, s, p in WINDOW_SHAPES]
    for label, fn, args in cases:
        fn(*args)                                               # warm up
        splits = []
        for _ in range(repeats):
            fn(*args)
            splits.append(be.last_profile())
        best = min(splits, key=lambda d: sum(d.values()))
        parts = [best["upload"], best["kernel"], best["download"]]
        print(label.ljust(29) + "".join(f"{t * 1e3:10.2f}" for t in parts)
              + f"{100 * parts[1] / sum(parts):10.0f}")


def run_one(threads, repeats, only_bf16=False):
    import torch
    torch.set_num_threads(threads)
    backends = loaded_backends()
    isa = ""
    for name, be in backends:
        if hasattr(be, "isa"):
            isa = f", {name} ISA {be.isa()}, {be.get_num_threads()} threads"
    print(f"\n=== {threads} thread(s){isa} ===")
    if not only_bf16:
        bench_matmul(backends, repeats)
    for name, be in backends:
        if name == "c":
            bench_bf16(be, repeats)
    if only_bf16:
        return
    bench_windows(backends, 2 * repeats)          # ms-scale calls: more repeats
    for name, be in backends:
        if name == "opencl":
            bench_opencl_transfers(be, repeats)


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 thread, 2 repeats")
    parser.add_argument("--threads", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="only the bf16 GEMM's table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = args.threads or ([1] if args.quick else [1, 2])
    repeats = args.repeats or (2 if args.quick else 10)
    if args.child:
        run_one(threads[0], repeats, args.bf16)
        return
    print(f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}")
    for n in threads:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n),
                   MKL_NUM_THREADS=str(n), MINIT2T_NUM_THREADS=str(n), POCL_MAX_PTHREAD_COUNT=str(n))
        cmd = [sys.executable, __file__, "--child", "--threads", str(n), "--repeats", str(repeats)]
        cmd += ["--bf16"] if args.bf16 else []
        sys.stdout.flush()
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
