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


@pytest.mark.skipif(not README.exists(),
                    reason="README.md is not beside tests/ (tests copied out of the source tree)")
def test_training_loop_examples_run(tmp_path):
    text = README.read_text()
    section = text[text.index("## The training loop"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 7          # validation+scoring, callbacks, progress, Ctrl-C, weights,
    code = "\n".join(blocks)         # schedule, restarts: the blocks continue one another
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    m = re.search(r"(\d+) epochs, best epoch (\d+), validation log-loss ([0-9.]+)", out)
    assert m and int(m.group(2)) <= int(m.group(1)) and float(m.group(3)) < 0.2
    m = re.search(r"best epoch (\d+), accuracy ([0-9.]+)", out)
    assert m and float(m.group(2)) > 0.95
    assert (tmp_path / "history.csv").read_text().startswith("epoch,loss,validation_loss")
    assert "samples" in res.stderr                       # the progress bar
    assert re.search(r"50 epochs, validation loss [0-9.]+", out)
    recall = dict(re.findall(r"class_weight=(\w+): recall of class 9 = ([0-9.]+)", out))
    assert float(recall["balanced"]) > float(recall["None"])
    assert "[0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.0999]" in out
    assert re.search(r"\[[0-9., ]+\] kept: \d", out)
