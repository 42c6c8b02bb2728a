"""Seeing token reduction: which patches each token stands for, and what MCTF's criteria prefer.

Legend: B images, N tokens entering a block (cls first), N0 = S*S + 1 tokens entering the backbone,
S the side of the patch grid (8 for t2t_vit_cifar), Na/Nb tokens in the halves A = tokens 0, 2, 4, ...
and B = 1, 3, 5, ... of a bipartite matching. A "group" is an output token seen from the patch grid:
every patch holds the index of the token it is part of (cls, index 0, is never one of them).

    token_groups(model, x)              after every block: (B, S, S) the token each patch is in
    token_map(values, source)           a value per token (B, N) painted on its patches (B, S, S)
    draw_groups(ax, image, groups)      one colour per token made of several patches, over the image
    mctf_criteria(model, x, block)      MCTF's W_sim, W_info, W_size in one block, as it scores pairs
    matching_groups(scores, split, src) the groups a matching on `scores` would make in that block
    group_summary(groups)               per image: its largest token, how many are scattered
    show_compact(fig)                   a figure of many small photos, shown as a palette PNG
"""
import copy

import numpy as np

from minit2t.analysis import capture
from minit2t.diagram import show_compact  # noqa: F401  (notebook 6 imports it from here)
from minit2t.grad_mode import no_grad
from minit2t.reduction.mctf import MCTFBlock, tokens_to_merge
from minit2t.reduction.merge import TokenState, bipartite_slots, protect_cls
from minit2t.tensor import Tensor

CRITERIA = {"sim": "tau_sim", "info": "tau_info", "size": "tau_size"}


def owners(source):                                                  # (B, M, N0) bool
    """(B, N0 - 1) the token each patch (cls left out) is part of; -1 where none is (dropped)."""
    owner = source.argmax(axis=1)                                    # (B, N0)
    owner[~source.any(axis=1)] = -1
    return owner[:, 1:]


def grid(values):                                                    # (B, S*S)
    """Patch values in raster order on the S x S grid: (B, S, S)."""
    side = int(round(values.shape[1] ** 0.5))
    if side * side != values.shape[1]:
        raise ValueError(f"{values.shape[1]} patches do not form a square grid")
    return values.reshape(-1, side, side)


def token_groups(model, x):
    """For a reduced model (reduce_tokens) and images x (B, C, H, W), normalised as its input: after
    each block, the token each patch is part of (-1: dropped), a list of `depth` int arrays (B, S, S)."""
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, np.float32))
    with no_grad():
        _, state = model.forward_tokens(model.embed(x), trace=True)
    return [grid(owners(source)) for source in state.sources]


def token_map(values, source):                                       # (B, N), (B, N, N0)
    """Each patch gets the value of the token it is part of: (B, S, S) (NaN where it is in none)."""
    owner = owners(source)                                           # (B, S*S)
    out = np.take_along_axis(np.asarray(values, float), np.maximum(owner, 0), axis=1)
    return grid(np.where(owner >= 0, out, np.nan))


def palette(n):
    """n RGB colours, 36 distinct before they repeat: tab10's without grey (the dropped patches'),
    blue last (skies are blue), then their light tab20 twins, then tab20b's."""
    import matplotlib
    order = [1, 4, 2, 3, 6, 8, 9, 5, 0]                              # orange, purple, green, red, ...
    tab20 = np.asarray(matplotlib.colormaps["tab20"].colors)
    colours = np.concatenate([tab20[[2 * k for k in order]], tab20[[2 * k + 1 for k in order]],
                              np.asarray(matplotlib.colormaps["tab20b"].colors)[:18]])
    return colours[np.arange(n) % len(colours)][:, :3]


def draw_groups(ax, image, groups, alpha=0.65, edge="white"):
    """Paint every token made of more than one patch in its own colour over `image` ((3, H, W) or
    (H, W, 3)); tokens of one patch stay clear, dropped patches (-1) turn grey. White lines separate
    neighbouring patches that are in different tokens. groups: (S, S). Returns the number of
    tokens of several patches."""
    from matplotlib.collections import LineCollection

    image = np.asarray(image)
    image = image.transpose(1, 2, 0) if image.shape[0] == 3 else image
    S = groups.shape[0]
    ids, first, counts = np.unique(groups, return_index=True, return_counts=True)
    merged = [g for g in ids[np.argsort(first)] if g >= 0 and counts[ids == g][0] > 1]  # raster order
    overlay = np.zeros((S, S, 4))                                    # RGBA per patch
    for colour, g in zip(palette(len(merged)), merged):
        overlay[groups == g] = (*colour, alpha)
    overlay[groups < 0] = (0.5, 0.5, 0.5, 0.85)
    ax.imshow(image, extent=(0, S, S, 0), interpolation="nearest")
    ax.imshow(overlay, extent=(0, S, S, 0), interpolation="nearest")
    cells = [(i, j) for i in range(S) for j in range(S)]
    lines = [[(j + 1, i), (j + 1, i + 1)] for i, j in cells if j + 1 < S and groups[i, j] != groups[i, j + 1]]
    lines += [[(j, i + 1), (j + 1, i + 1)] for i, j in cells if i + 1 < S and groups[i, j] != groups[i + 1, j]]
    ax.add_collection(LineCollection(lines, colors=edge, linewidths=0.6))
    ax.set_xlim(0, S), ax.set_ylim(S, 0), ax.set_xticks([]), ax.set_yticks([])
    return len(merged)


def mctf_criteria(model, x, block):
    """MCTF's three criteria in `model.blocks[block]` (an MCTFBlock that fuses) for images x
    (B, C, H, W), from one forward pass: the block's own input tokens and one-step-ahead attention
    are recorded (hooks), and each criterion is the block's `scores` with the other two turned off.
    Returns a dict:
      sim, info, size   W_sim, W_info, W_size (B, Na, Nb), each in (0, 1] (the cls row included)
      score             their product, what the block matches on: MCTFBlock.scores (B, Na, Nb)
      received          a_j, the attention token j receives, mean over heads and queries (B, N)
      sizes             s_j, how many patches token j stands for (B, N)
      source            which patches each token entering the block stands for (B, N, N0)
      split             (r1, r2): A tokens fused into B ones, then B tokens into A ones"""
    blk = model.blocks[block]
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, np.float32))
    with no_grad(), capture([blk], pick=lambda inputs, out: inputs[0]) as (tokens,), \
            capture([blk.attn.softmax]) as (attns,):
        embedded = model.embed(x)                                    # (B, N0, D)
        _, state = model.forward_tokens(embedded, trace=True)
    N = tokens[0].shape[1]
    r = tokens_to_merge(blk.r, N) if isinstance(blk, MCTFBlock) else 0
    if r == 0:
        raise ValueError(f"block {block} ({type(blk).__name__}) fuses no tokens with MCTF")
    tokens = tokens[0].data                                          # (B, N, D)
    received = attns[0].data.mean(axis=(1, 2))                       # (B, N), as MCTFBlock.forward
    source = state.sources[block - 1] if block else TokenState(*embedded.shape[:2], trace=True).source
    sizes = source.sum(axis=-1).astype(np.float64)                   # (B, N)
    out = {name: _alone(blk, name).scores(tokens, received, sizes) for name in CRITERIA}
    out.update(score=blk.scores(tokens, received, sizes), received=received, sizes=sizes, source=source,
               split=blk.split(r))
    return out


def _alone(blk, name):
    """A shallow copy of the MCTF block that scores pairs by one criterion only (tau 0 = off)."""
    one = copy.copy(blk)
    for other, tau in CRITERIA.items():
        if other != name:
            setattr(one, tau, 0.0)
    return one


def matching_groups(scores, split, source):                         # (B, Na, Nb), (r1, r2), (B, N, N0)
    """The groups (B, S, S) right after a bipartite matching on `scores` (the cls row protected)
    fuses r1 A tokens into B tokens, then r2 B tokens into A tokens, as MCTF does in one block."""
    slot, _ = bipartite_slots(protect_cls(scores), *split)           # (B, N)
    owner = owners(source)                                           # (B, S*S)
    out = np.take_along_axis(slot, np.maximum(owner, 0), axis=1)
    return grid(np.where(owner >= 0, out, -1))


def group_summary(groups):                                           # (B, S, S)
    """Per image (B,): `largest`, the patches in its largest token; `merged`, its tokens of several
    patches; `scattered`, those of them whose patches do not touch edge to edge (4-connected)."""
    out = {"largest": [], "merged": [], "scattered": []}
    for g in groups:
        ids, counts = np.unique(g[g >= 0], return_counts=True)
        several = ids[counts > 1]
        out["largest"].append(counts.max())
        out["merged"].append(len(several))
        out["scattered"].append(sum(not _connected(g == k) for k in several))
    return {k: np.array(v) for k, v in out.items()}


def _connected(mask):                                                # (S, S) bool
    """Whether the True cells of mask form one 4-connected region (a flood fill from one of them)."""
    seen = np.zeros_like(mask)
    todo = [tuple(np.argwhere(mask)[0])]
    while todo:
        i, j = todo.pop()
        if 0 <= i < mask.shape[0] and 0 <= j < mask.shape[1] and mask[i, j] and not seen[i, j]:
            seen[i, j] = True
            todo += [(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)]
    return seen.sum() == mask.sum()
