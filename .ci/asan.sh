#!/usr/bin/env bash
# AddressSanitizer job: build the engine with -fsanitize=address (a separate in-place build in a
# temporary copy of the sources, so it never mixes with the release build) and run the engine
# tests and the odd-shape sweep through the public API under it.  Raw-pointer code (GEMM packing
# and edges, the row gather, sparse rows, the fused epilogues) is what Cython's bounds checks
# cannot see.  Fails on any ASan report, in the test process or in any child it starts.
#
# Usage: bash .ci/asan.sh        (PYTHON=python3.x to choose the interpreter; about 5 minutes
#                                  on 2 cores: 2 for the build, 3 for the tests;
#                                  CPROP_ASAN_NO_VENV=1 uses that interpreter's packages as they are)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
CC=${CC:-gcc}

LIBASAN=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "asan: $CC has no libasan.so (install the compiler's AddressSanitizer runtime)" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cprop-asan.XXXXXX")
if [ -z "${CPROP_ASAN_KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else echo "asan: keeping $WORK"; fi
# the sources as committed plus working-tree edits, without build outputs
mkdir -p "$WORK/src"
cp -r setup.py pyproject.toml README.md MANIFEST.in cprop tests "$WORK/"
cp -r src/cprop "$WORK/src/"
find "$WORK" \( -name '*.so' -o -name '*.c' -o -name '__pycache__' \) -prune -exec rm -rf {} +

echo "== asan: build environment"
if [ -n "${CPROP_ASAN_NO_VENV:-}" ]; then
    # use $PY as it is (it must have the build and test requirements below)
    mkdir -p "$WORK/bin"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$(command -v "$PY")" > "$WORK/bin/python"
    chmod +x "$WORK/bin/python"
    export PATH="$WORK/bin:$PATH"
else
    "$PY" -m venv "$WORK/venv"
    # shellcheck disable=SC1091
    . "$WORK/venv/bin/activate"
    python -m pip install -q --upgrade pip
    python -m pip install -q "Cython>=3.1" "setuptools>=77" "numpy>=2" "scipy>=1.13" \
        "scikit-learn>=1.9,<1.10" "pytest>=7" "threadpoolctl>=3.1"
fi

echo "== asan: build (-fsanitize=address)"
cd "$WORK"
# Through CC, not CFLAGS/LDFLAGS: setuptools derives the shared-object linker and the linker of
# setup.py's OpenMP check program from CC, so every compile and link gets the sanitizer.
CC="$CC -fsanitize=address -fno-omit-frame-pointer" CFLAGS="-g" \
    python setup.py -q build_ext --inplace

for so in cprop/*.so; do     # every engine module must be instrumented
    if [ "$(nm -D "$so" | grep -c __asan_)" -eq 0 ]; then
        echo "asan: $so was built without AddressSanitizer instrumentation" >&2
        exit 1
    fi
done

echo "== asan: engine tests and the odd-shape sweep"
# LD_PRELOAD: python itself is not instrumented, so the ASan runtime must come first.
# PYTHONMALLOC=malloc: interpreter allocations go through ASan's allocator too.
# allocator_may_return_null: a too-large allocation is a MemoryError (as without ASan), not a report.
# detect_leaks=0: CPython keeps objects alive at exit by design.
# Deselected: the two tests that set RLIMIT_AS (ASan reserves terabytes of shadow address space,
# so any address-space limit fails before the code under test runs).
export LD_PRELOAD="$LIBASAN"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:log_path=$WORK/asan-report"
status=0
PYTHONPATH="$WORK" python -m pytest -q -p no:cacheprovider \
    tests/engine/test_gemm.py tests/engine/test_backprop.py tests/engine/test_train.py \
    tests/engine/test_activations.py tests/engine/test_losses.py tests/engine/test_openmp.py \
    tests/engine/test_odd_shapes.py tests/estimator/test_reliability.py \
    tests/engine/test_embedding.py tests/engine/test_cat_embedding.py tests/engine/test_runner.py \
    tests/engine/test_loss_registry.py \
    -k "not failed_refit_leaves_previous_model and not thread_creation_failure" || status=$?
unset LD_PRELOAD
if ls "$WORK"/asan-report* >/dev/null 2>&1; then
    echo "asan: AddressSanitizer reports:" >&2
    cat "$WORK"/asan-report* >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "asan: tests failed under AddressSanitizer (exit $status)" >&2
    exit "$status"
fi
echo "asan: no AddressSanitizer report"
cd "$ROOT"
