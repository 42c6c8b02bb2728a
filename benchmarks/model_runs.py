"""What ab_builds.py and ab_fusion.py time, and their options for it: minit2t.speed's inference
(batch 256, no_grad) or training step (batch 128) of a zoo model, as `python -m minit2t bench` runs
them, and the report line naming the model, the CPU, the threads and the ISA."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's minit2t

import minit2t as mt  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)
from minit2t.backends import _cmem  # noqa: E402
from minit2t.speed import minit2t_runners  # noqa: E402


def add_run_options(parser, rounds):
    """--what, --precision, --rounds (default `rounds`), --model."""
    parser.add_argument("--what", choices=("infer", "step"), default="infer")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: the forward (and loss) under mt.autocast, as `bench --precision bf16`")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--model", default="t2t_vit_cifar")


def model_run(args):
    """The call to time: args.model's inference or training step on a fixed random batch."""
    batch = 256 if args.what == "infer" else 128
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    step, infer = minit2t_runners(mt.create_model(args.model), x, rng.integers(0, 10, batch),
                                  bf16=args.precision == "bf16")
    return infer if args.what == "infer" else step


def heading(args):
    """The report's first line: what ran, where."""
    return (f"{args.model} {args.what} ({args.precision}), {cpu_name()}, {_cmem.lib.minit2t_get_num_threads()} "
            f"threads, ISA {_cmem.ISAS[_cmem.lib.minit2t_isa()]}, {args.rounds} rounds")
