"""Every hypothesis strategy of the suite lives here.

Shapes are small (sides 1..5 by default) and include size-1 and
broadcast dimensions; arrays are drawn from a seed (fast) and may come
back as non-contiguous views with the same values.
"""
import numpy as np
from hypothesis import strategies as st


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=5):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims,
                    max_size=max_dims).map(tuple)


@st.composite
def broadcastable_shapes(draw, min_dims=1, max_dims=4, max_side=5):
    """Two shapes that broadcast together: sides set to 1 or dropped at random."""
    full = draw(shapes(min_dims, max_dims, max_side=max_side))
    out = []
    for _ in range(2):
        keep = draw(st.integers(0, len(full)))            # leading dims dropped
        dims = [1 if draw(st.booleans()) else s for s in full[len(full) - keep:]]
        out.append(tuple(dims))
    return out[0], out[1]


def make_array(seed, shape, dtype=np.float64, noncontiguous=False, low=None, high=None):
    """Deterministic values for `shape`; optionally a non-contiguous view of them."""
    r = np.random.default_rng(seed)
    x = r.standard_normal(shape) if low is None else r.uniform(low, high, shape)
    x = x.astype(dtype)
    if noncontiguous and x.ndim >= 1:
        big = np.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype)  # (..., 2W)
        big[..., ::2] = x
        x = big[..., ::2]                                           # strided view, same values
        assert not x.flags.c_contiguous or x.size <= 1
    return x


@st.composite
def arrays(draw, shape_strategy=None, dtype=np.float64, low=None, high=None):
    shape = draw(shape_strategy if shape_strategy is not None else shapes())
    seed = draw(st.integers(0, 2**31 - 1))
    nc = draw(st.booleans())
    return make_array(seed, shape, dtype, nc, low, high)


seeds = st.integers(0, 2**31 - 1)


# ---- ops: axes, matmul pairs, indices, windows -----------------------------

@st.composite
def reduce_axes(draw, ndim):
    """An axis argument for a reduction over `ndim` dims: None, an int (maybe negative)
    or a tuple of distinct axes (maybe negative)."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in picked)


def distinct_array(seed, shape, noncontiguous=False):
    """Values with no ties (gaps >= 4/size), shuffled: max has a single winner everywhere."""
    n = int(np.prod(shape))
    x = (np.random.default_rng(seed).permutation(n) - n / 2) * (4.0 / max(n, 1))
    base = make_array(seed, shape, noncontiguous=noncontiguous)
    base[...] = x.reshape(shape)                                      # keeps the layout
    return base


MATMUL_KINDS = ("2d", "batched", "broadcast", "vec_a", "vec_b", "vec_both", "weight", "vec_batched")


@st.composite
def matmul_shapes(draw, kind=None, max_side=4):
    """(a.shape, b.shape) for a @ b of one kind (drawn when None): 2-D, batched, broadcast
    batch dims, 1-D operands, and (B, N, K) @ (K, M) weights."""
    M, K, N, B, C = (draw(st.integers(1, max_side)) for _ in range(5))
    kind = kind if kind is not None else draw(st.sampled_from(MATMUL_KINDS))
    return {
        "2d": ((M, K), (K, N)),
        "batched": ((B, M, K), (B, K, N)),
        "broadcast": ((B, 1, M, K), (C, K, N)),                      # batch (B, C)
        "vec_a": ((K,), (K, N)),
        "vec_b": ((M, K), (K,)),
        "vec_both": ((K,), (K,)),
        "weight": ((B, N, K), (K, M)),
        "vec_batched": ((K,), (B, K, N)),
    }[kind]


def _index_part(draw, n):
    """One axis of an index into a side of size n: a slice (any step sign), an int or an int array."""
    kind = draw(st.sampled_from(["slice", "int", "array", "all"]))
    if kind == "all":
        return slice(None)
    if kind == "int":
        return draw(st.integers(-n, n - 1))
    if kind == "array":
        return np.array(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))  # repeats allowed
    start = draw(st.none() | st.integers(-n, n - 1))
    stop = draw(st.none() | st.integers(-n - 1, n))
    step = draw(st.sampled_from([None, 1, 2, -1, -2]))
    return slice(start, stop, step)


@st.composite
def getitem_indices(draw, shape):
    """An index for an array of `shape`: one part per leading axis, at most one int-array part."""
    parts, used_array = [], False
    for n in shape[:draw(st.integers(1, len(shape)))]:
        part = _index_part(draw, n)
        if isinstance(part, np.ndarray):
            if used_array:
                part = slice(None, None, -1)
            used_array = True
        parts.append(part)
    return parts[0] if len(parts) == 1 and draw(st.booleans()) else tuple(parts)


@st.composite
def window_params(draw, max_side=5):
    """(B, C, H, W, k, s, p) with at least one k x k window in each direction."""
    B, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    k, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    p = draw(st.integers(0, (k - 1) if k > 1 else 0))
    H = draw(st.integers(max(1, k - 2 * p), max_side))
    W = draw(st.integers(max(1, k - 2 * p), max_side))
    return B, C, H, W, k, s, p


def window_count(size, k, s, p):
    return (size + 2 * p - k) // s + 1


@st.composite
def concat_shapes(draw, max_dims=3, max_side=4):
    """(shapes, axis): 1..3 shapes that agree on every axis but `axis` (maybe negative)."""
    base = list(draw(shapes(1, max_dims, max_side=max_side)))
    axis = draw(st.integers(-len(base), len(base) - 1))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        base[axis] = draw(st.integers(1, max_side))
        out.append(tuple(base))
    return out, axis


@st.composite
def split_cases(draw, max_dims=3, max_side=5):
    """(shape, sizes, axis): pieces (some maybe empty) that add up to shape[axis]."""
    shape = draw(shapes(1, max_dims, max_side=max_side))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    sizes, left = [], shape[axis]
    while left:
        sizes.append(draw(st.integers(0 if sizes else 1, left)))
        left -= sizes[-1]
    return shape, sizes, axis


@st.composite
def expand_shapes(draw, max_dims=3, max_side=4):
    """(shape, target): target broadcasts shape (size-1 sides grown, new leading dims)."""
    target = draw(shapes(1, max_dims, max_side=max_side))
    keep = draw(st.integers(0, len(target)))
    shape = tuple(1 if draw(st.booleans()) else s for s in target[len(target) - keep:])
    return shape, target


@st.composite
def reshape_targets(draw, shape):
    """A new shape with the same size (sometimes with one -1)."""
    n, dims = int(np.prod(shape)), []
    rest = n
    while rest > 1 and len(dims) < 3:
        d = draw(st.sampled_from([f for f in range(1, rest + 1) if rest % f == 0]))
        dims.append(d)
        rest //= d
    dims.append(rest)
    dims = draw(st.permutations(dims))
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


# ---- backend kernels (tests/test_backends.py) -------------------------------
# Matrix sides: 0, 1, primes, and the sizes around the C kernels' blocks
# (micro-tiles 6 x 16 and 12 x 32, MC = 144, KC = 256 / 512).
gemm_sides = st.sampled_from([0, 1, 2, 3, 5, 6, 7, 11, 12, 13, 16, 17, 31, 32, 33, 97, 145])
gemm_depths = st.sampled_from([0, 1, 2, 3, 7, 16, 27, 31, 64, 257, 513])
layouts = st.sampled_from(["contiguous", "transposed", "strided", "reversed"])


def as_layout(x, layout):
    """The values of x in another memory layout (a view, never a copy of x)."""
    if layout == "transposed":      # columns contiguous, as a .T of a stored array
        return np.ascontiguousarray(x.swapaxes(-1, -2)).swapaxes(-1, -2)
    if layout == "strided":         # every other element of a wider array
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if layout == "reversed":        # negative row stride
        return np.ascontiguousarray(x[..., ::-1, :])[..., ::-1, :]
    return x


@st.composite
def gemm_cases(draw):
    """(a, b) float32 operands: 2-D, batched 3-D, or 3-D @ 2-D, any layouts."""
    m, k, n = draw(gemm_sides), draw(gemm_depths), draw(gemm_sides)
    kind = draw(st.sampled_from(["2d", "batched", "3d@2d", "bcast"]))
    bt = draw(st.integers(1, 3))
    shape_a = (m, k) if kind == "2d" else ((1 if kind == "bcast" else bt), m, k)
    shape_b = (k, n) if kind in ("2d", "3d@2d") else (bt, k, n)
    seed = draw(seeds)
    a = as_layout(make_array(seed, shape_a, np.float32), draw(layouts))
    b = as_layout(make_array(seed + 1, shape_b, np.float32), draw(layouts))
    return a, b


@st.composite
def window_cases(draw, max_side=12):
    """(x shape (B, C, H, W), k, s, p) with the kernel inside the padded input."""
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 4))
    p = draw(st.integers(0, 3))
    low = max(1, k - 2 * p)
    h = draw(st.sampled_from([v for v in (1, 2, 3, 5, 7, 8, 11, 12, 13) if v >= low] or [low]))
    w = draw(st.integers(low, max(low, max_side)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w)
    return shape, k, s, p


# ---- fused kernels (tests/test_fused.py) --------------------------------------
# Row lengths around the vector widths (8, 16) and the layer-norm chunk (32 rows).
fused_widths = st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 27, 33, 65, 130])


@st.composite
def fused_shapes(draw):
    """(..., D) shapes for the row kernels: 1 to 3 leading dims, D from fused_widths."""
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=40))
    return tuple(lead) + (draw(fused_widths),)


# ---- layers and models (tests/test_layer_properties.py) -----------------------
# Small widths, few tokens, batch 1 included: every draw builds real layers.

@st.composite
def token_batches(draw, min_batch=1, max_batch=3, max_tokens=6, max_heads=3, max_head_dim=4):
    """(B, N, D, heads): a batch of N tokens of width D = heads * head dim (so heads divides D, D >= 2)."""
    heads = draw(st.integers(1, max_heads))
    head_dim = draw(st.integers(1 if heads > 1 else 2, max_head_dim))
    return (draw(st.integers(min_batch, max_batch)), draw(st.integers(1, max_tokens)),
            heads * head_dim, heads)


@st.composite
def t2t_layer_shapes(draw, max_batch=3, max_tokens=9, max_dim=12, max_token_dim=6):
    """(B, T, Din, E): T tokens of width Din into a T2T layer of width E (E >= 2: the performer's
    m = E // 2 random features)."""
    return (draw(st.integers(1, max_batch)), draw(st.integers(1, max_tokens)),
            draw(st.integers(2, max_dim)), draw(st.integers(2, max_token_dim)))


@st.composite
def soft_splits(draw, max_img=10, max_kernel=4, max_stride=3):
    """(img_size, ((k0, s0, p0), (k1, s1, p1), (k2, s2, p2))): three soft splits, p <= k // 2,
    each window inside the padded grid, so every split leaves at least one token."""
    img = draw(st.integers(1, max_img))
    splits, side = [], img
    for _ in range(3):
        k = draw(st.integers(1, max_kernel))
        p = draw(st.integers(max(0, -(-(k - side) // 2)), k // 2))       # side + 2p >= k
        s = draw(st.integers(1, max_stride))
        splits.append((k, s, p))
        side = window_count(side, k, s, p)
    return img, tuple(splits)


@st.composite
def t2t_vit_configs(draw, tokens_types=("performer", "transformer", "convolution"), min_batch=1):
    """(kwargs of T2T_ViT, batch): a small model whose token grid is valid (drop rates left at 0).
    in_chans >= 2, so the first T2T layer never normalises a single feature (C * k0 * k0 = 1), and
    embed_dim >= 3: the final LayerNorm of a 2-vector is +-weight + bias, locally constant."""
    img, splits = draw(soft_splits())
    heads = draw(st.integers(1, 3))
    kw = dict(img_size=img, soft_split=splits, tokens_type=draw(st.sampled_from(tokens_types)),
              in_chans=draw(st.integers(2, 3)), num_classes=draw(st.integers(1, 4)),
              embed_dim=heads * draw(st.integers(3 if heads == 1 else 2, 4)), num_heads=heads,
              depth=draw(st.integers(1, 2)),
              mlp_ratio=draw(st.sampled_from([1.0, 2.0])), qkv_bias=draw(st.booleans()),
              token_dim=draw(st.integers(2, 5)))
    return kw, draw(st.integers(min_batch, 3))


# ---- token reduction (tests/test_reduction.py) --------------------------------
# Few tokens and blocks: every draw runs a real backbone. Ties between matching scores or
# attention ranks have probability zero for the continuous tokens drawn here.

@st.composite
def backbone_cases(draw, min_tokens=2, max_tokens=24, max_depth=3):
    """(B, N0, D, heads, depth, seed): N0 random tokens (cls first) into a depth-block backbone of
    width D = heads * head dim >= 3 (a LayerNorm of 2-vectors has two outputs: ties everywhere)."""
    heads = draw(st.integers(1, 2))
    return dict(B=draw(st.integers(1, 2)), N0=draw(st.integers(min_tokens, max_tokens)),
                D=heads * draw(st.integers(3 if heads == 1 else 2, 4)), heads=heads,
                depth=draw(st.integers(1, max_depth)),
                seed=draw(seeds))


def _r_text(draw, depth, high, fraction):
    """r as a spec writes it: a number, a per-block list (maybe shorter than depth), or a fraction."""
    kind = draw(st.sampled_from(["int", "list", "fraction"] if fraction else ["int", "list"]))
    if kind == "list":
        rs = draw(st.lists(st.integers(0, high), max_size=depth))
        return "[" + ",".join(map(str, rs)) + "]"
    if kind == "fraction":
        return draw(st.sampled_from(["0.1", "0.25", ".4"]))
    return str(draw(st.integers(0, high)))


@st.composite
def reduction_specs(draw, depth, methods=("tome", "evit", "mctf"), fuses=("sum", "mean", "drop")):
    """A valid spec for a depth-block model (options in any order, some left at their defaults):
    r as a number or a per-block list, EViT at any blocks, MCTF's tau_sim or tau_size sometimes 0
    (tau_info never: with all three 0 every score would tie), both flags either way."""
    method = draw(st.sampled_from(methods))
    flag = st.sampled_from(["0", "1"])
    if method == "tome":
        opts = [f"r={_r_text(draw, depth, 8, False)}", f"prop={draw(flag)}"]
    elif method == "evit":
        at = sorted(set(draw(st.lists(st.integers(0, depth - 1), min_size=1, max_size=depth))))
        opts = [f"keep={draw(st.sampled_from(['0.3', '.5', '0.75', '1']))}", f"fuse={draw(st.sampled_from(fuses))}",
                "at=[" + ",".join(map(str, at)) + "]", f"prop={draw(flag)}"]
    else:
        opts = [f"r={_r_text(draw, depth, 8, True)}", f"tau_sim={draw(st.sampled_from(['1', '0.5', '0']))}",
                f"tau_info={draw(st.sampled_from(['20', '5']))}", f"tau_size={draw(st.sampled_from(['40', '0']))}",
                f"bidirectional={draw(flag)}", f"prop={draw(flag)}"]
    return method + ":" + ",".join(draw(st.permutations(opts))[:draw(st.integers(0, len(opts)))])


def zero_reduction_specs(depth):
    """Specs that reduce nothing: r = 0 everywhere, keep = 1."""
    return st.sampled_from(["tome:r=0", "tome:r=[" + ",".join("0" * depth) + "]", "tome:r=[],prop=0",
                            "mctf:r=0", "mctf:r=[0],bidirectional=0", "evit:keep=1",
                            "evit:keep=1,fuse=drop,at=[0]"])


@st.composite
def reducing_block_cases(draw, method, min_tokens=12, max_tokens=22):
    """(B, N, D, heads, seed, options) for one reducing block of `method` on N random tokens:
    options are the block's keyword arguments (D >= 3 and MCTF's tau_sim never 0 here: no ties)."""
    heads = draw(st.integers(1, 2))
    case = dict(B=draw(st.integers(1, 2)), N=draw(st.integers(min_tokens, max_tokens)),
                D=heads * draw(st.integers(3 if heads == 1 else 2, 4)), heads=heads, seed=draw(seeds))
    if method == "tome":
        case["options"] = dict(r=draw(st.integers(1, 8)), prop=draw(st.booleans()))
    elif method == "evit":
        case["options"] = dict(keep=draw(st.sampled_from([0.3, 0.5, 0.75])),
                               fuse=draw(st.sampled_from(["sum", "mean", "drop"])))
    else:
        case["options"] = dict(r=draw(st.integers(1, 6)), tau_sim=draw(st.sampled_from([1.0, 0.5])),
                               tau_info=draw(st.sampled_from([20.0, 0.0])), tau_size=draw(st.sampled_from([40.0, 0.0])),
                               bidirectional=draw(st.booleans()), prop=draw(st.booleans()))
    return case


# ---- attention approximations (tests/test_approx.py) ------------------------

@st.composite
def attention_cases(draw, max_tokens=9, max_width=4):
    """(q, k, v, tau, window): q, k (B, T, d), v (B, T, dv) float64, a window in 1..T+2."""
    B, T = draw(st.integers(1, 2)), draw(st.integers(1, max_tokens))
    d, dv = draw(st.integers(1, max_width)), draw(st.integers(1, max_width))
    r = np.random.default_rng(draw(seeds))
    scale = draw(st.sampled_from([0.3, 1.0]))
    q, k = (scale * r.standard_normal((B, T, d)) for _ in range(2))
    v = r.standard_normal((B, T, dv))
    tau = draw(st.sampled_from([d ** -0.5, 0.2, 1.0]))
    return q, k, v, tau, draw(st.integers(1, T + 2))


# ---- the bf16 GEMM (tests/test_bf16_kernels.py) ------------------------------

@st.composite
def bf16_gemm_cases(draw):
    """(a, b, bias): gemm_cases' operands (sides 0 to 145 around every micro-tile, K 0 to 513,
    any layouts and batch kinds) and a bias (N,) or None."""
    a, b = draw(gemm_cases())
    bias = make_array(draw(seeds), (b.shape[-1],), np.float32) if draw(st.booleans()) else None
    return a, b, bias
