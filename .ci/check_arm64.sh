#!/usr/bin/env bash
# Prove cprop on arm64 (aarch64) without an arm64 machine: cross-compile the extensions on this
# (x86_64 Debian) host, then run the kernel and engine tests under qemu user-mode emulation in a
# Debian arm64 root.
#
#   1. host tools (apt-get, as root, only what is missing): qemu-user-static + binfmt-support
#      (aarch64 binaries run transparently; debootstrap needs it too), debootstrap,
#      gcc-aarch64-linux-gnu, rsync.
#   2. the arm64 root: `debootstrap --arch=arm64` with python3, its headers and libgomp1; cached in
#      $CPROP_ARM64_ROOT and reused while its package list is unchanged.
#   3. a Python environment inside the root (/opt/cprop-venv): aarch64 wheels of numpy, scipy,
#      scikit-learn, pytest and threadpoolctl, downloaded by the host's pip
#      (`pip download --platform manylinux_2_28_aarch64`) and installed offline by the root's pip,
#      so nothing inside the emulated system touches the network or needs a CA bundle.
#   4. the cross build: the source tree (tracked and untracked files, not .gitignore'd ones) is
#      synced into the root (/opt/cprop-src) and setup.py's `build_ext --inplace` runs on the host
#      Python with the root's aarch64 sysconfig data (extension suffix, compiler name),
#      `aarch64-linux-gnu-gcc --sysroot=<root>` and the root's Python headers, and
#      CPROP_TARGET_ARCH=aarch64, so it renders and builds the kernel paths cprop/_kernel_paths.py
#      lists for arm64.  Incremental: a second run recompiles only changed modules.
#   5. checks on the build: every extension is an AArch64 ELF object; every kernel path listed for
#      aarch64 has its module; the NEON module's code holds NEON vector fused multiply-adds.
#   6. the tests, run by the emulated aarch64 Python inside the root (chroot through binfmt), with
#      CPROP_REQUIRE_KERNELS naming the expected path (the fastest path listed for aarch64, i.e.
#      neon): first the path installed at import (cprop._isa.kernel_info()), then pytest on the
#      kernel and engine test files; the JUnit report is counted: any failure or error, no test
#      run on the expected path, or a skipped test of that path fails the script.
#
# Usage:  sudo bash .ci/check_arm64.sh           (root: apt-get, debootstrap, chroot, mount /proc)
# Env:    CPROP_ARM64_ROOT   cache directory of the arm64 root (default /var/tmp/cprop-arm64-root;
#                            outside the repository; about 1 GB)
#         CPROP_ARM64_KERNEL kernel path the tests must run on (default: the last, i.e. fastest,
#                            path cprop/_kernel_paths.py builds for aarch64: neon)
#         CPROP_ARM64_TESTS  test files (default: the kernel and engine tests below)
#         CPROP_ARM64_MIRROR Debian mirror (default http://deb.debian.org/debian)
#         CPROP_ARM64_PYTEST_ARGS extra pytest arguments (e.g. "-x")
#         PYTHON             host Python 3.11 used for the cross build (default /usr/bin/python3)
# Measured on a shared 2-core x86_64 host (README "arm64 (NEON) under emulation"): debootstrap ~6 min
# and the root's venv ~3.5 min, once; the cross build 1.5-5 min; the 405 tests 7 min at a load average
# of 2-3, 18 min at 8.  A warm run (nothing to rebuild): 7.5 min.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARM_ROOT=${CPROP_ARM64_ROOT:-/var/tmp/cprop-arm64-root}
SUITE=bookworm
MIRROR=${CPROP_ARM64_MIRROR:-http://deb.debian.org/debian}
ROOT_PACKAGES=python3,python3-venv,python3-dev,libc6-dev,libgomp1
HOST_PY=${PYTHON:-/usr/bin/python3}
TESTS=${CPROP_ARM64_TESTS:-tests/engine/test_isa.py tests/engine/test_required_kernels.py tests/engine/test_gemm.py tests/engine/test_backprop.py tests/engine/test_train.py tests/engine/test_activations.py tests/engine/test_losses.py tests/engine/test_openmp.py tests/engine/test_embedding.py tests/engine/test_cat_embedding.py}
TRIPLET=aarch64-linux-gnu
CROSS=$ARM_ROOT/opt/cprop-cross   # host-side (x86_64) build tools, kept with the cache
STAGE=$ARM_ROOT/opt/cprop-src     # the synced source tree, built in place
VENV=/opt/cprop-venv              # inside the root

case "$ARM_ROOT" in /|"$REPO"|"$REPO"/*)
    echo "check_arm64.sh: CPROP_ARM64_ROOT must be a directory outside the repository" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "check_arm64.sh: run as root (apt-get, debootstrap, chroot, mount)" >&2; exit 2
fi

t_start=$SECONDS
t_phase=$SECONDS
phase_name=""
TIMINGS=()
phase() {
    if [ -n "$phase_name" ]; then TIMINGS+=("$(printf '%5ds  %s' $((SECONDS - t_phase)) "$phase_name")"); fi
    phase_name=$1; t_phase=$SECONDS
    printf '\n=== [%4ds] %s\n' $((SECONDS - t_start)) "$1"
}
fail() { echo "check_arm64.sh: FAIL: $*" >&2; exit 1; }
report_timings() {
    [ -n "$phase_name" ] && TIMINGS+=("$(printf '%5ds  %s' $((SECONDS - t_phase)) "$phase_name")")
    phase_name=""
    echo; echo "=== phase timings"; printf '%s\n' "${TIMINGS[@]}"
    printf '%5ds  total\n' $((SECONDS - t_start))
}
unmount_proc() { if mountpoint -q "$ARM_ROOT/proc" 2>/dev/null; then umount "$ARM_ROOT/proc"; fi; }
trap 'unmount_proc; report_timings' EXIT

in_root() {  # run a command inside the arm64 root, clean environment
    chroot "$ARM_ROOT" /usr/bin/env -i PATH=$VENV/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# ---- 1. host tools -----------------------------------------------------------------------------
phase "host tools"
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v $TRIPLET-gcc >/dev/null || need+=(gcc-$TRIPLET)
command -v rsync >/dev/null || need+=(rsync)
if [ ${#need[@]} -gt 0 ]; then
    echo "apt-get install ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || fail "binfmt qemu-aarch64 is registered without the F (fix-binary) flag; chroot cannot run it"
echo "qemu: $(qemu-aarch64-static --version | head -1); cross gcc: $($TRIPLET-gcc -dumpfullversion)"

# ---- 2. the arm64 root -------------------------------------------------------------------------
phase "arm64 root ($ARM_ROOT)"
spec="debootstrap --arch=arm64 --variant=minbase --include=$ROOT_PACKAGES $SUITE"
if [ -f "$ARM_ROOT/.cprop-root" ] && [ "$(cat "$ARM_ROOT/.cprop-root")" = "$spec" ]; then
    echo "cached: $spec"
else
    if [ -e "$ARM_ROOT" ] && [ ! -f "$ARM_ROOT/.cprop-root" ]; then
        fail "$ARM_ROOT exists and was not made by this script (no .cprop-root); move it away"
    fi
    unmount_proc
    rm -rf "$ARM_ROOT" "$ARM_ROOT.partial"
    mkdir -p "$(dirname "$ARM_ROOT")"
    debootstrap --arch=arm64 --variant=minbase --include=$ROOT_PACKAGES \
        "$SUITE" "$ARM_ROOT.partial" "$MIRROR"
    echo "$spec" > "$ARM_ROOT.partial/.cprop-root"
    mv "$ARM_ROOT.partial" "$ARM_ROOT"
fi
mountpoint -q "$ARM_ROOT/proc" || mount -t proc proc "$ARM_ROOT/proc"
PYVER=$(in_root /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
SYSCONFIG=$(in_root /usr/bin/python3 -c 'import sysconfig; print(sysconfig._get_sysconfigdata_name())').py
echo "root python $PYVER ($(in_root /usr/bin/python3 -c 'import platform; print(platform.machine())')), $SYSCONFIG"

# ---- 3. Python environment inside the root -----------------------------------------------------
phase "aarch64 wheels and the root's venv ($VENV)"
mkdir -p "$CROSS"
if [ ! -x "$CROSS/venv/bin/python" ]; then
    "$HOST_PY" -m venv "$CROSS/venv"
fi
# Build requirements of pyproject.toml (Cython, setuptools) for the host side of the build.
"$HOST_PY" - "$REPO/pyproject.toml" > "$CROSS/build-requires.txt" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))
PY
if ! cmp -s "$CROSS/build-requires.txt" "$CROSS/venv/.cprop-installed" 2>/dev/null; then
    "$CROSS/venv/bin/pip" install -q -r "$CROSS/build-requires.txt"
    cp "$CROSS/build-requires.txt" "$CROSS/venv/.cprop-installed"
fi
# Runtime dependencies (pyproject.toml) plus what the kernel and engine tests import.
"$HOST_PY" - "$REPO/pyproject.toml" > "$CROSS/arm64-requires.txt" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
                + ["pytest>=7", "threadpoolctl>=3.1"]))
PY
if ! cmp -s "$CROSS/arm64-requires.txt" "$ARM_ROOT$VENV/.cprop-installed" 2>/dev/null; then
    rm -rf "$ARM_ROOT/opt/cprop-wheels" "$ARM_ROOT$VENV"
    "$CROSS/venv/bin/pip" download -q --only-binary=:all: --platform manylinux_2_28_aarch64 \
        --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" \
        -d "$ARM_ROOT/opt/cprop-wheels" -r "$CROSS/arm64-requires.txt"
    cp "$CROSS/arm64-requires.txt" "$ARM_ROOT/opt/cprop-requires.txt"
    in_root /usr/bin/python3 -m venv $VENV
    in_root $VENV/bin/pip install -q --no-index --find-links /opt/cprop-wheels \
        -r /opt/cprop-requires.txt
    cp "$CROSS/arm64-requires.txt" "$ARM_ROOT$VENV/.cprop-installed"
else
    echo "cached"
fi
in_root python -c 'import numpy, scipy, sklearn, platform
print("aarch64 env:", platform.machine(), "numpy", numpy.__version__, "scipy", scipy.__version__,
      "scikit-learn", sklearn.__version__)'

# ---- 4. cross build ----------------------------------------------------------------------------
phase "cross build (host $TRIPLET-gcc --sysroot, setup.py build_ext --inplace)"
mkdir -p "$STAGE" "$CROSS/sysconfig"
# The source tree as git sees it (ignored files are neither copied nor deleted: build products
# in $STAGE survive, so unchanged modules are not rebuilt).
rsync -a --delete --exclude=/.git --filter=':- .gitignore' "$REPO/" "$STAGE/"
cp "$ARM_ROOT/usr/lib/python$PYVER/$SYSCONFIG" "$CROSS/sysconfig/"
(
    cd "$STAGE"
    export _PYTHON_HOST_PLATFORM=linux-aarch64
    export _PYTHON_SYSCONFIGDATA_NAME=${SYSCONFIG%.py}
    export PYTHONPATH=$CROSS/sysconfig
    export CC="$TRIPLET-gcc --sysroot=$ARM_ROOT"
    export LDSHARED="$TRIPLET-gcc --sysroot=$ARM_ROOT -shared"
    export CFLAGS="-I$ARM_ROOT/usr/include/python$PYVER"
    export CPROP_TARGET_ARCH=aarch64   # setup.py builds the kernel paths of this architecture
    unset CPROP_DEBUG CPROP_ALLOW_NO_OPENMP
    "$CROSS/venv/bin/python" setup.py build_ext --inplace
)

# ---- 5. checks on the build --------------------------------------------------------------------
phase "build checks"
BUILT=$("$HOST_PY" - "$REPO/cprop/_kernel_paths.py" <<'PY'
import sys
ns = {}
exec(open(sys.argv[1]).read(), ns)
print(" ".join(ns["built_for"]("aarch64")))
PY
)
EXPECT=${CPROP_ARM64_KERNEL:-${BUILT##* }}
echo "kernel paths built for aarch64: $BUILT; the tests must run on: $EXPECT"
EXT=$(cd "$STAGE" && ls cprop/*.cpython-*-$TRIPLET.so)
[ -n "$EXT" ] || fail "no aarch64 extension modules were built"
for so in $EXT; do
    machine=$(readelf -h "$STAGE/$so" | sed -n 's/^ *Machine: *//p')
    printf '  %-48s %s\n' "$so" "$machine"
    [ "$machine" = AArch64 ] || fail "$so is not an AArch64 object"
done
for name in $BUILT; do
    compgen -G "$STAGE/cprop/_kernels_$name.cpython-*-$TRIPLET.so" >/dev/null \
        || fail "kernel path $name is listed for aarch64 but cprop/_kernels_$name*.so was not built"
done
if [[ " $BUILT " == *" neon "* ]]; then
    neon_so=$(cd "$STAGE" && ls cprop/_kernels_neon.cpython-*-$TRIPLET.so)
    n_s=$($TRIPLET-objdump -d "$STAGE/$neon_so" | grep -cE 'fmla\s+v[0-9]+\.4s' || true)
    n_d=$($TRIPLET-objdump -d "$STAGE/$neon_so" | grep -cE 'fmla\s+v[0-9]+\.2d' || true)
    echo "  $neon_so: $n_s fmla .4s (float32x4) and $n_d fmla .2d (float64x2) instructions"
    [ "$n_s" -gt 0 ] && [ "$n_d" -gt 0 ] || fail "$neon_so lacks NEON vector FMAs"
fi

# ---- 6. tests under emulation ------------------------------------------------------------------
phase "tests under qemu-aarch64 ($TESTS)"
RUN_ENV=(PYTHONPATH=/opt/cprop-src CPROP_REQUIRE_KERNELS=$EXPECT)
in_root "${RUN_ENV[@]}" python -W error - "$EXPECT" <<'PY' || fail "kernel path check"
import json, platform, sys
from cprop._isa import kernel_info
import cprop
info = kernel_info()
print(platform.machine(), "cprop from", cprop.__file__)
print("kernel_info():", json.dumps(info))
want = sys.argv[1]
if platform.machine() != "aarch64":
    sys.exit(f"not running on aarch64 but {platform.machine()}")
if info["missing"]:
    sys.exit(f"kernel paths built for this CPU failed to import: {info['missing']}")
if want not in info["available"]:
    sys.exit(f"kernel path {want!r} is not available: {info['available']}")
if info["name"] != want:
    sys.exit(f"the path chosen at import is {info['name']!r}, expected {want!r}")
PY
rm -f "$ARM_ROOT/opt/cprop-junit.xml"
set +e
# shellcheck disable=SC2086
in_root "${RUN_ENV[@]}" /bin/sh -c "cd /opt/cprop-src && exec python -m pytest -q -rfEs \
    -p no:cacheprovider --junitxml=/opt/cprop-junit.xml ${CPROP_ARM64_PYTEST_ARGS:-} $TESTS"
rc=$?
set -e
"$HOST_PY" - "$ARM_ROOT/opt/cprop-junit.xml" "$EXPECT" "$rc" <<'PY' || fail "tests under emulation"
import sys, xml.etree.ElementTree as ET
path, want, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    cases = list(ET.parse(path).getroot().iter("testcase"))
except (OSError, ET.ParseError) as exc:
    sys.exit(f"no JUnit report from pytest (exit status {rc}): {exc}")
def outcome(c):
    for tag in ("failure", "error", "skipped"):
        if c.find(tag) is not None:
            return tag
    return "passed"
count = {}
on_path = {}
for c in cases:
    o = outcome(c)
    count[o] = count.get(o, 0) + 1
    if f"[{want}" in c.get("name") or f"-{want}" in c.get("name"):
        on_path[o] = on_path.get(o, 0) + 1
print(f"tests: {len(cases)} collected, " + ", ".join(f"{v} {k}" for k, v in sorted(count.items())))
print(f"parametrized on the {want!r} path: "
      + (", ".join(f"{v} {k}" for k, v in sorted(on_path.items())) or "none"))
print(f"(every other test ran on the path installed at import, checked above: {want!r})")
bad = []
if rc != 0 or count.get("failure") or count.get("error"):
    bad.append(f"pytest exit status {rc}, {count.get('failure', 0)} failed, "
               f"{count.get('error', 0)} errors")
if not count.get("passed"):
    bad.append("no test passed")
if want != "reference" and not on_path.get("passed"):
    bad.append(f"no test ran on the {want!r} path")
if on_path.get("skipped"):
    bad.append(f"{on_path['skipped']} tests of the {want!r} path were skipped")
if bad:
    sys.exit("; ".join(bad))
PY
unmount_proc
echo
echo "=== arm64 check passed: aarch64 build, kernel path '$EXPECT', tests green under emulation"
