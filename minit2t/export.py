"""A training run as a shipped model: python -m minit2t export --checkpoint DIR/last.npz --out NAME.npz

Writes what mt.pretrained and `eval --checkpoint` read (hub.export_pretrained: the weights, the model's
config, and a default_cfg with the input size and the CIFAR-10 normalisation `train` used) and, beside it,
the run's log and curves from the checkpoint's own history: NAME.metrics.jsonl and NAME.curves.png, the
files minit2t/weights/ holds for each shipped model. ema=True (--ema) exports the weights' average that
`train --ema` kept, instead of the weights. Nothing is overwritten without overwrite=True (--overwrite);
each file is written atomically. Put the three files (and a NAME.md card) in minit2t/weights/ to ship them.
"""
import os

from minit2t.checkpoint import read_checkpoint_meta
from minit2t.hub import export_pretrained, load_model
from minit2t.models.zoo import default_cfg
from minit2t.runs import plot_curves, write_metrics


def export_run(checkpoint, out, ema=False, overwrite=False):
    """Write the run whose training checkpoint is `checkpoint` as the shipped model file `out` (NAME.npz),
    its log and curves beside it; returns the three paths."""
    if not isinstance(out, str) or not out.endswith(".npz") or os.path.basename(out) == ".npz":
        raise ValueError(f"--out must name the model file, NAME.npz; got {out!r}")
    paths = [out, out[:-len(".npz")] + ".metrics.jsonl", out[:-len(".npz")] + ".curves.png"]
    there = [p for p in paths if os.path.exists(p)]
    if there and not overwrite:
        raise FileExistsError(f"{there[0]} exists: pass --overwrite to replace it (and its log and curves)")
    meta = read_checkpoint_meta(checkpoint)          # a training checkpoint, or a one-line LoadError
    model, _ = load_model(checkpoint, ema=ema)
    model.default_cfg = default_cfg(meta["run_config"]["model"], model.config, cifar=True)   # train's data
    export_pretrained(model, out)
    write_metrics(paths[1], meta["history"])
    plot_curves(meta["history"], paths[2])
    return paths

