"""cprop models outside cprop: ``to_sklearn``, safe persistence with skops.io, HTML doc links.

References: scikit-learn's own estimators (``to_sklearn`` must give an estimator that predicts
and continues training as cprop's does, and cprop follows scikit-learn's training path in
float64), and the original model (a loaded model must equal it bitwise and keep training the
same way).
"""
import pickle
import re
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

README = Path(__file__).resolve().parents[2] / "README.md"
SKOPS_MISSING = "needs the 'skops' extra: pip install 'cprop[skops]'"


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


# -- to_sklearn --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_to_sklearn_classifier_predicts_the_same(kind, solver, quietly):
    X, y = _clf_data(kind)
    clf = quietly(MLPClassifier(hidden_layer_sizes=(7, 5), solver=solver, max_iter=30,
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
def test_to_sklearn_regressor_predicts_the_same(loss, n_targets, quietly):
    X, y = _reg_data(n_targets, poisson=loss == "poisson")
    reg = quietly(MLPRegressor(loss=loss, hidden_layer_sizes=(6,), max_iter=30,
                                random_state=0).fit, X, y)
    sk = reg.to_sklearn()
    assert type(sk) is SkMLPRegressor and sk.loss == loss
    assert sk.out_activation_ == reg.out_activation_
    pred = reg.predict(X)
    np.testing.assert_allclose(sk.predict(X), pred, rtol=1e-12, atol=1e-12 * np.abs(pred).max())


def test_to_sklearn_float32_model(quietly):
    X, y = _clf_data(dtype=np.float32)
    clf = quietly(MLPClassifier(hidden_layer_sizes=(7,), max_iter=30, random_state=0).fit, X, y)
    sk = clf.to_sklearn()
    assert sk.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(sk.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("solver, schedule", [("adam", "constant"), ("sgd", "invscaling"),
                                              ("sgd", "constant")])
def test_to_sklearn_continues_training_as_cprop_does(solver, schedule, assert_same_weights):
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
    assert_same_weights(clf, sk, tol=1e-10)
    # without the optimizer state the paths would differ (the comparison can fail)
    fresh = clf.to_sklearn()
    del fresh._optimizer
    fresh.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert max(np.abs(a - b).max() for a, b in zip(fresh.coefs_, clf.coefs_)) > 1e-6


class _WithCpropOnlyOption(MLPClassifier):
    """Stands for a future cprop-only option, not (yet) known to be training-only."""

    def __init__(self, hidden_layer_sizes=(100,), *, max_iter=200, random_state=None,
                 future_option=0.0):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, max_iter=max_iter,
                         random_state=random_state)
        self.future_option = future_option


def test_to_sklearn_refuses_what_sklearn_cannot_express(quietly):
    X, y = _clf_data()
    with pytest.raises(NotFittedError):
        MLPClassifier().to_sklearn()
    est = quietly(_WithCpropOnlyOption((5,), max_iter=5, random_state=0).fit, X, y)
    est.to_sklearn()  # at its default the option changes nothing: convertible
    est.future_option = 0.2
    with pytest.raises(ValueError, match=r"has no parameter 'future_option'.*future_option=0.2"):
        est.to_sklearn()


@pytest.mark.parametrize("activation, why", [
    ("gelu", r"has no 'gelu' activation .*cprop.onnx"),
    (["relu", "tanh"], r"one activation per hidden layer"),
])
def test_to_sklearn_says_why_it_cannot(activation, why, quietly):
    X, y = _clf_data()
    clf = quietly(MLPClassifier((5, 4), activation=activation, max_iter=5,
                                 random_state=0).fit, X, y)
    with pytest.raises(ValueError, match=why):
        clf.to_sklearn()


# Options scikit-learn lacks but whose fitted network it runs (issue 17): each converts, and the
# converted estimator predicts as cprop's does.
CONVERTIBLE = {
    "class_weight": (MLPClassifier, dict(class_weight="balanced")),
    "init": (MLPClassifier, dict(init="he_normal")),
    "n_init": (MLPClassifier, dict(n_init=2)),
    "callbacks": (MLPClassifier, dict(callbacks=["checkpoint"])),
    "scoring": (MLPClassifier, dict(scoring="accuracy", early_stopping=True)),
    "dropout": (MLPClassifier, dict(dropout=0.3)),
    "clipping": (MLPClassifier, dict(clip_grad_norm=0.5, clip_grad_value=0.1)),
    "monitoring": (MLPClassifier, dict(monitor_gradients=True)),
    "warmup": (MLPClassifier, dict(solver="sgd", learning_rate="cosine", warmup_iter=3)),
    "adamw": (MLPClassifier, dict(solver="adamw", weight_decay=0.05)),
    "sgd cosine": (MLPClassifier, dict(solver="sgd", learning_rate="cosine")),
    "coslog4 and flat_cos schedules": (MLPClassifier, dict(
        solver="adamw", learning_rate="coslog4", weight_decay_schedule="flat_cos", dropout=0.2,
        dropout_schedule="flat_cos")),
    "same activation per layer": (MLPClassifier, dict(activation=["tanh", "tanh"])),
    "n_threads": (MLPClassifier, dict(n_threads=2)),
    "huber": (MLPRegressor, dict(loss="huber", huber_delta=0.5)),
    "absolute_error": (MLPRegressor, dict(loss="absolute_error")),
    "label_smoothing": (MLPClassifier, dict(label_smoothing=0.2)),
}


@pytest.mark.parametrize("case", list(CONVERTIBLE))
def test_to_sklearn_drops_training_only_options(case, quietly):
    from cprop.callbacks import ModelCheckpoint

    Est, params = CONVERTIBLE[case]
    if params.get("callbacks"):
        params = dict(params, callbacks=[ModelCheckpoint(monitor="loss")])
    X, y = _clf_data() if Est is MLPClassifier else _reg_data()
    est = quietly(Est(hidden_layer_sizes=(6, 5), max_iter=15, random_state=0, **params).fit, X, y)
    sk = est.to_sklearn()
    assert type(sk) is (SkMLPClassifier if Est is MLPClassifier else SkMLPRegressor)
    assert set(sk.get_params()) <= set(est.get_params())
    assert not hasattr(sk, "history_")                    # cprop's own attributes stay behind
    if Est is MLPClassifier:
        np.testing.assert_array_equal(sk.predict(X), est.predict(X))
        np.testing.assert_allclose(sk.predict_proba(X), est.predict_proba(X), rtol=0, atol=1e-12)
    else:
        pred = est.predict(X)
        np.testing.assert_allclose(sk.predict(X), pred, rtol=0,
                                   atol=1e-12 * max(1.0, np.abs(pred).max()))
    if not est.early_stopping:             # scikit-learn's partial_fit refuses early stopping
        before = [w.copy() for w in sk.coefs_]
        quietly(sk.partial_fit, X, y)                      # scikit-learn trains it further
        assert any((a != b).any() for a, b in zip(before, sk.coefs_))


# -- persistence -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_skops_trusts_only_cprop_estimators_and_loaded_model_keeps_training(solver, dtype,
                                                                            assert_same_weights):
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
    assert_same_weights(clf, loaded)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    for _ in range(3):
        clf.partial_fit(X, y)
        loaded.partial_fit(X, y)
    assert_same_weights(clf, loaded)
    assert loaded.loss_curve_ == clf.loss_curve_


def test_skops_round_trip_of_a_tabular_model_with_an_input_block():
    """A TabularMLPClassifier (categorical and periodic embeddings, scale layer: parameters
    beyond coefs_) saves and loads with skops; the types skops asks about are cprop's three
    classes and numpy's dtype (the preprocessor's), and the loaded model predicts bit for bit."""
    sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
    pd = pytest.importorskip("pandas", reason="the tabular estimators' DataFrame input")
    from cprop import TabularMLPClassifier
    rng = np.random.RandomState(0)
    n = 300
    X = pd.DataFrame({"a": rng.normal(size=n),
                      "e": pd.Categorical(rng.choice([f"l{i}" for i in range(12)], n)),
                      "c": rng.choice(["x", "y"], n)})
    y = np.where(X["a"] + (X["e"].cat.codes % 2) > 0.5, "p", "q")
    clf = TabularMLPClassifier(max_iter=5, hidden_layer_sizes=(8,), random_state=0,
                               n_threads=1).fit(X, y)
    assert [b["kind"] for b in clf.mlp_._network_options()["input_block"]] == \
        ["embedding", "periodic", "scale"]
    data = sio.dumps(clf)
    untrusted = sio.get_untrusted_types(data=data)
    assert sorted(untrusted) == ["cprop._tabular.TabularMLPClassifier",
                                 "cprop._tabular._TabularInnerClassifier",
                                 "cprop._tabular_prep.TabularPreprocessor", "numpy.dtype"]
    loaded = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    for a, b in zip(loaded.mlp_.input_block_params_, clf.mlp_.input_block_params_):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_skops_pipeline_regressor_lbfgs_and_warm_start(assert_same_weights, quietly):
    sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
    X, y = _reg_data(2)
    pipe = quietly(make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(6,),
                                                                 max_iter=20, random_state=0)).fit,
                    X, y)
    data = sio.dumps(pipe)
    assert sio.get_untrusted_types(data=data) == ["cprop._mlp.MLPRegressor"]
    loaded = sio.loads(data, trusted=["cprop._mlp.MLPRegressor"])
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    lb = quietly(MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=20,
                               random_state=0).fit, X, y)
    loaded_lb = sio.loads(sio.dumps(lb), trusted=["cprop._mlp.MLPRegressor"])
    np.testing.assert_array_equal(loaded_lb.predict(X), lb.predict(X))
    # a loaded adam model continues with fit(warm_start=True) as the original does
    reg, loaded_reg = pipe[-1], loaded[-1]
    Xs = pipe[0].transform(X)
    for m in (reg, loaded_reg):
        m.set_params(warm_start=True, max_iter=3)
        quietly(m.fit, Xs, y)
    assert_same_weights(reg, loaded_reg)


def test_pickle_round_trip_keeps_optimizer_state(assert_same_weights):
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
    assert_same_weights(clf, loaded)


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


# -- loading checks meaning as well as shape (issue 17) ------------------------------------------
SAVED = Path(__file__).resolve().parents[1] / "data" / "saved-3ce44f8"


@pytest.mark.parametrize("name", sorted(p.stem for p in SAVED.glob("*.pkl")))
def test_models_saved_before_the_load_checks_still_load(name, tmp_path, assert_same_weights,
                                                        quietly):
    """Files written by commit 3ce44f8 (tests/data/make_saved_models.py): they load, predict
    what they predicted when saved, and keep training."""
    with open(SAVED / f"{name}.pkl", "rb") as f:
        saved = pickle.load(f)
    model, X = saved["model"], saved["X"]
    got = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
    tol = 1e-6 if model.coefs_[0].dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, saved["expected"], rtol=0, atol=tol)
    skops_file = SAVED / f"{name}.skops"
    if skops_file.exists():
        sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
        untrusted = sio.get_untrusted_types(file=skops_file)
        assert untrusted == [f"cprop._mlp.{type(model).__name__}"]
        loaded = sio.load(skops_file, trusted=untrusted)
        assert_same_weights(loaded, model)
    if model.solver != "lbfgs":
        from cprop.callbacks import HistoryLogger
        for cb in model.callbacks or ():
            if isinstance(cb, HistoryLogger):       # saved pointing at a temporary directory
                cb.path = tmp_path / "history.json"
        y = model.predict(X)
        before = [w.copy() for w in model.coefs_]
        quietly(model.partial_fit, X, y)
        assert any((a != b).any() for a, b in zip(before, model.coefs_))


def _fitted(quietly, kind):
    if kind == "regressor":
        X, y = _reg_data(poisson=True)
        return quietly(MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), max_iter=5,
                                     random_state=0).fit, X, y)
    X, y = _clf_data()
    return quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit, X, y)


def _set(attr, value):
    def tamper(est):
        setattr(est, attr, value)
    return tamper


def _weights(which, index, fn):
    def tamper(est):
        arrays = [a.copy() for a in getattr(est, which)]
        arrays[index] = fn(arrays[index])
        setattr(est, which, arrays)
    return tamper


def _nan(a):
    a[0] = np.nan
    return a


def _optimizer_field(key, fn):
    def tamper(est):
        setattr(est._optimizer, key, fn(getattr(est._optimizer, key)))
    return tamper


TAMPERED = {
    "negative learning rate": ("classifier", _set("learning_rate_init", -0.1),
                               "learning_rate_init"),
    "beta_1=5": ("classifier", _set("beta_1", 5), "beta_1"),
    "unknown activation": ("classifier", _set("activation", "swish"), "activation"),
    "identity output on a classifier": ("classifier", _set("out_activation_", "identity"),
                                        "out_activation_"),
    "identity output on a Poisson regressor": ("regressor", _set("out_activation_", "identity"),
                                               "out_activation_"),
    "wrong n_outputs_": ("classifier", _set("n_outputs_", 4), "n_outputs_|classes_"),
    "wrong n_features_in_": ("classifier", _set("n_features_in_", 9), r"coefs_\[0\]"),
    "wrong n_layers_": ("classifier", _set("n_layers_", 4), "activation|coefs_"),
    "one class missing": ("classifier", _set("classes_", np.array([0, 1])), "classes_"),
    "complex weights": ("classifier", _weights("coefs_", 0, lambda a: a.astype(complex)),
                        r"coefs_\[0\]"),
    "bool weights": ("classifier", _weights("coefs_", 1, lambda a: a > 0), r"coefs_\[1\]"),
    "NaN weight": ("classifier", _weights("intercepts_", 1, _nan), r"intercepts_\[1\]"),
    "float32 bias in a float64 model": ("regressor",
                                        _weights("intercepts_", 0,
                                                 lambda a: a.astype(np.float32)),
                                        r"intercepts_\[0\]"),
    "bias of the wrong size": ("regressor", _weights("intercepts_", 0, lambda a: a[:-1]),
                               r"intercepts_\[0\]"),
    "optimizer moments of the wrong size": ("classifier",
                                            _optimizer_field("s1", lambda a: a[:-1]),
                                            "_optimizer.s1"),
    "NaN in the optimizer state": ("classifier", _optimizer_field("s2", _nan), "_optimizer.s2"),
    "negative optimizer learning rate": ("classifier",
                                         _optimizer_field("learning_rate", lambda v: -v),
                                         "_optimizer.learning_rate"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
@pytest.mark.parametrize("fmt", ["pickle", "skops"])
def test_a_tampered_model_does_not_load(case, fmt, quietly):
    kind, tamper, attr = TAMPERED[case]
    est = _fitted(quietly, kind)
    tamper(est)
    if fmt == "pickle":
        data = pickle.dumps(est)
        load = pickle.loads
    else:
        sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
        data = sio.dumps(est)
        untrusted = sio.get_untrusted_types(data=data)

        def load(data):
            return sio.loads(data, trusted=untrusted)
    with pytest.raises(ValueError, match=rf"Cannot load this {type(est).__name__}.*({attr})"):
        load(data)


def test_an_unfitted_model_loads_unchecked():
    """fit validates an unfitted model (scikit-learn's rule), so loading does not: a grid of
    parameters sent to workers by pickle still reports its bad values from fit."""
    est = MLPClassifier(learning_rate_init=-1.0)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.learning_rate_init == -1.0
    with pytest.raises(ValueError, match="learning_rate_init"):
        loaded.fit(*_clf_data())


# -- skops with callbacks --------------------------------------------------------------------------
class _MyCallback:
    """A user's own callback class."""

    def __call__(self, estimator, record):
        return False


def test_skops_with_the_shipped_callbacks_trusts_only_the_estimator(tmp_path, quietly):
    sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
    from cprop.callbacks import HistoryLogger, ModelCheckpoint

    X, y = _clf_data()
    ckpt = ModelCheckpoint(monitor="loss", path=tmp_path / "best.pkl")
    log = HistoryLogger(tmp_path / "h.json")
    clf = quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, random_state=0,
                                 callbacks=[ckpt, log]).fit, X, y)
    data = sio.dumps(clf)
    assert sio.get_untrusted_types(data=data) == ["cprop._mlp.MLPClassifier"]
    loaded = sio.loads(data, trusted=["cprop._mlp.MLPClassifier"])
    back_ckpt, back_log = loaded.callbacks
    assert type(back_ckpt) is ModelCheckpoint and type(back_log) is HistoryLogger
    assert back_ckpt.best_epoch_ == ckpt.best_epoch_ and back_ckpt.best_record_ == ckpt.best_record_
    for a, b in zip(back_ckpt.best_coefs_, ckpt.best_coefs_):
        np.testing.assert_array_equal(a, b)
    assert back_ckpt.path == str(ckpt.path) and back_log.path == str(log.path)
    assert loaded.history_ == clf.history_
    # the loaded callbacks work: a new fit writes the log and the checkpoint again
    (tmp_path / "h.json").unlink()
    (tmp_path / "best.pkl").unlink()
    quietly(loaded.fit, X, y)
    assert (tmp_path / "h.json").exists() and (tmp_path / "best.pkl").exists()
    # pickle keeps them as well
    again = pickle.loads(pickle.dumps(clf))
    assert [type(c) for c in again.callbacks] == [ModelCheckpoint, HistoryLogger]
    assert clf.callbacks[0] is ckpt                       # saving leaves the original alone


def test_skops_lists_a_users_own_callback_class(quietly):
    """A user's class is code that loading would create: skops must ask about it."""
    sio = pytest.importorskip("skops.io", reason=SKOPS_MISSING)
    X, y = _clf_data()
    clf = quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                                 callbacks=[_MyCallback()]).fit, X, y)
    untrusted = sio.get_untrusted_types(data=sio.dumps(clf))
    assert sorted(untrusted) == ["cprop._mlp.MLPClassifier", f"{__name__}._MyCallback"]
