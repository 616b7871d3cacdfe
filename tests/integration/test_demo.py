"""``python -m cprop demo``, run as a user runs it: in a subprocess, output parsed.

The accuracy numbers are checked for being real: scikit-learn's row must equal a fit made here
with the same data and settings, and cprop's must be within a few points of it.
"""
import os
import re
import subprocess
import sys
import warnings

import pytest

import cprop

# A short run keeps the test to seconds; both estimators stop at max_iter.
MAX_ITER = 30
ROW = re.compile(
    r"^\s+(?P<label>cprop|scikit-learn)\s+(?P<accuracy>[01]\.\d{4})\s+(?P<seconds>\d+\.\d{3})"
    r"\s+(?P<epochs>\d+)\s+(?P<loss>\d+\.\d+)\s*$",
    re.MULTILINE,
)


@pytest.fixture
def run_cli(cprop_env):
    """``run_cli(args, cwd, code=None)``: ``python -m cprop ARGS`` (or ``python -c CODE ARGS``) in
    a subprocess that imports the same cprop as this test process (installed or in-tree)."""
    def run(args, cwd, code=None):
        env = cprop_env()
        # One thread unless the caller says otherwise: the point here is the output, and on the
        # shared 2-core CI machines threads cost more than they give on digits (see conftest.py).
        env.setdefault("OMP_NUM_THREADS", "1")
        prefix = ["-m", "cprop"] if code is None else ["-c", code]
        return subprocess.run([sys.executable, *prefix, *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
    return run


def parse_rows(stdout):
    rows = {m["label"]: m.groupdict() for m in ROW.finditer(stdout)}
    assert set(rows) == {"cprop", "scikit-learn"}, stdout
    return {label: dict(accuracy=float(r["accuracy"]), seconds=float(r["seconds"]),
                        epochs=int(r["epochs"]), loss=float(r["loss"]))
            for label, r in rows.items()}


def sklearn_reference_accuracy(seed, max_iter):
    from sklearn.neural_network import MLPClassifier

    from cprop._demo import load_data

    X_train, X_test, y_train, y_test = load_data(seed, "float64")
    est = MLPClassifier(max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X_train, y_train)
    return est.score(X_test, y_test)


def test_demo_prints_real_accuracy_and_time_side_by_side(tmp_path, run_cli):
    res = run_cli(["demo", "--max-iter", str(MAX_ITER), "--seed", "0", "--n-threads", "1"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"cprop {cprop.__version__} vs scikit-learn" in out
    assert "threads: cprop 1; scikit-learn BLAS limited to 1" in out
    assert "train 1347, test 450" in out
    assert f"max_iter={MAX_ITER}" in out
    rows = parse_rows(out)
    for r in rows.values():
        assert r["seconds"] > 0
        assert 1 <= r["epochs"] <= MAX_ITER
        assert r["loss"] > 0
    # scikit-learn's number is the real one: the same fit made here gives the same accuracy.
    expected = sklearn_reference_accuracy(seed=0, max_iter=MAX_ITER)
    assert rows["scikit-learn"]["accuracy"] == pytest.approx(expected, abs=6e-5)
    # cprop trains the same model: close to scikit-learn's accuracy and loss.
    assert rows["cprop"]["accuracy"] > 0.9
    assert rows["cprop"]["accuracy"] == pytest.approx(rows["scikit-learn"]["accuracy"], abs=0.03)
    assert rows["cprop"]["loss"] == pytest.approx(rows["scikit-learn"]["loss"], rel=0.2)
    speedup = re.search(r"cprop fit is (\d+\.\d)x the speed", out)
    assert speedup and float(speedup[1]) > 0


def test_demo_plot_saves_both_loss_curves(tmp_path, run_cli):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the 'plot' extra)")
    png = tmp_path / "loss.png"
    res = run_cli(["demo", "--max-iter", "15", "--plot", str(png)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"loss curves saved to {png}" in res.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img.std() > 0.05  # not a blank canvas


# Runs the CLI with matplotlib made unimportable, as on an install without the 'plot' extra.
NO_MATPLOTLIB = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib' (blocked by the test)")
sys.meta_path.insert(0, Block())
from cprop.__main__ import main
sys.exit(main())
"""


def test_demo_plot_without_matplotlib_fails_fast_with_a_clear_message(tmp_path, run_cli):
    png = tmp_path / "loss.png"
    res = run_cli(["demo", "--plot", str(png)], cwd=tmp_path, code=NO_MATPLOTLIB)
    assert res.returncode == 2
    assert "--plot needs matplotlib" in res.stderr
    assert "pip install 'cprop[plot]'" in res.stderr
    assert not png.exists()
    assert "test accuracy" not in res.stdout  # nothing was trained


def test_cli_usage_errors(tmp_path, run_cli):
    res = run_cli([], cwd=tmp_path)
    assert res.returncode == 2 and "demo" in res.stdout
    res = run_cli(["demo", "--hidden-layer-sizes", "0"], cwd=tmp_path)
    assert res.returncode == 2 and "positive layer sizes" in res.stderr


def test_demo_default_gives_both_libraries_the_same_thread_budget(tmp_path, run_cli):
    # No --n-threads: cprop's default thread count (here OMP_NUM_THREADS=1, from _env) is the
    # budget of both libraries, and the output says so.
    res = run_cli(["demo", "--max-iter", "5"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "threads: cprop 1; scikit-learn BLAS limited to 1" in res.stdout
    assert "the same budget for both: cprop's default thread count" in res.stdout
    parse_rows(res.stdout)
    own = run_cli(["demo", "--max-iter", "5", "--own-threads"], cwd=tmp_path)
    assert own.returncode == 0, own.stderr
    assert "scikit-learn BLAS default" in own.stdout and "budgets may differ" in own.stdout
    both = run_cli(["demo", "--own-threads", "--n-threads", "1"], cwd=tmp_path)
    assert both.returncode == 2 and "exclude each other" in both.stderr


@pytest.mark.skipif((os.cpu_count() or 1) < 2,
                    reason="needs 2+ CPUs, where scikit-learn's BLAS would use more than 1 thread")
def test_demo_limits_scikit_learns_blas_to_the_budget(monkeypatch):
    # The limit is applied, not only printed: scikit-learn's fit runs with its BLAS at the
    # budget (1 here, the test session's default; BLAS alone would use every CPU).
    import argparse
    import io

    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    from threadpoolctl import threadpool_info

    from cprop import _demo

    seen = []

    class Recording(SkMLPClassifier):
        def fit(self, X, y):
            seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])
            return super().fit(X, y)

    real = _demo.make_estimators

    def make(args):
        cp, sk = real(args)
        return cp, Recording(**sk.get_params())

    monkeypatch.setattr(_demo, "make_estimators", make)
    args = _demo.add_arguments(argparse.ArgumentParser()).parse_args(["--max-iter", "2"])
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _demo.run(args, out=out) == 0
    from cprop._openmp import effective_n_threads
    budget = effective_n_threads(None)
    assert f"scikit-learn BLAS limited to {budget}" in out.getvalue()
    assert seen and all(threads and set(threads) == {budget} for threads in seen)


def test_demo_in_an_unbuilt_clone_prints_only_the_clear_message(tmp_path):
    """``python -m cprop demo`` run in a clone whose engine was never compiled: one line saying
    what to do, no traceback of the circular import that the missing engine causes."""
    clone = tmp_path / "clone"
    (clone / "cprop").mkdir(parents=True)
    src = os.path.dirname(os.path.abspath(cprop.__file__))
    for name in os.listdir(src):
        if name.endswith(".py"):                    # the sources, not the compiled modules
            with open(os.path.join(src, name), "rb") as f:
                (clone / "cprop" / name).write_bytes(f.read())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-m", "cprop", "demo"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0 and res.stdout == ""
    assert "compiled engine is missing" in res.stderr
    assert "Traceback" not in res.stderr and "circular" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
