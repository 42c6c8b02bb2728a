"""Exercises on the T2T module's pieces: the soft split (unfold), fold, re-structurization, the T2T
transformer's attention, and the T2T performer's positive random features.

Legend: B batch, C channels, H/W image size, k kernel, s stride, p padding, L = Ho * Wo windows,
T tokens, Din input width, E token width (output of the T2T attention), m random features.
"""
from types import SimpleNamespace

import numpy as np

from minit2t import ops
from minit2t.exercises.core import array, exercise, run, side, window
from minit2t.models import t2t
from minit2t.models.token_performer import TokenPerformer
from minit2t.models.token_transformer import TokenAttention
from minit2t.tensor import Tensor


def _unfold(x, k, s, p):
    return run(ops.Unfold, x, k, s, p)[0]


@exercise("unfold", """unfold(x, k, s, p) -> cols
im2col, the soft split: every k x k window of x (B, C, H, W), zero-padded by p on every side,
taken at stride s, as one column. Return cols (B, C*k*k, L), L = Ho * Wo, Ho = (H + 2p - k) // s + 1
(Wo likewise); windows in row-major order, a column's rows ordered (channel, kernel row, kernel column)
as torch.nn.functional.unfold.""", ("cols",), _unfold, (ops.conv.unfold,),
          ("Pad with np.pad (p on both sides of H and W only); window (r, c) is "
           "xp[:, :, r*s:r*s+k, c*s:c*s+k], for r < Ho and c < Wo.",
           "Window n = r * Wo + c, reshaped from (B, C, k, k) to (B, C*k*k), is cols[:, :, n]. Or loop over "
           "the k*k offsets (i, j): xp[:, :, i:i+s*Ho:s, j:j+s*Wo:s] is entry (i, j) of every window at once."))
def _draw_unfold(rng, i):
    B, C, H, W, k, s, p = window(rng, i)
    return dict(x=array(rng, (B, C, H, W)), k=k, s=s, p=p)


def _fold(cols, H, W, k, s, p):
    return run(ops.Fold, cols, (H, W), k, s, p)[0]


@exercise("fold", """fold(cols, H, W, k, s, p) -> x
col2im, unfold's adjoint: every column of cols (B, C*k*k, L) added back onto its k x k window of a
zero image, padded by p, at stride s; overlapping windows sum. Return x (B, C, H, W), the padding
cropped off. Columns are laid out as unfold's (see describe("unfold")).""", ("x",), _fold, (ops.conv.fold,),
          ("Unfold backwards: start from zeros (B, C, H + 2p, W + 2p), C = cols.shape[1] // (k*k), and add "
           "each column back onto its window; crop the padding at the end.",
           "For window n (r, c = divmod(n, Wo)): xp[:, :, r*s:r*s+k, c*s:c*s+k] += "
           "cols[:, :, n].reshape(B, C, k, k); return xp[:, :, p:p+H, p:p+W]. += and not =: overlaps sum."))
def _draw_fold(rng, i):
    B, C, H, W, k, s, p = window(rng, i)
    L = ((H + 2 * p - k) // s + 1) * ((W + 2 * p - k) // s + 1)
    return dict(cols=array(rng, (B, C * k * k, L)), H=H, W=W, k=k, s=s, p=p)


def _restructurize(x, side):
    return t2t.restructurize(Tensor(x), side).data


@exercise("restructurize", """restructurize(x, side) -> image
Re-structurization, the T2T module's step back from tokens to an image: x (B, T, E) holds the tokens
of a side x side grid in row-major order (token t = r * side + c is pixel (r, c)), each of width E.
Return image (B, E, side, side), whose channel e at pixel (r, c) is value e of token r * side + c.""",
          ("image",), _restructurize, (t2t.restructurize,),
          ("A token becomes a pixel and its E values that pixel's E channels: the token axis must end up "
           "behind the width axis before it is cut into rows and columns.",
           "x.transpose(0, 2, 1) is (B, E, T); reshape it to (B, E, side, side). Reshaping (B, T, E) "
           "straight to (B, E, side, side) keeps the numbers but puts them in the wrong places."))
def _draw_restructurize(rng, i):
    B, n, E = side(rng, i, 1, 2), side(rng, i, 1, 4), side(rng, i, 1, 5)
    return dict(x=array(rng, (B, n * n, E)), side=n)


def _t2t_attention(x, wqkv, wproj, bproj, scale):
    E = wproj.shape[0]
    qkv, _ = run(ops.Linear, x, wqkv)                                  # (B, T, 3E)
    q, k, v = qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]          # (B, T, E) each
    scores, _ = run(ops.MatMul, q * scale, np.swapaxes(k, -1, -2))       # (B, T, T)
    attn, _ = run(ops.Softmax, scores)
    mixed, _ = run(ops.MatMul, attn, v)                                  # (B, T, E)
    return v + run(ops.Linear, mixed, wproj, bproj)[0]                   # (B, T, E)


@exercise("t2t_attention", """t2t_attention(x, wqkv, wproj, bproj, scale) -> out
One T2T transformer attention forward (one head, minit2t/models/token_transformer.py): q, k, v =
the three E-wide slices of x @ wqkv^T (in that order), attn = softmax(q k^T * scale) over the last dim,
out = v + (attn @ v) @ wproj^T + bproj (the value skip). x (B, T, Din), wqkv (3E, Din), wproj (E, E),
bproj (E,), scale a float. Return out (B, T, E).""", ("out",), _t2t_attention, (TokenAttention.forward,),
          ("x @ wqkv.T is (B, T, 3E) and np.split(..., 3, axis=-1) gives q, k, v; the scores "
           "q @ k.transpose(0, 2, 1) * scale are (B, T, T), one row per query.",
           "attn = softmax of the scores over the last axis (subtract the row max before exp); "
           "out = v + (attn @ v) @ wproj.T + bproj. The skip is v: x has another width."))
def _draw_attention(rng, i):
    B, T, Din, E = side(rng, i, 1, 2), side(rng, i, 1, 5), side(rng, i, 1, 6), side(rng, i, 1, 4)
    return dict(x=array(rng, (B, T, Din)), wqkv=array(rng, (3 * E, Din)), wproj=array(rng, (E, E)),
                bproj=array(rng, (E,)), scale=Din ** -0.5)


def _prm_exp(x, w):
    layer = SimpleNamespace(w=Tensor(w), m=w.shape[0])                # what prm_exp reads of the layer
    return TokenPerformer.prm_exp(layer, Tensor(x)).data


@exercise("prm_exp", """prm_exp(x, w) -> phi
The T2T performer's positive random features (TokenPerformer.prm_exp): for every token x_t (width E)
phi(x_t) = exp(w x_t - |x_t|^2 / 2) / sqrt(m), one value per row of w, so that phi(q) . phi(k)
estimates exp(q . k). x (B, T, E), w (m, E) the fixed random directions. Return phi (B, T, m).""",
          ("phi",), _prm_exp, (TokenPerformer.prm_exp,),
          ("w x_t is one number per row of w (m of them); |x_t|^2 / 2 is one number per token, the same for "
           "all m features; 1 / sqrt(m) scales everything.",
           "x @ w.T is (B, T, m); (x * x).sum(-1, keepdims=True) / 2 is (B, T, 1) and broadcasts against it; "
           "phi = np.exp(x @ w.T - that) / np.sqrt(m), m = w.shape[0]."))
def _draw_prm_exp(rng, i):
    B, T, E, m = side(rng, i, 1, 2), side(rng, i, 1, 5), side(rng, i, 1, 6), side(rng, i, 1, 6)
    return dict(x=array(rng, (B, T, E), 0.5), w=array(rng, (m, E)))
