"""A short stand-in for a full CIFAR-10 run, to compare recipes before spending an hour on one.

    python benchmarks/recipe_proxy.py [--tokens-type transformer] [--lr 1e-3] [--label-smoothing 0.1]
                                      [--subset 10000] [--epochs 3] [--test-images 2000]

Trains t2t_vit_cifar with `minit2t.train`'s own epoch loop (batch 64, warm-up half an epoch then
cosine, no random crop, clipping at 1.0, seed 0) on a seeded subset of the training images and
prints, after every epoch, the train loss and accuracy and the accuracy on the first
--test-images test images. Two recipes can run side by side with MINIT2T_NUM_THREADS=1 each.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)                                  # this checkout's minit2t

from minit2t import train  # noqa: E402

CIFAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar-10-binary.tar.gz")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("MINIT2T_DATA", CIFAR))
    p.add_argument("--tokens-type", default=None, choices=["performer", "transformer", "convolution"])
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--subset", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--test-images", type=int, default=2000)
    return p.parse_args()


def main():
    args = parse_args()
    kwargs = {"tokens_type": args.tokens_type} if args.tokens_type else {}
    cfg = dict(model="t2t_vit_cifar", model_kwargs=kwargs, seed=0, batch_size=64, train_subset=args.subset,
               mixup=False, crop_padding=0, label_smoothing=args.label_smoothing, clip_grad=1.0,
               weight_decay=0.05, lr=args.lr, warmup_epochs=0.5, min_lr=1e-5, epochs=args.epochs)
    loader, test_x, test_y = train.load_data(args.data, cfg)
    model, opt, sched = train.build(cfg, len(loader))
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        loss, acc, _ = train.train_one_epoch(model, loader, epoch, opt, sched, cfg, args.epochs)
        test = train.evaluate(model, test_x[:args.test_images], test_y[:args.test_images])
        print(f"epoch {epoch + 1}: train loss {loss:.4f} acc {acc:.4f}, test accuracy "
              f"({args.test_images} images) {test:.4f}, {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
