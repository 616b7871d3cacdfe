"""The tabular estimators with the engine's input block and parameter groups (issue 18):
``numeric_embedding='periodic'``, ``scale_layer``, ``parametrization='ntk'``.

References: a numpy forward of the preprocessed table through the exposed block and dense
parameters; the block parameters recorded by a callback at the best validation epoch (early
stopping's restore); pickle round trips compared bit for bit; the one-thread fit at two threads
with the block's threaded loops seen running; scikit-learn's estimator checks.
"""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils.estimator_checks import parametrize_with_checks

from cprop import TabularMLPClassifier, TabularMLPRegressor
from cprop._backprop import _block_teams
from cprop._tabular import _TabularInnerClassifier

pd = pytest.importorskip("pandas", reason="the tabular tests build DataFrames with pandas")

SMALL = dict(hidden_layer_sizes=(16, 8), max_iter=15, batch_size=32, n_threads=1)
NONE = dict(numeric_embedding="none", scale_layer=False, parametrization="standard")
OPTIONS = {
    "none": NONE,
    "periodic": dict(NONE, numeric_embedding="periodic"),
    "scale": dict(NONE, scale_layer=True),
    "ntk": dict(NONE, parametrization="ntk", learning_rate_init=0.02),
    "all": dict(numeric_embedding="periodic", scale_layer=True, parametrization="ntk",
                learning_rate_init=0.02),
}
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _table(n=240, seed=0):
    """Two numeric columns (one with NaN), a 3-level and a 2-level categorical."""
    rng = np.random.RandomState(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(-2, 2, size=n),
                      "c": pd.Categorical(rng.choice(["x", "y", "z"], n)),
                      "d": rng.choice(["u", "v"], n)})
    X.loc[::9, "a"] = np.nan
    signal = np.sin(3 * X["a"].fillna(0)) + (X["c"] == "x") - 0.5 * X["b"]
    return X, signal.to_numpy()


def _clf_data(n=240, seed=0):
    X, s = _table(n, seed)
    return X, np.where(s > 0.2, "yes", "no")


def _numpy_forward(est, X):
    """Output activations of ``est.mlp_`` from its exposed parameters, in float64."""
    mlp = est.mlp_
    H = np.asarray(est.preprocessor_.transform(X), dtype=np.float64)
    block = mlp._network_options().get("input_block", [])
    for spec, params in zip(block, getattr(mlp, "input_block_params_", [])):
        if spec["kind"] == "scale":
            H = H * params["scale"]
            continue
        if spec["kind"] == "embedding":     # code column j -> row code of its own table
            first = np.cumsum([0] + [k + 1 for k in spec["cardinalities"]])
            where = {j: e for e, j in enumerate(spec["features"])}
            cols = []
            for j in range(H.shape[1]):
                if j in where:
                    codes = H[:, j].astype(np.intp)
                    cols.append(params["table"][first[where[j]] + codes])
                else:
                    cols.append(H[:, j:j + 1])
            H = np.hstack(cols)
            continue
        where = {j: e for e, j in enumerate(spec["features"])}
        cols = []
        for j in range(H.shape[1]):
            x = H[:, j:j + 1]
            if j in where:
                e = where[j]
                h = np.cos(2 * np.pi * x * params["w1"][e] + params["b1"][e])
                cols.append(h @ params["W2"][e] + params["b2"][e])
            cols.append(x)
        H = np.hstack(cols)
    for i, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        H = H @ W + b
        if i < len(mlp.coefs_) - 1:
            if mlp.activation == "selu":
                H = SELU_SCALE * np.where(H > 0, H, SELU_ALPHA * np.expm1(np.minimum(H, 0)))
            else:   # mish
                H = H * np.tanh(np.logaddexp(0, H))
    if mlp.out_activation_ == "logistic":
        H = 1 / (1 + np.exp(-H))
    elif mlp.out_activation_ == "softmax":
        H = np.exp(H - H.max(axis=1, keepdims=True))
        H /= H.sum(axis=1, keepdims=True)
    return H


# ---- each option fits, predicts, and its network is the numpy forward --------------------------
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_classifier_option_matches_numpy_forward(option):
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, dtype="float64", **SMALL, **OPTIONS[option])
    clf.fit(X, y)
    P = clf.predict_proba(X)
    p1 = _numpy_forward(clf, X)[:, 0]
    assert_allclose(P, np.column_stack([1 - p1, p1]), rtol=1e-10, atol=1e-12)
    assert_array_equal(clf.predict(X), clf.classes_[(p1 > 0.5).astype(int)])


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_regressor_option_matches_numpy_forward(option):
    X, s = _table()
    reg = TabularMLPRegressor(random_state=0, dtype="float64", **SMALL, **OPTIONS[option])
    reg.fit(X, 3.0 * s + 10.0)
    out = _numpy_forward(reg, X)[:, 0] * reg.y_scale_[0] + reg.y_mean_[0]
    assert_allclose(reg.predict(X), np.clip(out, reg.y_min_[0], reg.y_max_[0]),
                    rtol=1e-10, atol=1e-10)


def test_block_layout_follows_the_numeric_columns():
    """The periodic layer embeds exactly the preprocessor's numeric value columns (not the
    missing indicator or one-hot columns), 16 frequencies and 3 outputs each; the scale layer
    has one entry per column of the embedded width."""
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, numeric_embedding="periodic", scale_layer=True,
                               **SMALL).fit(X, y)
    prep = clf.preprocessor_
    names = list(prep.get_feature_names_out())
    assert [names[j] for j in prep.numeric_columns_] == ["a", "b"]
    periodic, scale = clf.mlp_.input_block_params_
    assert periodic["w1"].shape == (2, 16) and periodic["W2"].shape == (2, 16, 3)
    width = len(names) + 3 * 2
    assert scale["scale"].shape == (width,)
    assert clf.mlp_.coefs_[0].shape == (width, 16)


def test_block_parameters_train_and_without_options_there_is_no_block():
    X, y = _clf_data()
    plain = TabularMLPClassifier(random_state=0, activation="tanh", **SMALL, **NONE).fit(X, y)
    assert not hasattr(plain.mlp_, "input_block_params_")
    clf = TabularMLPClassifier(random_state=0, **SMALL, **OPTIONS["scale"]).fit(X, y)
    s = clf.mlp_.input_block_params_[0]["scale"]
    assert not np.all(s == 1.0)                     # initialised to 1, trained away from it
    assert s.base is clf.mlp_._params or s.base is clf.mlp_._params.base


def test_defaults_are_the_measured_recipe():
    """The defaults chosen on benchmarks/tabular.py: periodic embedding and scale layer, standard
    parametrisation; the inner network gets RealMLP's learning-rate factors."""
    for Est in (TabularMLPClassifier, TabularMLPRegressor):
        p = Est().get_params()
        assert (p["numeric_embedding"], p["scale_layer"], p["parametrization"]) == (
            "periodic", True, "standard")
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, **SMALL).fit(X, y)
    net = clf.mlp_._fitted_network()
    lr = {kind: f for kind, _, f, _ in net.segments()}
    assert lr == {"scale": 6.0, "periodic_first": 0.1, "periodic_second": 0.1,
                  "weights": 1.0, "biases": 1.0}


def test_invalid_options_are_rejected():
    X, y = _clf_data()
    for bad in (dict(numeric_embedding="pbld"), dict(parametrization="mup"),
                dict(scale_layer="yes")):
        with pytest.raises(ValueError, match=list(bad)[0]):
            TabularMLPClassifier(**bad).fit(X, y)


# ---- the block parameters survive ----------------------------------------------------------------
@pytest.mark.parametrize("Est", [TabularMLPClassifier, TabularMLPRegressor])
def test_pickle_round_trip_keeps_the_block(Est):
    X, s = _table()
    y = np.where(s > 0.2, 1, 0) if Est is TabularMLPClassifier else s
    est = Est(random_state=0, **SMALL, **OPTIONS["all"]).fit(X, y)
    before = est.predict_proba(X) if Est is TabularMLPClassifier else est.predict(X)
    loaded = pickle.loads(pickle.dumps(est))
    after = loaded.predict_proba(X) if Est is TabularMLPClassifier else loaded.predict(X)
    assert_array_equal(after, before)
    for a, b in zip(loaded.mlp_.input_block_params_, est.mlp_.input_block_params_):
        for k in a:
            assert_array_equal(a[k], b[k])


def test_loading_a_corrupted_block_is_refused():
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, **SMALL, **OPTIONS["scale"]).fit(X, y)
    state = clf.mlp_.__getstate__()
    state["input_block_params_"] = [{"scale": np.ones(3, dtype=np.float32)}]
    fresh = _TabularInnerClassifier.__new__(_TabularInnerClassifier)
    with pytest.raises(ValueError, match=r"input_block_params_\[0\]\['scale'\]"):
        fresh.__setstate__(state)


class _Recorder:
    """Copies of the block parameters and the validation score after every epoch."""

    def __init__(self):
        self.snaps = []

    def __call__(self, estimator, record):
        self.snaps.append((record.validation_score,
                           [{k: v.copy() for k, v in layer.items()}
                            for layer in estimator.input_block_params_],
                           [W.copy() for W in estimator.coefs_]))
        return False


def test_early_stopping_restores_the_best_epochs_block():
    """After early stopping, the block parameters (and weights) are those seen at the first
    epoch with the best validation score, not the last epoch's."""
    X, y = _clf_data(400)
    rec = _Recorder()
    clf = TabularMLPClassifier(random_state=0, numeric_embedding="periodic", scale_layer=True,
                               hidden_layer_sizes=(16,), batch_size=32, max_iter=60,
                               n_iter_no_change=4, learning_rate_init=0.02, n_threads=1,
                               callbacks=[rec]).fit(X, y)
    scores = [s for s, _, _ in rec.snaps]
    best = int(np.argmax(scores))
    assert best < len(scores) - 1, "the fit should have gone past its best epoch"
    _, blocks, coefs = rec.snaps[best]
    last = rec.snaps[-1][1]
    assert any(not np.array_equal(a[k], b[k]) for a, b in zip(blocks, last) for k in a)
    for a, b in zip(clf.mlp_.input_block_params_, blocks):
        for k in a:
            assert_array_equal(a[k], b[k])
    for a, b in zip(clf.mlp_.coefs_, coefs):
        assert_array_equal(a, b)


def test_n_init_restarts_keep_the_block():
    """The inner model's n_init restarts (clones) carry the block: the winner predicts as the
    numpy forward of its exposed parameters."""
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, **SMALL, **OPTIONS["periodic"])
    clf.fit(X, y)
    Xt = clf.preprocessor_.transform(X)
    inner = clf.mlp_
    inner.set_params(n_init=2, early_stopping=False, max_iter=3)
    inner.fit(Xt, clf.classes_[(clf.predict_proba(X)[:, 1] > 0.5).astype(int)])
    assert len(inner.restarts_) == 2
    assert "input_block" in inner._network_options()
    p1 = _numpy_forward(clf, X)[:, 0]
    assert_allclose(clf.predict_proba(X)[:, 1], p1, rtol=1e-5, atol=1e-6)


def test_assigned_block_parameters_are_used_and_partial_fit_continues():
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, dtype="float64", early_stopping=False, **SMALL,
                               **OPTIONS["scale"]).fit(X, y)
    inner = clf.mlp_
    inner.input_block_params_ = [{"scale": 2.0 * inner.input_block_params_[0]["scale"]}]
    p1 = _numpy_forward(clf, X)[:, 0]
    assert_allclose(clf.predict_proba(X)[:, 1], p1, rtol=1e-10, atol=1e-12)
    Xt = clf.preprocessor_.transform(X)
    before = inner.input_block_params_[0]["scale"].copy()
    inner.partial_fit(Xt, y)
    after = inner.input_block_params_[0]["scale"]
    assert not np.array_equal(after, before)
    assert_allclose(clf.predict_proba(X)[:, 1], _numpy_forward(clf, X)[:, 0], rtol=1e-10,
                    atol=1e-12)


# ---- determinism across thread counts ------------------------------------------------------------
def test_bitwise_identical_across_thread_counts(threaded_passes):
    X, y = _clf_data(600)
    fits, teams = [], []
    for nt in (1, 2):
        _block_teams(reset=True)
        with threaded_passes():
            clf = TabularMLPClassifier(random_state=0, hidden_layer_sizes=(32,), batch_size=300,
                                       max_iter=4, n_threads=nt, **{
                                           k: v for k, v in OPTIONS["all"].items()})
            clf.fit(X, y)
            P = clf.predict_proba(X)
        teams.append(_block_teams(reset=True))
        fits.append((clf.mlp_._params.copy(), P))
    assert teams == [(0, 0), (2, 2)]
    assert_array_equal(fits[1][0], fits[0][0])
    assert_array_equal(fits[1][1], fits[0][1])


# ---- what a block cannot do ----------------------------------------------------------------------
def test_to_sklearn_and_sparse_input_refuse_a_block():
    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, **SMALL, **OPTIONS["periodic"]).fit(X, y)
    with pytest.raises(ValueError, match="to_sklearn.*input block"):
        clf.mlp_.to_sklearn()
    Xt = clf.preprocessor_.transform(X)
    with pytest.raises(ValueError, match="Sparse input.*input block"):
        clf.mlp_.predict(sp.csr_matrix(Xt))
    with pytest.raises(ValueError, match="Sparse input.*input block"):
        clf.mlp_.partial_fit(sp.csr_matrix(Xt), y)
    # without a block the inner network is scikit-learn's: to_sklearn works
    plain = TabularMLPClassifier(random_state=0, activation="tanh", **SMALL, **NONE).fit(X, y)
    sk = plain.mlp_.to_sklearn()
    assert_allclose(sk.predict_proba(Xt), plain.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_onnx_export_refuses_a_block():
    pytest.importorskip("skl2onnx", reason="ONNX export needs the onnx extra")
    from skl2onnx import to_onnx

    import cprop.onnx  # noqa: F401  (registers the converters)

    X, y = _clf_data()
    clf = TabularMLPClassifier(random_state=0, **SMALL, **OPTIONS["scale"]).fit(X, y)
    Xt = clf.preprocessor_.transform(X)
    with pytest.raises(ValueError, match="input block.*no ONNX converter"):
        to_onnx(clf.mlp_, Xt[:1])


# ---- scikit-learn's checks with every option on --------------------------------------------------
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data":
        "early stopping draws its validation split per row, and the preprocessing statistics "
        "(medians, quantiles) are unweighted, so weight 2 differs from a repeated row",
}


@parametrize_with_checks(
    [TabularMLPClassifier(random_state=0, hidden_layer_sizes=(16,), max_iter=30, batch_size=32,
                          n_threads=1, **OPTIONS["all"]),
     TabularMLPRegressor(random_state=0, hidden_layer_sizes=(16,), max_iter=30, batch_size=32,
                         n_threads=1, **OPTIONS["all"])],
    expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _many_levels(n=300, seed=1):
    """``_table`` plus a 12-level categorical (more than 8 levels: embedded, not one-hot)."""
    X, s = _table(n, seed)
    rng = np.random.RandomState(seed)
    X["e"] = pd.Categorical(rng.choice([f"l{i}" for i in range(12)], n))
    X.loc[::13, "e"] = np.nan
    return X, s + 0.3 * (X["e"].cat.codes.to_numpy() % 3)


def test_categorical_embedding_layout_and_numpy_forward():
    """categorical_encoding='embedding': the 12-level column is one code column embedded in 8
    values per level (a table row for missing/unseen), first in the block; the periodic layer
    still embeds exactly the numeric columns, at their positions after the embedding; the
    network is the numpy forward of the exposed parameters."""
    X, s = _many_levels()
    y = np.where(s > 0.4, "yes", "no")
    clf = TabularMLPClassifier(random_state=0, dtype="float64", **SMALL).fit(X, y)  # default
    prep = clf.preprocessor_
    names = list(prep.get_feature_names_out())
    assert [names[j] for j in prep.numeric_columns_] == ["a", "b"]
    assert prep.code_cardinalities_.tolist() == [12] and len(prep.code_columns_) == 1
    block = clf.mlp_._network_options()["input_block"]
    assert [b["kind"] for b in block] == ["embedding", "periodic", "scale"]
    table, periodic, scale = clf.mlp_.input_block_params_
    assert table["table"].shape == (13, 8)
    assert periodic["w1"].shape == (2, 16)
    assert scale["scale"].shape == (len(names) + 7 + 3 * 2,)
    p1 = _numpy_forward(clf, X)[:, 0]
    assert_allclose(clf.predict_proba(X)[:, 1], p1, rtol=1e-10, atol=1e-12)
    # an unseen level reads the missing/unseen row: same prediction as a missing value
    X2 = X.iloc[:3].copy()
    X2["e"] = pd.Categorical(["never seen"] * 3)
    X3 = X.iloc[:3].copy()
    X3["e"] = np.nan
    assert_allclose(clf.predict_proba(X2), clf.predict_proba(X3), rtol=0, atol=0)


def test_categorical_embedding_regressor_and_onehot_default():
    """The regressor embeds too; with 'onehot' the same column is 12 one-hot columns and no
    embedding layer is built."""
    X, s = _many_levels()
    reg = TabularMLPRegressor(random_state=0, dtype="float64", categorical_encoding="embedding",
                              **SMALL).fit(X, s)
    out = _numpy_forward(reg, X)[:, 0] * reg.y_scale_[0] + reg.y_mean_[0]
    assert_allclose(reg.predict(X), np.clip(out, reg.y_min_[0], reg.y_max_[0]),
                    rtol=1e-10, atol=1e-10)
    plain = TabularMLPRegressor(random_state=0, categorical_encoding="onehot", **SMALL).fit(X, s)
    kinds = [b["kind"] for b in plain.mlp_._network_options()["input_block"]]
    assert "embedding" not in kinds
    assert sum(n.startswith("e=") for n in plain.preprocessor_.get_feature_names_out()) == 12
