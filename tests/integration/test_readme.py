"""The README's Python examples run as written (the first example is one of the README's promises)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


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
    assert len(blocks) == 8          # validation+scoring, callbacks, EarlyStopping, progress,
    code = "\n".join(blocks)         # Ctrl-C, weights, schedule, restarts: they continue one another
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    m = re.search(r"(\d+) epochs, best epoch (\d+), validation log-loss ([0-9.]+)", out)
    assert m and int(m.group(2)) <= int(m.group(1)) and float(m.group(3)) < 0.2
    m = re.search(r"best epoch (\d+), accuracy ([0-9.]+)", out)
    assert m and float(m.group(2)) > 0.95
    m = re.search(r"stopped at epoch (\d+), weights of epoch (\d+)", out)
    assert m and int(m.group(1)) - int(m.group(2)) == 5      # patience=5
    assert (tmp_path / "history.csv").read_text().startswith("epoch,loss,validation_loss")
    assert "samples" in res.stderr                       # the progress bar
    assert re.search(r"50 epochs, validation loss [0-9.]+", out)
    recall = dict(re.findall(r"class_weight=(\w+): recall of class 9 = ([0-9.]+)", out))
    assert float(recall["balanced"]) > float(recall["None"])
    assert "[0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.0999]" in out
    assert re.search(r"\[[0-9., ]+\] kept: \d", out)


# -- "From notebook to production" and "Beyond one machine": the examples run as written ---------
def _section(title):
    """The README's text from heading ``title`` to the next heading of the same or a higher
    level."""
    lines = README.read_text().splitlines(keepends=True)
    out, depth, fenced = [], None, False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)$", line.rstrip("\n"))
        if depth is None:
            if heading and heading[2] == title:
                depth = len(heading[1])
            continue
        if heading and len(heading[1]) <= depth:
            break
        out.append(line)
    assert depth is not None, f"README has no section {title!r}"
    return "".join(out)


def _python_blocks(title):
    return re.findall(r"```python\n(.*?)```", _section(title), re.S)


@pytest.fixture
def run_block(cprop_env):
    """``run_block(code, cwd, timeout=300)``: the code run by a subprocess that imports the cprop
    under test; its stdout."""
    def run(code, cwd, timeout=300):
        env = cprop_env()
        env.setdefault("OMP_NUM_THREADS", "1")  # shared CI machines: see conftest.py
        res = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=timeout)
        assert res.returncode == 0, res.stderr
        return res.stdout
    return run


needs_readme = pytest.mark.skipif(
    not README.exists(), reason="README.md is not beside tests/ (tests copied out of the source tree)")


@needs_readme
def test_onnx_export_example(tmp_path, run_block):
    pytest.importorskip("skl2onnx", reason="needs the 'onnx' extra: pip install 'cprop[onnx]'")
    pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra: pip install 'cprop[onnx]'")
    (code,) = _python_blocks("ONNX export")
    out = run_block(code, tmp_path)
    assert "labels equal: True" in out
    assert float(re.search(r"max probability difference: (\S+)", out)[1]) < 1e-5
    assert (tmp_path / "digits.onnx").stat().st_size > 10_000


@needs_readme
def test_skops_example(tmp_path, run_block):
    pytest.importorskip("skops", reason="needs the 'skops' extra: pip install 'cprop[skops]'")
    (code,) = _python_blocks("Safe persistence with skops")
    out = run_block(code, tmp_path)
    assert "['cprop._mlp.MLPClassifier']" in out
    assert "same predictions: True" in out


@needs_readme
def test_to_sklearn_example(tmp_path, run_block):
    (code,) = _python_blocks("scikit-learn's own estimator")
    assert "same predictions: True" in run_block(code, tmp_path)


@needs_readme
def test_dask_example(tmp_path, run_block):
    pytest.importorskip("distributed", reason="needs the 'dask' extra: pip install 'cprop[dask]'")
    pytest.importorskip("dask_ml", reason="needs the 'dask' extra: pip install 'cprop[dask]'")
    code = next(b for b in _python_blocks("Beyond one machine") if "LocalCluster" in b)
    out = run_block(code, tmp_path)
    best = re.search(r"grid search: .* (0\.\d+)$", out, re.M)
    assert best and float(best[1]) > 0.9, out
    assert float(re.search(r"incremental accuracy: (\S+)", out)[1]) > 0.8
    assert "parallel predictions: [0 1 2 3 4" in out


# The Ray and Spark snippets continue the Dask example (grid, X, y); a small search stands in.
SMALL_SEARCH = """
import warnings
warnings.simplefilter("ignore")
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from cprop import MLPClassifier
X, y = load_digits(return_X_y=True)
X, y = X[:400] / 16, y[:400]
grid = GridSearchCV(MLPClassifier(max_iter=5, random_state=0),
                    {"hidden_layer_sizes": [(8,), (16,)]}, cv=2)
"""


# Starting Ray or a Spark session takes 20-60 s on a 2-core machine: opt-in, so that the suite
# stays short where they happen to be installed (CI does not install them).
needs_ray_spark_opt_in = pytest.mark.skipif(
    not os.environ.get("CPROP_TEST_RAY_SPARK"),
    reason="Ray/Spark README snippets are opt-in (20-60 s each): set CPROP_TEST_RAY_SPARK=1")


@needs_readme
@needs_ray_spark_opt_in
def test_ray_snippet(tmp_path, run_block):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[default]')")
    code = next(b for b in _python_blocks("Beyond one machine") if "register_ray" in b)
    out = run_block(SMALL_SEARCH + "import ray\nray.init(num_cpus=2, include_dashboard=False)\n"
                    + code + "print('best', grid.best_params_)\nray.shutdown()\n", tmp_path)
    assert "best {'hidden_layer_sizes'" in out


@needs_readme
@needs_ray_spark_opt_in
def test_spark_snippet(tmp_path, run_block):
    pytest.importorskip("joblibspark", reason="joblibspark/pyspark are not installed "
                                              "(pip install pyspark joblibspark; needs Java)")
    import shutil

    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime, and none is on PATH")
    code = next(b for b in _python_blocks("Beyond one machine") if "register_spark" in b)
    start = ("from pyspark.sql import SparkSession\n"
             "spark = SparkSession.builder.master('local[2]')"
             ".config('spark.ui.enabled', 'false').getOrCreate()\n")
    out = run_block(SMALL_SEARCH + start + code + "print('best', grid.best_params_)\n"
                    "spark.stop()\n", tmp_path)
    assert "best {'hidden_layer_sizes'" in out
