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
