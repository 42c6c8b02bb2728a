"""What only the OpenCL backend has: both GEMM kernels, device choice,
program cache, buffer pool, transfer timing. The kernels' semantics for
every backend are in test_backends.py.

Legend: Bt batch, M/K/N matrix sides, B batch, C channels, H/W height/width,
k kernel, s stride, p padding.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given

from minit2t.ops import conv
from strategies import gemm_cases, make_array, seeds, window_cases

try:
    from minit2t.backends import get_backend
    ob = get_backend("opencl")
    from minit2t.backends import _opencl_runtime as rtm
    from minit2t.backends import opencl_kernels as okn    # the kernels' options: gemm_kernel, BLOCKED, MAX_Z
except (ImportError, RuntimeError) as e:                # no pyopencl, no platform
    pytest.skip(f"OpenCL backend unavailable: {e}", allow_module_level=True)

KERNELS = ["blocked", "tiled"]


def gemm_bound(a, b):
    """Worst-case float32 rounding error of a @ b, elementwise: K eps |a| @ |b|."""
    k = a.shape[-1]
    return (k + 2) * np.finfo(np.float32).eps * (np.abs(a.astype(np.float64)) @ np.abs(b))


@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    monkeypatch.setattr(okn, "gemm_kernel", request.param)
    return request.param


@given(case=gemm_cases())
@pytest.mark.parametrize("which", KERNELS)
def test_matmul_both_kernels(which, case):
    a, b = case
    old, okn.gemm_kernel = okn.gemm_kernel, which
    try:
        got = ob.matmul(a, b)
    finally:
        okn.gemm_kernel = old
    want = np.matmul(a.astype(np.float64), b)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.all(np.abs(got - want) <= gemm_bound(a, b))


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (6, 16, 16), (7, 33, 17), (64, 1, 65), (130, 70, 47)])
def test_matmul_edges(kernel, M, K, N):
    """Sides on, below and above the tiles (6 x 16 blocked, 32 x 32 tiled)."""
    a, b = make_array(1, (2, M, K), np.float32), make_array(2, (2, K, N), np.float32)
    got = ob.matmul(a, b)
    assert np.all(np.abs(got - np.matmul(a.astype(np.float64), b)) <= gemm_bound(a, b))


@given(case=window_cases(), seed=seeds)
def test_unfold_fold_bitwise(case, seed):
    """Same float32 operations in the same order as the numpy reference."""
    shape, k, s, p = case
    x = make_array(seed, shape, np.float32)
    cols = ob.unfold(x, k, s, p)
    np.testing.assert_array_equal(cols, conv.unfold(x, k, s, p))
    y = make_array(seed + 1, cols.shape, np.float32)
    np.testing.assert_array_equal(ob.fold(y, shape[2:], k, s, p),
                                  conv.fold(y, *shape[2:], k, s, p))


def test_float64_goes_to_numpy_exactly():
    a, b = make_array(3, (9, 5), np.float64), make_array(4, (5, 7), np.float32)
    got = ob.matmul(a, b)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.matmul(a, b))


def test_bad_gemm_kernel_option(monkeypatch):
    monkeypatch.setattr(okn, "gemm_kernel", "fast")
    with pytest.raises(ValueError, match="'auto', 'blocked' or 'tiled'"):
        ob.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))


def test_programs_built_once_per_options(kernel, monkeypatch):
    a = make_array(5, (20, 30), np.float32)
    ob.matmul(a, a.T)
    built = dict(rtm._KERNELS)
    ob.matmul(a, a.T)
    assert rtm._KERNELS == built                          # same kernel objects, no rebuild
    if kernel == "blocked":                               # new -D options: a new program
        monkeypatch.setattr(okn, "BLOCKED", {"RM": 4, "NB": 8, "GROUP": (4, 4)})
        got = ob.matmul(a, a.T)
        assert np.all(np.abs(got - a.astype(np.float64) @ a.T) <= gemm_bound(a, a.T))
        assert len(rtm._KERNELS) > len(built)


def test_buffers_reused():
    rt = rtm.get_runtime()
    a = make_array(6, (33, 21), np.float32)
    ob.matmul(a, a.T)
    pooled = {id(buf) for bufs in rt.pool.free.values() for buf in bufs}
    ob.matmul(a, a.T)
    again = {id(buf) for bufs in rt.pool.free.values() for buf in bufs}
    assert pooled and pooled == again                     # the same buffers came back


def test_pool_keeps_under_its_limit():
    rt = rtm.get_runtime()
    pool = rtm.BufferPool(rt.cl, rt.ctx, limit=3 * 4096)
    bufs = [pool.take(4096) for _ in range(5)]
    for buf in bufs:
        pool.give(buf)
    assert pool.held == 3 * 4096 and len(pool.free[4096]) == 3
    assert pool.take(100) is bufs[-1]                     # rounded up to 4 KiB, reused


def test_profile_separates_transfers():
    a = make_array(7, (64, 64), np.float32)
    ob.matmul(a, a)
    prof = ob.last_profile()
    assert set(prof) == {"upload", "kernel", "download"}
    assert prof["kernel"] > 0 and prof["upload"] > 0 and prof["download"] > 0


def test_device_selection():
    cl = rtm.import_pyopencl()
    first = cl.get_platforms()[0].get_devices()[0]
    assert rtm.select_device(cl, "0:0") == first
    assert rtm.select_device(cl, first.name.strip()[-6:].upper()) is not None
    with pytest.raises(RuntimeError, match="no device 99:0; devices are: 0:0"):
        rtm.select_device(cl, "99:0")
    with pytest.raises(RuntimeError, match="matches no device name"):
        rtm.select_device(cl, "no such device anywhere")


def test_device_from_env(monkeypatch):
    monkeypatch.setenv("MINIT2T_OPENCL_DEVICE", "99:0")
    monkeypatch.setattr(rtm, "_runtime", None)
    with pytest.raises(RuntimeError, match="MINIT2T_OPENCL_DEVICE='99:0'"):
        ob.check_available()


def test_missing_pyopencl_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopencl", None)    # import now fails
    monkeypatch.setattr(rtm, "_runtime", None)
    with pytest.raises(RuntimeError, match=r"pip install -e \"\.\[opencl\]\""):
        ob.check_available()


def test_import_minit2t_needs_no_pyopencl():
    code = "import sys, minit2t; assert 'pyopencl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_platform_is_a_clear_error(tmp_path):
    """With no OpenCL driver registered, the backend says so and is not listed."""
    code = ("from minit2t.backends import available_backends, get_backend\n"
            "assert 'opencl' not in available_backends()\n"
            "try:\n    get_backend('opencl')\nexcept RuntimeError as e:\n    print(e)\n")
    env = dict(os.environ, OCL_ICD_VENDORS=str(tmp_path))      # an empty vendor folder
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "no OpenCL platform found" in out


def test_grid_launched_in_slabs(monkeypatch):
    """Dimension 2 of a grid split over several launches gives the same result."""
    monkeypatch.setattr(okn, "MAX_Z", 5)
    monkeypatch.setattr(okn, "gemm_kernel", "tiled")
    a, b = make_array(8, (7, 9, 4), np.float32), make_array(9, (7, 4, 3), np.float32)
    assert np.all(np.abs(ob.matmul(a, b) - np.matmul(a.astype(np.float64), b)) <= gemm_bound(a, b))
    x = make_array(10, (2, 3, 6, 5), np.float32)                  # 54 rows of cols, 6 images
    cols = ob.unfold(x, 3, 2, 1)
    np.testing.assert_array_equal(cols, conv.unfold(x, 3, 2, 1))
    np.testing.assert_array_equal(ob.fold(cols, (6, 5), 3, 2, 1),
                                  conv.fold(cols, 6, 5, 3, 2, 1))
