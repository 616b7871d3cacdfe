"""From a clone, ``python -m pytest`` works (testing a built cprop) or stops at once saying what to do.

A fake clone is made in a temporary directory: the package's Python sources without any compiled
module, tests/conftest.py, pyproject.toml and one small test. ``python -m pytest`` there puts the
clone first on sys.path, the situation that used to end in a circular-import error.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cprop

TESTS = Path(__file__).resolve().parents[1]  # tests/, whose conftest.py the fake clone gets
SOURCE = TESTS.parent
BUILT_PARENT = Path(cprop.__file__).resolve().parents[1]  # where this session's cprop lives

WHERE_TEST = """
from pathlib import Path

import cprop
import cprop._gemm  # compiled


def test_uses_a_built_cprop():
    pkg = Path(cprop.__file__).resolve().parent
    assert pkg != Path(__file__).resolve().parents[1] / "cprop"
    assert Path(cprop._gemm.__file__).parent == pkg
"""

needs_source = pytest.mark.skipif(not (SOURCE / "pyproject.toml").exists(),
                                  reason="tests copied out of the source tree (no pyproject.toml)")


def _clone(tmp_path):
    root = tmp_path / "clone"
    (root / "cprop").mkdir(parents=True)
    for f in (SOURCE / "cprop").glob("*.py"):
        shutil.copy(f, root / "cprop" / f.name)
    (root / "tests").mkdir()
    shutil.copy(TESTS / "conftest.py", root / "tests" / "conftest.py")
    (root / "tests" / "test_where.py").write_text(WHERE_TEST)
    shutil.copy(SOURCE / "pyproject.toml", root / "pyproject.toml")
    return root


def _env(pythonpath):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _run(args, cwd, pythonpath):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(pythonpath),
                          capture_output=True, text=True, timeout=300)


@needs_source
def test_python_m_pytest_in_a_clone_tests_the_built_cprop(tmp_path):
    root = _clone(tmp_path)
    res = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], root, BUILT_PARENT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


@needs_source
def test_python_m_pytest_without_a_built_cprop_stops_with_instructions(tmp_path):
    root = _clone(tmp_path)
    probe = _run(["-c", "import cprop._gemm"], tmp_path, None)
    if probe.returncode == 0:
        pytest.skip("cprop is installed in this environment, so a clone always falls back to "
                    "it (the other test covers that case)")
    res = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], root, None)
    assert res.returncode == 4, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "compiled engine was not found" in out
    assert "pip install '.[test]'" in out and "build_ext --inplace" in out
    assert "circular import" not in out
    assert "passed" not in out


@needs_source
def test_importing_the_unbuilt_source_tree_says_what_to_do(tmp_path):
    root = _clone(tmp_path)
    res = _run(["-c", "import cprop"], root, None)
    assert res.returncode == 1
    assert "cprop's compiled engine is missing" in res.stderr
    assert "pip install '.[test]'" in res.stderr
