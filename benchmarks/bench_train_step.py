"""One training step of a model in minit2t against the identical model in PyTorch eager (CPU).

    python benchmarks/bench_train_step.py [--model t2t_vit_cifar] [--batch-size 128] [--repeats 5]

A step is forward, cross-entropy, backward and an AdamW step. Both frameworks get the same
weights, the same batch and the same number of threads; steps are timed alternately in one
process (minit2t, torch, minit2t, ...) so that the machine's noise hits both alike, and the
ratio of median images/s is printed.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import minit2t as mt  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="t2t_vit_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--backend", default=None)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    if hasattr(mt.backends, "set_num_threads"):
        mt.backends.set_num_threads(args.threads)
    if args.backend:
        mt.set_backend(args.backend)
    mt.manual_seed(0)
    model = mt.create_model(args.model).train()
    tmodel = build_torch(torch, model)
    C, H, W = model.default_cfg["input_size"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, C, H, W)).astype(np.float32)
    y = rng.integers(0, model.num_classes, args.batch_size)
    opt = mt.optim.AdamW(mt.optim.param_groups_for_weight_decay(model, 0.05), lr=1e-4)
    topt = torch.optim.AdamW(tmodel.parameters(), lr=1e-4, weight_decay=0.05)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    ours, theirs = [], []
    for i in range(args.repeats + 1):                     # the first round warms up both
        t0 = time.perf_counter()
        minit2t_step(model, opt, x, y)
        t1 = time.perf_counter()
        torch_step(torch, tmodel, topt, tx, ty)
        t2 = time.perf_counter()
        if i:
            ours.append(args.batch_size / (t1 - t0))
            theirs.append(args.batch_size / (t2 - t1))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"model {args.model}, batch {args.batch_size}, {args.threads} threads, backend {mt.get_backend().name}")
    print(f"minit2t   {a:8.1f} images/s   (steps: {', '.join(f'{v:.0f}' for v in ours)})")
    print(f"torch     {b:8.1f} images/s   (steps: {', '.join(f'{v:.0f}' for v in theirs)})")
    print(f"ratio minit2t/torch: {a / b:.2f}")


if __name__ == "__main__":
    main()
