#!/usr/bin/env bash
# Run the backend, fused-kernel, attention and band (approx) tests on an AddressSanitizer build of the C kernels.
#
# The instrumented module is built in a scratch copy of the package, so the
# installed minit2t/_cext is left alone; libasan is preloaded because the
# Python interpreter itself is not instrumented. Leak checking is off: the
# interpreter does not free everything at exit, which is not ours to report.
# The OpenCL cases are left out: pyopencl's C++ exceptions do not survive a
# preloaded libasan, and its kernels are not ours to instrument.
# Usage: bash cext/asan_check.sh [extra pytest args]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp -r "$repo/minit2t" "$repo/tests" "$repo/cext" "$repo/setup.py" "$repo/pyproject.toml" "$work/"
rm -f "$work"/minit2t/_cext*.so
cd "$work"
MINIT2T_CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" \
    python cext/build.py > build.log 2>&1 || { cat build.log; exit 1; }

libasan="$(gcc -print-file-name=libasan.so)"
module="$(LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0 python -c 'import minit2t._cext as m; print(m.__file__)')"
case "$module" in "$work"/*) ;; *) echo "not the ASan build: $module"; exit 1 ;; esac
ldd "$module" | grep libasan > /dev/null || { echo "$module is not instrumented"; exit 1; }
status=0
LD_PRELOAD="$libasan" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$work/asan" \
    python -m pytest -q -p no:cacheprovider tests/test_backends.py tests/test_fused.py tests/test_backend_ops.py tests/test_approx.py tests/test_attention_op.py \
        -k "not opencl" "$@" || status=$?
if ls "$work"/asan.* > /dev/null 2>&1; then
    cat "$work"/asan.*
    echo "AddressSanitizer: errors reported (above)"
    exit 1
fi
echo "AddressSanitizer: no errors reported (pytest exit status $status)"
exit "$status"
