"""The OpenCL backend: the ops of opencl_ops (MatMul, Linear, Unfold, Fold) on
the OpenCL C kernels of cext/*.cl, through pyopencl.

    OPS                          the ops this backend replaces (see opencl_ops)
    matmul, unfold, fold         the GEMM and im2col kernels (opencl_kernels, whose
                                 module attributes gemm_kernel, BLOCKED, TILED
                                 choose the GEMM); float64 goes to NumPy
    device_name(), last_profile()  the device, and the last call's transfer and
                                 kernel times

The device: env MINIT2T_OPENCL_DEVICE, "P:D" (platform:device index, as
`clinfo -l` lists them) or a piece of the device name; by default the first
GPU, else the first device. pyopencl is imported only when this backend is.
"""
from minit2t.backends import _opencl_runtime as rtm
from minit2t.backends.opencl_kernels import fold, matmul, unfold  # noqa: F401
from minit2t.backends.opencl_ops import OPS  # noqa: F401

name = "opencl"


def check_available():
    """Raise RuntimeError with the reason when no OpenCL device can run this backend."""
    cl = rtm.import_pyopencl()
    try:
        rtm.get_runtime().kernel("im2col.cl", "unfold")   # a broken driver fails here
    except cl.Error as e:
        raise RuntimeError(f"the OpenCL device cannot run minit2t's kernels: {e}") from None


def device_name():
    """The device the kernels run on, as `clinfo -l` names it."""
    return rtm.get_runtime().device.name.strip()


def last_profile():
    """Seconds spent by the last call: {"upload", "kernel", "download"}, from events."""
    return dict(rtm.get_runtime().last)
