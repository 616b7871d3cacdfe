"""Every docstring example in the package runs, compiled modules included (issue 17).

The modules are those of the cprop that conftest.py found (the installed or in-place build), one
test each.  Compiled modules keep their def functions' docstrings (Cython's ``binding``, on by
default in Cython 3) and also list them in ``__test__`` (``autotestdict``): each example runs once.
The examples that ran are counted against the ``>>>`` lines of each module's source (for compiled
modules, the .pyx files of the source tree beside tests/, when there is one), so an example that
is never collected fails here: a docstring dropped by a build option, or one on a cdef function,
which Cython does not keep.
"""
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import cprop
from cprop._isa import available_kernels

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PYX = ROOT / "src" / "cprop"
OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
# Modules whose examples need an optional extra: (module to import, pip extra)
EXTRAS = {"cprop.onnx": [("skl2onnx", "onnx"), ("onnxruntime", "onnx")]}


def _module_names():
    return ["cprop"] + sorted(m.name for m in pkgutil.iter_modules(cprop.__path__, "cprop.")
                              if m.name != "cprop.__main__")      # the command line, no examples


def _import(name):
    for mod, extra in EXTRAS.get(name, []):
        pytest.importorskip(mod, reason=f"needs the {extra!r} extra: pip install 'cprop[{extra}]'")
    short = name.rsplit(".", 1)[-1]
    if short.startswith("_kernels_") and short[len("_kernels_"):] not in available_kernels():
        pytest.skip(f"{name}: kernel path not usable on this CPU (available: "
                    f"{available_kernels()}); cprop._isa never imports it here")
    return importlib.import_module(name)


def _doctests(module):
    """The module's doctests with examples, each docstring once (a compiled module's def functions
    are found both as functions and in ``__test__``; the functions' copies are kept)."""
    found = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module) if t.examples]
    found.sort(key=lambda t: ".__test__." in t.name)
    seen, tests = set(), []
    for t in found:
        key = tuple((e.source, e.want) for e in t.examples)
        if key not in seen:
            seen.add(key)
            tests.append(t)
    return tests


def _source_examples(module):
    """``>>>`` lines in the module's source: its own file for a Python module; for a compiled one
    the .pyx of the source tree beside tests/, if there is one (else None)."""
    path = Path(module.__file__)
    if path.suffix != ".py":
        path = SOURCE_PYX / (module.__name__.rsplit(".", 1)[-1] + ".pyx")
        if not path.exists():
            return None
    return len(re.findall(r"^\s*>>>", path.read_text(encoding="utf-8"), re.M))


def _engine_state():
    from cprop._isa import kernel_info
    from cprop._openmp import _thread_thresholds

    return kernel_info()["name"], _thread_thresholds()


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples(name):
    module = _import(name)
    tests = _doctests(module)
    before = _engine_state()
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (above)"
    # an example that switches the kernel path or a threshold puts it back (later tests and a
    # CPROP_KERNEL=<path> session depend on it)
    assert _engine_state() == before
    expected = _source_examples(module)
    if expected is not None:
        assert result.attempted == expected, (
            f"{name}: {result.attempted} examples ran but its source has {expected} '>>>' lines "
            f"(a compiled module is counted against {SOURCE_PYX}: is the cprop under test built "
            "from it?)")


def test_the_compiled_modules_have_examples():
    """The count above cannot pass vacuously for the engine: its def functions' examples are
    found in the build (they are absent when Cython drops docstrings)."""
    for name in ("cprop._openmp", "cprop._gemm", "cprop._train", "cprop._isa"):
        assert _doctests(importlib.import_module(name)), name
