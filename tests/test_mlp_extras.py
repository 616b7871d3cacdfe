"""Estimator parameters beyond scikit-learn (issue 11): activations per layer, ..."""
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.datasets import load_digits, make_regression
from sklearn.utils._param_validation import InvalidParameterError

from cprop import MLPClassifier, MLPRegressor
from cprop._activations import forward as act_forward

NEW_HIDDEN = ["leaky_relu", "elu", "selu", "softplus", "gelu", "gelu_tanh", "silu", "mish"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16, y[:300]


def _numpy_predict(est, X, acts):
    A = X
    for W, b, act in zip(est.coefs_, est.intercepts_, list(acts) + [est.out_activation_]):
        Z = A @ W + b
        if act == "softmax":
            A = softmax(Z, axis=1)
        else:
            A = Z.copy()
            act_forward(act, A)
    return A


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_list_one_per_layer(digits, dtype):
    X, y = digits
    X = X.astype(dtype)
    acts = ["gelu", "selu", "mish"]
    clf = MLPClassifier((12, 10, 8), activation=acts, max_iter=5, random_state=0).fit(X, y)
    assert clf.coefs_[0].dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(clf.predict_proba(X), _numpy_predict(clf, X, acts), rtol=tol,
                               atol=tol)
    # a list of one repeated name is that name
    a = MLPClassifier((12, 10), activation=["silu", "silu"], max_iter=3, random_state=0).fit(X, y)
    b = MLPClassifier((12, 10), activation="silu", max_iter=3, random_state=0).fit(X, y)
    for wa, wb in zip(a.coefs_, b.coefs_):
        assert np.array_equal(wa, wb)


@pytest.mark.parametrize("name", NEW_HIDDEN)
def test_each_new_activation_trains(name):
    X, y = make_regression(n_samples=120, n_features=6, noise=0.1, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(16,), activation=name, solver="lbfgs", max_iter=200, random_state=0)
    reg.fit(X, y)
    assert reg.score(X, y) > 0.9
    np.testing.assert_allclose(reg.predict(X), _numpy_predict(reg, X, [name]).ravel(),
                               rtol=1e-12, atol=1e-12)


def test_bad_activation_lists(digits):
    X, y = digits
    with pytest.raises(ValueError, match="gives 1 activations for 2 hidden layers"):
        MLPClassifier((4, 3), activation=["gelu"], max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="which are not activations"):
        MLPClassifier((4,), activation=["swish"], max_iter=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="activation"):
        MLPClassifier((4,), activation="swish").fit(X, y)


# ---- loss='absolute_error' and 'huber' ----------------------------------------------------------------
def _outlier_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + 0.05 * rng.standard_normal(300)
    y[:15] += 40.0   # 5% gross outliers
    return X, y


@pytest.mark.parametrize("loss", ["absolute_error", "huber"])
def test_robust_losses_resist_outliers(loss):
    X, y = _outlier_data()
    kw = dict(hidden_layer_sizes=(16,), max_iter=300, random_state=0, learning_rate_init=0.01)
    sq = MLPRegressor(**kw).fit(X, y)
    rob = MLPRegressor(loss=loss, **kw).fit(X, y)
    err = lambda m: np.median(np.abs(m.predict(X[15:]) - y[15:]))  # noqa: E731
    assert err(rob) < 0.3 * err(sq), (err(rob), err(sq))
    assert rob.out_activation_ == "identity"


def test_huber_with_large_delta_is_squared_error():
    """Below delta the Huber gradient is p - y exactly, so training follows squared error."""
    X, y = _outlier_data()
    y = y[15:] / 10
    X = X[15:]
    kw = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    a = MLPRegressor(**kw).fit(X, y)
    b = MLPRegressor(loss="huber", huber_delta=1e6, **kw).fit(X, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.array_equal(wa, wb)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-12)


def test_huber_delta_validated():
    X, y = _outlier_data()
    with pytest.raises(InvalidParameterError, match="huber_delta"):
        MLPRegressor(loss="huber", huber_delta=0.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="loss"):
        MLPRegressor(loss="quantile").fit(X, y)


# ---- solver='adamw' -------------------------------------------------------------------------------------
def test_adamw_estimator(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(20,), max_iter=15, random_state=0)
    adam = MLPClassifier(solver="adam", **kw).fit(X, y)
    w0 = MLPClassifier(solver="adamw", weight_decay=0.0, **kw).fit(X, y)
    for a, b in zip(adam.coefs_, w0.coefs_):
        assert np.array_equal(a, b)
    norms = [np.linalg.norm(MLPClassifier(solver="adamw", weight_decay=wd, **kw).fit(X, y).coefs_[0])
             for wd in (0.0, 5.0, 20.0)]
    assert norms[0] > norms[1] > norms[2]
    clf = MLPClassifier(solver="adamw", hidden_layer_sizes=(5,), random_state=0)
    clf.partial_fit(X, y, classes=np.unique(y))
    assert clf.n_iter_ == 1
    with pytest.raises(InvalidParameterError, match="weight_decay"):
        MLPClassifier(solver="adamw", weight_decay=-1.0).fit(X, y)
