"""A short stand-in for a full CIFAR-10 run, to compare recipes before spending an hour on one.

    python benchmarks/recipe_proxy.py --name NAME [--json benchmarks/results/recipe_proxy.json]
        [--subset 10000] [--epochs 4] [--test-images 2000] [--batch-size 64] [--lr 2e-3]
        [--label-smoothing 0.1] [--crop-padding 0] [--pad-mode zero|reflect] [--aug basic|3aug]
        [--layer-scale INIT] [--drop-path R] [--drop-path-uniform] [--ema DECAY] [--tta]
        [--tokens-type transformer]

Trains t2t_vit_cifar with `minit2t.train`'s own pieces (the run settings of `python -m minit2t
train`, warm-up half an epoch then cosine, clipping at 1.0, seed 0) on a seeded subset of the
training images and prints, after every epoch, the train loss and accuracy and the accuracy on the
first --test-images test images (and the weights' average's, with --ema). At the end one row: the
last epoch's test accuracy (with --tta also with flip test-time augmentation), the average's, and
the training seconds; with --json the row is added to that file under --name (a row of the same
name is replaced), with the CPU it ran on and its command. Two recipes can run side by side with
MINIT2T_NUM_THREADS=1 each.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]   # this checkout's minit2t; machine.py

from machine import cpu_name, write_json  # noqa: E402
from minit2t import optim, train  # noqa: E402

CIFAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar-10-binary.tar.gz")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="the row's name in the results")
    p.add_argument("--json", default=None, metavar="FILE", help="add the row to this file")
    p.add_argument("--data", default=os.environ.get("MINIT2T_DATA", CIFAR))
    p.add_argument("--tokens-type", default=None, choices=["performer", "transformer", "convolution"])
    p.add_argument("--subset", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--crop-padding", type=int, default=0)
    p.add_argument("--pad-mode", default="zero", choices=["zero", "reflect"])
    p.add_argument("--aug", default="basic", choices=["basic", "3aug"])
    p.add_argument("--layer-scale", type=float, default=None)
    p.add_argument("--drop-path", type=float, default=0.0)
    p.add_argument("--drop-path-uniform", action="store_true")
    p.add_argument("--ema", type=float, default=None)
    p.add_argument("--tta", action="store_true", help="also score the last epoch with flip TTA")
    return p.parse_args()


def run_config(args):
    kwargs = {"tokens_type": args.tokens_type} if args.tokens_type else {}
    return dict(model="t2t_vit_cifar", model_kwargs=kwargs, seed=0, batch_size=args.batch_size,
                train_subset=args.subset, mixup=False, crop_padding=args.crop_padding, pad_mode=args.pad_mode,
                aug=args.aug, layer_scale=args.layer_scale, drop_path=args.drop_path,
                drop_path_uniform=args.drop_path_uniform, ema=args.ema, label_smoothing=args.label_smoothing,
                clip_grad=1.0, weight_decay=0.05, lr=args.lr, warmup_epochs=0.5, min_lr=1e-5, epochs=args.epochs)


def main():
    args = parse_args()
    cfg = run_config(args)
    loader, test_x, test_y = train.load_data(args.data, cfg)
    test = test_x[:args.test_images], test_y[:args.test_images]
    model, opt, sched = train.build(cfg, len(loader))
    ema = optim.EMA(model, args.ema) if args.ema else None
    seconds, row = 0.0, {}
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        loss, acc, _ = train.train_one_epoch(model, loader, epoch, opt, sched, cfg, args.epochs, ema=ema)
        seconds += time.perf_counter() - t0
        row = dict(test_acc=train.evaluate(model, *test), train_acc=acc, train_loss=loss)
        if ema is not None:
            with ema.swapped_in(model):
                row["ema_test_acc"] = train.evaluate(model, *test)
        print(f"epoch {epoch + 1}: train loss {loss:.4f} acc {acc:.4f}, test accuracy ({len(test[1])} images) "
              f"{row['test_acc']:.4f}" + (f", average {row['ema_test_acc']:.4f}" if ema else "") +
              f", {seconds:.0f} s training", flush=True)
    if args.tta:
        row["tta_test_acc"] = train.evaluate(model, *test, tta="flip")
        print(f"flip TTA: {row['tta_test_acc']:.4f}")
    row.update(name=args.name, seconds=seconds, images=len(loader) * args.batch_size * args.epochs,
               settings={k: v for k, v in cfg.items() if k != "model_kwargs"}, test_images=len(test[1]),
               cpu=cpu_name(), command="python benchmarks/recipe_proxy.py " + " ".join(sys.argv[1:]))
    print(json.dumps({k: row[k] for k in row if k not in ("settings", "command")}))
    if args.json:
        add_row(args.json, row)


def add_row(path, row):
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = [r for r in json.load(f)["rows"] if r["name"] != row["name"]]
    write_json(path, {"rows": rows + [row]})


if __name__ == "__main__":
    main()
