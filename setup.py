"""Build the compiled engine (src/cprop/*.pyx, some rendered from *.pyx.tp) into the cprop package.

Only extensions and compile flags live here; metadata is in pyproject.toml.

Environment switches
--------------------
CPROP_DEBUG=1        Cython boundscheck/initializedcheck on, -O1 -g: the debug build the kernel tests
                     also run under.
CPROP_ALLOW_NO_OPENMP=1
                     build without OpenMP instead of failing (never used for wheels or CI).
"""
import os
import platform
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
DEBUG = os.environ.get("CPROP_DEBUG", "0") not in ("", "0")

# Engine modules, in dependency order.  (name, extra compile args for that module only)
MODULES = [
    ("_openmp", []),
    ("_gemm", []),
    ("_activations", []),
    ("_losses", []),
    ("_backprop", []),
    ("_train", []),
]

# Instruction-set-specific micro-kernel modules: built with their ISA flags on the architectures
# that have the ISA; everything else stays baseline.  cprop._gemm imports one only after CPU
# detection says it can run (so its code, module init included, never reaches an older CPU).
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
ISA_MODULES = {
    "_kernels_avx2": {"unix": ["-mavx2", "-mfma"], "msvc": ["/arch:AVX2"]} if X86 else None,
}
MODULES += [(name, []) for name, flags in ISA_MODULES.items() if flags is not None]
# Per-module, per-compiler flags that are not about the ISA.  -fno-math-errno: sqrt/sqrtf need not
# set errno, so the optimizer updates (_optim.pxd, built into both kernel tables) vectorise; IEEE
# results are unchanged (not fast-math).  Not -funroll-loops for the micro-kernels: gcc 12 then
# spilled one accumulator of the float64 6x8 kernel to the stack (half speed, seen in the
# benchmark's kernel table); check `objdump -d` for (%rsp) in the k loop after any flag change.
MODULE_FLAGS = {
    "_gemm": {"unix": ["-fno-math-errno"], "msvc": []},
    "_kernels_avx2": {"unix": ["-fno-math-errno"], "msvc": []},
}


def isa_flags(name, compiler_type):
    """Per-module instruction-set (and other per-module) flags; empty for most modules."""
    short = name.rsplit(".", 1)[-1]
    key = "msvc" if compiler_type == "msvc" else "unix"
    return (ISA_MODULES.get(short) or {}).get(key, []) + MODULE_FLAGS.get(short, {}).get(key, [])


def openmp_flags(compiler_type):
    """Return (compile_args, link_args) for OpenMP on this platform: the one place that knows them."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag: use the preprocessor form and link libomp.
        # libomp's prefix: CPROP_LIBOMP_PREFIX (the wheel build sets it to the pinned llvm-openmp
        # that delocate bundles, see .ci/macos_libomp.sh), else Homebrew's libomp, else a conda
        # env.  The -I/-L/rpath flags are returned here rather than left to CFLAGS/LDFLAGS because
        # the OpenMP check links its test program with the bare compiler driver, which never sees
        # LDFLAGS (setuptools' linker_exe is plain $CC).
        candidates = [os.environ.get("CPROP_LIBOMP_PREFIX", ""),
                      "/opt/homebrew/opt/libomp", "/usr/local/opt/libomp",
                      os.environ.get("CONDA_PREFIX", "")]
        prefix = next((c for c in candidates if c and (Path(c) / "include" / "omp.h").exists()),
                      None)
        if prefix is None:
            return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
        return ([f"-I{prefix}/include", "-Xpreprocessor", "-fopenmp"],
                [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib", "-lomp"])
    return ["-fopenmp"], ["-fopenmp"]


def base_flags(compiler_type):
    if compiler_type == "msvc":
        return (["/Od", "/Zi"] if DEBUG else ["/O2"]), []
    # No -march=native, no -ffast-math: wheels target the baseline ISA and IEEE semantics.
    flags = ["-O1", "-g"] if DEBUG else ["-O3"]
    return flags + ["-Wno-unused-function", "-Wno-unreachable-code"], []


def check_openmp(compiler, cflags, lflags):
    """Compile and link a tiny OpenMP program; True when it works."""
    src = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) { int n = 0;
        #pragma omp parallel
        { n = omp_get_num_threads(); }
        return n > 0 ? 0 : 1; }
        """
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check_openmp.c"
        path.write_text(src)
        try:
            objs = compiler.compile([str(path)], output_dir=tmp, extra_postargs=cflags)
            compiler.link_executable(objs, str(Path(tmp) / "check_openmp"), extra_postargs=lflags)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        ocflags, olflags = openmp_flags(ctype)
        if not check_openmp(self.compiler, ocflags, olflags):
            if os.environ.get("CPROP_ALLOW_NO_OPENMP", "0") in ("", "0"):
                raise RuntimeError(
                    "cprop needs OpenMP and this compiler could not build an OpenMP program "
                    f"with {ocflags} / {olflags}. Install an OpenMP runtime (libgomp, or llvm-openmp "
                    "on macOS) or set CPROP_ALLOW_NO_OPENMP=1 for a single-threaded local build."
                )
            print("cprop: building WITHOUT OpenMP (CPROP_ALLOW_NO_OPENMP=1)", file=sys.stderr)
            ocflags, olflags = [], []
        cflags, lflags = base_flags(ctype)
        for ext in self.extensions:
            ext.extra_compile_args = (cflags + ocflags + isa_flags(ext.name, ctype)
                                      + list(ext.extra_compile_args))
            ext.extra_link_args = lflags + olflags + list(ext.extra_link_args)
        super().build_extensions()


def render_templates():
    """src/cprop/*.pyx.tp -> *.pyx (Cython's Tempita, as scikit-learn does): one source for kernels
    that differ only in dtype and intrinsic names.  Rewritten only when the text changes, so an
    unchanged template does not force a rebuild."""
    from Cython import Tempita
    for tp in sorted((HERE / "src" / "cprop").glob("*.pyx.tp")):
        out = tp.with_suffix("")
        text = Tempita.sub(tp.read_text(encoding="utf-8"))
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            out.write_text(text, encoding="utf-8")


def extensions():
    render_templates()
    exts = [
        Extension(
            f"cprop.{name}",
            [f"src/cprop/{name}.pyx"],
            include_dirs=[np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                           ("CPROP_DEBUG_BUILD", "1" if DEBUG else "0")],
            extra_compile_args=list(extra),
        )
        for name, extra in MODULES
        if (HERE / "src" / "cprop" / f"{name}.pyx").exists()
    ]
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": False,
        "initializedcheck": DEBUG,
        "cdivision": True,
        "nonecheck": DEBUG,
        "embedsignature": True,
    }
    return cythonize(
        exts,
        include_path=["src"],
        compiler_directives=directives,
        build_dir="build/cython-debug" if DEBUG else "build/cython",
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
