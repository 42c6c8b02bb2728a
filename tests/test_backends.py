"""The backends' GEMM and im2col kernels against the references: NumPy in
float64, the reference ops' unfold/fold (minit2t.ops.conv), and torch.

One suite, parametrized over the backends that have these kernels (c, opencl;
the unfold/fold tests also over the reference itself); one that cannot run
here is skipped with its reason. The ops on every backend, numpy included,
are checked against torch in test_model_backends.py and test_fused.py.
Legend: Bt matrices, M/K/N matrix sides, B batch, C channels, H/W
height/width, k kernel, s stride, p padding, L windows.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from minit2t.backends import _cmem, get_backend, get_num_threads, set_num_threads
from minit2t.ops import conv
from minit2t.ops.function import Context
from strategies import gemm_cases, make_array, seeds, window_cases


class Reference:
    """The reference ops' unfold and fold, called as a backend's kernels are."""
    name = "reference"
    unfold = staticmethod(lambda x, *args: conv.Unfold.forward(Context(conv.Unfold), x, *args))
    fold = staticmethod(lambda cols, *args: conv.Fold.forward(Context(conv.Fold), cols, *args))


def _load(name):
    try:
        return get_backend(name)
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=["c", "opencl"])
def backend(request):
    return _load(request.param)


@pytest.fixture(scope="module", params=["reference", "c", "opencl"])
def windows_backend(request):
    return Reference if request.param == "reference" else _load(request.param)


@pytest.fixture(scope="module")
def c_backend():
    return _load("c")


def assert_matmul_close(out, a, b):
    """out equals a @ b up to float32 rounding: float64 NumPy and torch."""
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert out.shape == ref.shape and out.dtype == np.result_type(a, b)
    atol = 4e-6 * (a.shape[-1] + 1)          # float32 sums of K unit-normal products
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=atol)
    expect = torch.matmul(torch.from_numpy(a.copy()), torch.from_numpy(b.copy())).numpy()
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=atol)


# ---- matmul -------------------------------------------------------------------

@given(case=gemm_cases())
def test_matmul_matches_references(backend, case):
    a, b = case
    assert_matmul_close(backend.matmul(a, b), a, b)


@pytest.mark.parametrize("m, k, n", [(145, 520, 1537), (1, 1, 1), (300, 1, 2)])
def test_matmul_crosses_every_block(backend, m, k, n):
    a, b = make_array(1, (m, k), np.float32), make_array(2, (k, n), np.float32)
    assert_matmul_close(backend.matmul(a, b), a, b)


def test_matmul_float64_in_float64_out(backend):
    a, b = make_array(3, (2, 9, 5)), make_array(4, (2, 5, 7))
    out = backend.matmul(a, b)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_mixed_precision_promotes(backend):
    a, b = make_array(5, (4, 6), np.float32), make_array(6, (6, 3))
    out = backend.matmul(a, b)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-12)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((0, 4), (4, 3)), ((3, 0), (0, 5)), ((2, 3, 4), (2, 4, 0)), ((0, 3, 4), (4, 2))])
def test_matmul_zero_size(backend, a_shape, b_shape):
    a, b = np.ones(a_shape, np.float32), np.ones(b_shape, np.float32)
    out = backend.matmul(a, b)
    np.testing.assert_array_equal(out, np.matmul(a, b))   # zeros of the right shape


@pytest.mark.parametrize("a, b, error, match", [
    (np.ones((2, 3), np.int64), np.ones((3, 4), np.float32), TypeError, "int64"),
    (np.ones((2, 3), np.float32), np.ones((4, 5), np.float32), ValueError, r"K=3.*K=4"),
    (np.ones((2, 2, 3), np.float32), np.ones((3, 3, 4), np.float32), ValueError, "batch"),
    (np.ones(3, np.float32), np.ones((3, 4), np.float32), ValueError, r"\(3,\)"),
    (np.ones((1, 2, 3, 4), np.float32), np.ones((4, 4), np.float32), ValueError, "3-D"),
])
def test_matmul_refuses_bad_input(backend, a, b, error, match):
    with pytest.raises(error, match=match):
        backend.matmul(a, b)


# ---- unfold / fold ------------------------------------------------------------

def torch_unfold(x, k, s, p):
    return F.unfold(torch.from_numpy(np.ascontiguousarray(x)), k, stride=s, padding=p).numpy()


def torch_fold(cols, hw, k, s, p):
    return F.fold(torch.from_numpy(np.ascontiguousarray(cols)), hw, k, stride=s, padding=p).numpy()


@given(case=window_cases(), seed=seeds,
       layout=st.sampled_from(["contiguous", "strided", "cropped", "channels_last"]))
def test_unfold_fold_match_references(windows_backend, case, seed, layout):
    shape, k, s, p = case
    x = make_array(seed, shape, np.float32, noncontiguous=layout == "strided")
    if layout == "cropped":                  # rows not contiguous, columns are
        x = make_array(seed, shape[:3] + (shape[3] + 2,), np.float32)[..., 1:-1]
    if layout == "channels_last":            # a T2T layer's tokens as an image: (B, H, W, C) in memory
        x = make_array(seed, (shape[0], shape[2], shape[3], shape[1]), np.float32).transpose(0, 3, 1, 2)
    cols = windows_backend.unfold(x, k, s, p)                       # (B, C*k*k, L)
    np.testing.assert_array_equal(cols, torch_unfold(x, k, s, p))
    np.testing.assert_array_equal(cols, conv.unfold(x, k, s, p))
    g = make_array(seed + 1, cols.shape, np.float32, noncontiguous=layout == "strided")
    if layout == "channels_last":            # its gradient as the tokens' (B, L, C*k*k) transposed
        g = make_array(seed + 1, (cols.shape[0], cols.shape[2], cols.shape[1]), np.float32).transpose(0, 2, 1)
    out = windows_backend.fold(g, shape[2:], k, s, p)               # (B, C, H, W)
    np.testing.assert_allclose(out, torch_fold(g, shape[2:], k, s, p), rtol=1e-6, atol=1e-6)
    assert out.shape == shape and out.dtype == np.float32


@pytest.mark.parametrize("shape, k, s, p, dtype", [
    ((2, 3, 9, 8), 3, 2, 1, np.float64),
    ((16, 16, 32, 32), 3, 1, 1, np.float32),   # outputs of 8 MiB and more: the C
    ((32, 64, 32, 32), 2, 2, 0, np.float32)])  # kernels stream them past the cache
def test_unfold_fold_float64_and_large(windows_backend, shape, k, s, p, dtype):
    x = make_array(7, shape, dtype)
    cols = windows_backend.unfold(x, k, s, p)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, torch_unfold(x, k, s, p))
    np.testing.assert_allclose(windows_backend.fold(cols, shape[2:], k, s, p),
                               torch_fold(cols, shape[2:], k, s, p), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5)])
def test_unfold_fold_zero_size(windows_backend, shape):
    x = np.ones(shape, np.float32)
    cols = windows_backend.unfold(x, 3, 1, 1)
    assert cols.shape == (shape[0], shape[1] * 9, 25)
    assert windows_backend.fold(cols, (5, 5), 3, 1, 1).shape == shape


@pytest.mark.parametrize("call, error, match", [
    (lambda be: be.unfold(np.ones((1, 1, 4, 4), np.int32), 3, 1, 1), TypeError, "int32"),
    (lambda be: be.unfold(np.ones((1, 4, 4), np.float32), 3, 1, 1), ValueError, r"\(B, C, H, W\)"),
    (lambda be: be.unfold(np.ones((1, 1, 2, 2), np.float32), 5, 1, 1), ValueError, r"\(4, 4\)"),
    (lambda be: be.unfold(np.ones((1, 1, 4, 4), np.float32), 3, 0, 1), ValueError, "stride"),
    (lambda be: be.unfold(np.ones((1, 1, 4, 4), np.float32), 3, 1, -1), ValueError, "padding"),
    (lambda be: be.unfold(np.ones((1, 1, 4, 4), np.float32), 2.5, 1, 0), TypeError, "kernel_size"),
    (lambda be: be.fold(np.ones((1, 9, 15), np.float32), (4, 4), 3, 1, 1), ValueError, r"\(1, 9, 15\)"),
    (lambda be: be.fold(np.ones((1, 9, 16), np.float32), 4, 3, 1, 1), TypeError, "pair"),
    (lambda be: be.fold(np.ones((1, 9, 1), np.float32), (1, 1), 3, 0, 0), ValueError, "stride"),
    (lambda be: be.fold(np.ones((1, 9, 16), np.int64), (4, 4), 3, 1, 1), TypeError, "int64"),
])
def test_unfold_fold_refuse_bad_input(windows_backend, call, error, match):
    with pytest.raises(error, match=match):
        call(windows_backend)


# ---- the C extension itself ---------------------------------------------------

def _cpu_flags():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo")
def test_c_dispatches_to_the_best_isa_of_this_cpu(c_backend):
    import ctypes
    from minit2t import _cext
    if not hasattr(ctypes.CDLL(_cext.__file__), "sgemm_avx512"):      # built with -DMINIT2T_PORTABLE
        pytest.skip("a portable build (-DMINIT2T_PORTABLE) holds the reference kernels only")
    flags = _cpu_flags()
    if {"avx512_bf16", "amx_bf16", "amx_tile"} <= flags:       # the tiles lent by Linux (a plain process)
        expected = "amx"
    elif {"avx512_bf16", "avx512bw", "avx512vl"} <= flags:
        expected = "avx512_bf16"
    elif "avx512f" in flags:
        expected = "avx512"
    elif {"avx2", "fma"} <= flags:
        expected = "avx2"
    else:
        expected = "scalar"
    assert c_backend.isa() == expected


def _fast_levels(c_backend):
    """The fast kernels this CPU runs (each has a _ref twin)."""
    lib = c_backend.lib
    return [name for name, level in (("avx2", 1), ("avx512", 2)) if lib.minit2t_cpu_isa() >= level]


@given(case=gemm_cases())
def test_c_fast_gemm_equals_reference(c_backend, case):
    a, b = case
    lib = c_backend.lib
    a3, b3 = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    bt = max(a3.shape[0], b3.shape[0])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    sa = _cmem.strides(a3, (0 if a3.shape[0] > 1 else None, 1, 2))
    sb = _cmem.strides(b3, (0 if b3.shape[0] > 1 else None, 1, 2))
    outs = {}
    for level in ["ref"] + _fast_levels(c_backend):
        out = np.full((bt, m, n), np.nan, np.float32)
        getattr(lib, "sgemm_" + level)(bt, m, n, k, _cmem.ptr(a3), sa, _cmem.ptr(b3),
                                       sb, _cmem.ptr(out), _cmem.strides(out, (0, 1)))
        outs[level] = out
    for level, out in outs.items():
        np.testing.assert_allclose(out, outs["ref"], rtol=1e-5, atol=4e-6 * (k + 1), err_msg=level)


@given(case=window_cases(), seed=seeds)
def test_c_fast_unfold_fold_equal_reference(c_backend, case, seed):
    _fast_equals_reference(c_backend, *case, seed)


@pytest.mark.parametrize("shape, k, s, p", [
    ((2, 3, 16, 35), 3, 2, 1), ((1, 2, 17, 16), 3, 2, 0), ((1, 2, 18, 48), 2, 2, 1),
    ((2, 2, 33, 33), 5, 2, 2), ((1, 3, 9, 70), 7, 4, 2), ((1, 2, 12, 32), 4, 4, 0),
    ((1, 2, 13, 64), 3, 4, 1), ((1, 1, 8, 95), 7, 4, 3), ((3, 2, 16, 16), 3, 2, 1)])
def test_c_fast_unfold_fold_wide_rows(c_backend, shape, k, s, p):
    """Rows wide enough for the vector loops that split stride-2 and stride-4 rows into phases."""
    _fast_equals_reference(c_backend, shape, k, s, p, seed=3)


@given(case=window_cases(), seed=seeds, channels_last=st.booleans())
def test_c_unfold_fold_tokens_are_unfold_fold_transposed(c_backend, case, seed, channels_last):
    """unfold_tokens / fold_tokens at every level: unfold_ref's columns tokens-major, and fold_ref's
    sums from them, bit for bit, from and into x of either layout."""
    shape, k, s, p = case
    nb, nc, h, w = shape
    lib = c_backend.lib
    x = make_array(seed, shape, np.float32)
    cols = np.asarray(torch_unfold(x, k, s, p))                     # (B, C*k*k, L)
    tokens = np.ascontiguousarray(cols.transpose(0, 2, 1))          # (B, L, C*k*k)
    want = np.full_like(x, np.nan)
    lib.fold_ref(_cmem.ptr(cols), _cmem.strides(cols, range(3)), _cmem.ptr(want), nb, nc, h, w, k, s, p)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for level in ["ref"] + _fast_levels(c_backend):
        got = np.full_like(tokens, np.nan)
        getattr(lib, "unfold_tokens_" + level)(_cmem.ptr(x), _cmem.strides(x, range(4)),
                                               _cmem.ptr(got), nb, nc, h, w, k, s, p)
        np.testing.assert_array_equal(got, tokens, err_msg=level)
        back = np.full((nb, h, w, nc), np.nan, np.float32).transpose(0, 3, 1, 2) if channels_last \
            else np.full_like(want, np.nan)
        getattr(lib, "fold_tokens_" + level)(_cmem.ptr(tokens), _cmem.ptr(back), _cmem.strides(back, range(4)),
                                             nb, nc, h, w, k, s, p)
        np.testing.assert_array_equal(back, want, err_msg=level)


def _fast_equals_reference(c_backend, shape, k, s, p, seed):
    nb, nc, h, w = shape
    lib = c_backend.lib
    x = make_array(seed, (nb, nc, h, w), np.float32)
    cols = np.asarray(torch_unfold(x, k, s, p))
    for level in ["ref"] + _fast_levels(c_backend):
        got = np.full_like(cols, np.nan)
        getattr(lib, "unfold_" + level)(_cmem.ptr(x), _cmem.strides(x, range(4)),
                                        _cmem.ptr(got), nb, nc, h, w, k, s, p)
        np.testing.assert_array_equal(got, cols, err_msg=level)
        back = np.full_like(x, np.nan)
        getattr(lib, "fold_" + level)(_cmem.ptr(cols), _cmem.strides(cols, range(3)),
                                      _cmem.ptr(back), nb, nc, h, w, k, s, p)
        np.testing.assert_allclose(back, torch_fold(cols, (h, w), k, s, p), rtol=1e-6, atol=1e-6)


def test_c_forced_scalar_path_agrees(c_backend):
    a, b = make_array(8, (70, 40), np.float32), make_array(9, (40, 33), np.float32)
    fast, before = c_backend.matmul(a, b), c_backend.isa()
    try:
        assert c_backend.set_isa("scalar") == "scalar"
        slow = c_backend.matmul(a, b)
    finally:
        c_backend.set_isa(before)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-4)


def test_c_threads_give_identical_results(c_backend):
    a, b = make_array(10, (3, 200, 70), np.float32), make_array(11, (3, 70, 90), np.float32)
    before = get_num_threads()
    try:
        set_num_threads(1)
        assert get_num_threads() == 1
        one = c_backend.matmul(a, b)
        set_num_threads(2)
        two = c_backend.matmul(a, b)
    finally:
        set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match="got 0"):
        set_num_threads(0)


def test_c_output_buffers_are_never_shared_while_held(c_backend):
    a, b = make_array(12, (512, 64), np.float32), make_array(13, (64, 1024), np.float32)
    first = c_backend.matmul(a, b)                 # 2 MiB: from the pool
    view = first[3:5]
    keep = view.copy()
    second = c_backend.matmul(b.T, a.T)            # same size, while `view` lives
    assert not np.shares_memory(second, view)
    np.testing.assert_array_equal(view, keep)
    address = second.ctypes.data
    del second
    third = c_backend.matmul(b.T, a.T)             # dropped: its buffer comes back
    assert third.ctypes.data == address


def test_c_output_pool_cap_release_and_order(c_backend):
    from minit2t.backends._cmem import OutputPool
    pool = OutputPool(10 << 20)                    # 10 MiB: buffers of at most 2.5 MiB are pooled
    size = lambda x: x.nbytes + 64                 # noqa: E731  (each buffer has room to align)
    held = [pool.empty((512 << 10,)) for _ in range(4)]                  # 4 x 2 MiB
    addresses = [x.ctypes.data for x in held]
    assert pool.held_bytes == sum(map(size, held))
    del held[1]
    fifth = pool.empty((512 << 10,))               # the freed buffer comes back, no new one
    assert fifth.ctypes.data == addresses[1] and pool.held_bytes == 4 * size(fifth)
    sixth = pool.empty((600 << 10,))               # past the cap, nothing free: the oldest in use
    assert pool.held_bytes == 3 * size(fifth) + size(sixth)              # is no longer the pool's
    del fifth
    seventh = pool.empty((620 << 10,))             # past the cap again: the free buffer goes first
    assert pool.held_bytes == 2 * size(held[0]) + size(sixth) + size(seventh)
    np.testing.assert_array_equal(held[0].ctypes.data, addresses[0])     # its holder still has it
    del held
    pool.release()                                 # every free buffer let go; those in use stay
    assert pool.held_bytes == size(sixth) + size(seventh)
    assert pool.empty((1000 << 10,)).size == 1000 << 10                  # 4 MB: not pooled
    assert pool.held_bytes == size(sixth) + size(seventh)


def test_c_output_pool_hands_out_the_last_freed_first(c_backend):
    """Of the free buffers of one size, the one handed out last (the likeliest in cache) comes back."""
    from minit2t.backends._cmem import OutputPool
    pool = OutputPool(64 << 20)
    bufs = [pool.empty((512 << 10,)) for _ in range(3)]                  # 3 x 2 MiB, handed out in turn
    addresses = [x.ctypes.data for x in bufs]
    del bufs[:]                                                          # all three free
    again = pool.empty((512 << 10,))
    assert again.ctypes.data == addresses[2]
    other = pool.empty((512 << 10,))                                     # the next: handed out before it
    assert other.ctypes.data == addresses[1]
    del again
    assert pool.empty((512 << 10,)).ctypes.data == addresses[2]          # freed again: back first


def test_c_output_pool_size_from_environment(c_backend):
    code = "from minit2t.backends._cmem import pool; print(pool.max_bytes >> 20)"
    assert _run(code, MINIT2T_POOL_MIB="64").stdout.strip() == "64"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MINIT2T_POOL_MIB": "lots"}, timeout=120)
    assert "MINIT2T_POOL_MIB must be a whole number of MiB (0: no pool); got 'lots'" in result.stderr


def _run(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_c_threads_from_environment(c_backend):
    code = "from minit2t.backends import get_num_threads as g; print(g())"
    assert _run(code, MINIT2T_NUM_THREADS="1").stdout.strip() == "1"
    # the kernels imported on their own (no backend lookup first) are configured too
    code = "from minit2t.backends import c_kernels as ck; print(ck.lib.minit2t_get_num_threads())"
    assert _run(code, MINIT2T_NUM_THREADS="3").stdout.strip() == "3"
    code = "from minit2t.backends import c_kernels as ck; print(ck.lib.minit2t_isa())"
    assert _run(code, MINIT2T_ISA="scalar").stdout.strip() == "0"


def test_c_instruction_set_from_environment(c_backend):
    code = "from minit2t.backends import get_backend; print(get_backend('c').isa())"
    assert _run(code, MINIT2T_ISA="scalar").stdout.strip() == "scalar"
    best = _cmem.ISAS[c_backend.lib.minit2t_cpu_isa()]
    assert _run(code, MINIT2T_ISA="amx").stdout.strip() == best              # never above the CPU
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MINIT2T_ISA": "sse9"}, timeout=120)
    assert "MINIT2T_ISA must be one of scalar, avx2, avx512, avx512_bf16, amx; got 'sse9'" in result.stderr
    with pytest.raises(ValueError, match="one of scalar, avx2, avx512, avx512_bf16, amx; got 'avx3'"):
        c_backend.set_isa("avx3")


def test_c_works_in_a_forked_child(c_backend):
    code = ("import os, numpy as np\n"
            "from minit2t.backends import get_backend, set_num_threads\n"
            "c = get_backend('c'); set_num_threads(2)\n"
            "a = np.ones((700, 300), np.float32); b = np.ones((300, 200), np.float32)\n"
            "c.matmul(a, b)\n"                      # the parent's thread pool is up
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(0 if c.matmul(a, b)[0, 0] == 300 else 1)\n"
            "print(os.waitpid(pid, 0)[1])")
    assert _run(code).stdout.strip() == "0"


def test_missing_extension_falls_back_to_numpy_with_one_warning():
    code = ("import sys, warnings; sys.modules['minit2t._cext'] = None\n"
            "warnings.simplefilter('always')\n"
            "from minit2t.backends import get_backend\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    names = [get_backend().name, get_backend().name]\n"
            "    try:\n"
            "        get_backend('c')\n"
            "    except RuntimeError:\n"
            "        names.append(False)\n"
            "print(names, len(w), w[0].message)")
    out = _run(code).stdout
    assert out.startswith("['numpy', 'numpy', False] 1 the C extension"), out
