"""Right solutions to minit2t.exercises, in plain NumPy (plus math), written apart from the library,
and failure(), what check() says of a wrong one.

tests/test_exercises.py checks that each passes; it and tests/test_exercise_mistakes.py build wrong
solutions from them.
Legend: as in minit2t/exercises/: B batch, C channels/classes, H/W image size, (k, s, p) a window,
T tokens, Din input width, E token width, m random features, D embed dim.
"""
import math

import numpy as np
import pytest

from minit2t import exercises as ex


def failure(name, fn, **kw):
    """check()'s message for a solution that must fail."""
    with pytest.raises(AssertionError) as info:
        ex.check(name, fn, **kw)
    return str(info.value)


def leaves_first(L):
    """Every tensor of L's graph, each after all of its inputs."""
    order, seen = [], set()

    def visit(t):
        if id(t) not in seen:
            seen.add(id(t))
            for inp in (t._ctx.inputs if t._ctx else ()):
                visit(inp)
            order.append(t)
    visit(L)
    return order


def backprop(L, *leaves, add=lambda old, g: old + g):
    grads = {id(L): np.ones_like(L.data)}
    for t in reversed(leaves_first(L)):
        if t._ctx is None:
            continue
        for inp, g in zip(t._ctx.inputs, t._ctx.fn.backward(t._ctx, grads[id(t)])):
            if g is not None:
                grads[id(inp)] = add(grads[id(inp)], g) if id(inp) in grads else g
    return tuple(grads[id(leaf)] for leaf in leaves)


def layer_norm_backward(g, x, weight, eps):
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    dxhat = g * weight
    D = x.shape[-1]
    gx = (D * dxhat - dxhat.sum(-1, keepdims=True) - xhat * (dxhat * xhat).sum(-1, keepdims=True))
    gx = gx / (D * np.sqrt(x.var(-1, keepdims=True) + eps))
    lead = tuple(range(x.ndim - 1))
    return gx, (g * xhat).sum(lead), g.sum(lead)


def softmax_backward(g, y):
    return y * g - y * np.einsum("...i,...i->...", g, y)[..., None]


def phi(a):
    return np.vectorize(lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2))))(a)


def gelu(a):
    return a * phi(a)


def gelu_backward(g, a):
    return g * (phi(a) + a * np.exp(-a * a / 2) / math.sqrt(2 * math.pi))


def grid(H, W, k, s, p):
    return (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1


def unfold(x, k, s, p):
    B, C, H, W = x.shape
    Ho, Wo = grid(H, W, k, s, p)
    xp = np.zeros((B, C, H + 2 * p, W + 2 * p))
    xp[:, :, p:p + H, p:p + W] = x
    cols = [xp[:, :, r * s:r * s + k, c * s:c * s + k].reshape(B, C * k * k) for r in range(Ho) for c in range(Wo)]
    return np.stack(cols, axis=-1)


def fold(cols, H, W, k, s, p):
    B, Ckk, _ = cols.shape
    Ho, Wo = grid(H, W, k, s, p)
    xp = np.zeros((B, Ckk // (k * k), H + 2 * p, W + 2 * p))
    for n in range(Ho * Wo):
        r, c = divmod(n, Wo)
        xp[:, :, r * s:r * s + k, c * s:c * s + k] += cols[:, :, n].reshape(B, -1, k, k)
    return xp[:, :, p:p + H, p:p + W]


def restructurize(x, side):
    B, T, E = x.shape
    image = np.empty((B, E, side, side))
    for t in range(T):
        image[:, :, t // side, t % side] = x[:, t]
    return image


def softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def t2t_attention(x, wqkv, wproj, bproj, scale):
    q, k, v = np.split(x @ wqkv.T, 3, axis=-1)
    attn = softmax(q @ k.transpose(0, 2, 1) * scale)
    return v + (attn @ v) @ wproj.T + bproj


def prm_exp(x, w):
    return np.exp(x @ w.T - (x * x).sum(-1, keepdims=True) / 2) / math.sqrt(w.shape[0])


def sinusoid_table(n_position, d_hid):
    table = np.zeros((n_position, d_hid))
    for pos in range(n_position):
        for j in range(d_hid):
            angle = pos / 10000 ** (2 * (j // 2) / d_hid)
            table[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table[None].astype(np.float32)


def cross_entropy_backward(logits, labels, label_smoothing):
    B, C = logits.shape
    target = np.full((B, C), label_smoothing / C)
    target[np.arange(B), labels] += 1 - label_smoothing
    return (softmax(logits) - target) / B


def adamw_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    mhat, vhat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v


def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr, warmup_start_lr):
    if step < warmup_steps:
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / warmup_steps
    if step > total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def layer_norm(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * weight + bias


def t2t_layer(x, w, prefix):
    """The T2T transformer layer on tokens x (B, T, Din), its weights under `prefix` in w."""
    get = lambda name: w[prefix + name]                                           # noqa: E731
    h = layer_norm(x, get("norm1.weight"), get("norm1.bias"))
    a = t2t_attention(h, get("attn.qkv.weight"), get("attn.proj.weight"), get("attn.proj.bias"), x.shape[-1] ** -0.5)
    hidden = gelu(layer_norm(a, get("norm2.weight"), get("norm2.bias")) @ get("mlp.fc1.weight").T + get("mlp.fc1.bias"))
    return a + hidden @ get("mlp.fc2.weight").T + get("mlp.fc2.bias")


def t2t_module(x, weights, splits, restructure=restructurize):
    image = x
    for i, (k, s, p) in enumerate(splits):
        tokens = unfold(image, k, s, p).transpose(0, 2, 1)                       # (B, T, Din)
        if i == 2:
            return tokens @ weights["project.weight"].T + weights["project.bias"]  # (B, N, D)
        out = t2t_layer(tokens, weights, f"attention{i + 1}.")                    # (B, T, E)
        side = grid(image.shape[2], image.shape[3], k, s, p)[0]
        image = restructure(out, side)                                             # (B, E, side, side)
