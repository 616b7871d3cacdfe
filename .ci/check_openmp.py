"""Prove that the installed cprop runs on an OpenMP runtime (and, for wheels, one it ships).

Runs ``python -m threadpoolctl -i cprop cprop._openmp``, prints its report, and exits non-zero
unless an ``openmp`` entry is loaded.  With ``--bundled`` (wheels) that runtime must also live
inside the installed wheel: ``cprop.libs/`` (auditwheel on Linux, delvewheel on Windows) or
``cprop/.dylibs/`` (delocate on macOS).  ``cprop._openmp`` is named as well as ``cprop`` so the
check holds whether or not ``import cprop`` loads the compiled engine.

Run it from outside the source tree, so that ``cprop`` is the installed package.
"""
import json
import os
import subprocess
import sys


def main(argv):
    bundled = "--bundled" in argv
    out = subprocess.run(
        [sys.executable, "-m", "threadpoolctl", "-i", "cprop", "cprop._openmp"],
        check=True, capture_output=True, text=True,
    ).stdout
    print(out)
    info = json.loads(out)

    import cprop  # the same installed package threadpoolctl just imported
    from cprop._openmp import build_info

    info_build = build_info()
    print(f"cprop {cprop.__version__} build_info(): {info_build}")
    if not info_build["openmp"]:
        print("FAIL: cprop was compiled without OpenMP (CPROP_ALLOW_NO_OPENMP build?).")
        return 1

    pkg_dir = os.path.realpath(os.path.dirname(cprop.__file__))
    site_dir = os.path.dirname(pkg_dir)
    shipped_dirs = (pkg_dir + os.sep, os.path.join(site_dir, "cprop.libs") + os.sep)
    omp = [lib for lib in info if lib.get("user_api") == "openmp"]
    if not omp:
        print(f"FAIL: no OpenMP runtime loaded by cprop ({pkg_dir}); it was built without OpenMP.")
        return 1

    def where(lib):
        path = os.path.realpath(lib["filepath"])
        if path.startswith(shipped_dirs):
            return "shipped in cprop's wheel"
        parts = path.split(os.sep)
        if path.startswith(site_dir + os.sep) or {"site-packages", "dist-packages"} & set(parts):
            return "another package's copy"
        return "from the system/toolchain"

    for lib in omp:
        print(f"OpenMP runtime loaded: {lib['internal_api']} ({lib['num_threads']} threads), "
              f"{where(lib)}: {lib['filepath']}")
    kinds = {where(lib) for lib in omp}
    if bundled and "shipped in cprop's wheel" not in kinds:
        print(f"FAIL: --bundled: no OpenMP runtime under {shipped_dirs}; the wheel was not "
              "repaired (auditwheel / delocate / delvewheel) or does not link OpenMP.")
        return 1
    if kinds == {"another package's copy"}:
        print("FAIL: the only OpenMP runtimes loaded belong to other packages; cprop links none.")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
