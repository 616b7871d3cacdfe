"""The one list of losses (cprop/_loss_list.py) and label smoothing, its proof that a loss parameter
is one entry (issue 17).

References: numpy/scipy formulas written here, central differences of the compiled loss, the
whole network's gradient (check_gradients), scikit-learn's MLPClassifier (label_smoothing=0 is its
loss, bit for bit).
"""
import pickle
import warnings

import numpy as np
import pytest
from scipy.special import expit, softmax, xlogy
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import cprop._interop as interop
from cprop import MLPClassifier, MLPRegressor, check_gradients
from cprop import _activation_list, _loss_list
from cprop._engine import OTHER_LOSSES, OUTPUT_LOSS, Network
from cprop._losses import LOSS_CODES, loss_and_delta

LIST = _loss_list.LOSSES
NAMES = [e["name"] for e in LIST]
X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # ConvergenceWarning of short fits
        return fn(*args, **kw)


# ---- numpy references, per row, before sample weights ---------------------------------------------
def _smoothed(name, Y, ls):
    """The smoothed targets: K = the row's outputs for softmax, 2 per logistic column."""
    K = Y.shape[1] if name == "log_loss" else 2
    return (1.0 - ls) * Y + ls / K


def _ref(name, Y, P, param):
    """(row losses, dl/dz) of the list's loss ``name`` in numpy, float64."""
    eps = np.finfo(P.dtype).eps
    Y, P = Y.astype(np.float64), P.astype(np.float64)
    R = P - Y
    if name == "squared_error":
        return 0.5 * (R ** 2).sum(1), R
    if name == "poisson":
        return (xlogy(Y, Y / P) - Y + P).sum(1), R
    if name == "absolute_error":
        return np.abs(R).sum(1), np.sign(R)
    if name == "huber":
        A = np.abs(R)
        return np.where(A <= param, 0.5 * A ** 2, param * (A - 0.5 * param)).sum(1), \
            np.clip(R, -param, param)
    T = _smoothed(name, Y, param)
    Pc = np.clip(P, eps, 1 - eps)
    if name == "log_loss":
        return -xlogy(T, Pc).sum(1), P - T
    if name == "binary_log_loss":
        return -(xlogy(T, Pc) + xlogy(1 - T, 1 - Pc)).sum(1), P - T
    raise AssertionError(f"no numpy reference for loss {name!r}: add one here")


OUTPUT = {"identity": lambda z: z, "softmax": lambda z: softmax(z, axis=1), "logistic": expit,
          "exp": np.exp}
PARAM = {"huber": 0.7, "log_loss": 0.2, "binary_log_loss": 0.3}


def _targets(entry, rng, n, k):
    if entry["output"] == "softmax":
        return np.eye(k)[rng.integers(0, k, n)]
    if entry["output"] == "logistic":
        return (rng.random((n, k)) > 0.5).astype(float)
    if entry["targets"] == "nonnegative":
        return rng.poisson(2.0, (n, k)).astype(float)
    return rng.standard_normal((n, k))


# ---- the list and every table made from it -------------------------------------------------------
def test_each_loss_once_with_its_own_code_and_a_known_output_activation():
    assert len(set(NAMES)) == len(NAMES)
    assert LOSS_CODES == _loss_list.codes() and list(LOSS_CODES) == NAMES
    assert len(set(LOSS_CODES.values())) == len(NAMES)
    outputs = set(_activation_list.OUTPUT_ACTIVATIONS)
    for out in outputs:          # every output activation has exactly one canonical loss
        assert [e["name"] for e in LIST if e["output"] == out and e["canonical"]] \
            == [OUTPUT_LOSS[out]]
    assert {e["output"] for e in LIST} == outputs


def test_python_tables_come_from_the_list():
    assert OUTPUT_LOSS == {e["output"]: e["name"] for e in LIST if e["canonical"]}
    others = {}
    for e in LIST:
        if not e["canonical"]:
            others.setdefault(e["output"], []).append(e["name"])
    assert OTHER_LOSSES == {k: tuple(v) for k, v in others.items()}
    regressor = [e["name"] for e in LIST if e["estimator"] == "regressor"]
    (options,) = MLPRegressor._parameter_constraints["loss"]
    assert options.options == set(regressor)
    for e in LIST:
        p = e["param"]
        if p is None:
            continue
        Est = MLPRegressor if e["estimator"] == "regressor" else MLPClassifier
        (interval,) = Est._parameter_constraints[p["name"]]
        assert (interval.left, interval.right, interval.closed) == (p["low"], p["high"],
                                                                     p["closed"])
        assert Est().get_params()[p["name"]] == p["default"]
        assert f"{p['name']} : float, default={p['default']!r}" in Est.__doc__
        assert p["name"] in interop._DROPPED_PARAMS          # to_sklearn drops it
    (loss_line,) = [line for line in MLPRegressor.__doc__.splitlines()
                    if line.startswith("    loss : {")]
    for e in LIST:
        if e["estimator"] == "regressor":
            assert f"'{e['name']}'" in loss_line
            assert e["doc"].split()[0] in MLPRegressor.__doc__
            expected = e["name"] if e["sklearn"] == e["name"] else e["sklearn"]
            assert interop._SKLEARN_VALUES.get(("loss", e["name"]), e["name"]) == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_each_code_runs_its_own_loss(name, dtype):
    """Through the compiled dispatch, the code of each name computes that loss and its delta
    (numpy reference here: a new entry fails until it has one)."""
    entry = _loss_list.BY_NAME[name]
    rng = np.random.default_rng(NAMES.index(name))
    n, k = 23, 4
    Y = _targets(entry, rng, n, k).astype(dtype)
    P = OUTPUT[entry["output"]](rng.standard_normal((n, k))).astype(dtype)
    sw = (rng.random(n) + 0.5).astype(dtype)
    D = np.full_like(P, np.nan)
    total = loss_and_delta(name, Y, P, D, sw, 0.25, loss_param=PARAM.get(name))
    rows, grad = _ref(name, Y, P, PARAM.get(name, 0.0))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(float(np.sum(sw.astype(np.float64) * rows)), rel=rtol)
    np.testing.assert_allclose(D, grad * 0.25 * sw[:, None], rtol=rtol, atol=rtol)


def test_loss_parameters_are_checked_against_the_list():
    Y = np.ones((2, 3)) / 3
    for name in NAMES:
        p = _loss_list.BY_NAME[name]["param"]
        if p is None:
            with pytest.raises(ValueError, match="has no parameter"):
                loss_and_delta(name, Y, Y, np.empty_like(Y), loss_param=0.5)
            continue
        bad = p["high"] if p["high"] is not None else p["low"]
        with pytest.raises(ValueError, match=f"{p['name']} must be"):
            loss_and_delta(name, Y, Y, np.empty_like(Y), loss_param=bad)
    with pytest.raises(ValueError, match="label_smoothing must be in \\[0, 1\\)"):
        Network([3, 2, 3], "relu", "softmax", np.float64, loss_param=1.0)
    with pytest.raises(ValueError, match="has no parameter"):
        Network([3, 2, 3], "relu", "identity", np.float64, loss_param=0.5)


# ---- label smoothing: the compiled loss ---------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["log_loss", "binary_log_loss"])
@pytest.mark.parametrize("ls", [0.05, 0.4, 0.9])
def test_label_smoothing_matches_numpy(name, dtype, ls):
    rng = np.random.default_rng(7)
    n, k = 31, 5
    entry = _loss_list.BY_NAME[name]
    Y = _targets(entry, rng, n, k).astype(dtype)
    P = OUTPUT[entry["output"]](3 * rng.standard_normal((n, k))).astype(dtype)
    P[0] = 0.0                                  # clipped inside the logarithm only
    sw = (rng.random(n) + 0.5).astype(dtype)
    D = np.empty_like(P)
    total = loss_and_delta(name, Y, P, D, sw, 0.5, loss_param=ls)
    T = _smoothed(name, Y.astype(np.float64), ls)
    eps = np.finfo(dtype).eps
    Pc = np.clip(P.astype(np.float64), eps, 1 - eps)
    per = (-xlogy(T, Pc).sum(1) if name == "log_loss"
           else -(xlogy(T, Pc) + xlogy(1 - T, 1 - Pc)).sum(1))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(float((sw.astype(np.float64) * per).sum()), rel=rtol)
    np.testing.assert_allclose(D, (P - T) * 0.5 * sw[:, None], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", ["log_loss", "binary_log_loss"])
@pytest.mark.parametrize("ls", [0.1, 0.5])
def test_label_smoothing_delta_is_the_gradient(name, ls):
    """d/dz sum_i sw_i CE(y'_i, f(z_i)) == sw * (f(z) - y'), by central differences."""
    entry = _loss_list.BY_NAME[name]
    f = OUTPUT[entry["output"]]
    rng = np.random.default_rng(8)
    Y = _targets(entry, rng, 6, 4)
    Z = rng.standard_normal(Y.shape)
    sw = rng.random(6) + 0.5
    D = np.empty_like(Z)
    loss_and_delta(name, Y, f(Z), D, sw, 1.0, loss_param=ls)
    h = 1e-6
    fd = np.empty_like(Z)
    for idx in np.ndindex(*Z.shape):
        Zp, Zm = Z.copy(), Z.copy()
        Zp[idx] += h
        Zm[idx] -= h
        fd[idx] = (loss_and_delta(name, Y, f(Zp), np.empty_like(Z), sw, 1.0, loss_param=ls)
                   - loss_and_delta(name, Y, f(Zm), np.empty_like(Z), sw, 1.0, loss_param=ls)
                   ) / (2 * h)
    np.testing.assert_allclose(D, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["log_loss", "binary_log_loss"])
def test_no_smoothing_is_the_plain_cross_entropy_bitwise(name, dtype):
    """label_smoothing = 0: the delta is (P - Y) * f in the dtype, bit for bit (the same
    operations numpy does here), and the loss is the default's."""
    entry = _loss_list.BY_NAME[name]
    rng = np.random.default_rng(9)
    Y = _targets(entry, rng, 40, 3).astype(dtype)
    P = OUTPUT[entry["output"]](rng.standard_normal((40, 3))).astype(dtype)
    sw = (rng.random(40) + 0.5).astype(dtype)
    D0, D = np.empty_like(P), np.empty_like(P)
    scale = 1.0 / 7
    t0 = loss_and_delta(name, Y, P, D0, sw, scale, loss_param=0.0)
    t = loss_and_delta(name, Y, P, D, sw, scale)       # the default: 0
    f = (sw.astype(np.float64) * scale).astype(dtype)
    np.testing.assert_array_equal(D0, (P - Y) * f[:, None])
    np.testing.assert_array_equal(D0, D)
    assert t0 == t


# ---- label smoothing: whole networks and estimators ------------------------------------------------
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_whole_network_gradient_with_label_smoothing(kind, kernel):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((14, 4))
    y = {"multiclass": np.arange(14) % 3, "binary": np.arange(14) % 2,
         "multilabel": (rng.random((14, 3)) > 0.5).astype(int)}[kind]
    est = MLPClassifier(hidden_layer_sizes=(5, 4), activation="tanh", alpha=0.3,
                        random_state=1, label_smoothing=0.25)
    errors = check_gradients(est, X, y, sample_weight=rng.random(14) + 0.5)
    assert np.all(errors <= 1e-6), errors


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_label_smoothing_zero_is_sklearn_bitwise(solver):
    params = dict(hidden_layer_sizes=(7,), solver=solver, max_iter=15, random_state=0)
    ours = _quiet(MLPClassifier(label_smoothing=0.0, **params).fit, X_IRIS, Y_IRIS)
    theirs = _quiet(SkMLPClassifier(**params).fit, X_IRIS, Y_IRIS)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    default = _quiet(MLPClassifier(**params).fit, X_IRIS, Y_IRIS)
    for a, b in zip(ours.coefs_ + ours.intercepts_, default.coefs_ + default.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("y", [Y_IRIS, (Y_IRIS == 1).astype(int)], ids=["softmax", "logistic"])
def test_label_smoothing_changes_the_fit_and_keeps_probabilities(y):
    ls = 0.3
    params = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=400, alpha=1e-5,
                  random_state=0)
    plain = _quiet(MLPClassifier(**params).fit, X_IRIS, y)
    smooth = _quiet(MLPClassifier(label_smoothing=ls, **params).fit, X_IRIS, y)
    assert any(not np.array_equal(a, b) for a, b in zip(plain.coefs_, smooth.coefs_))
    proba = smooth.predict_proba(X_IRIS)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-12)
    # the smoothed optimum of a training row is y' itself: confidences settle at 1 - ls + ls/K
    # (plain cross-entropy drives them to 1 on separable rows)
    K = max(len(np.unique(y)), 2)
    top = proba.max(1)
    assert np.median(top) == pytest.approx(1 - ls + ls / K, abs=0.03)
    assert top.mean() < plain.predict_proba(X_IRIS).max(1).mean() - 0.1
    assert smooth.score(X_IRIS, y) > 0.85      # still a classifier of the data
    # the reported loss is the smoothed cross-entropy of its predictions (+ the L2 term)
    Y = np.eye(3)[y] if K == 3 else y[:, None].astype(float)
    P = proba if K == 3 else proba[:, 1:]
    T = (1 - ls) * Y + ls / K
    eps = np.finfo(np.float64).eps
    Pc = np.clip(P, eps, 1 - eps)
    ce = (-xlogy(T, Pc).sum(1) if K == 3 else -(xlogy(T, Pc) + xlogy(1 - T, 1 - Pc)).sum(1))
    l2 = 0.5 * params["alpha"] * sum((W ** 2).sum() for W in smooth.coefs_) / len(y)
    assert smooth.loss_ == pytest.approx(ce.mean() + l2, rel=1e-9)


def test_validation_loss_is_the_smoothed_training_loss():
    ls = 0.2
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(6,), max_iter=4, random_state=0,
                               label_smoothing=ls).fit,
                 X_IRIS[::2], Y_IRIS[::2], X_val=X_IRIS[1::2], y_val=Y_IRIS[1::2])
    P = clf.predict_proba(X_IRIS[1::2])
    T = (1 - ls) * np.eye(3)[Y_IRIS[1::2]] + ls / 3
    ref = -xlogy(T, np.clip(P, 2.2e-16, 1 - 2.2e-16)).sum(1).mean()
    assert clf.validation_loss_curve_[-1] == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_label_smoothing_out_of_range_raises(value):
    with pytest.raises(InvalidParameterError, match="label_smoothing"):
        MLPClassifier(label_smoothing=value, max_iter=2).fit(X_IRIS, Y_IRIS)


def test_a_model_saved_before_label_smoothing_loads_with_its_default():
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit,
                 X_IRIS, Y_IRIS)
    blob = pickle.dumps(clf)
    old = pickle.loads(blob)
    del old.__dict__["label_smoothing"]            # as pickled before the parameter existed
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.label_smoothing == 0.0
    np.testing.assert_array_equal(loaded.predict_proba(X_IRIS), clf.predict_proba(X_IRIS))
    _quiet(loaded.partial_fit, X_IRIS, Y_IRIS)     # and trains on
