"""The bf16 GEMM (cext/gemm_bf16.c): C = bf16(A) @ bf16(B) (+ bias), operands rounded to bfloat16
(nearest, ties to even, as torch's .bfloat16()), float32 sums. Every version (sgemm_bf16_<level>;
one this machine cannot run is skipped, saying why) against the float64 product of the rounded
operands, the reference and torch, on shapes that stress the blocking and drawn cases; the
dispatcher under each ISA level (set_isa) and from $MINIT2T_ISA.
Legend: Bt matrices, M/K/N matrix sides: C (Bt, M, N) = A (Bt, M, K) @ B (Bt, K, N).
"""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given

from minit2t.backends import _cmem, get_backend, get_num_threads, set_num_threads
from strategies import as_layout, bf16_gemm_cases, make_array

try:
    from minit2t import _cext
except ImportError:               # not built: every test skips (the fixture c says why)
    _cext = None

# The versions: the suffix of their C name and the ISA level (minit2t_cpu_isa) they need.
LEVELS = [("ref", 0), ("avx2", 1), ("avx512", 2), ("avx512bf16", 3), ("amx", 4)]
NAMES = {0: "scalar", 1: "AVX2 + FMA", 2: "AVX-512F", 3: "AVX512-BF16", 4: "AMX-BF16"}


@pytest.fixture(scope="module")
def c():
    """The C backend (its kernels, lib, set_isa), or a skip saying why it is not built."""
    try:
        return get_backend("c")
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))


def missing(need):
    """Why the version of ISA level `need` cannot run here ('' where it can)."""
    if _cmem.lib is None:
        return "the C extension is not built"
    if _cmem.lib.minit2t_cpu_isa() >= need:
        return ""
    if not hasattr(ctypes.CDLL(_cext.__file__), "sgemm_bf16_avx512"):
        return "a portable build (-DMINIT2T_PORTABLE) holds the reference kernels only"
    return f"this CPU has no {NAMES[need]}"


def level_params():
    """LEVELS as pytest params, each skipped (saying why) where it cannot run."""
    return [pytest.param(name, id=name, marks=pytest.mark.skipif(bool(missing(need)), reason=missing(need)))
            for name, need in LEVELS]


def bf16(x):
    """x rounded to bfloat16, as float32 (torch's rounding: the definition)."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).bfloat16().float().numpy()


def run(c, level, a, b, bias=None):
    """sgemm_bf16_<level> of a (M, K) or (Bt, M, K) and b (K, N) or (Bt, K, N) (a batch of 1
    broadcast: batch stride 0), through their strides, into a NaN-filled C (Bt, M, N)."""
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    bt, m, k, n = max(a3.shape[0], b3.shape[0]), a3.shape[1], a3.shape[2], b3.shape[2]
    out = np.full((bt, m, n), np.nan, np.float32)
    sa = _cmem.strides(a3, (0 if a3.shape[0] > 1 else None, 1, 2))
    sb = _cmem.strides(b3, (0 if b3.shape[0] > 1 else None, 1, 2))
    bias_ptr = _cmem.ffi.NULL if bias is None else _cmem.ptr(np.ascontiguousarray(bias))
    getattr(c.lib, "sgemm_bf16_" + level)(bt, m, n, k, _cmem.ptr(a3), sa, _cmem.ptr(b3), sb, bias_ptr,
                                          _cmem.ptr(out), _cmem.strides(out, (0, 1)))
    return out


def exact_and_bound(a, b, bias=None):
    """The float64 product of the rounded operands (+ bias), (Bt, M, N), and how far a float32
    sum of it may stray. Each of the K products is exact in float32 (8 x 8 significant bits),
    so every error is a rounding of a partial sum: a sum of K + 1 terms (the bias the last),
    added in any order, any blocking, by FMAs or pairs of them, errs by at most K * 2^-24 *
    the sum of the terms' magnitudes; the bound allows 4 times that (K * 2^-22), plus a
    floor for the zeros of an empty K."""
    a64, b64 = bf16(a).astype(np.float64), bf16(b).astype(np.float64)
    exact, size = np.matmul(a64, b64), np.matmul(np.abs(a64), np.abs(b64))
    if bias is not None:
        exact, size = exact + bias, size + np.abs(bias)
    return exact, (a.shape[-1] + 1) * 2.0 ** -22 * size + 1e-30


def assert_bf16_product(out, a, b, bias=None, what=""):
    exact, bound = exact_and_bound(a, b, bias)
    assert out.shape == exact.shape and np.all(np.abs(out - exact) <= bound), what


def f32(seed, shape):
    return make_array(seed, shape, np.float32)


# (M, K, N, layout of A, layout of B): odd K, K = 1 and 2, sides off every micro-tile,
# transposed operands (A^T as in a weight gradient g^T x with K = 8320, B = weight.T),
# strided and reversed views.
SHAPES = [
    (70, 45, 33, "contiguous", "contiguous"), (1, 1, 1, "contiguous", "contiguous"),
    (13, 1, 17, "contiguous", "transposed"), (12, 2, 32, "transposed", "contiguous"),
    (33, 31, 65, "transposed", "transposed"), (97, 130, 47, "strided", "reversed"),
    (31, 8320, 20, "transposed", "contiguous"), (150, 300, 100, "contiguous", "transposed"),
    (64, 513, 64, "reversed", "strided"), (200, 27, 96, "contiguous", "contiguous"),
]


@pytest.mark.parametrize("level", level_params())
@pytest.mark.parametrize("m, k, n, la, lb", SHAPES)
def test_each_level_within_float32_sums_of_the_rounded_operands(c, level, m, k, n, la, lb):
    a, b = as_layout(f32(m + k, (m, k)), la), as_layout(f32(n + k, (k, n)), lb)
    bias = f32(n, (n,))
    assert_bf16_product(run(c, level, a, b), a[None], b[None], what=f"{level} {m}x{k}x{n}")
    assert_bf16_product(run(c, level, a, b, bias), a[None], b[None], bias, f"{level} bias")


@pytest.mark.parametrize("level", level_params())
def test_each_level_batched_and_broadcast_batch(c, level):
    a, b = f32(1, (3, 20, 37)), f32(2, (3, 37, 45))
    assert_bf16_product(run(c, level, a, b), a, b, what="batched")
    a1, b1 = f32(3, (1, 20, 37)), f32(4, (1, 37, 45))         # batch stride 0: one matrix for all
    assert_bf16_product(run(c, level, a1, b), a1, b, what="broadcast A")
    assert_bf16_product(run(c, level, a, b1, f32(5, (45,))), a, b1, f32(5, (45,)), "broadcast B")


@pytest.mark.parametrize("level", level_params())
def test_each_level_empty_sides(c, level):
    for bt, m, k, n in [(1, 0, 5, 4), (1, 5, 0, 4), (1, 5, 4, 0), (1, 0, 0, 0), (0, 3, 4, 5)]:
        a, b, bias = f32(1, (bt, m, k)), f32(2, (bt, k, n)), f32(3, (n,))
        out = run(c, level, a, b, bias)
        assert out.shape == (bt, m, n)
        np.testing.assert_array_equal(out, np.matmul(a, b) + bias if k else np.zeros((bt, m, n)) + bias)
        np.testing.assert_array_equal(run(c, level, a, b), np.zeros((bt, m, n)) if k == 0 else out - bias)


@pytest.mark.parametrize("level", level_params())
def test_each_level_rounds_its_operands_and_only_them(c, level):
    """Rounding is idempotent: pre-rounded operands give the same C bit for bit (a kernel that
    rounded twice, or truncated, would differ somewhere); and C is off the float32 product by
    bf16's precision (~2^-9 relative), which a kernel that forgot to round would not be."""
    a, b = f32(5, (130, 300)), f32(6, (300, 70))
    out = run(c, level, a, b)
    np.testing.assert_array_equal(out, run(c, level, bf16(a), bf16(b)))
    full = np.matmul(a.astype(np.float64), b)
    rel = np.linalg.norm(out[0] - full) / np.linalg.norm(full)
    assert 1e-3 < rel < 1e-2, rel
    assert_bf16_product(out, a[None], b[None], what=level)


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_float32_kernels_sum_as_the_reference(c, level):
    """Without bf16 instructions the kernels add the same exact products in the same k order as
    the reference, from zero: bit for bit its result when K is one block (KC >= 384) and no bias."""
    if missing(dict(LEVELS)[level]):
        pytest.skip(missing(dict(LEVELS)[level]))
    for m, k, n, la, lb in SHAPES:
        if k <= 384:
            a, b = as_layout(f32(m + k, (m, k)), la), as_layout(f32(n + k, (k, n)), lb)
            np.testing.assert_array_equal(run(c, level, a, b), run(c, "ref", a, b), err_msg=f"{m}x{k}x{n}")


@pytest.mark.parametrize("level", level_params())
def test_each_level_sums_alike_on_any_number_of_threads(c, level):
    """One thread or two, a team sharing B's panels or slices of C (K past one block), batches:
    every element summed in the same order, so the same C bit for bit."""
    cases = [(f32(17, (300, 200)), f32(18, (200, 260))),                       # a team
             (as_layout(f32(19, (64, 2100)), "transposed"), f32(20, (2100, 40))),  # slices of C
             (f32(21, (4, 90, 70)), f32(22, (4, 70, 80)))]                     # a matrix per thread
    before = get_num_threads()
    try:
        for a, b in cases:
            set_num_threads(1)
            one = run(c, level, a, b)
            set_num_threads(2)
            np.testing.assert_array_equal(run(c, level, a, b), one, err_msg=f"{level} {a.shape} @ {b.shape}")
    finally:
        set_num_threads(before)


@pytest.mark.parametrize("level", level_params())
def test_each_level_nan_and_inf_propagate(c, level):
    """NaN and +-inf in either operand reach C as IEEE float32 sums say; past bf16's largest
    finite value a float rounds to inf (as torch)."""
    a, b = np.abs(f32(7, (40, 70))) + 0.5, np.abs(f32(8, (70, 50))) + 0.5    # positive: no cancelling
    a[3, 5], a[7, 9], a[20, 1] = np.nan, np.inf, np.finfo(np.float32).max
    a[30, 2] = np.uint32(0x7F800001).view(np.float32)       # a NaN whose payload is all below bf16's bits
    b[11, 20], b[12, 30] = np.nan, -np.inf
    out = run(c, level, a, b)[0]
    a64, b64 = bf16(a).astype(np.float64), bf16(b).astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = (a64[:, :, None] * b64[None, :, :]).sum(1)               # IEEE sums, no BLAS shortcuts
    assert np.isnan(want[3]).all() and np.isnan(want[30]).all() and np.isnan(want[:, 20]).all()
    assert np.isposinf(want[20, 0])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(out[np.isinf(want)], want[np.isinf(want)])
    finite = np.isfinite(want)
    bound = 71 * 2.0 ** -22 * (np.abs(a64) @ np.abs(b64))              # as exact_and_bound's
    assert np.all(np.abs(out[finite] - want[finite]) <= bound[finite])


@given(case=bf16_gemm_cases())
def test_every_level_on_drawn_cases(c, case):
    """Each level within the bound of the exact product, and so within twice it of the reference."""
    a, b, bias = case
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    ref = run(c, "ref", a3, b3, bias)
    _, bound = exact_and_bound(a3, b3, bias)
    for level, need in LEVELS:
        if not missing(need):
            out = run(c, level, a3, b3, bias)
            assert_bf16_product(out, a3, b3, bias, level)
            assert np.all(np.abs(out - ref) <= 2 * bound), level


def test_matches_torch(c):
    """torch.matmul of the operands rounded by torch: the same rounding, its own float32 sums."""
    a, b = f32(9, (3, 140, 200)), f32(10, (200, 90))
    want = torch.matmul(torch.from_numpy(a).bfloat16().float(), torch.from_numpy(b).bfloat16().float())
    _, bound = exact_and_bound(a, b[None])
    assert np.all(np.abs(c.matmul(a, b, bf16=True) - want.numpy()) <= 2 * bound)


@pytest.mark.parametrize("isa", _cmem.ISAS)
def test_dispatcher_at_each_isa_level(c, isa):
    """set_isa picks the version sgemm_bf16 runs; matmul(bf16=True) and linear_forward(bf16=True)
    reach it in every layout they pass (a 3-D A folded into rows, a batch, weight.T)."""
    if missing(_cmem.ISAS.index(isa)):
        pytest.skip(missing(_cmem.ISAS.index(isa)))
    from minit2t.backends import c_kernels as ck
    before = c.isa()
    try:
        got = c.set_isa(isa)
        if isa == "amx" and got == "avx512_bf16":
            pytest.skip("Linux lent this process no AMX tiles (the fallback: test_amx_refused_by_the_os...)")
        assert got == isa
        a, b, w, bias = f32(11, (2, 150, 70)), f32(12, (70, 90)), f32(13, (90, 70)), f32(14, (90,))
        assert_bf16_product(ck.matmul(a, b, bf16=True), a, b[None], what=f"{isa} 3-D @ 2-D")
        assert_bf16_product(ck.matmul(a, a.swapaxes(1, 2), bf16=True), a, a.swapaxes(1, 2), what=f"{isa} batch")
        x = a[0]
        assert_bf16_product(ck.linear_forward(x, w, bias, bf16=True)[None], x[None], w.T[None], bias, isa)
    finally:
        c.set_isa(before)


def test_float64_is_never_rounded(c):
    a, b = make_array(15, (40, 30)), make_array(16, (30, 20))
    np.testing.assert_array_equal(c.matmul(a, b, bf16=True), np.matmul(a, b))


ISA_CODE = "from minit2t.backends import get_backend; print(get_backend('c').isa())"


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                          timeout=120)


def test_isa_from_environment_selects_each_level(c):
    """MINIT2T_ISA=<level> runs that level (this CPU has it) or the best below it it has; an
    unknown level is refused in one line that lists all five."""
    cpu = c.lib.minit2t_cpu_isa()
    for level, isa in enumerate(_cmem.ISAS):
        result = _python(ISA_CODE, MINIT2T_ISA=isa)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == _cmem.ISAS[min(level, cpu)]
    result = _python(ISA_CODE, MINIT2T_ISA="avx1024")
    assert result.returncode != 0
    assert "MINIT2T_ISA must be one of scalar, avx2, avx512, avx512_bf16, amx; got 'avx1024'" in result.stderr


# A process whose alternate signal stack cannot hold a signal frame with the 8 KB of tile
# state: Linux refuses it the tiles, and the AMX level must fall back to avx512_bf16.
REFUSED = """
import ctypes
import numpy as np
class Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]
room = ctypes.create_string_buffer(6144)
assert ctypes.CDLL(None).sigaltstack(ctypes.byref(Stack(ctypes.addressof(room), 0, 6144)), None) == 0
from minit2t.backends import _cmem, get_backend, get_num_threads, set_num_threads
c = get_backend('c')
a, b = np.ones((300, 200), np.float32), np.full((200, 100), 1 + 2 ** -8, np.float32)
out = np.zeros((300, 100), np.float32)
_cmem.lib.sgemm_bf16_amx(1, 300, 100, 200, _cmem.ptr(a), _cmem.strides(a, (None, 0, 1)), _cmem.ptr(b),
                         _cmem.strides(b, (None, 0, 1)), _cmem.ffi.NULL, _cmem.ptr(out), _cmem.strides(out, (None, 0)))
print(c.isa(), c.set_isa("amx"), c.matmul(a, b, bf16=True)[0, 0], out[0, 0])
"""


def test_amx_refused_by_the_os_falls_back_to_avx512_bf16(c):
    """isa() says avx512_bf16, set_isa("amx") too, and sgemm_bf16_amx runs the vdpbf16ps version (a
    tile instruction would kill the process). 1 + 2^-8 rounds to 1 (ties to even): each sum is 200."""
    if missing(4):
        pytest.skip(missing(4))
    result = _python(REFUSED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["avx512_bf16", "avx512_bf16", "200.0", "200.0"]
