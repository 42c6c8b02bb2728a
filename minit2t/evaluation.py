"""Scoring a model on CIFAR-10 images: logits and top-1 accuracy, in eval mode, with no gradients.

    predict(model, images, tta=None)     logits (N, K) for uint8 images (N, 3, 32, 32)
    evaluate(model, images, labels)      top-1 accuracy; NonFiniteOutput on a NaN or inf logit
tta="flip": test-time augmentation, the mean of the logits of each image and of its mirror image.
The images are normalised here into the model's dtype (float32, or float64 after model.to(np.float64));
images of another dtype are a TypeError (already normalised ones go to the model itself). No images
give no logits, (0, K), and an accuracy of 0.0; a model itself refuses an empty batch.
"""
import time

import numpy as np

from minit2t import data
from minit2t.grad_mode import no_grad
from minit2t.tensor import Tensor

TTA = (None, "flip")


class NonFiniteOutput(ValueError):
    """The model gave NaN or inf logits: an error, never a predicted class."""


def predict(model, images, batch_size=256, progress=None, tta=None):
    """Logits (N, K) of `model` in eval mode for uint8 images (N, 3, 32, 32), normalised as in training.
    progress: a stream (e.g. sys.stderr) for a line of images done, images/s and ETA, rewritten in place.
    tta="flip": the mean of the logits of each image and of its left-right mirror."""
    if tta not in TTA:
        raise ValueError(f"tta must be one of {TTA}; got {tta!r}")
    dtype = _model_dtype(model)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
        raise TypeError(f"predict expects uint8 images (N, C, H, W), as stored, and normalises them itself; got "
                        f"{got} (images already normalised go to the model: model(mt.tensor(x.astype(np.{dtype}))))")
    was_training = model.training
    model.eval()
    out, done, start = [], 0, time.perf_counter()
    try:
        with no_grad():
            for x, _ in data.DataLoader(images, np.zeros(len(images), np.int64), batch_size):
                x = x.astype(dtype, copy=False)                         # (b, 3, H, W) the model's dtype
                logits = model(Tensor(x)).numpy()                       # (b, K)
                if tta == "flip":
                    mirrored = np.ascontiguousarray(x[..., ::-1])       # (b, 3, H, W) left-right
                    logits = 0.5 * (logits + model(Tensor(mirrored)).numpy())
                out.append(logits)
                done += len(x)
                if progress is not None:
                    _eval_progress(progress, done, len(images), start)
    finally:
        model.train(was_training)
        if progress is not None and done:
            progress.write("\n")                                    # what follows starts its own line
            progress.flush()
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), dtype)


def _model_dtype(model):
    """The dtype the model computes in: its parameters' (float32 unless model.to changed it)."""
    params = model.parameters()
    return params[0].dtype if params else np.dtype(np.float32)


def _eval_progress(stream, done, total, start):
    rate = done / max(time.perf_counter() - start, 1e-9)
    bar = "#" * int(20 * done / max(total, 1))
    stream.write(f"\reval [{bar:<20}] {done:,}/{total:,} images {rate:.1f} img/s ETA {(total - done) / rate:.0f}s ")
    stream.flush()


def evaluate(model, images, labels, batch_size=256, progress=None, tta=None):
    """Top-1 accuracy of `model` on uint8 images (N, 3, 32, 32) in eval mode; NonFiniteOutput (naming
    the non-finite weights, if any) when a logit is NaN or inf, which would otherwise count as class 0."""
    if len(labels) != len(images):
        raise ValueError(f"evaluate got {len(images):,} images but {len(labels):,} labels")
    if len(labels) == 0:
        return 0.0
    logits = predict(model, images, batch_size, progress, tta)        # (N, K)
    check_finite_outputs(model, logits)
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean())


def check_finite_outputs(model, logits):
    """NonFiniteOutput unless every logit is finite; the message counts the images and names bad weights."""
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))            # images with a NaN or inf logit
    if bad.size == 0:
        return
    weights = [name for name, value in model.state_dict().items()
               if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()]
    named = ", ".join(weights[:3]) + (f", ... ({len(weights)} in all)" if len(weights) > 3 else "")
    cause = f"the weights hold NaN or inf in {named}" if weights else "the weights are all finite"
    raise NonFiniteOutput(f"the model's outputs are NaN or inf for {bad.size:,} of {len(logits):,} images "
                          f"(the first: image {bad[0]}), so no accuracy can be given; {cause}")
