"""The serving path of predict / predict_proba / predict_log_proba (issue 19, part 3).

A plain C-contiguous 2-D array of the model's dtype and width skips scikit-learn's validation
(``BaseMLP._serve``); everything else goes through it.  These tests check that the two paths give
bitwise-equal results, that every input the fast path must not take raises exactly what
scikit-learn's own MLP raises (type and message), that the fast path really is taken (no call to
``validate_data``), and that threads do not change a prediction.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit, softmax
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

import cprop._mlp as mlp_module
import cprop._train as train_module
from cprop import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings(
    "ignore:the matrix subclass:PendingDeprecationWarning")   # np.asmatrix, an input tested

N_FEATURES = 20
PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba")


def _fit(Estimator, X, y, **kw):
    params = dict(hidden_layer_sizes=(64, 64), max_iter=3, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Estimator(**params).fit(X, y)


def _classification(n_classes=3, dtype=np.float64, n=300):
    X, y = make_classification(n_samples=n, n_features=N_FEATURES, n_informative=8,
                               n_classes=n_classes, random_state=0)
    return X.astype(dtype), y


def _models():
    """(name, estimator, X) for every kind of output the serving path maps."""
    out = []
    for dtype in (np.float64, np.float32):
        X, y = _classification(3, dtype)
        out.append((f"multiclass-{np.dtype(dtype).name}", _fit(MLPClassifier, X, y), X))
        Xb, yb = _classification(2, dtype)
        # string labels: the class indices are mapped through classes_
        out.append((f"binary-{np.dtype(dtype).name}",
                    _fit(MLPClassifier, Xb, np.array(["no", "yes"])[yb]), Xb))
        Xr, yr = make_regression(n_samples=300, n_features=N_FEATURES, n_targets=2,
                                 random_state=0)
        Xr = Xr.astype(dtype)
        out.append((f"regressor2-{np.dtype(dtype).name}", _fit(MLPRegressor, Xr, yr), Xr))
        out.append((f"regressor1-{np.dtype(dtype).name}",
                    _fit(MLPRegressor, Xr, yr[:, 0]), Xr))
    Xm, Ym = make_multilabel_classification(n_samples=300, n_features=N_FEATURES, n_classes=4,
                                            random_state=0)
    out.append(("multilabel", _fit(MLPClassifier, Xm, Ym), Xm))
    return out


MODELS = _models()


@pytest.fixture
def count_validation(monkeypatch):
    """Counts the estimators' calls of scikit-learn's validate_data."""
    calls = []
    original = mlp_module.validate_data

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(mlp_module, "validate_data", counted)
    return calls


def _methods(est):
    return [m for m in PREDICT_METHODS if hasattr(est, m)]


def _slow(est, method, X):
    """The validated path's answer for X: the same values as a view with a column stride of
    two elements (not contiguous, so not served, whatever the number of rows)."""
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    view = wide[:, ::2]
    assert not view.flags.c_contiguous
    return getattr(est, method)(view)


def _numpy_forward(est, X):
    """The network's output computed by numpy in float64 from the public attributes (an
    independent reference; the models here use relu hidden units)."""
    assert est.activation == "relu"
    out = {"identity": lambda z: z, "logistic": expit, "softmax": lambda z: softmax(z, axis=1)}
    a = np.asarray(X, dtype=np.float64)
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        z = a @ np.asarray(W, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        a = out[est.out_activation_](z) if i == len(est.coefs_) - 1 else np.maximum(z, 0)
    return a


@pytest.mark.parametrize("n_rows", [1, 2, 7, 64, 700, 5000])
@pytest.mark.parametrize("name, est, X", MODELS, ids=[m[0] for m in MODELS])
def test_fast_path_equals_validated_path_bitwise(name, est, X, n_rows, count_validation):
    Xn = np.ascontiguousarray(np.resize(X, (n_rows, X.shape[1])))
    for method in _methods(est):
        del count_validation[:]
        fast = getattr(est, method)(Xn)
        assert not count_validation, f"{method} on a plain array went through validate_data"
        slow = _slow(est, method, Xn)
        assert count_validation, "the strided copy should have been validated"
        assert fast.dtype == slow.dtype and fast.shape == slow.shape
        assert_array_equal(fast, slow, strict=True)
        if fast.dtype.kind == "f":
            assert fast.tobytes() == slow.tobytes()        # bitwise, signed zeros included


@pytest.mark.parametrize("name, est, X", MODELS, ids=[m[0] for m in MODELS])
def test_fast_path_matches_numpy_forward(name, est, X):
    ref = _numpy_forward(est, X)
    rtol = 1e-4 if X.dtype == np.float32 else 1e-10
    if isinstance(est, MLPRegressor):
        assert_allclose(est.predict(X), ref.reshape(est.predict(X).shape), rtol=rtol,
                        atol=rtol * np.abs(ref).max())
        return
    proba = est.predict_proba(X)
    if est.n_outputs_ == 1:
        ref = np.hstack([1 - ref, ref])
    assert_allclose(proba, ref, rtol=rtol, atol=rtol)
    # labels: where the reference is not too close to call, the fast path picks its class
    pred = est.predict(X)
    if est._label_binarizer.y_type_ == "multiclass":
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-3
        assert_array_equal(pred[clear], est.classes_[ref.argmax(axis=1)][clear])
    elif est._label_binarizer.y_type_ == "binary":
        clear = np.abs(ref[:, 1] - 0.5) > 1e-3
        assert_array_equal(pred[clear], est.classes_[(ref[:, 1] > 0.5).astype(int)][clear])
    else:
        clear = np.all(np.abs(ref - 0.5) > 1e-3, axis=1)
        assert_array_equal(pred[clear], (ref > 0.5).astype(int)[clear])


def test_fast_path_matches_scikit_learn():
    X, y = _classification(3)
    est = _fit(MLPClassifier, X, y)
    sk = est.to_sklearn()
    assert_allclose(est.predict_proba(X), sk.predict_proba(X), rtol=1e-12, atol=1e-15)
    assert_array_equal(est.predict(X), sk.predict(X))


def test_argmax_ties_and_threshold_follow_numpy():
    """The compiled label choice is numpy's argmax (first maximum) and the binarizer's
    threshold (> 0.5, so exactly 0.5 is the negative class)."""
    X, y = _classification(3)
    est = _fit(MLPClassifier, X, y)
    # a network whose outputs are exactly tied: zero weights and biases in the last layer
    est.coefs_[-1][...] = 0
    est.intercepts_[-1][...] = 0
    x = X[:5].copy()
    assert_array_equal(est.predict_proba(x), np.full((5, 3), 1 / 3))
    assert_array_equal(est.predict(x), np.repeat(est.classes_[0], 5))
    est.intercepts_[-1][...] = [0.0, 1.0, 1.0]
    assert_array_equal(est.predict(x), np.repeat(est.classes_[1], 5))

    Xb, yb = _classification(2)
    binary = _fit(MLPClassifier, Xb, yb)
    binary.coefs_[-1][...] = 0
    binary.intercepts_[-1][...] = 0      # logistic(0) == 0.5 exactly: not > 0.5
    assert_array_equal(binary.predict_proba(Xb[:3]), np.full((3, 2), 0.5))
    assert_array_equal(binary.predict(Xb[:3]), [0, 0, 0])
    binary.intercepts_[-1][...] = 1e-12
    assert_array_equal(binary.predict(Xb[:3]), [1, 1, 1])


def test_weights_changed_in_place_or_assigned_are_used():
    X, y = _classification(3)
    est = _fit(MLPClassifier, X, y)
    x = X[:4].copy()
    before = est.predict_proba(x)
    est.coefs_[0][...] *= 2                     # in place: the flat vector itself
    doubled = est.predict_proba(x)
    assert not np.array_equal(before, doubled)
    assert_array_equal(doubled, _slow(est, "predict_proba", x))
    est.coefs_ = [c / 2 for c in est.coefs_[:1]] + est.coefs_[1:]     # assigned arrays
    assert_array_equal(est.predict_proba(x), before)
    est.coefs_[0][...] = 0                      # a user's own array, changed in place
    assert_array_equal(est.predict_proba(x), _slow(est, "predict_proba", x))
    assert not np.array_equal(est.predict_proba(x), before)


def test_settings_changed_after_fit_are_used():
    X, y = _classification(3)
    est = _fit(MLPClassifier, X, y)
    x = X[:4].copy()
    relu = est.predict_proba(x)
    est.set_params(activation="tanh")
    tanh = est.predict_proba(x)
    assert not np.array_equal(relu, tanh)
    assert_array_equal(tanh, _slow(est, "predict_proba", x))
    est.set_params(n_threads=0)                 # invalid: the validated path's error
    with pytest.raises(ValueError, match="n_threads"):
        est.predict(x)
    est.set_params(activation="relu", n_threads=None)
    assert_array_equal(est.predict_proba(x), relu)


# ---- errors: exactly scikit-learn's ------------------------------------------------------------
def _pair_classifiers(dtype=np.float64):
    X, y = _classification(3, dtype)
    return _fit(MLPClassifier, X, y), _fit(SkMLPClassifier, X, y), X


def _pair_regressors():
    X, y = make_regression(n_samples=200, n_features=N_FEATURES, random_state=0)
    return _fit(MLPRegressor, X, y), _fit(SkMLPRegressor, X, y), X


def _outcome(fn):
    """("raised", type, message) or ("returned", value) of fn(), with the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("returned", fn())
        except Exception as exc:    # noqa: BLE001 -- the type is what is compared
            result = ("raised", type(exc), str(exc))
    return result, [(w.category, str(w.message)) for w in caught
                    if not issubclass(w.category, ConvergenceWarning)]


def _bad_inputs(X):
    """(id, input) pairs that the serving path must hand to scikit-learn's validation."""
    x = X[:3].copy()
    nan = x.copy()
    nan[1, 4] = np.nan
    inf = x.copy()
    inf[2, 0] = np.inf
    ninf = x.copy()
    ninf[0, 19] = -np.inf
    late_nan = np.ascontiguousarray(np.resize(X, (5000, X.shape[1])))
    late_nan[4321, 7] = np.nan             # in a later pass than the first
    complex_ = x.astype(np.complex128)
    strings = x.astype(str).astype(object)
    strings[0, 0] = "a"
    return [
        ("nan", nan), ("inf", inf), ("-inf", ninf), ("nan-in-a-later-pass", late_nan),
        ("nan-float32", nan.astype(np.float32)), ("inf-float32", inf.astype(np.float32)),
        ("too-narrow", x[:, :-1].copy()), ("too-wide", np.hstack([x, x[:, :1]])),
        ("one-row-1d", x[0].copy()), ("3d", x[None]), ("0d", np.float64(1.0)),
        ("no-rows", x[:0].copy()), ("no-columns", np.empty((3, 0))),
        ("complex", complex_), ("object-strings", strings),
        ("sparse-nan", sp.csr_matrix(nan)), ("sparse-too-narrow", sp.csr_matrix(x[:, :-1])),
        ("list-nan", nan.tolist()), ("np-matrix", np.asmatrix(x)),
    ]


def _bad_ids():
    return [name for name, _ in _bad_inputs(np.zeros((10, N_FEATURES)))]


@pytest.mark.parametrize("which", _bad_ids())
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_bad_input_raises_exactly_scikit_learns_error(kind, which):
    ours, theirs, X = _pair_classifiers() if kind == "classifier" else _pair_regressors()
    bad = dict(_bad_inputs(X))[which]
    for method in _methods(theirs):
        (r_ours, w_ours) = _outcome(lambda: getattr(ours, method)(bad))
        (r_theirs, w_theirs) = _outcome(lambda: getattr(theirs, method)(bad))
        assert r_theirs[0] == "raised", f"scikit-learn accepted {which}"
        assert r_ours == r_theirs, method
        assert w_ours == w_theirs


def _convertible_inputs(X):
    """Inputs scikit-learn converts (not errors): the results must be those of the same values
    as a plain float array."""
    x = X[:6]
    return [
        ("int", np.round(x * 10).astype(np.int64)), ("bool", x > 0),
        ("object-numbers", x.astype(object)), ("list", x.tolist()),
        ("fortran", np.asfortranarray(x)), ("strided", X[:12:2]),
        ("float32-into-float64-model", x.astype(np.float32)), ("float16", x.astype(np.float16)),
        ("big-endian", x.astype(">f8")), ("csr", sp.csr_matrix(x)), ("csc", sp.csc_matrix(x)),
        ("coo", sp.coo_matrix(x)),
        ("readonly", np.require(x, requirements="C").copy()),
    ]


@pytest.mark.parametrize("which", [n for n, _ in _convertible_inputs(np.zeros((12, 20)))])
def test_inputs_scikit_learn_converts_give_the_values_results(which, count_validation):
    ours, theirs, X = _pair_classifiers()
    given = dict(_convertible_inputs(X))[which]
    if which == "readonly":
        given.flags.writeable = False
    values = np.asarray(given.toarray() if sp.issparse(given) else given, dtype=np.float64)
    del count_validation[:]                  # (the fits above validated their data)
    for method in PREDICT_METHODS:
        (r_ours, w_ours) = _outcome(lambda: getattr(ours, method)(given))
        (r_theirs, w_theirs) = _outcome(lambda: getattr(theirs, method)(given))
        assert r_ours[0] == r_theirs[0] == "returned"
        assert w_ours == w_theirs
        expected = getattr(ours, method)(np.ascontiguousarray(values))
        if which == "float32-into-float64-model":     # computed in float64 either way
            expected = getattr(ours, method)(values.astype(np.float32).astype(np.float64))
        if sp.issparse(given):       # the sparse first layer sums in another order
            assert_allclose(r_ours[1], expected, rtol=1e-12)
        else:
            assert_array_equal(r_ours[1], expected)
    if which == "readonly":
        assert not count_validation          # a read-only plain array is served


def test_feature_names_follow_scikit_learn():
    pd = pytest.importorskip("pandas")
    X, y = _classification(3)
    cols = [f"f{i}" for i in range(N_FEATURES)]
    df = pd.DataFrame(X, columns=cols)
    ours, theirs = _fit(MLPClassifier, df, y), _fit(SkMLPClassifier, df, y)
    renamed = df.rename(columns={"f3": "g3"})
    cases = [("renamed", renamed), ("ndarray", X[:3].copy()), ("same-names", df.iloc[:3]),
             ("reordered", df[cols[::-1]])]
    for name, given in cases:
        for method in PREDICT_METHODS:
            (r_ours, w_ours) = _outcome(lambda: getattr(ours, method)(given))
            (r_theirs, w_theirs) = _outcome(lambda: getattr(theirs, method)(given))
            assert r_ours[0] == r_theirs[0], (name, method)
            if r_ours[0] == "raised":
                assert r_ours == r_theirs, (name, method)
            assert w_ours == w_theirs, (name, method)
    # a model fitted without names, given a DataFrame: scikit-learn's warning
    plain, sk_plain = _fit(MLPClassifier, X, y), _fit(SkMLPClassifier, X, y)
    (r, w) = _outcome(lambda: plain.predict(df.iloc[:3]))
    (r_sk, w_sk) = _outcome(lambda: sk_plain.predict(df.iloc[:3]))
    assert r[0] == r_sk[0] == "returned" and w == w_sk and len(w) == 1


@pytest.mark.parametrize("Estimator, SkEstimator", [(MLPClassifier, SkMLPClassifier),
                                                    (MLPRegressor, SkMLPRegressor)])
def test_not_fitted_raises_scikit_learns_error(Estimator, SkEstimator):
    X = np.zeros((2, N_FEATURES))
    for method in _methods(SkEstimator()):
        r_ours, _ = _outcome(lambda: getattr(Estimator(), method)(X))
        r_theirs, _ = _outcome(lambda: getattr(SkEstimator(), method)(X))
        assert r_ours[0] == "raised" and r_ours == r_theirs


def _state(est):
    out = {}
    for k, v in vars(est).items():
        if k == "_nets":                 # the engine caches (networks, the serving cache)
            continue
        if isinstance(v, np.ndarray):
            out[k] = (v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            out[k] = [(a.dtype.str, a.shape, a.tobytes()) for a in v]
        else:
            out[k] = repr(v)
    return out


@pytest.mark.parametrize("name, est, X", MODELS[:2], ids=[m[0] for m in MODELS[:2]])
def test_predictions_leave_the_model_unchanged(name, est, X):
    before = _state(est)
    for method in _methods(est):
        getattr(est, method)(X[:1].copy())
        getattr(est, method)(X)
        for _, bad in _bad_inputs(X):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    getattr(est, method)(bad)
                except (ValueError, TypeError):
                    pass
    assert _state(est) == before


def test_float32_model_serves_float32_and_validates_float64():
    X, y = _classification(3, np.float32)
    est = _fit(MLPClassifier, X, y)
    assert est.coefs_[0].dtype == np.float32
    proba32 = est.predict_proba(X)
    assert proba32.dtype == np.float32
    assert est._serve(X) is not None
    X64 = X.astype(np.float64)
    assert est._serve(X64) is None                 # promoted to float64 by the validated path
    proba64 = est.predict_proba(X64)
    assert proba64.dtype == np.float64
    assert_allclose(proba32, proba64, rtol=1e-4, atol=1e-6)


def test_threads_do_not_change_predictions(monkeypatch):
    """Large batches run the passes on two threads (the engine's thread grant is recorded) and
    give bitwise the one-thread results."""
    X, y = _classification(3, n=600)
    big = np.ascontiguousarray(np.resize(X, (6000, N_FEATURES)))
    a = _fit(MLPClassifier, X, y, hidden_layer_sizes=(256, 256), n_threads=1)
    b = _fit(MLPClassifier, X, y, hidden_layer_sizes=(256, 256), n_threads=2)
    assert_array_equal(a.coefs_[0], b.coefs_[0])
    granted = []
    original = train_module.engine_threads

    def spy(n):
        granted.append(original(n))
        return granted[-1]

    monkeypatch.setattr(train_module, "engine_threads", spy)
    for method in PREDICT_METHODS:
        del granted[:]
        one = getattr(a, method)(big)
        assert granted and max(granted) == 1
        del granted[:]
        two = getattr(b, method)(big)
        assert max(granted) == 2, "the two-thread model's passes did not get two threads"
        assert one.tobytes() == two.tobytes()
    # more rows than the serial bound: the pass is large enough for threads
    assert big.shape[0] > b._nets["serving"].serial_rows


def test_small_batches_skip_the_thread_count(monkeypatch):
    """A batch too small for threads does not ask the thread policy (a syscall and a few
    microseconds) and still gives the validated path's result."""
    X, y = _classification(3)
    est = _fit(MLPClassifier, X, y, n_threads=2)
    est.predict(X[:1].copy())
    asked = []
    original = mlp_module.effective_n_threads
    monkeypatch.setattr(mlp_module, "effective_n_threads",
                        lambda n=None: asked.append(n) or original(n))
    fast = est.predict_proba(X[:5].copy())
    assert asked == []
    assert_array_equal(fast, _slow(est, "predict_proba", X[:5]))


def test_serve_reports_the_pass_with_a_non_finite_value():
    X, y = _classification(3)
    est = _fit(MLPClassifier, X, y)
    net = est._network(est._layer_units(), np.float64)
    big = np.ascontiguousarray(np.resize(X, (2000, N_FEATURES)))
    out = np.empty((2000, 3))
    assert net.serve(est._params, big, out) == -1
    big[1500, 3] = np.nan
    first = net.serve(est._params, big, out)
    assert 0 <= first <= 1500 and first % 512 == 0      # the start of the pass holding row 1500
    assert net.serve(est._params, big, out, check_finite=False) == -1
    assert np.isnan(out[1500]).all() and not np.isnan(out[:1500]).any()
