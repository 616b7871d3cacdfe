#!/usr/bin/env bash
# Install the pinned OpenMP runtime that cprop's macOS wheels bundle (cibuildwheel before-all).
#
# Usage: .ci/macos_libomp.sh PREFIX      (then build with CPROP_LIBOMP_PREFIX=PREFIX)
#
# 1. Apple clang ships no OpenMP runtime. Homebrew's libomp is built for the runner's own macOS
#    (14+), so bundling it would silently raise the wheel's minimum macOS; conda-forge's
#    llvm-openmp 11.1.0 (the build scikit-learn's wheels bundle) needs only macOS 10.9 (x86_64)
#    / 11.0 (arm64), not newer than MACOSX_DEPLOYMENT_TARGET (10.15 / 12.0 in pyproject.toml).
# 2. The exact package files are pinned (version and build string); their sha256 is printed.
# 3. The script prints the library's minimum macOS and fails if it is newer than
#    MACOSX_DEPLOYMENT_TARGET; delocate-wheel checks the same again at repair time.
# 4. Native runners only: the runtime is for this machine's architecture (uname -m).
set -euo pipefail

prefix=${1:?usage: macos_libomp.sh PREFIX}
base=https://anaconda.org/conda-forge/llvm-openmp/11.1.0/download
case "$(uname -m)" in
    arm64)  pkg=osx-arm64/llvm-openmp-11.1.0-hf3c4609_1.tar.bz2; default_target=12.0 ;;
    x86_64) pkg=osx-64/llvm-openmp-11.1.0-hda6cdc1_1.tar.bz2;    default_target=10.15 ;;
    *) echo "macos_libomp.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
curl -fsSL --retry 5 --retry-delay 5 -o "$tmp/llvm-openmp.tar.bz2" "$base/$pkg"
shasum -a 256 "$tmp/llvm-openmp.tar.bz2"
mkdir -p "$prefix"
tar -xjf "$tmp/llvm-openmp.tar.bz2" -C "$prefix" include lib
test -f "$prefix/include/omp.h"
test -f "$prefix/lib/libomp.dylib"

# Minimum macOS of the runtime: LC_BUILD_VERSION "minos" (or LC_VERSION_MIN_MACOSX "version").
minos=$(otool -l "$prefix/lib/libomp.dylib" \
        | awk '/LC_BUILD_VERSION/ {b=1} /LC_VERSION_MIN_MACOSX/ {v=1}
               b && $1 == "minos" {print $2; exit} v && $1 == "version" {print $2; exit}')
target=${MACOSX_DEPLOYMENT_TARGET:-$default_target}
echo "llvm-openmp 11.1.0 ($pkg): libomp.dylib minimum macOS $minos, deployment target $target"
if [ "$(printf '%s\n%s\n' "$minos" "$target" | sort -V | tail -n1)" != "$target" ]; then
    echo "macos_libomp.sh: libomp needs macOS $minos > MACOSX_DEPLOYMENT_TARGET $target" >&2
    exit 1
fi
