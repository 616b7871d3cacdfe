"""cprop models outside cprop: ``to_sklearn``, safe persistence with skops.io, HTML doc links.

References: scikit-learn's own estimators (``to_sklearn`` must give an estimator that predicts
and continues training as cprop's does, and cprop follows scikit-learn's training path in
float64), and the original model (a loaded model must equal it bitwise and keep training the
same way).
"""
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cprop import MLPClassifier, MLPRegressor

README = Path(__file__).resolve().parents[1] / "README.md"
SKOPS_MISSING = "needs the 'skops' extra: pip install 'cprop[skops]'"


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning from short fits
        return fn(*args, **kw)


def _clf_data(kind="multiclass", dtype=np.float64):
    X, y = make_classification(n_samples=150, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    if kind == "binary":
        y = np.array(["no", "yes"])[(y == 1).astype(int)]
    elif kind == "multilabel":
        y = np.c_[y == 1, y == 2, y != 0].astype(int)
    return X.astype(dtype), y


def _reg_data(n_targets=1, poisson=False, dtype=np.float64):
    X, y = make_regression(n_samples=150, n_features=8, n_targets=n_targets, random_state=0)
    if poisson:
        y = np.abs(y) / 50
    return X.astype(dtype), y


def _assert_same_weights(a, b, tol=0.0):
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        if tol == 0.0:
            np.testing.assert_array_equal(wa, wb)
        else:
            np.testing.assert_allclose(wa, wb, rtol=tol, atol=tol)


# -- to_sklearn --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_to_sklearn_classifier_predicts_the_same(kind, solver):
    X, y = _clf_data(kind)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(7, 5), solver=solver, max_iter=30,
                               n_threads=1, random_state=0).fit, X, y)
    sk = clf.to_sklearn()
    assert type(sk) is SkMLPClassifier
    assert "n_threads" not in sk.get_params()
    assert {k: v for k, v in clf.get_params().items() if k in sk.get_params()} == sk.get_params()
    np.testing.assert_array_equal(sk.predict(X), clf.predict(X))
    np.testing.assert_allclose(sk.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)
    # copies, not views of cprop's parameter vector
    assert not any(np.shares_memory(a, b) for a, b in zip(sk.coefs_, clf.coefs_))


@pytest.mark.parametrize("loss, n_targets", [("squared_error", 1), ("squared_error", 2),
                                             ("poisson", 1)])
def test_to_sklearn_regressor_predicts_the_same(loss, n_targets):
    X, y = _reg_data(n_targets, poisson=loss == "poisson")
    reg = _quiet(MLPRegressor(loss=loss, hidden_layer_sizes=(6,), max_iter=30,
                              random_state=0).fit, X, y)
    sk = reg.to_sklearn()
    assert type(sk) is SkMLPRegressor and sk.loss == loss
    assert sk.out_activation_ == reg.out_activation_
    pred = reg.predict(X)
    np.testing.assert_allclose(sk.predict(X), pred, rtol=1e-12, atol=1e-12 * np.abs(pred).max())


def test_to_sklearn_float32_model():
    X, y = _clf_data(dtype=np.float32)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(7,), max_iter=30, random_state=0).fit, X, y)
    sk = clf.to_sklearn()
    assert sk.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(sk.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("solver, schedule", [("adam", "constant"), ("sgd", "invscaling"),
                                              ("sgd", "constant")])
def test_to_sklearn_continues_training_as_cprop_does(solver, schedule):
    # float64: cprop follows scikit-learn's training path to rounding, so after the conversion
    # the same partial_fit calls must keep both models together (optimizer state carried over).
    X, y = _clf_data()
    classes = np.unique(y)
    clf = MLPClassifier(hidden_layer_sizes=(7,), solver=solver, learning_rate=schedule,
                        learning_rate_init=0.01, random_state=0)
    for _ in range(3):
        clf.partial_fit(X, y, classes=classes)
    sk = clf.to_sklearn()
    for _ in range(3):
        clf.partial_fit(X, y)
        sk.partial_fit(X, y)
    _assert_same_weights(clf, sk, tol=1e-10)
    # without the optimizer state the paths would differ (the comparison can fail)
    fresh = clf.to_sklearn()
    del fresh._optimizer
    fresh.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert max(np.abs(a - b).max() for a, b in zip(fresh.coefs_, clf.coefs_)) > 1e-6


class _WithCpropOnlyOption(MLPClassifier):
    """Stands for a future cprop-only option (one that changes what is computed)."""

    def __init__(self, hidden_layer_sizes=(100,), *, max_iter=200, random_state=None,
                 dropout=0.0):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, max_iter=max_iter,
                         random_state=random_state)
        self.dropout = dropout


def test_to_sklearn_refuses_what_sklearn_cannot_express():
    X, y = _clf_data()
    with pytest.raises(NotFittedError):
        MLPClassifier().to_sklearn()
    est = _quiet(_WithCpropOnlyOption((5,), max_iter=5, random_state=0).fit, X, y)
    est.to_sklearn()  # at its default the option changes nothing: convertible
    est.dropout = 0.2
    with pytest.raises(ValueError, match=r"has no parameter 'dropout'.*dropout=0.2"):
        est.to_sklearn()
    clf = _quiet(MLPClassifier((5,), max_iter=5, random_state=0).fit, X, y)
    clf.activation = "swish"  # an activation scikit-learn does not have
    with pytest.raises(ValueError, match=r"cannot express this model.*activation"):
        clf.to_sklearn()


# -- persistence -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_skops_trusts_only_cprop_estimators_and_loaded_model_keeps_training(solver, dtype):
    sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
    X, y = _clf_data(dtype=dtype)
    classes = np.unique(y)
    clf = MLPClassifier(hidden_layer_sizes=(7,), solver=solver, learning_rate="invscaling",
                        random_state=0)
    for _ in range(2):
        clf.partial_fit(X, y, classes=classes)
    data = sio.dumps(clf)
    assert sio.get_untrusted_types(data=data) == ["cprop._mlp.MLPClassifier"]
    loaded = sio.loads(data, trusted=["cprop._mlp.MLPClassifier"])
    _assert_same_weights(clf, loaded)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    for _ in range(3):
        clf.partial_fit(X, y)
        loaded.partial_fit(X, y)
    _assert_same_weights(clf, loaded)
    assert loaded.loss_curve_ == clf.loss_curve_


def test_skops_pipeline_regressor_lbfgs_and_warm_start():
    sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
    X, y = _reg_data(2)
    pipe = _quiet(make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(6,),
                                                               max_iter=20, random_state=0)).fit,
                  X, y)
    data = sio.dumps(pipe)
    assert sio.get_untrusted_types(data=data) == ["cprop._mlp.MLPRegressor"]
    loaded = sio.loads(data, trusted=["cprop._mlp.MLPRegressor"])
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    lb = _quiet(MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=20,
                             random_state=0).fit, X, y)
    loaded_lb = sio.loads(sio.dumps(lb), trusted=["cprop._mlp.MLPRegressor"])
    np.testing.assert_array_equal(loaded_lb.predict(X), lb.predict(X))
    # a loaded adam model continues with fit(warm_start=True) as the original does
    reg, loaded_reg = pipe[-1], loaded[-1]
    Xs = pipe[0].transform(X)
    for m in (reg, loaded_reg):
        m.set_params(warm_start=True, max_iter=3)
        _quiet(m.fit, Xs, y)
    _assert_same_weights(reg, loaded_reg)


def test_pickle_round_trip_keeps_optimizer_state():
    X, y = _clf_data()
    clf = MLPClassifier(hidden_layer_sizes=(7,), random_state=0)
    clf.partial_fit(X, y, classes=np.unique(y))
    state = clf.__getstate__()
    assert isinstance(state["_optimizer"], dict)
    # arrays and builtins only (None: clipping off; a list of arrays: monitored gradient norms)
    assert all(isinstance(v, (np.ndarray, str, int, float, bool, type(None))) or
               (isinstance(v, list) and all(isinstance(a, np.ndarray) for a in v))
               for v in state["_optimizer"].values())
    loaded = pickle.loads(pickle.dumps(clf))
    assert type(loaded._optimizer).__name__ == "OptimizerState"
    assert type(clf._optimizer).__name__ == "OptimizerState"  # the original is untouched
    clf.partial_fit(X, y)
    loaded.partial_fit(X, y)
    _assert_same_weights(clf, loaded)


# -- HTML repr links to cprop's documentation --------------------------------------------------
def _github_anchor(heading):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_html_repr_links_to_cprop_docs(Est):
    from cprop import _interop

    est = Est()
    url = est._get_doc_link()
    assert url.startswith(_interop.REPOSITORY_URL + "/blob/main/README.md#")
    html = est._repr_html_()
    assert f'href="{url}"' in html
    assert not re.search(r'href="https?://scikit-learn\.org', html)
    # inside a Pipeline too
    assert url in make_pipeline(StandardScaler(), est)._repr_html_()
    if README.exists():  # the anchor names a section that exists
        anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.+)$", README.read_text(), re.M)}
        assert url.rsplit("#", 1)[1] in anchors


def test_docstring_examples():
    import doctest

    from cprop import _interop

    result = doctest.testmod(_interop, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
