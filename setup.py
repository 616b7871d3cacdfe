"""Build the compiled engine (src/cprop/*.pyx, some rendered from *.pyx.tp) into the cprop package.

Only extensions and compile flags live here; metadata is in pyproject.toml.

Environment switches
--------------------
CPROP_DEBUG=1        Cython boundscheck/initializedcheck on, -O1 -g: the debug build the kernel tests
                     also run under.
CPROP_ALLOW_NO_OPENMP=1
                     build without OpenMP instead of failing (never used for wheels or CI).
CPROP_TARGET_ARCH=aarch64|x86_64|...
                     the architecture whose kernel paths are built (default: the platform tag);
                     for cross builds (.ci/check_arm64.sh).
"""
import os
import platform
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
DEBUG = os.environ.get("CPROP_DEBUG", "0") not in ("", "0")

# Engine modules, in dependency order.
MODULES = ["_openmp", "_isa", "_gemm", "_activations", "_losses", "_backprop", "_train"]
# Per-module flags that are not about the instruction set.  -fno-math-errno: sqrt/sqrtf need not set
# errno, so the optimizer updates (_optim.pxd, compiled into every kernel path's module) vectorise;
# IEEE results are unchanged (not fast-math).  Not -funroll-loops for the micro-kernels: gcc 12 then
# spilled one accumulator of the float64 AVX2 kernel to the stack (half speed, seen in the
# benchmark's kernel table); check `objdump -d` for (%rsp) in the k loop after any flag change.
KERNEL_FLAGS = {"unix": ["-fno-math-errno"], "msvc": []}


def _read_list(name):
    """cprop/<name>.py's namespace, read without importing cprop (whose compiled modules do not
    exist yet)."""
    ns = {}
    src = HERE / "cprop" / f"{name}.py"
    exec(compile(src.read_text(encoding="utf-8"), str(src), "exec"), ns)
    return ns


def _kernel_paths():
    """cprop/_kernel_paths.py: one entry per instruction set."""
    return _read_list("_kernel_paths")


def target_arch():
    """The architecture the extensions are built for: CPROP_TARGET_ARCH, else the platform tag
    (which cibuildwheel's cross builds set, e.g. macosx-11.0-arm64, win-arm64), else the machine."""
    forced = os.environ.get("CPROP_TARGET_ARCH")
    if forced:
        return forced.lower()
    plat = sysconfig.get_platform().lower()
    for arch in ("arm64", "aarch64", "x86_64", "amd64"):
        if plat.endswith(arch):
            return arch
    return platform.machine().lower()


PATHS = _kernel_paths()
KERNEL_MODULES = {f"_kernels_{p['name']}": p for p in PATHS["PATHS"]
                  if p["name"] in PATHS["built_for"](target_arch())}


def module_flags(name, compiler_type):
    """Per-module flags: a kernel path's instruction-set flags (and KERNEL_FLAGS); empty for the rest."""
    short = name.rsplit(".", 1)[-1]
    key = "msvc" if compiler_type == "msvc" else "unix"
    if short in KERNEL_MODULES:
        return KERNEL_MODULES[short]["flags"][key] + KERNEL_FLAGS[key]
    return []


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
            ext.extra_compile_args = (cflags + ocflags + module_flags(ext.name, ctype)
                                      + list(ext.extra_compile_args))
            ext.extra_link_args = lflags + olflags + list(ext.extra_link_args)
        super().build_extensions()


def render_kernel_paths():
    """src/cprop/_kernels.pyx.tp -> _kernels_<path>.pyx for each path built for the target (Cython's
    Tempita, as scikit-learn's .pyx.tp files).  Rewritten only when the text changes, so an
    unchanged path does not force a rebuild."""
    from Cython import Tempita
    tp = HERE / "src" / "cprop" / "_kernels.pyx.tp"
    for name, entry in KERNEL_MODULES.items():
        out = tp.with_name(f"{name}.pyx")
        _write_if_changed(out, Tempita.sub(tp.read_text(encoding="utf-8"), path=entry))


def _write_if_changed(out, text):
    """Rewrite a rendered file only when its text changes, so that an unchanged one does not force a
    rebuild."""
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")


def render_activations():
    """src/cprop/_activations.pxi.tp -> _activations.pxi (the ACT_* enum, flags and tile dispatch)
    from cprop/_activation_list.py, the one list of activations."""
    from Cython import Tempita
    ns = _read_list("_activation_list")
    codes = ns["codes"]()
    activations = [dict(a, code=codes[a["name"]]) for a in ns["ACTIVATIONS"]]
    tp = HERE / "src" / "cprop" / "_activations.pxi.tp"
    _write_if_changed(tp.with_suffix(""),
                      Tempita.sub(tp.read_text(encoding="utf-8"), activations=activations))


def render_losses():
    """src/cprop/_losses.pxi.tp -> _losses.pxi (the LOSS_* enum, names and per-row dispatch) from
    cprop/_loss_list.py, the one list of losses."""
    from Cython import Tempita
    ns = _read_list("_loss_list")
    codes = ns["codes"]()
    losses = [dict(e, code=codes[e["name"]]) for e in ns["LOSSES"]]
    tp = HERE / "src" / "cprop" / "_losses.pxi.tp"
    _write_if_changed(tp.with_suffix(""),
                      Tempita.sub(tp.read_text(encoding="utf-8"), losses=losses))


def extensions():
    render_kernel_paths()
    render_activations()
    render_losses()
    exts = [
        Extension(
            f"cprop.{name}",
            [f"src/cprop/{name}.pyx"],
            define_macros=[("CPROP_DEBUG_BUILD", "1" if DEBUG else "0")],
        )
        for name in MODULES + list(KERNEL_MODULES)
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
