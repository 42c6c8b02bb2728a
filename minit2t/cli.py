"""The command line: python -m minit2t {summary, convert} ... (one clear line on bad input)."""
import argparse
import sys

from minit2t.models import create_model, list_models

PAPER_MODELS = ["t2t_vit_7", "t2t_vit_10", "t2t_vit_12", "t2t_vit_14", "t2t_vit_19", "t2t_vit_24",
                "t2t_vit_t_14", "t2t_vit_t_19", "t2t_vit_t_24", "t2t_vit_14_resnext", "t2t_vit_14_wide"]


def cmd_summary(args):
    from minit2t.profile import profile, summary
    if args.name == "all":
        print(f"{'model':<22}{'params':>10}{'MACs':>10}")
        for name in PAPER_MODELS:
            model = create_model(name, img_size=args.img_size)
            rows, macs = profile(model, (3, args.img_size, args.img_size))
            params = sum(p.size for p in model.parameters())
            print(f"{name:<22}{params / 1e6:>9.1f}M{macs / 1e9:>9.1f}G")
        return
    model = create_model(args.name, img_size=args.img_size, num_classes=args.num_classes)
    print(f"{args.name} at {args.img_size}x{args.img_size}")
    print(summary(model, (3, args.img_size, args.img_size)))


def cmd_convert(args):
    from minit2t.convert import convert
    state = convert(args.src, args.dst)
    if args.model:
        model = create_model(args.model, **({"num_classes": args.num_classes} if args.num_classes else {}))
        model.load_state_dict(state, strict=True)
        print(f"checked: loads into {args.model} with strict=True")
    print(f"wrote {args.dst} ({len(state)} arrays)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minit2t", description="T2T-ViT in NumPy and C")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="per-layer table: output shape, params, MACs")
    p.add_argument("name", help="a model name, or 'all' for the paper's table",
                   choices=list_models() + ["all"], metavar="NAME")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.set_defaults(fn=cmd_summary)
    p = sub.add_parser("convert", help="PyTorch checkpoint <-> .npz (direction from the file names)")
    p.add_argument("src", help="CHECKPOINT.pth[.tar] or WEIGHTS.npz")
    p.add_argument("dst", help="OUT.npz or OUT.pth")
    p.add_argument("--model", choices=list_models(), help="also check the weights load into this model")
    p.add_argument("--num-classes", type=int, default=None)
    p.set_defaults(fn=cmd_convert)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
