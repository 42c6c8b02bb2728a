"""A fusion of the C backend switched on and off, timed on one model in one process, in turn.

    python benchmarks/ab_fusion.py [--off residual|tokens|both] [--what infer|step] [--rounds 11]
                                   [--precision fp32|bf16] [--model t2t_vit_cifar]

ab_builds.py compares builds of the C extension; a fusion that is partly Python (a speed policy of
minit2t.backends.fusion, a layout chosen by the backend) is compared here instead, within one build.
"Off" stands in for what the code did before, for the same values:
  residual  a block's residual sums as separate Adds: fusion.may_fuse_residual (nn.Block, the T2T
            layer) and may_fuse_linear_add (the branches, the T2T value skip) answer no, so no
            ops.LinearAdd runs;
  tokens    the soft splits of tokens re-structurized as an image unfold channels-first, as for any
            image (c_kernels' choice of the tokens-major layout answers no): the transposing copies
            around soft splits 2 and 3 come back;
  both      the two at once.
Every round runs the model twice each way, on first in odd rounds and off first in even ones, so a
minute in which the shared machine is slow hits both alike. Prints each way's median time (ms), the
ratio of the medians (off / on) and the median of the paired calls' ratios. What is timed is
minit2t.speed's inference (batch 256, no_grad) or training step (batch 128), as `python -m minit2t
bench` runs them, after two untimed calls each way.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's minit2t

import minit2t as mt  # noqa: E402
import minit2t.models.token_transformer as token_transformer  # noqa: E402
import minit2t.nn.transformer as transformer  # noqa: E402
from minit2t.backends import _cmem, c_kernels  # noqa: E402
from model_runs import add_run_options, heading, model_run  # noqa: E402  (benchmarks/model_runs.py)

# (module, name) of each answer that "off" replaces by no
SWITCHES = {
    "residual": [(transformer, "may_fuse_residual"), (transformer, "may_fuse_linear_add"),
                 (token_transformer, "may_fuse_residual")],
    "tokens": [(c_kernels, "_channels_last")],
}


def switch(which, on, saved):
    """Restore the real answers (on), or make every answer in `which` no."""
    for (module, name), real in zip(which, saved):
        setattr(module, name, real if on else (lambda *args: False))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--off", choices=("residual", "tokens", "both"), default="both")
    add_run_options(parser, rounds=11)
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit(f"ab_fusion: expected --rounds >= 1, got {args.rounds}")
    if _cmem.lib is None:
        sys.exit(f"ab_fusion: the C backend does not load here: {_cmem.build_error}")
    mt.backends.set_backend("c")
    which = SWITCHES["residual"] + SWITCHES["tokens"] if args.off == "both" else SWITCHES[args.off]
    saved = [getattr(module, name) for module, name in which]
    run = model_run(args)
    times = {True: [], False: []}
    try:
        for r in range(args.rounds + 1):                           # round 0: warm-up, untimed
            for on in ((True, False) if r % 2 else (False, True)):
                switch(which, on, saved)
                for _ in range(2):
                    start = time.perf_counter()
                    run()
                    if r:
                        times[on].append(time.perf_counter() - start)
    finally:
        switch(which, True, saved)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    paired = statistics.median(a / b for a, b in zip(times[False], times[True]))
    print(f"{heading(args)}, off: {args.off}")
    print(f"  on  {on * 1e3:8.1f} ms   off {off * 1e3:8.1f} ms   off / on: {off / on:.3f} (medians), "
          f"{paired:.3f} (median of paired calls)")


if __name__ == "__main__":
    main()
