"""Two or more builds of the C extension, timed on one model in one process, in turn.

    python benchmarks/ab_builds.py BUILD.so BUILD.so [...] [--what infer|step] [--rounds 15]
                                   [--precision fp32|bf16]
                                   [--model t2t_vit_cifar]

A build is a copy of minit2t/_cext.abi3.so, e.g. the one of an older commit:

    git stash; python cext/build.py; cp minit2t/_cext.abi3.so /tmp/before.so
    git stash pop; python cext/build.py; cp minit2t/_cext.abi3.so /tmp/after.so
    python benchmarks/ab_builds.py /tmp/before.so /tmp/after.so

Every build is loaded beside the installed one (its own module name), and the C backend's kernels
are pointed at each in turn: every round runs the model twice with each build, so a minute in
which the shared machine is slow hits every build alike. Prints each build's median time (ms) and,
against the first build, the ratio of medians and the median of the paired calls' ratios (the k-th
call of the first build over the k-th of this one, both in the same round): a gain of a few percent,
lost between two separate runs, shows in both. What is timed is
minit2t.speed's inference (batch 256, no_grad) or training step (batch 128), as `python -m
minit2t bench` runs them; the thread count and MINIT2T_ISA apply to every build.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's minit2t

from minit2t.backends import _cmem, c_attention, c_backend, c_kernels  # noqa: E402
from model_runs import add_run_options, heading, model_run  # noqa: E402  (benchmarks/model_runs.py)


def load_build(path, i):
    """(ffi, lib) of the compiled module at path, set to the installed one's threads and ISA."""
    if not os.path.isfile(path):
        sys.exit(f"ab_builds: no build at {path!r} (expected a copy of minit2t/_cext.abi3.so)")
    spec = importlib.util.spec_from_file_location(f"build{i}._cext", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        sys.exit(f"ab_builds: {path!r} does not load as the C extension: {exc}")
    module.lib.minit2t_set_num_threads(_cmem.lib.minit2t_get_num_threads())
    module.lib.minit2t_set_isa(_cmem.lib.minit2t_isa())
    return module.ffi, module.lib


def use(build):
    """Point every module of the C backend that calls the kernels at this build."""
    ffi, lib = build
    _cmem.ffi = c_kernels.ffi = ffi
    _cmem.lib = c_kernels.lib = c_attention.lib = c_backend.lib = lib


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+")
    add_run_options(parser, rounds=15)
    args = parser.parse_args()
    if len(args.builds) < 2 or args.rounds < 1:
        sys.exit(f"ab_builds: expected two builds or more and --rounds >= 1, got {len(args.builds)} "
                 f"build(s) and --rounds {args.rounds}")
    if _cmem.lib is None:
        sys.exit(f"ab_builds: the C backend does not load here: {_cmem.build_error}")
    installed = (_cmem.ffi, _cmem.lib)
    builds = [load_build(path, i) for i, path in enumerate(args.builds)]
    run = model_run(args)
    times = [[] for _ in builds]
    try:
        for build in builds:                                       # warm-up, untimed
            use(build)
            run()
        for _ in range(args.rounds):
            for build, t in zip(builds, times):
                use(build)
                for _ in range(2):
                    start = time.perf_counter()
                    run()
                    t.append(time.perf_counter() - start)
    finally:
        use(installed)
    report(args, times)


def report(args, times):
    print(heading(args))
    first = statistics.median(times[0])
    for path, t in zip(args.builds, times):
        med = statistics.median(t)
        paired = statistics.median(a / b for a, b in zip(times[0], t))
        print(f"  {path:<40} {med * 1e3:8.1f} ms   first / this: {first / med:.3f} (medians), "
              f"{paired:.3f} (median of paired calls)")


if __name__ == "__main__":
    main()
