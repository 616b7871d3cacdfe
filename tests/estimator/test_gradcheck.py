"""cprop.check_gradients: every hidden activation x output loss, fitted and unfitted estimators."""

import zlib

import numpy as np
import pytest
import scipy.sparse as sp

import cprop._gradcheck
from cprop import MLPClassifier, MLPRegressor, check_gradients
from cprop._engine import HIDDEN_ACTIVATIONS, Network

# (estimator, loss, target kind) for each output activation x loss pairing the engine has
OUTPUT_CASES = {
    "squared_error": (MLPRegressor, {"loss": "squared_error"}, "real"),
    "absolute_error": (MLPRegressor, {"loss": "absolute_error"}, "real"),
    "huber": (MLPRegressor, {"loss": "huber", "huber_delta": 0.5}, "real"),
    "poisson": (MLPRegressor, {"loss": "poisson"}, "counts"),
    "log_loss (softmax)": (MLPClassifier, {}, "multiclass"),
    "binary_log_loss (logistic)": (MLPClassifier, {}, "binary"),
    "multilabel (logistic)": (MLPClassifier, {}, "multilabel"),
}


def _seed(*names):
    """A seed per test case that is the same in every run: Python's ``hash`` of a string
    changes per process (PYTHONHASHSEED), which drew new data for each run, and about one
    draw in a few thousand puts a central difference's rounding near the 1e-6 bound."""
    return zlib.crc32(repr(names).encode())


def _data(kind, rng, n=14, d=4):
    X = rng.standard_normal((n, d))
    if kind == "real":
        y = rng.standard_normal((n, 2))
    elif kind == "counts":
        y = rng.poisson(1.5, n).astype(float)
    elif kind == "multiclass":
        y = np.arange(n) % 3
    elif kind == "binary":
        y = np.arange(n) % 2
    else:
        y = (rng.random((n, 3)) > 0.5).astype(int)
    return X, y


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_every_activation_and_loss_passes(activation, case, kernel):
    """Unfitted estimators, two hidden layers, L2 term and sample weights: error <= 1e-6."""
    Est, kw, kind = OUTPUT_CASES[case]
    rng = np.random.default_rng(_seed(activation, case))
    X, y = _data(kind, rng)
    sw = rng.random(X.shape[0]) + 0.5
    est = Est(hidden_layer_sizes=(5, 4), activation=activation, alpha=0.3, random_state=1, **kw)
    errors = check_gradients(est, X, y, sample_weight=sw)
    assert errors.shape == (3,)
    assert np.all(errors <= 1e-6), errors
    assert not hasattr(est, "coefs_")   # the caller's estimator is untouched


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_every_activation_and_loss_passes_with_dropout(activation, case):
    """The same with dropout on both hidden layers (one fixed set of masks)."""
    Est, kw, kind = OUTPUT_CASES[case]
    rng = np.random.default_rng(_seed(activation, case, "dropout"))
    X, y = _data(kind, rng)
    est = Est(hidden_layer_sizes=(6, 5), activation=activation, alpha=0.3, random_state=1,
              dropout=[0.3, 0.5], **kw)
    errors = check_gradients(est, X, y, sample_weight=rng.random(X.shape[0]) + 0.5)
    assert np.all(errors <= 1e-6), errors


def test_fitted_float32_and_sparse_input(kernel):
    rng = np.random.default_rng(3)
    X, y = _data("multiclass", rng, n=40, d=6)
    clf = MLPClassifier((7,), activation=["mish"], max_iter=20, random_state=0)
    clf.fit(X.astype(np.float32), y)
    before = [c.copy() for c in clf.coefs_]
    errors = check_gradients(clf, X[:15], y[:15])
    assert np.all(errors <= 1e-6), errors
    errors_sp = check_gradients(clf, sp.csr_matrix(X[:15] * (X[:15] > 0)), y[:15])
    assert np.all(errors_sp <= 1e-6), errors_sp
    for a, b in zip(clf.coefs_, before):
        assert np.array_equal(a, b)


def test_a_wrong_gradient_is_detected(monkeypatch):
    """The check can fail: a gradient 1% off in the first layer reads 1e-2 there, ~0 elsewhere."""
    real = Network.loss_grad

    def skewed(self, params, *args, **kwargs):
        loss, grad = real(self, params, *args, **kwargs)
        n0 = self.layer_sizes[0] * self.layer_sizes[1]
        grad[:n0] *= 1.01
        return loss, grad

    monkeypatch.setattr(Network, "loss_grad", skewed)
    X, y = _data("real", np.random.default_rng(0))
    errors = check_gradients(MLPRegressor(hidden_layer_sizes=(5,), random_state=0), X, y)
    assert 0.005 < errors[0] < 0.02
    assert errors[1] <= 1e-6


def test_bad_arguments():
    X, y = _data("real", np.random.default_rng(0))
    with pytest.raises(TypeError, match="cprop MLPClassifier or MLPRegressor"):
        check_gradients(object(), X, y)
    with pytest.raises(ValueError, match="eps"):
        check_gradients(MLPRegressor(), X, y, eps=0.0)
    reg = MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        check_gradients(reg, X[:, :3], y)


README = __import__("pathlib").Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.skipif(not README.exists(),
                    reason="README.md is not beside tests/ (tests copied out of the source tree)")
def test_readme_example_runs(capsys):
    import re
    code = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                if "check_gradients(clf" in b)
    exec(compile(code, "README", "exec"), {})
    errors = np.array([float(v) for v in re.findall(r"[0-9.]+e[-+][0-9]+", capsys.readouterr().out)])
    assert errors.size == 3 and np.all(errors < 1e-6), errors


def test_subsample_checks_the_drawn_rows_only(monkeypatch):
    """n_samples rows, with their weights: the engine sees exactly those rows, the errors stay
    those of backprop against finite differences, and the same random_state draws the same."""
    rng = np.random.default_rng(5)
    X, y = _data("multiclass", rng, n=500, d=4)
    w = rng.random(500) + 0.5
    clf = MLPClassifier(hidden_layer_sizes=(5,), activation="tanh", alpha=0.1, random_state=0)
    seen = []
    real = Network.loss_grad

    def spy(self, params, X, Y, sample_weight, *args, **kwargs):
        seen.append((X.shape[0], None if sample_weight is None else sample_weight.copy()))
        return real(self, params, X, Y, sample_weight, *args, **kwargs)

    monkeypatch.setattr(Network, "loss_grad", spy)
    errors = check_gradients(clf, X, y, sample_weight=w, n_samples=20, random_state=3)
    assert np.all(errors <= 1e-6), errors
    assert {n for n, _ in seen} == {20}
    # the weights checked are 20 of the given ones, each with its row
    rows = np.flatnonzero(np.isin(w, seen[0][1]))
    assert rows.size == 20
    monkeypatch.setattr(Network, "loss_grad", real)
    np.testing.assert_array_equal(
        check_gradients(clf, X[rows], y[rows], sample_weight=w[rows]), errors)
    np.testing.assert_array_equal(
        check_gradients(clf, X, y, sample_weight=w, n_samples=20, random_state=3), errors)
    other = check_gradients(clf, X, y, sample_weight=w, n_samples=20, random_state=4)
    assert not np.array_equal(other, errors)


def test_subsample_still_detects_a_wrong_gradient(monkeypatch):
    real = Network.loss_grad

    def skewed(self, params, *args, **kwargs):
        loss, grad = real(self, params, *args, **kwargs)
        grad[: self.layer_sizes[0] * self.layer_sizes[1]] *= 1.01
        return loss, grad

    monkeypatch.setattr(Network, "loss_grad", skewed)
    X, y = _data("real", np.random.default_rng(0), n=300)
    errors = check_gradients(MLPRegressor(hidden_layer_sizes=(5,), random_state=0), X, y,
                             n_samples=12, random_state=0)
    assert 0.005 < errors[0] < 0.02 and errors[1] <= 1e-6


def test_progress_reports_every_parameter(capsys):
    X, y = _data("binary", np.random.default_rng(1), n=40)
    est = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    calls = []
    check_gradients(est, X, y, n_samples=10, random_state=0,
                    progress=lambda done, total: calls.append((done, total)))
    n_params = 4 * 3 + 3 + 3 * 1 + 1
    assert calls == [(i, n_params) for i in range(1, n_params + 1)]
    check_gradients(est, X, y, n_samples=10, random_state=0, verbose=True)
    err = capsys.readouterr().err
    assert f"check_gradients: {n_params}/{n_params} parameters" in err


def test_subsample_bad_arguments():
    X, y = _data("real", np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_samples"):
        check_gradients(MLPRegressor(), X, y, n_samples=0)
    with pytest.raises(ValueError, match="progress"):
        check_gradients(MLPRegressor(), X, y, progress="yes")


def test_subsample_of_sparse_and_list_inputs():
    rng = np.random.default_rng(2)
    X, y = _data("multiclass", rng, n=60)
    X = X * (X > 0)
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    dense = check_gradients(clf, X, y, n_samples=9, random_state=1)
    assert np.all(dense <= 1e-6)
    np.testing.assert_array_equal(                        # the same rows, the same arithmetic
        check_gradients(clf, X.tolist(), list(y), n_samples=9, random_state=1), dense)
    csr = check_gradients(clf, sp.csr_matrix(X), y, n_samples=9, random_state=1)
    assert np.all(csr <= 1e-6)
    for form in (sp.coo_matrix(X), sp.csc_matrix(X)):    # the sparse engine path: as CSR
        np.testing.assert_array_equal(
            check_gradients(clf, form, y, n_samples=9, random_state=1), csr)
