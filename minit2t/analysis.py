"""Looking at a trained model: confusion matrix, where the class token looks, attention rollout.

Legend: B images, h heads, N+1 tokens (cls first), S = sqrt(N) the side of the token grid,
K classes. Attention maps come from T2T_ViT.attention_maps(x): one (B, h, N+1, N+1) per block.
"""
import numpy as np


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
