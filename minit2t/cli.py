"""The command line: python -m minit2t {summary, convert, train, eval, export, bench} ...
(one clear line on bad input)."""
import argparse
import sys
import time

from minit2t import backends, data, recipe, speed
from minit2t.amp import PRECISIONS, for_precision
from minit2t.approx import parse_attention_spec, swap_t2t_attention
from minit2t.convert import convert
from minit2t.export import export_run
from minit2t.hub import list_pretrained, load_model, pretrained
from minit2t.models import VARIANTS, create_model, list_models
from minit2t.models.zoo import CIFAR_INPUT, CIFAR_VARIANTS
from minit2t.profile import count_macs, summary
from minit2t.reduction import reduce_tokens
from minit2t.train import evaluate, run


def cmd_summary(args):
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
    state = convert(args.src, args.dst)
    if args.model:
        model = create_model(args.model, **({"num_classes": args.num_classes} if args.num_classes else {}))
        try:
            model.load_state_dict(state, strict=True)
        except ValueError as exc:
            raise ValueError(f"{args.src} does not load into {args.model}: {exc}") from None
        print(f"checked: loads into {args.model} with strict=True")
    print(f"wrote {args.dst} ({len(state)} arrays)")


def cmd_train(args):
    given = {key: getattr(args, key) for key in recipe.RUN_KEYS if getattr(args, key) is not None}   # as given
    if "steps" in given and "epochs" in given:
        raise ValueError(f"--epochs {given['epochs']} and --steps {given['steps']}: give one (--steps sets the epochs)")
    history = run({**recipe.DEFAULTS, **given}, args.data, args.out, resume=args.resume, init=args.init,
                  overwrite=args.overwrite, given=given, download=True if args.download else None)
    if history and "test_acc" in history[-1]:
        if "ema_test_acc" in history[-1]:
            print(f"the weights' average (--ema): test accuracy {history[-1]['ema_test_acc']:.4f}")
        print(f"test accuracy: {history[-1]['test_acc']:.4f}")


def cmd_eval(args):
    if args.backend:
        backends.set_backend(args.backend)
    if args.t2t_attention:                                   # a bad spec: one line before any loading
        parse_attention_spec(args.t2t_attention)
    if args.ema and not args.checkpoint:
        raise ValueError("--ema scores the weights' average of a training checkpoint: give --checkpoint FILE")
    if args.pretrained:
        model = pretrained(args.pretrained)
    else:                                                    # any minit2t weights file
        cifar = {} if args.model in CIFAR_VARIANTS else CIFAR_INPUT
        model, _ = load_model(args.checkpoint, args.model, ema=args.ema, **cifar)
    if args.reduce:
        reduce_tokens(model, args.reduce)
    if args.t2t_attention:
        swap_t2t_attention(model, args.t2t_attention)
    images, labels = data.load_cifar10(args.data, split="test", download_if_missing=True if args.download else None)
    start = time.perf_counter()
    with for_precision(args.precision):
        accuracy = evaluate(model, images, labels, progress=sys.stderr, tta=args.tta)
    rate = len(labels) / (time.perf_counter() - start)
    backend = backends.get_backend().__name__.split(".")[-1].replace("_backend", "")
    extras = ([model.config["reduce"]] if "reduce" in model.config else []) + \
             ([f"t2t attention {args.t2t_attention}"] if args.t2t_attention else []) + \
             (["flip TTA (two passes an image)"] if args.tta else []) + (["the weights' average"] if args.ema else []) + \
             (["bf16 autocast"] if args.precision == "bf16" else [])
    print(f"images/s: {rate:.1f} (batch 256, {', '.join([backend + ' backend'] + extras)})")
    print(f"test accuracy: {accuracy:.4f}")


def cmd_export(args):
    paths = export_run(args.checkpoint, args.out, ema=args.ema, overwrite=args.overwrite)
    what = "the weights' average" if args.ema else "the weights"
    print(f"wrote {', '.join(paths)} ({what} of {args.checkpoint})")


def cmd_bench(args):
    precisions = PRECISIONS if args.precision == "all" else (args.precision,)
    rows, why_not, threads = speed.bench(args.model, args.batch_size, args.infer_batch, args.repeats, args.threads,
                                         precisions=precisions, with_torch=args.torch)
    print("\n".join(speed.report(args.model, rows, why_not, threads, args.repeats)))


def _bench_parser(sub):
    p = sub.add_parser("bench", help="images/s of a model, training and inference, beside PyTorch when at hand")
    p.add_argument("--model", default="t2t_vit_cifar", choices=list_models(), metavar="NAME",
                   help="a zoo model (default t2t_vit_cifar)")
    p.add_argument("--batch-size", type=_positive, default=128, help="of a training step (default 128)")
    p.add_argument("--infer-batch", type=_positive, default=256, help="of inference (default 256)")
    p.add_argument("--repeats", type=_positive, default=5, help="timed runs of each (default 5)")
    p.add_argument("--threads", type=_positive, default=None, help="default: every core this process may use")
    p.add_argument("--precision", choices=PRECISIONS + ("all",), default="all",
                   help="fp32, bf16 (under autocast; torch's under torch.autocast) or all (default)")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True,
                   help="beside the PyTorch transcription, in the same precision (default; --no-torch: not)")
    p.set_defaults(fn=cmd_bench)


def _train_parser(sub):
    p = sub.add_parser("train", help="train a T2T-ViT on CIFAR-10")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    for option in recipe.RECIPE:                             # each None unless given: minit2t/recipe.py
        option.add_flag(p, help=TRAIN_HELP.get(option.name))
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoints, metrics.jsonl, curves.png")
    flags = [recipe.flag(k) for k in recipe.CHANGEABLE_ON_RESUME]
    changeable = ", ".join(flags[:-1]) + " and " + flags[-1]
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run in DIR from DIR/last.npz, with the settings it was started with: "
                            f"{changeable} may change (a new --epochs: the warm-up + cosine schedule is recomputed "
                            "over the new length and said in a line); any other setting given that differs from "
                            "the run's is refused, naming each. Without a checkpoint in DIR a new run starts")
    group.add_argument("--overwrite", action="store_true",
                       help="start a new run in DIR, removing the run there (last.npz, metrics.jsonl, curves.png); "
                            "a DIR that holds a run is an error without --resume or --overwrite")
    p.add_argument("--init", default=None, metavar="SPEC",
                   help="start from these model weights: pretrained:NAME or any minit2t weights file "
                        "(a fresh optimiser and schedule; not with --resume)")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("eval", help="test accuracy of a checkpoint or a pretrained model")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="FILE", help="a training checkpoint, shipped model or state dict")
    which.add_argument("--pretrained", metavar="NAME", choices=list_pretrained(),
                       help=f"a model shipped in the package: {', '.join(list_pretrained())}")
    p.add_argument("--model", choices=list_models(), help="the model of a plain state dict (other files name theirs)")
    recipe.OPTIONS["backend"].add_flag(p)
    recipe.OPTIONS["reduce"].add_flag(p)
    recipe.OPTIONS["precision"].add_flag(p)
    p.add_argument("--t2t-attention", default=None, metavar="SPEC",
                   help="replace the T2T module's attention: exact, local:window=98, performer:features=49, "
                        "scatterbrain:window=49,features=24, lsh:bucket=49,hashes=2 (options: minit2t.approx.spec)")
    p.add_argument("--tta", default=None, choices=["flip"],
                   help="test-time augmentation: flip scores the mean of each image's and its mirror's logits")
    p.add_argument("--ema", action="store_true",
                   help="score the average of the weights a training checkpoint saved (train --ema)")
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("export", help="a training run as a shipped model file, its log and curves beside it")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="the run's DIR/last.npz")
    p.add_argument("--out", required=True, metavar="NAME.npz",
                   help="the model file; NAME.metrics.jsonl and NAME.curves.png are written beside it")
    p.add_argument("--ema", action="store_true", help="export the weights' average (train --ema), not the weights")
    p.add_argument("--overwrite", action="store_true", help="replace NAME.npz and its log and curves if there")
    p.set_defaults(fn=cmd_export)


TRAIN_HELP = {"reduce": recipe.OPTIONS["reduce"].help + "; fine-tunes with it (MCTF: with its consistency loss)"}
DATA_HELP = ("CIFAR-10 archive or folder (default: $MINIT2T_DATA, else a copy in the cache folder, else the "
             "2,500-image sample shipped with minit2t, said in a line)")
DOWNLOAD_HELP = ("when no CIFAR-10 is given or found, download the official archive (170 MB, MD5-checked) into "
                 "$MINIT2T_CACHE or ~/.cache/minit2t instead of using the sample")


def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse's parser, its errors in one line (the command, then what was wrong), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def build_parser():
    parser = Parser(prog="python -m minit2t", description="T2T-ViT in NumPy and C")
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
    _bench_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:                         # Ctrl-C: one line (train's says how to resume)
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130
    return 0
