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


# ---- clipping, gradient_norms_ and the vanishing/exploding warnings ------------------------------------
import warnings  # noqa: E402

from cprop._diagnostics import check_gradient_norms  # noqa: E402


def _runtime_warnings(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in rec if w.category is RuntimeWarning]


def test_vanishing_warning_deep_sigmoid_not_relu_he(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(32,) * 8, max_iter=3, random_state=0, monitor_gradients=True)
    sig, msgs = _runtime_warnings(lambda: MLPClassifier(activation="logistic", **kw).fit(X, y))
    assert len(msgs) == 1 and msgs[0].startswith("Vanishing gradients")
    assert "layer 0 (coefs_[0])" in msgs[0] and "coefs_[8]" in msgs[0]
    assert sig.gradient_norms_.shape == (3, 9)
    assert sig.gradient_norms_[0, 0] < 1e-3 * sig.gradient_norms_[0, -1]
    relu, msgs = _runtime_warnings(
        lambda: MLPClassifier(activation="relu", init="he_normal", **kw).fit(X, y))
    assert msgs == []
    assert relu.gradient_norms_[0, 0] > 0.1 * relu.gradient_norms_[0, -1]


def test_gradient_norms_off_by_default_and_with_partial_fit(digits):
    X, y = digits
    clf = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    assert not hasattr(clf, "gradient_norms_")
    clf = MLPClassifier((8,), random_state=0, monitor_gradients=True)
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.unique(y))
    assert clf.gradient_norms_.shape == (3, 2)
    assert np.all(clf.gradient_norms_ > 0)


def test_exploding_warning_and_clipping_cures_it():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    y = X.sum(1) * 100
    kw = dict(hidden_layer_sizes=(16, 16), solver="sgd", learning_rate_init=0.5, momentum=0.9,
              max_iter=5, random_state=0, monitor_gradients=True)
    reg = MLPRegressor(**kw)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="non-finite"):
            reg.fit(X, y)
    msgs = [str(w.message) for w in rec if w.category is RuntimeWarning]
    assert any(m.startswith("Exploding gradients: the weight-gradient norm of layer 0") and
               "clip_grad_norm" in m for m in msgs), msgs
    clipped, msgs = _runtime_warnings(lambda: MLPRegressor(clip_grad_norm=1.0, **kw).fit(X, y))
    assert not any(m.startswith("Exploding") for m in msgs)
    assert np.all(np.isfinite(clipped.gradient_norms_))


def test_gradient_norm_rules():
    norms = check_gradient_norms
    assert norms(np.array([[1.0, 1.0], [np.inf, 1.0]]))[0].startswith(
        "Exploding gradients: the weight-gradient norm of layer 0 (coefs_[0]) is not finite "
        "in epoch 2")
    with pytest.warns(RuntimeWarning, match="layer 1 .* grew to 5e\\+03"):
        norms(np.array([[1.0, 2.0], [1.0, 5e3]]))
    assert norms(np.array([[1.0, 2.0], [1.0, 4.0]])) == []
    with pytest.warns(RuntimeWarning, match="layers 0 to 1 barely learn"):
        norms(np.array([[1e-6, 1e-5, 1.0]]))
    # epochs already examined are not reported again
    assert norms(np.array([[1.0, 1.0], [np.nan, 1.0]]), start=2) == []


def test_clipping_limits_each_step(digits):
    """SGD without momentum: with clip_grad_norm=c each batch moves the parameters by <= lr*c."""
    X, y = digits
    lr, c = 0.5, 1e-3
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", momentum=0.0, learning_rate_init=lr,
              max_iter=1, batch_size=300, random_state=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = MLPClassifier(**{**kw, "learning_rate_init": 1e-300}).fit(X, y)
        clipped = MLPClassifier(clip_grad_norm=c, **kw).fit(X, y)
        free = MLPClassifier(**kw).fit(X, y)
    flat = lambda m: np.concatenate([a.ravel() for a in m.coefs_ + m.intercepts_])  # noqa: E731
    step = np.linalg.norm(flat(clipped) - flat(start))
    assert step <= lr * c * (1 + 1e-9)
    assert step > 0.9 * lr * c                     # the gradient was larger than c: clipped
    assert np.linalg.norm(flat(free) - flat(start)) > 10 * step
    with pytest.raises(InvalidParameterError, match="clip_grad_norm"):
        MLPClassifier(clip_grad_norm=0.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="clip_grad_value"):
        MLPClassifier(clip_grad_value=-1.0).fit(X, y)


README = __import__("pathlib").Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.skipif(not README.exists(),
                    reason="README.md is not beside tests/ (tests copied out of the source tree)")
def test_readme_gradient_example():
    import re
    code = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                if "monitor_gradients" in b)
    env = {}
    exec(compile(code, "README", "exec"), env)
    msgs = [str(w.message) for w in env["caught"] if w.category is RuntimeWarning]
    assert len(msgs) == 1 and msgs[0].startswith("Vanishing gradients")
    assert env["sig"].gradient_norms_[0, 0] < 1e-3 * env["sig"].gradient_norms_[0, -1]


# ---- dropout -------------------------------------------------------------------------------------------
def test_dropout_estimator_threads_predict_and_validation(digits, threaded_passes):
    X, y = digits
    kw = dict(hidden_layer_sizes=(160, 40), dropout=[0.5, 0.2], max_iter=3, batch_size=150,
              random_state=0)
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for nt in (1, 2, 3):
            # 150-row batches are under PASS_SERIAL_FLOPS: lowered, so that they run threaded
            with threaded_passes() as teams:
                fits.append(MLPClassifier(n_threads=nt, **kw).fit(X, y))
            want = 0 if nt == 1 else nt
            assert (teams["gemm"], teams["update"], teams["gather"]) == (want, want, want)
        plain = MLPClassifier(**{**kw, "dropout": 0.0}).fit(X, y)
        zeros = MLPClassifier(**{**kw, "dropout": [0.0, 0.0]}).fit(X, y)
        other_seed = MLPClassifier(n_threads=1, **{**kw, "random_state": 1}).fit(X, y)
    for f in fits[1:]:
        for a, b in zip(f.coefs_ + f.intercepts_, fits[0].coefs_ + fits[0].intercepts_):
            assert np.array_equal(a, b)
    # dropout changes training; rate 0 (any spelling) is plain training, bit for bit
    assert not np.array_equal(fits[0].coefs_[0], plain.coefs_[0])
    assert all(np.array_equal(a, b) for a, b in zip(zeros.coefs_, plain.coefs_))
    assert not np.array_equal(fits[0].coefs_[0], other_seed.coefs_[0])
    # prediction uses no dropout: deterministic, equal to the plain forward pass
    clf = fits[0]
    P = clf.predict_proba(X)
    assert np.array_equal(P, clf.predict_proba(X))
    np.testing.assert_allclose(P, _numpy_predict(clf, X, ["relu", "relu"]), rtol=1e-12,
                               atol=1e-15)
    with pytest.raises(InvalidParameterError, match="'dropout' .* applies only with a stochastic"):
        MLPClassifier((5,), dropout=0.3, solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="one per hidden layer"):
        MLPClassifier((5, 4), dropout=[0.3]).fit(X, y)
    with pytest.raises(InvalidParameterError, match="dropout"):
        MLPClassifier((5,), dropout=1.0).fit(X, y)
