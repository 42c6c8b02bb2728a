"""Looking inside a model: what its layers compute, where the class token looks, what it confuses.

Legend: B images, h heads, N+1 tokens (cls first), S = sqrt(N) the side of the token grid,
E token_dim, Hi/Wi the token grid after soft split i, D embed dim, K classes.

Inspection keeps no state on the model: `capture` hooks the modules it is given for the
length of a `with` block and records only the calls made by its own thread, so two threads
may inspect (or run) one model at the same time and each sees its own input.
    attention_maps(model, x)   every block's attention probabilities, one (B, h, N+1, N+1) each
                               (under no_grad, which is per thread)
    t2t_stages(t2t, x)         the T2T module's two re-structurized images and its output tokens
                               (as tensors, with their graph when grad mode is on)
"""
import threading
from contextlib import contextmanager

import numpy as np

from minit2t.grad_mode import no_grad


def _output(inputs, output):
    return output


def _first_input(inputs, output):
    return inputs[0]


@contextmanager
def capture(modules, pick=_output):
    """Record pick(inputs, output) of every call this thread makes to each of `modules` inside the
    block: yields one list per module. Calls from other threads are not recorded."""
    me = threading.get_ident()
    records = [[] for _ in modules]

    def recorder(calls):
        def hook(module, inputs, output):
            if threading.get_ident() == me:
                calls.append(pick(inputs, output))
        return hook

    handles = [m.register_forward_hook(recorder(calls)) for m, calls in zip(modules, records)]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def attention_maps(model, x):
    """Every block's attention probabilities (the output of its attn.softmax) for images x, from one
    forward pass: a list of `depth` arrays (B, h, N+1, N+1); row 0 is the cls token's. Shunted attention
    has no such map (its two head groups attend to aggregated keys: hook attn.softmax1, attn.softmax2)."""
    for i, blk in enumerate(model.blocks):
        if not hasattr(blk.attn, "softmax"):
            raise ValueError(f"attention_maps needs every block's attention over all N+1 tokens (attn.softmax), "
                             f"got {type(blk.attn).__name__} in block {i}, whose head groups attend to "
                             f"aggregated keys (attn.softmax1, attn.softmax2)")
    with capture([blk.attn.softmax for blk in model.blocks]) as calls, no_grad():
        model(x)
    return [seen[0].data for seen in calls]


def t2t_stages(t2t, x):
    """[image after T2T layer 1 (B, E, H0, W0), image after T2T layer 2 (B, E, H1, W1), tokens (B, N, D)]
    from one forward pass of the T2T module `t2t`: the re-structurized images are what its second and
    third soft splits read (with convolution tokens, what the second convolution and the projection read)."""
    if t2t.tokens_type == "hard":
        raise ValueError("a hard split (tokens_type 'hard') has no T2T stages: its tokens come from one Linear")
    third = t2t.project if t2t.tokens_type == "convolution" else t2t.soft_split2
    with capture([t2t.soft_split1, third], _first_input) as (image1, image2):
        tokens = t2t(x)
    return [image1[0], image2[0], tokens]


def confusion_matrix(labels, predictions, num_classes):
    """(K, K) counts: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"confusion_matrix: labels {labels.shape} and predictions {predictions.shape} "
                         "must be two vectors of one length")
    both = np.concatenate([labels, predictions])
    if both.size and (both.min() < 0 or both.max() >= num_classes):
        raise ValueError(f"confusion_matrix: classes must lie in [0, {num_classes})")
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def cls_attention(attn):
    """The cls token's attention to the patch tokens, averaged over heads, on the token grid:
    one block's (B, h, N+1, N+1) -> (B, S, S)."""
    _check(attn)
    row = attn[:, :, 0, 1:].mean(axis=1)                     # (B, N)
    side = _side(row.shape[1])
    return row.reshape(-1, side, side)                       # (B, S, S)


def attention_rollout(maps):
    """Attention rollout (Abnar & Zuidema, 2020): each block's head-averaged attention with the
    residual added, A' = (A + I) / 2, rows renormalised, multiplied through the blocks;
    the cls row over the patch tokens, on the token grid: list of (B, h, N+1, N+1) -> (B, S, S)."""
    if not maps:
        raise ValueError("attention_rollout needs the attention maps of at least one block")
    for attn in maps:
        _check(attn)
    n = maps[0].shape[-1]
    rollout = np.broadcast_to(np.eye(n), maps[0].shape[:1] + (n, n))         # (B, N+1, N+1)
    for attn in maps:
        a = attn.astype(np.float64).mean(axis=1) + np.eye(n)                 # (B, N+1, N+1)
        a /= a.sum(axis=-1, keepdims=True)
        rollout = a @ rollout
    row = rollout[:, 0, 1:]                                                  # (B, N)
    side = _side(row.shape[1])
    return (row / row.sum(axis=-1, keepdims=True)).reshape(-1, side, side)  # (B, S, S)


def _check(attn):
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"expected attention maps (B, h, N+1, N+1), got shape {attn.shape}")


def _side(n):
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    return side
