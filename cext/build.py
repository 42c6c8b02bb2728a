"""cffi build of the C kernels into the module minit2t._cext (API mode).

setup.py runs it through `cffi_modules=["cext/build.py:ffibuilder"]`, so
`pip install .` (or `-e .`) compiles it; `python cext/build.py` rebuilds it
in place. Extra compiler flags come from MINIT2T_CFLAGS (e.g. the
AddressSanitizer build of asan_check.sh; -DMINIT2T_PORTABLE builds the
scalar-only library of non-x86 CPUs).

The library is compiled for baseline x86-64 and picks the ISA at run time
(runtime.c), so the module runs on any x86-64. Compiled for AVX2 / AVX-512,
by GCC target pragmas, are only
  - gemm_avx2.c and gemm_avx512.c, the GEMM's micro-kernels of each ISA;
  - the TEMPLATES (im2col_fast.c, ...), each compiled twice: for every
    template and ISA this file writes into build/cext/ a file that defines
    FAST_AVX512 and includes the template (e.g. band_fast_avx512.c; what
    the template makes of it: fast_isa.h).
Off x86-64, or with -DMINIT2T_PORTABLE, those compile to nothing: the
dispatchers call the references (DISPATCH, runtime.h), and the module's
own source defines each _avx2 / _avx512 name of minit2t.h as its reference
(_module_source), so the module has the same functions everywhere.
The files and their reading order: README.md.
"""
import glob
import os
import re
import subprocess
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = os.path.join(os.path.dirname(HERE), "build", "cext")
SOURCES = ["runtime.c", "gemm.c", "gemm_loops.c", "gemm_threads.c", "gemm_avx2.c",
           "gemm_avx512.c", "gemm_bf16.c", "gemm_bf16_loops.c", "gemm_bf16_avx512.c",
           "gemm_bf16_amx.c", "im2col.c", "fused.c", "band.c", "attention.c", "match.c"]
TEMPLATES = ["im2col_fast.c", "tokens_fast.c", "fused_fast.c", "band_fast.c", "attention_fast.c", "gemm_bf16_fast.c",
             "match_fast.c"]
ISAS = {"avx2": 0, "avx512": 1}      # a template's suffix in each build: its FAST_AVX512
HEADERS = ["minit2t.h", "runtime.h", "gemm_blocking.h", "gemm_tile.h", "fast_isa.h",
           "im2col_runs.h", "vec_avx2.h", "vec_avx512.h", "vmath.h", "copy_fast.h",
           "softmax_rows.h", "transpose8.h", "bf16.h", "bf16_run.h", "gemm_bf16.h", "match_image.h", "attention_amx.h"]


def _cdef():
    """minit2t.h without its preprocessor lines: cffi parses plain C only."""
    with open(os.path.join(HERE, "minit2t.h"), encoding="utf-8") as f:
        text = f.read()
    return re.sub(r"(?m)^\s*#.*$", "", text)


def _module_source():
    """The module's own C source: the API, and where the fast versions are
    not compiled, each fast name defined as its reference."""
    fast = sorted(set(re.findall(r"\b(\w+)_(avx2|avx512|avx512bf16|amx)\(", _cdef())))
    aliases = "".join(f"#define {name}_{isa} {name}_ref\n" for name, isa in fast)
    return f'#include "runtime.h"\n#if !MINIT2T_X86\n{aliases}#endif\n'


def _isa_sources():
    """The file of each template and ISA in GENERATED, (re)written when its
    text differs (an unchanged file keeps its time stamp); their paths."""
    os.makedirs(GENERATED, exist_ok=True)
    paths = []
    for template in TEMPLATES:
        for isa, avx512 in ISAS.items():
            text = (f"/* Written by cext/build.py: {template} compiled for {isa}. */\n"
                    f'#include "runtime.h"\n#if MINIT2T_X86\n#define FAST_AVX512 {avx512}\n'
                    f'#include "{template}"\n#endif\n')
            path = os.path.join(GENERATED, template.replace(".c", f"_{isa}.c"))
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
            paths.append(path)
    return paths


def make_builder():
    """The FFI builder; setuptools wants source paths relative to setup.py."""
    def path(name):
        return os.path.relpath(os.path.join(HERE, name))

    flags = os.environ.get("MINIT2T_CFLAGS", "").split()
    builder = FFI()
    builder.cdef(_cdef())
    builder.set_source(
        "minit2t._cext",
        _module_source(),
        sources=[path(s) for s in SOURCES] + [os.path.relpath(p) for p in _isa_sources()],
        depends=[path(h) for h in HEADERS + TEMPLATES],
        include_dirs=[path(".")],
        extra_compile_args=["-O3", "-fopenmp", "-std=gnu11"] + flags,
        extra_link_args=["-fopenmp"] + flags,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # Rebuild in place, as `pip install -e .` does, every file (--force: a
    # build with other MINIT2T_CFLAGS has the same sources). Old builds are
    # unlinked first: processes that have one loaded keep their copy.
    root = os.path.dirname(HERE)
    for old in glob.glob(os.path.join(root, "minit2t", "_cext*.so")):
        os.remove(old)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"],
                   cwd=root, check=True)
    built = glob.glob(os.path.join(root, "minit2t", "_cext*.so"))
    if not built:
        sys.exit("the C extension did not build (see the warning above)")
    print("built", *built)
