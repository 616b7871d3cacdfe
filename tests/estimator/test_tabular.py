"""TabularPreprocessor against a numpy reference written here, and the tabular estimators end to
end (DataFrames with categories and NaN, determinism, target standardisation, estimator checks).

Default thread counts are limited to one for the session (see conftest.py).
"""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from cprop import TabularMLPClassifier, TabularMLPRegressor
from cprop._tabular_prep import TabularPreprocessor

pd = pytest.importorskip("pandas", reason="the tabular tests build DataFrames with pandas")

SMALL = dict(hidden_layer_sizes=(16,), max_iter=30, batch_size=32)


# -- the reference: RealMLP-TD's robust scaling and smooth clip, written from the formulas -------
def ref_scale(train_col, col):
    """(col - median) * s with s = 1/IQR, else 2/(max-min), else 0; then x / sqrt(1 + x^2/9)."""
    med = np.median(train_col)
    q25, q75 = np.percentile(train_col, 25), np.percentile(train_col, 75)
    if q75 > q25:
        s = 1 / (q75 - q25)
    elif train_col.max() > train_col.min():
        s = 2 / (train_col.max() - train_col.min())
    else:
        s = 0.0
    z = (col - med) * s
    return z / np.sqrt(1 + (z / 3) ** 2)


def ref_onehot(train_values, values):
    """One 0/1 column per level seen in train (sorted); two levels: one -1/+1 column; missing or
    unseen: zeros."""
    levels = sorted({v for v in train_values if v is not None and v == v})
    if len(levels) == 2:
        return np.array([[0.0 if v not in levels else (-1.0 if v == levels[0] else 1.0)]
                         for v in values])
    return np.array([[1.0 if v == lev else 0.0 for lev in levels] for v in values])


def _frame(n, rng):
    num = rng.lognormal(size=n) * 100
    num[rng.rand(n) < 0.1] = np.nan
    return pd.DataFrame({
        "num": num,
        "int": rng.randint(0, 5, n),
        "const": np.full(n, 7.0),
        "spiky": np.where(rng.rand(n) < 0.9, 1.0, rng.normal(size=n) * 50),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue", None], n)),
        "city": rng.choice(np.array(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"],
                                    dtype=object), n),
        "flag": rng.rand(n) < 0.3,
        "yesno": np.array(rng.choice(["yes", "no", None], n), dtype=object),
    })


def test_preprocessing_matches_numpy_reference():
    rng = np.random.RandomState(0)
    train, test = _frame(300, rng), _frame(80, rng)
    test.loc[:5, "city"] = "never-seen"
    test.loc[6:8, "colour"] = None
    prep = TabularPreprocessor(dtype=np.float64).fit(train)
    got = prep.transform(test)

    expected, names = [], []
    # numeric: impute by the median of observed training values, indicator when train had NaN;
    # scaling statistics of the observed training values
    for c in ["num", "int", "const", "spiky"]:
        tr = train[c].to_numpy(float)
        obs = tr[~np.isnan(tr)]
        x = test[c].to_numpy(float)
        x = np.where(np.isnan(x), np.median(obs), x)
        expected.append(ref_scale(obs, x)[:, None])
        names.append(c)
        if np.isnan(tr).any():
            ind_tr = np.isnan(tr).astype(float)
            expected.append(ref_scale(ind_tr, np.isnan(test[c].to_numpy(float)).astype(float))
                            [:, None])
            names.append(c + "_missing")
    # categorical: one-hot (or +-1) first, then the same scaling on each column
    for c in ["colour", "city", "flag", "yesno"]:
        tr_vals = list(train[c].astype(object))
        tr_vals = [None if (v is None or v != v) else v for v in tr_vals]
        te_vals = [None if (v is None or v != v) else v for v in test[c].astype(object)]
        tr_enc, te_enc = ref_onehot(tr_vals, tr_vals), ref_onehot(tr_vals, te_vals)
        for k in range(tr_enc.shape[1]):
            expected.append(ref_scale(tr_enc[:, k], te_enc[:, k])[:, None])
    expected = np.hstack(expected)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # the output columns are named in the same order
    out_names = list(prep.get_feature_names_out())
    assert out_names[:len(names)] == names
    assert "city=k" in out_names and "colour=red" in out_names
    # the constant column uses the zero fallback; smooth clip bounds everything by 3
    assert np.all(got[:, names.index("const")] == 0)
    assert np.abs(got).max() < 3


def test_preprocessing_fallbacks_and_unseen_categories():
    # IQR 0 but range > 0: s = 2 / (max - min); a missing or unseen level is the zero slot
    train = pd.DataFrame({"x": [0.0] * 9 + [4.0], "c": ["u"] * 5 + ["v"] * 5})
    prep = TabularPreprocessor(dtype=np.float64).fit(train)
    got = prep.transform(pd.DataFrame({"x": [4.0, 0.0, np.nan], "c": ["v", "w", None]}))
    z = 4.0 * 2 / 4
    np.testing.assert_allclose(got[:, 0], [z / np.sqrt(1 + z * z / 9), 0, 0])
    # binary +-1 column: median 0, IQR 2 -> v: +1/2, unseen w and missing: 0
    c = 0.5 / np.sqrt(1 + 0.25 / 9)
    np.testing.assert_allclose(got[:, 1], [c, 0, 0])
    assert not any(s.get("indicator") for s in prep.columns_ if s["kind"] == "numeric")


def test_preprocessing_fitted_on_train_only():
    rng = np.random.RandomState(1)
    train, other = _frame(200, rng), _frame(200, rng)
    prep = TabularPreprocessor().fit(train)
    before = (prep.center_.copy(), prep.scale_.copy())
    prep.transform(other)
    np.testing.assert_array_equal(prep.center_, before[0])
    np.testing.assert_array_equal(prep.scale_, before[1])
    # and statistics are those of train: the transformed training numbers have median 0
    Xt = prep.transform(train)
    assert np.median(Xt[:, 0]) == pytest.approx(0, abs=1e-6)


# -- piecewise-linear encoding (PLE) against a numpy reference written from the formula ----------
def ref_ple(train_obs, x, n_bins):
    """Gorishniy et al. 2022: edges = distinct training quantiles at k / n_bins; per bin t,
    0 below b_{t-1}, 1 from b_t on, linear between; the first bin goes on linearly below b_0
    and the last above b_T. Then the smooth clip x / sqrt(1 + x^2/9)."""
    edges = sorted(set(np.percentile(train_obs, [100.0 * k / n_bins
                                                 for k in range(n_bins + 1)]).tolist()))
    T = len(edges) - 1
    out = np.zeros((len(x), T))
    for i, v in enumerate(x):
        for t in range(T):
            lo, hi = edges[t], edges[t + 1]
            frac = (v - lo) / (hi - lo)
            if t == 0 and v < lo:
                out[i, t] = frac              # first bin: unclipped below
            elif t == T - 1 and v > hi:
                out[i, t] = frac              # last bin: unclipped above
            elif v < lo:
                out[i, t] = 0.0
            elif v >= hi:
                out[i, t] = 1.0
            else:
                out[i, t] = frac
    return out / np.sqrt(1 + (out / 3) ** 2)


@pytest.mark.parametrize("encoding", ["ple", "scale+ple"])
@pytest.mark.parametrize("n_bins", [1, 5, 16])
def test_ple_matches_numpy_reference(encoding, n_bins):
    rng = np.random.RandomState(7)
    train, test = _frame(300, rng), _frame(80, rng)
    # test values beyond the training range on both sides, to exercise the unclipped outer bins
    test.loc[0, "num"] = train["num"].max() * 3
    test.loc[1, "num"] = -50.0
    test.loc[2, "spiky"] = 1e4
    prep = TabularPreprocessor(dtype=np.float64, numeric_encoding=encoding,
                               n_bins=n_bins).fit(train)
    got = prep.transform(test)
    scaled_only = TabularPreprocessor(dtype=np.float64).fit(train)
    base = dict(zip(scaled_only.get_feature_names_out(), scaled_only.transform(test).T))

    expected, names = [], []
    for c in ["num", "int", "const", "spiky"]:
        tr = train[c].to_numpy(float)
        obs = tr[~np.isnan(tr)]
        x = test[c].to_numpy(float)
        x = np.where(np.isnan(x), np.median(obs), x)
        constant = obs.min() == obs.max()
        if encoding == "scale+ple" or constant:   # a constant column keeps the scaled zeros
            expected.append(ref_scale(obs, x)[:, None])
            names.append(c)
        if not constant:
            block = ref_ple(obs, x, n_bins)
            expected.append(block)
            names += [f"{c}_bin{t}" for t in range(block.shape[1])]
        if np.isnan(tr).any():
            expected.append(base[c + "_missing"][:, None])
            names.append(c + "_missing")
    # categorical columns are encoded as under 'scale'
    expected += [base[n][:, None] for n in base if "=" in n]
    names += [n for n in base if "=" in n]
    expected = np.hstack(expected)
    assert list(prep.get_feature_names_out()) == names
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # ties merge edges: "int" takes 5 values, so at most 4 bins whatever n_bins
    n_int_bins = sum(n.startswith("int_bin") for n in names)
    assert n_int_bins == min(n_bins, 4)
    # the outer bins go on beyond the training range (before the smooth clip, which bounds them)
    if n_bins > 1:
        j = names.index("num_bin0")
        assert got[1, j] < 0
        assert got[0, names.index(f"num_bin{n_bins - 1}")] > 1
    assert np.abs(got).max() < 3


def test_ple_fitted_on_train_only_and_validated():
    rng = np.random.RandomState(8)
    train, other = _frame(200, rng), _frame(200, rng)
    prep = TabularPreprocessor(numeric_encoding="ple", n_bins=8).fit(train)
    edges = [None if s.get("edges") is None else s["edges"].copy() for s in prep.columns_]
    prep.transform(other)
    for before, spec in zip(edges, prep.columns_):
        if before is not None:
            np.testing.assert_array_equal(spec["edges"], before)
    obs = train["num"].dropna().to_numpy()
    np.testing.assert_allclose(prep.columns_[0]["edges"], np.quantile(obs, np.linspace(0, 1, 9)))
    # on the training rows each PLE column's interior stays within [0, 1] after the clip
    Xt = prep.transform(train)
    assert Xt.min() >= -3 and Xt.max() <= 3
    # changing numeric_encoding after fit does not change the fitted layout
    prep.set_params(numeric_encoding="scale")
    assert prep.transform(train).shape == Xt.shape
    with pytest.raises(ValueError, match="numeric_encoding"):
        TabularPreprocessor(numeric_encoding="bins").fit(train)
    with pytest.raises(ValueError, match="n_bins"):
        TabularPreprocessor(numeric_encoding="ple", n_bins=0).fit(train)


def test_estimator_passes_ple_through():
    rng = np.random.RandomState(9)
    X = _frame(400, rng)
    # a threshold on one number: what PLE is for
    y = np.where(X["num"].fillna(0) > 150, "high", "low")
    clf = TabularMLPClassifier(random_state=0, n_threads=1, numeric_encoding="ple", n_bins=8,
                               categorical_encoding="onehot",
                               numeric_embedding="none", scale_layer=False,
                               max_iter=40).fit(X[:300], y[:300])
    ref = TabularPreprocessor(numeric_encoding="ple", n_bins=8).fit(X[:300])
    np.testing.assert_array_equal(clf.preprocessor_.transform(X), ref.transform(X))
    assert clf.mlp_.coefs_[0].shape[0] == ref.transform(X[:1]).shape[1]
    assert clf.score(X[300:], y[300:]) > 0.9
    with pytest.raises(ValueError, match="numeric_encoding"):
        TabularMLPClassifier(numeric_encoding="bins").fit(X, y)


def test_categorical_features_by_name_index_and_mask():
    rng = np.random.RandomState(2)
    X = rng.randint(0, 3, size=(50, 3)).astype(float)
    by_index = TabularPreprocessor(categorical_features=[1]).fit(X)
    by_mask = TabularPreprocessor(categorical_features=[False, True, False]).fit(X)
    assert [s["kind"] for s in by_index.columns_] == ["numeric", "categorical", "numeric"]
    np.testing.assert_array_equal(by_index.transform(X), by_mask.transform(X))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    by_name = TabularPreprocessor(categorical_features=["b"]).fit(df)
    np.testing.assert_array_equal(by_name.transform(df), by_index.transform(X))
    with pytest.raises(ValueError, match="does not have"):
        TabularPreprocessor(categorical_features=["zz"]).fit(df)
    with pytest.raises(ValueError, match="not numeric"):
        TabularPreprocessor(categorical_features=None).fit(
            pd.DataFrame({"s": np.array(["x", "y"], dtype=object)}))
    with pytest.raises(ValueError, match="infinity"):
        TabularPreprocessor().fit(np.array([[1.0], [np.inf]]))


def test_classifier_on_dataframe_with_categories_and_nan():
    rng = np.random.RandomState(0)
    X = _frame(600, rng)
    score = (np.log(X["num"].fillna(100)) + (X["colour"] == "red") * 2
             - X["flag"] * 1.5 + (X["city"] == "a"))
    y = np.where(score > np.median(score), "high", "low")
    clf = TabularMLPClassifier(random_state=0, n_threads=1, max_iter=60).fit(X[:450], y[:450])
    assert list(clf.classes_) == ["high", "low"]
    assert list(clf.feature_names_in_) == list(X.columns)
    acc = clf.score(X[450:], y[450:])
    # independent reference: scikit-learn's logistic regression on the same features
    from sklearn.linear_model import LogisticRegression
    Xt = clf.preprocessor_.transform(X)
    ref = LogisticRegression(max_iter=1000).fit(Xt[:450], y[:450]).score(Xt[450:], y[450:])
    assert acc > 0.85 and acc >= ref - 0.05
    proba = clf.predict_proba(X[450:])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # pickling keeps the predictions
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X[450:]), proba)


def test_validation_data_goes_through_the_preprocessing():
    rng = np.random.RandomState(3)
    X = _frame(400, rng)
    y = (X["int"] > 2).astype(int).to_numpy()
    seen = []
    clf = TabularMLPClassifier(random_state=0, n_threads=1, callbacks=[
        lambda est, info: seen.append(info)], **SMALL)
    clf.fit(X[:300], y[:300], X_val=X[300:], y_val=y[300:])
    assert len(seen) == clf.n_iter_
    assert len(clf.mlp_.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == pytest.approx(
        max(clf.mlp_.validation_scores_))
    with pytest.raises(ValueError, match="together"):
        clf.fit(X, y, X_val=X)


def test_same_random_state_bitwise_whatever_the_threads():
    rng = np.random.RandomState(4)
    X = _frame(300, rng)
    y = np.log(X["num"].fillna(50)).to_numpy() + (X["colour"] == "red")
    a = TabularMLPRegressor(random_state=7, n_threads=1, **SMALL).fit(X, y)
    b = TabularMLPRegressor(random_state=7, n_threads=2, **SMALL).fit(X, y)
    for wa, wb in zip(a.mlp_.coefs_, b.mlp_.coefs_):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_regression_target_standardisation_round_trip():
    rng = np.random.RandomState(5)
    X = rng.normal(size=(300, 4))
    y = 1e4 + 3e3 * (X[:, 0] + 0.5 * X[:, 1] ** 2)
    reg = TabularMLPRegressor(random_state=0, n_threads=1, max_iter=80).fit(X, y)
    np.testing.assert_allclose(reg.y_mean_, [y.mean()])
    np.testing.assert_allclose(reg.y_scale_, [y.std()])
    # the inner network trains on (y - mean) / std: its predictions, mapped back and clamped,
    # are the estimator's
    inner = reg.mlp_.predict(reg.preprocessor_.transform(X))
    np.testing.assert_allclose(reg.predict(X),
                               np.clip(inner * y.std() + y.mean(), y.min(), y.max()))
    # the same network trained directly on the standardised target (same seed, same data)
    # (clone keeps the inner network's input block and parameter groups)
    direct = clone(reg.mlp_).fit(reg.preprocessor_.transform(X), (y - y.mean()) / y.std())
    np.testing.assert_array_equal(direct.predict(reg.preprocessor_.transform(X)), inner)
    assert reg.score(X, y) > 0.9
    # clamped to the training range even far outside the data
    far = reg.predict(X * 100)
    assert far.min() >= y.min() and far.max() <= y.max()


def test_failed_fit_leaves_the_model_unchanged():
    rng = np.random.RandomState(6)
    X = _frame(200, rng)
    y = (X["int"] > 2).astype(int).to_numpy()
    clf = TabularMLPClassifier(random_state=0, n_threads=1, **SMALL).fit(X, y)
    before = clf.predict_proba(X)
    bad = X.copy()
    bad.loc[0, "num"] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.fit(bad, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


# -- scikit-learn's estimator checks on numeric arrays -------------------------------------------
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data":
        "early stopping draws its validation split per row, and the preprocessing statistics "
        "(medians, quantiles) are unweighted, so weight 2 differs from a repeated row",
}


@parametrize_with_checks(
    [TabularMLPClassifier(random_state=0, n_threads=1, **SMALL),
     TabularMLPRegressor(random_state=0, n_threads=1, **SMALL)],
    expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# -- the README's "Tables" example runs as written ------------------------------------------------
def test_readme_tables_example_runs(tmp_path, cprop_env):
    import re
    import subprocess
    import sys
    from pathlib import Path
    readme = Path(__file__).resolve().parents[2] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not beside tests/ (tests copied out of the source tree)")
    text = readme.read_text()
    section = text[text.index("## Tables"):]
    section = section[:section.index("\n## ", 1)]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    # the subprocess imports the cprop these tests import (installed or built in place)
    res = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path, env=cprop_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    acc = float(re.search(r"test accuracy: ([0-9.]+)", res.stdout).group(1))
    assert acc > 0.85
    assert "['income', 'income_missing', 'age', 'plan=basic', 'plan=plus', 'plan=pro']" \
        in res.stdout
