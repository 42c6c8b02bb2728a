"""The command line: python -m minit2t {summary, convert, train, eval} ... (one clear line on bad input)."""
import argparse
import sys

from minit2t.models import VARIANTS, create_model, list_models


def cmd_summary(args):
    from minit2t.profile import count_macs, summary
    if args.name == "all":
        print(f"{'model':<22}{'params':>10}{'MACs':>10}")
        size = args.img_size or 224
        for name in VARIANTS:                                # the released ones, in the paper's order
            model = create_model(name, img_size=size)
            macs = count_macs(model, (3, size, size))
            params = sum(p.size for p in model.parameters())
            print(f"{name:<22}{params / 1e6:>9.1f}M{macs / 1e9:>9.1f}G")
        return
    given = {k: v for k, v in (("img_size", args.img_size), ("num_classes", args.num_classes)) if v}
    model = create_model(args.name, **given)                 # the model's own size unless given
    size = model.config["img_size"]
    print(f"{args.name} at {size}x{size}")
    print(summary(model, (model.config["in_chans"], size, size)))


def cmd_convert(args):
    from minit2t.convert import convert
    state = convert(args.src, args.dst)
    if args.model:
        model = create_model(args.model, **({"num_classes": args.num_classes} if args.num_classes else {}))
        model.load_state_dict(state, strict=True)
        print(f"checked: loads into {args.model} with strict=True")
    print(f"wrote {args.dst} ({len(state)} arrays)")


def cmd_train(args):
    from minit2t.train import RUN_KEYS, run
    cfg = {key: getattr(args, key) for key in RUN_KEYS}
    history = run(cfg, args.data, args.out, resume=args.resume)
    if history:
        print(f"test accuracy: {history[-1]['test_acc']:.4f}")


def cmd_eval(args):
    from minit2t import backends, data
    from minit2t.checkpoint import load_checkpoint, model_from_checkpoint_config
    from minit2t.train import evaluate
    if args.backend:
        backends.set_backend(args.backend)
    if args.pretrained:
        from minit2t.hub import pretrained
        model = pretrained(args.pretrained)
    else:
        ckpt = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint_config(ckpt["model_config"])
        model.load_state_dict(ckpt["model"], strict=True)
    images, labels = data.load_cifar10(args.data, split="test")
    print(f"test accuracy: {evaluate(model, images, labels):.4f}")


def _train_parser(sub):
    p = sub.add_parser("train", help="train a T2T-ViT on CIFAR-10")
    p.add_argument("--data", default=None, help="CIFAR-10 archive or folder (default: $MINIT2T_DATA, else download)")
    p.add_argument("--model", default="t2t_vit_cifar", choices=list_models())
    p.add_argument("--epochs", type=_positive(int), default=30)
    p.add_argument("--batch-size", type=_positive(int), default=128)
    p.add_argument("--lr", type=_positive(float), default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=2.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: no clipping)")
    p.add_argument("--mixup", action="store_true", help="mixup/cutmix as in the release's recipe")
    p.add_argument("--crop-padding", type=int, default=4, choices=range(0, 17), metavar="P",
                   help="random crop from images zero-padded by P pixels (0: no crop; default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, choices=["numpy", "c", "opencl"])
    p.add_argument("--train-subset", type=_positive(int), default=None, metavar="N",
                   help="train on N images only (a seeded random subset)")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoints, metrics.jsonl, curves.png")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.npz if it exists")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("eval", help="test accuracy of a checkpoint or a pretrained model")
    p.add_argument("--data", default=None)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="FILE")
    which.add_argument("--pretrained", metavar="NAME")
    p.add_argument("--backend", default=None, choices=["numpy", "c", "opencl"])
    p.set_defaults(fn=cmd_eval)


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minit2t", description="T2T-ViT in NumPy and C")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="per-layer table: output shape, params, MACs")
    p.add_argument("name", help="a model name, or 'all' for the paper's table",
                   choices=list_models() + ["all"], metavar="NAME")
    p.add_argument("--img-size", type=int, default=None, help="default: the model's (224; 32 for t2t_vit_cifar)")
    p.add_argument("--num-classes", type=int, default=None, help="default: the model's")
    p.set_defaults(fn=cmd_summary)
    p = sub.add_parser("convert", help="PyTorch checkpoint <-> .npz (direction from the file names)")
    p.add_argument("src", help="CHECKPOINT.pth[.tar] or WEIGHTS.npz")
    p.add_argument("dst", help="OUT.npz or OUT.pth")
    p.add_argument("--model", choices=list_models(), help="also check the weights load into this model")
    p.add_argument("--num-classes", type=int, default=None)
    p.set_defaults(fn=cmd_convert)
    _train_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
