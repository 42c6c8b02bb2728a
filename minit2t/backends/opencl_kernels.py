"""The OpenCL kernels of the "opencl" backend: matmul, unfold and fold, each one
call of the OpenCL C programs in cext/*.cl (gemm_blocked.cl, gemm_tiled.cl,
im2col.cl) through _opencl_runtime. opencl_ops builds the ops on them.

Legend: Bt batch of matrices, M/K/N matrix sides, B batch, C channels,
H/W height/width, k kernel, s stride, p padding, L = Ho * Wo windows,
RM x NB (CPU) and TS x TS (GPU) GEMM tiles.

float32 runs on the device; every other dtype (float64, mixed) goes to NumPy,
which computes it exactly. Each call uploads its inputs, runs, then downloads
the result: on a GPU these transfers are the cost to watch, and
opencl_backend.last_profile() gives them apart from the kernel time.

Options (module attributes, read at each call):
    gemm_kernel   "auto" (default, or env MINIT2T_OPENCL_GEMM): "blocked" on
                  CPU devices, "tiled" on the others; or force either one.
    BLOCKED, TILED  the tile sizes, passed to the compiler as -D options.
    GROUP_WINDOWS, MAX_Z  work-group size of unfold / fold, launch slab height.
"""
import os

import numpy as np

from minit2t.backends import _opencl_runtime as rtm
from minit2t.backends._checks import check_matmul
from minit2t.ops import conv

gemm_kernel = os.environ.get("MINIT2T_OPENCL_GEMM", "auto")
BLOCKED = {"RM": 6, "NB": 16, "GROUP": (16, 16)}   # CPU: RM x NB tile per work-item in
#   registers; a work-group of GROUP (column, row) tiles runs on one core, its
#   column panels of B staying in cache while its rows of A stream past
TILED = [(32, 8), (16, 4), (8, 2)]       # GPU: (TS, WPT), the first that fits a work-group
GROUP_WINDOWS = 256                      # work-group size of unfold / fold, at most
MAX_Z = 65535                            # work-items per launch along grid dimension 2
_INT_MAX = 2**31 - 1024                  # sizes go to the kernels as int


def _on_device(*arrays):
    return all(x.dtype == np.float32 for x in arrays)


def _cdiv(a, b):
    return -(-a // b)


def _grid(sizes, local):
    """Global size: each of `sizes` rounded up to a multiple of `local`."""
    return tuple(_cdiv(n, l) * l for n, l in zip(sizes, local))


def _local3(grid, budget):
    """A work-group of at most `budget` work-items over a 3-D grid, x first."""
    lx = min(grid[0], 64)
    ly = min(grid[1], max(1, budget // lx))
    return lx, ly, min(grid[2], max(1, budget // (lx * ly)))


def _run_slabs(call, knl, grid, local, *args):
    """Launch knl(z0, *args) over grid in slabs along dimension 2, at most
    MAX_Z work-items each (some GPUs allow at most 65535 groups there)."""
    step = max(1, MAX_Z // local[2]) * local[2]
    for z0 in range(0, grid[2], step):
        slab = grid[:2] + (min(step, grid[2] - z0),)
        call.run(knl, _grid(slab, local), local, np.int32(z0), *args)


def _ints(*sizes):
    if max(sizes) > _INT_MAX:
        raise ValueError(f"opencl: sizes up to {_INT_MAX} supported, got {max(sizes)}")
    return [np.int32(n) for n in sizes]


def _as_batched(a, b, out_shape):
    """a, b -> contiguous (Bt, M, K), (Bt, K, N) for out_shape (M, N) or (Bt, M, N)."""
    (M, K), N = a.shape[-2:], b.shape[-1]
    if a.ndim == 3 and b.ndim == 2:                       # weights: batch folded into rows
        a3 = np.ascontiguousarray(a).reshape(1, a.shape[0] * M, K)   # (1, Bt*M, K)
        return a3, np.ascontiguousarray(b)[None]                     # (1, K, N)
    bt = out_shape[:-2]
    n = int(np.prod(bt))
    a3 = np.broadcast_to(a, bt + (M, K)).reshape(n, M, K)            # (Bt, M, K)
    b3 = np.broadcast_to(b, bt + (K, N)).reshape(n, K, N)            # (Bt, K, N)
    return np.ascontiguousarray(a3), np.ascontiguousarray(b3)


def _use_blocked(rt):
    if gemm_kernel not in ("auto", "blocked", "tiled"):
        raise ValueError(f"opencl: gemm_kernel must be 'auto', 'blocked' or 'tiled', "
                         f"got {gemm_kernel!r}")
    return gemm_kernel == "blocked" or (gemm_kernel == "auto" and rt.is_cpu)


def _gemm_blocked(call, A, B, C, Bt, M, K, N):
    rm, vw = BLOCKED["RM"], min(BLOCKED["NB"], call.rt.vector_width)
    nv = max(1, BLOCKED["NB"] // vw)                      # NB = nv vectors of vw floats
    nb, opts = nv * vw, f"-DRM={rm} -DVW={vw} -DNV={nv}"
    Q, P = _cdiv(M, rm), _cdiv(N, nb)
    Bp = call.alloc(Bt * P * nb * K * 4)                  # (Bt, P, K, NB)
    m, k, n, p = _ints(M, K, N, P)
    lb = (min(P, 16), min(K, 16), 1)
    call.run(call.rt.kernel("gemm_blocked.cl", "pack_b", opts),
             _grid((P, K, Bt), lb), lb, n, k, p, B, Bp)
    lx = min(P, BLOCKED["GROUP"][0], call.rt.max_group)
    local = (lx, min(Q, BLOCKED["GROUP"][1], call.rt.max_group // lx), 1)
    call.run(call.rt.kernel("gemm_blocked.cl", "gemm_blocked", opts),
             _grid((P, Q, Bt), local), local, m, n, k, A, Bp, C)


def _gemm_tiled(call, A, B, C, Bt, M, K, N):
    ts, wpt = next(t for t in TILED if t[0] * t[0] // t[1] <= call.rt.max_group)
    knl = call.rt.kernel("gemm_tiled.cl", "gemm_tiled", f"-DTS={ts} -DWPT={wpt}")
    local = (ts, ts // wpt, 1)
    grid = (_cdiv(N, ts) * ts, _cdiv(M, ts) * (ts // wpt), Bt)   # (N, M / WPT, Bt)
    _run_slabs(call, knl, grid, local, *_ints(M, N, K), A, B, C)


def matmul(a, b):
    """a (M, K) @ b (K, N) -> (M, N), or batched (Bt, M, K) @ (Bt, K, N)."""
    a, b = np.asarray(a), np.asarray(b)
    out_shape = check_matmul(a, b)
    if not _on_device(a, b):
        return np.matmul(a, b)                            # float64: NumPy
    a3, b3 = _as_batched(a, b, out_shape)
    (Bt, M, K), N = a3.shape, b3.shape[2]
    if Bt * M * N == 0 or K == 0:                         # nothing to multiply
        return np.zeros(out_shape, dtype=np.float32)
    rt = rtm.get_runtime()
    with rt.call() as call:
        A, B = call.upload(a3), call.upload(b3)
        C = call.alloc(Bt * M * N * 4)                    # (Bt, M, N)
        gemm = _gemm_blocked if _use_blocked(rt) else _gemm_tiled
        gemm(call, A, B, C, Bt, M, K, N)
        out = call.download(C, (Bt, M, N))
    return out.reshape(out_shape)


def _im2col(kernel, src, out_shape, grid, dims):
    """Run unfold or fold of cext/im2col.cl over `grid`: src -> a new array of out_shape."""
    if np.prod(out_shape) == 0 or src.size == 0:
        return np.zeros(out_shape, dtype=np.float32)
    rt = rtm.get_runtime()
    with rt.call() as call:
        X = call.upload(src)
        Y = call.alloc(int(np.prod(out_shape)) * 4)
        local = _local3(grid, min(GROUP_WINDOWS, rt.max_group))
        _run_slabs(call, rt.kernel("im2col.cl", kernel), grid, local,
                   *_ints(grid[2], *dims), X, Y)
        return call.download(Y, out_shape)


def unfold(x, kernel_size, stride, padding):
    """Sliding k x k windows of x (B, C, H, W) as columns (B, C*k*k, L)."""
    x = np.asarray(x)
    k, s, p = conv.check_unfold(x, kernel_size, stride, padding)
    if not _on_device(x):
        return conv.unfold(x, k, s, p)                    # float64: the reference
    B, C, H, W = x.shape
    Ho, Wo = conv.windows(H, W, k, s, p)
    dims = (C, H, W, k, s, p, Ho, Wo)
    grid = (Ho, k * k, B * C)                             # one per row of cols
    return _im2col("unfold", np.ascontiguousarray(x), (B, C * k * k, Ho * Wo), grid, dims)


def fold(cols, output_size, kernel_size, stride, padding):
    """Adjoint of unfold: cols (B, C*k*k, L) summed back onto x (B, C, H, W)."""
    cols = np.asarray(cols)
    H, W, k, s, p = conv.check_fold(cols, output_size, kernel_size, stride, padding)
    if not _on_device(cols):
        return conv.fold(cols, H, W, k, s, p)             # float64: the reference
    C = cols.shape[1] // (k * k)
    Ho, Wo = conv.windows(H, W, k, s, p)
    dims = (C, H, W, k, s, p, Ho, Wo)
    grid = (H, 1, cols.shape[0] * C)                      # one per row of x
    return _im2col("fold", np.ascontiguousarray(cols), (cols.shape[0], C, H, W), grid, dims)

