"""The README's Python examples run as written (the first example is one of the README's promises)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    if not README.exists():
        return []
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.skipif(not README.exists(),
                    reason="README.md is not beside tests/ (tests copied out of the source tree)")
def test_first_example_runs_and_reports_accuracy(tmp_path):
    code = _blocks()[0]
    assert "from cprop import MLPClassifier" in code
    # -W error: the first example must not even warn (e.g. ConvergenceWarning)
    res = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    acc = float(re.search(r"test accuracy: ([0-9.]+)", res.stdout).group(1))
    assert acc > 0.95


@pytest.mark.skipif(not README.exists(),
                    reason="README.md is not beside tests/ (tests copied out of the source tree)")
def test_pipeline_grid_search_example_runs(tmp_path):
    code = next(b for b in _blocks() if "GridSearchCV" in b)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    score = float(res.stdout.split()[-1])
    assert score > 0.95
