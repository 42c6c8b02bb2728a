"""The training recipe's options, each declared once: python -m minit2t train --lr 1e-3 ...

RECIPE is every setting of a run. From it come `train`'s command-line flags (cli.py), the run's
defaults (DEFAULTS), what --resume may change (the options with resume=True; every other setting
stays as saved: runs.py), the checks of a training checkpoint's run config (check_run_config,
used by checkpoint.py), and the model options a recipe sets (model_kwargs). Adding an option is
one Option here and its use in train.py.

A run config, as saved in a checkpoint, is these options plus what the run recorded: data (where the
training images came from), train_images (how many), model_kwargs (model options beside the recipe's).
Options added after the first checkpoints were written (added_later) take their defaults there.
"""
from minit2t.amp import PRECISIONS
from minit2t.backends import BACKENDS
from minit2t.models import list_models
from minit2t.models.config import MODEL_OPTIONS, check_soft_split, model_option
from minit2t.options import Invalid, Option, by_name, defaults, need, whole
from minit2t.reduction.spec import parse_spec

MAX_COUNT = 10 ** 9                                 # epochs, batch size, images: a bound, not a setting


def weights_spec(spec):
    """The form of --distill's value: pretrained:NAME, or the path of a .npz weights file."""
    if not (spec.startswith("pretrained:") and len(spec) > len("pretrained:")) and not spec.endswith(".npz"):
        raise Invalid(f"must be pretrained:NAME or a .npz weights file, got {spec!r}")

RECIPE = (
    Option("model", "choice", "t2t_vit_cifar", "a zoo model, one of mt.list_models()", choices=tuple(list_models()),
           metavar="NAME"),
    Option("epochs", "int", 30, "passes over the training images", lo=1, hi=MAX_COUNT, resume=True),
    Option("steps", "int", None, "instead of --epochs, a budget of N optimizer steps: the schedule spans them "
           "and the last epoch ends when they are done", lo=1, hi=10 ** 12, optional=True, added_later=True,
           metavar="N"),
    Option("batch_size", "int", 128, "images a step", lo=1, hi=MAX_COUNT),
    Option("lr", "float", 1e-3, "AdamW's peak learning rate", lo=0.0, lo_open=True),
    Option("min_lr", "float", 1e-5, "the learning rate the cosine ends at", lo=0.0),
    Option("weight_decay", "float", 0.05, "AdamW's decoupled weight decay (not on biases, norms, cls_token, "
           "pos_embed)", lo=0.0),
    Option("warmup_epochs", "float", 2.0, "epochs of linear warm-up", lo=0.0),
    Option("label_smoothing", "float", 0.1, "of the cross-entropy's targets (without --mixup)", lo=0.0, hi=1.0),
    Option("clip_grad", "float", 1.0, "max gradient norm (0: no clipping)", lo=0.0),
    Option("mixup", "bool", False, "mixup/cutmix as in the release's recipe"),
    Option("crop_padding", "int", 4, "random crop from images padded by P pixels (0: no crop)", lo=0, hi=16,
           added_later=True, metavar="P"),
    Option("pad_mode", "choice", "zero", "how the random crop pads (reflect: DeiT III's simple random crop)",
           choices=("zero", "reflect"), added_later=True),
    Option("aug", "choice", "basic", "basic: crop and flip; 3aug: also DeiT III's 3-Augment (grayscale, "
           "solarize or blur, then colour jitter 0.3)", choices=("basic", "3aug"), added_later=True),
    model_option("layer_scale_init", name="layer_scale", metavar="INIT",
                 help="LayerScale in every block, its gammas starting at INIT (e.g. 1e-4)"),
    model_option("drop_path_rate", name="drop_path", added_later=True, metavar="R",
                 help="stochastic depth: the last block's rate"),
    model_option("drop_path_uniform",
                 help="every block drops its branches at the --drop-path rate (DeiT III), not a linear ramp"),
    Option("ema", "float", None, "also keep an exponential moving average of the weights (e.g. 0.999 a step), "
           "evaluated after every epoch and saved in the checkpoint (eval --ema scores it)", lo=0.0, hi=1.0,
           lo_open=True, optional=True, added_later=True, metavar="DECAY"),
    Option("eval_every", "int", 1, "score the test images after every N-th epoch and after the last (the other "
           "epochs' log rows hold no test accuracy: the time goes to training)", lo=1, hi=MAX_COUNT, resume=True,
           added_later=True, metavar="N"),
    Option("precision", "choice", "fp32", "bf16: the forward and the loss under mt.autocast(\"bfloat16\") "
           "(products in bf16, master weights, gradients and the optimiser in fp32); kept on --resume",
           choices=PRECISIONS, added_later=True),
    Option("seed", "int", 0, "of the initialisation, the shuffling and the augmentation", lo=0, hi=MAX_COUNT),
    Option("backend", "choice", None, "the kernels (none: C when it is built, else NumPy)", choices=BACKENDS,
           optional=True, resume=True),
    Option("train_subset", "int", None, "train on N images only (a seeded random subset)", lo=1, hi=MAX_COUNT,
           optional=True, metavar="N"),
    Option("reduce", "text", None, "token reduction in the backbone blocks: tome:r=8, evit:keep=0.7, mctf:r=8 "
           "(options: minit2t.reduction.spec), or none", optional=True, added_later=True, parse=parse_spec,
           metavar="SPEC"),
    Option("distill", "text", None, "soft distillation (DeiT): the targets mix the label with the predictions of a "
           "teacher, the run's model without --reduce holding these weights (pretrained:NAME or a .npz weights "
           "file)",
           optional=True, added_later=True, parse=weights_spec, metavar="WEIGHTS"),
    Option("distill_weight", "float", 0.5, "with --distill, the teacher's share of the targets (the label's: "
           "1 - W)", lo=0.0, hi=1.0, hi_closed=True, added_later=True, metavar="W"),
)
OPTIONS = by_name(RECIPE)
DEFAULTS = defaults(RECIPE)
RUN_KEYS = tuple(OPTIONS)
CHANGEABLE_ON_RESUME = tuple(o.name for o in RECIPE if o.resume)
MODEL_KEYS = {o.name: o.sets for o in RECIPE if o.sets}    # recipe options that set a model option
RECORDED = ("data", "train_images", "model_kwargs")     # written by the run beside its options


def model_kwargs(cfg):
    """The model options a run's settings ask for, only those that differ from the model's defaults,
    so that a default run builds the default model."""
    return {MODEL_KEYS[k]: cfg[k] for k in MODEL_KEYS if cfg.get(k)}


def check_run_config(run):
    """The run config of a training checkpoint, checked: every option by its declaration (an option
    added later may be absent: its default), then what the run recorded. Raises Invalid."""
    run = need(run, dict, "run config")
    missing = [o.name for o in RECIPE if not o.added_later and o.name not in run]
    if missing:
        raise Invalid(f"run config lacks {missing}")
    for o in RECIPE:
        o.check(run.get(o.name, o.default), f"run config {o.name}")
    if "train_images" in run:
        whole(run["train_images"], "run config train_images", 1, MAX_COUNT)
    if run.get("data") is not None:
        need(run["data"], str, "run config data")
    kwargs = need(run.get("model_kwargs", {}), dict, "run config model_kwargs")
    model = by_name(MODEL_OPTIONS)
    for key, value in kwargs.items():
        if key not in model:
            raise Invalid(f"run config model_kwargs has unknown keys {sorted(set(kwargs) - set(model))}")
        model[key].check(value, f"run config model_kwargs {key}")
    return run


def same_model_kwargs(run, config):
    """The model options a run config asked for (model_kwargs) are those of the model config it saved."""
    for key, value in run.get("model_kwargs", {}).items():
        if (check_soft_split(value) if key == "soft_split" else value) != config[key]:
            raise Invalid(f"run config model_kwargs {key}={value!r} but the model config has {config[key]!r}")


def flag(key):
    """How the command line names a run setting: --batch-size for batch_size."""
    return OPTIONS[key].flag if key in OPTIONS else key

