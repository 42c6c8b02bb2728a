"""cffi build of the C kernels into the module minit2t._cext (API mode).

setup.py runs it through `cffi_modules=["cext/build.py:ffibuilder"]`, so
`pip install -e .` compiles it; `python cext/build.py` rebuilds it in place.
Extra compiler flags come from MINIT2T_CFLAGS (e.g. the AddressSanitizer
build of asan_check.sh; -DMINIT2T_PORTABLE builds the scalar-only library
of non-x86 CPUs, see not_x86.c). The library is compiled for baseline
x86-64: the *_avx2.c / *_avx512.c files select their ISA by target pragmas
and are chosen at run time, so the module runs on any x86-64 (runtime.c).
The files and their reading order: README.md.
"""
import glob
import os
import re
import subprocess
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["runtime.c", "gemm.c", "gemm_loops.c", "gemm_threads.c", "gemm_avx2.c",
           "gemm_avx512.c", "im2col.c", "im2col_avx2.c", "im2col_avx512.c", "fused.c",
           "fused_avx2.c", "fused_avx512.c", "band.c", "band_avx2.c", "band_avx512.c",
           "attention.c", "attention_avx2.c", "attention_avx512.c", "not_x86.c"]
HEADERS = ["minit2t.h", "runtime.h", "gemm_blocking.h", "im2col_fast.h", "im2col_runs.h",
           "vec_avx2.h", "vec_avx512.h", "vmath.h", "fused_fast.h", "copy_fast.h", "band_fast.h",
           "softmax_rows.h", "attention_fast.h", "transpose8.h"]


def _cdef():
    """minit2t.h without its preprocessor lines: cffi parses plain C only."""
    with open(os.path.join(HERE, "minit2t.h"), encoding="utf-8") as f:
        text = f.read()
    return re.sub(r"(?m)^\s*#.*$", "", text)


def make_builder():
    """The FFI builder; setuptools wants source paths relative to setup.py."""
    def path(name):
        return os.path.relpath(os.path.join(HERE, name))

    flags = os.environ.get("MINIT2T_CFLAGS", "").split()
    builder = FFI()
    builder.cdef(_cdef())
    builder.set_source(
        "minit2t._cext",
        '#include "minit2t.h"',
        sources=[path(s) for s in SOURCES],
        depends=[path(h) for h in HEADERS],
        include_dirs=[path(".")],
        extra_compile_args=["-O3", "-fopenmp", "-std=gnu11"] + flags,
        extra_link_args=["-fopenmp"] + flags,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # Rebuild in place, as `pip install -e .` does. Old builds are unlinked
    # first: processes that have one loaded keep their copy.
    root = os.path.dirname(HERE)
    for old in glob.glob(os.path.join(root, "minit2t", "_cext*.so")):
        os.remove(old)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                   cwd=root, check=True)
    built = glob.glob(os.path.join(root, "minit2t", "_cext*.so"))
    if not built:
        sys.exit("the C extension did not build (see the warning above)")
    print("built", *built)
