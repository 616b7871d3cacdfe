"""Behaviour of cprop.MLPClassifier / MLPRegressor, in the style of scikit-learn's test_mlp.py.

The scenarios of scikit-learn 1.9.1's ``sklearn/neural_network/tests/test_mlp.py`` are ported
(same data, parameters and assertions), plus tests for what cprop adds or fixes: user-assigned
weights, numpy reference forward passes, float32 under L-BFGS, thread-count invariance,
interrupts, pickling, metadata routing and bad input.
"""
import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, softmax

from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import (
    load_digits,
    load_iris,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler, scale
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils._testing import assert_allclose, assert_almost_equal, assert_array_equal

import cprop._fast_fit
import cprop._mlp
from cprop import MLPClassifier, MLPRegressor
from cprop._engine import Network, _Epochs

ACTIVATION_TYPES = ["identity", "logistic", "tanh", "relu"]

X_digits, y_digits = load_digits(n_class=3, return_X_y=True)
X_digits_multi = MinMaxScaler().fit_transform(X_digits[:200])
y_digits_multi = y_digits[:200]

X_digits, y_digits = load_digits(n_class=2, return_X_y=True)
X_digits_binary = MinMaxScaler().fit_transform(X_digits[:200])
y_digits_binary = y_digits[:200]

classification_datasets = [(X_digits_multi, y_digits_multi), (X_digits_binary, y_digits_binary)]

X_reg, y_reg = make_regression(n_samples=200, n_features=10, bias=20.0, noise=100.0,
                               random_state=7)
y_reg = scale(y_reg)

X_iris, y_iris = load_iris(return_X_y=True)

no_convergence_warning = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def numpy_forward(est, X):
    """Reference forward pass written with numpy from the public attributes only."""
    act = {"identity": lambda z: z, "logistic": expit, "tanh": np.tanh,
           "relu": lambda z: np.maximum(z, 0)}
    out = {"identity": lambda z: z, "logistic": expit, "exp": np.exp,
           "softmax": lambda z: softmax(z, axis=1)}
    a = np.asarray(X, dtype=np.float64)
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        z = a @ np.asarray(W, dtype=np.float64) + b
        a = out[est.out_activation_](z) if i == len(est.coefs_) - 1 else act[est.activation](z)
    return a


# ---- scikit-learn's scenarios --------------------------------------------------------------------
@no_convergence_warning
def test_alpha():
    # Larger alpha yields weights closer to zero.
    X, y = X_digits_binary[:100], y_digits_binary[:100]
    sums = []
    for alpha in [0, 1]:
        mlp = MLPClassifier(hidden_layer_sizes=10, alpha=alpha, random_state=1).fit(X, y)
        sums.append([np.abs(mlp.coefs_[0]).sum(), np.abs(mlp.coefs_[1]).sum()])
    assert (np.array(sums[0]) > np.array(sums[1])).all()


def test_fit_worked_example_with_assigned_weights():
    # scikit-learn's hand-computed SGD step, starting from weights assigned by the user.
    X = np.array([[0.6, 0.8, 0.7]])
    y = np.array([0])
    mlp = MLPClassifier(solver="sgd", learning_rate_init=0.1, alpha=0.1, activation="logistic",
                        random_state=1, max_iter=1, hidden_layer_sizes=2, momentum=0)
    mlp.coefs_ = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]]), np.array([[0.1], [0.2]])]
    mlp.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
    mlp.n_outputs_ = 1
    mlp.n_features_in_ = 3
    mlp.n_iter_ = 0
    mlp.n_layers_ = 3
    mlp.out_activation_ = "logistic"
    mlp.t_ = 0
    mlp.best_loss_ = np.inf
    mlp.loss_curve_ = []
    mlp._no_improvement_count = 0
    mlp.partial_fit(X, y, classes=[0, 1])
    assert_almost_equal(mlp.coefs_[0], np.array([[0.098, 0.195756], [0.2956664, 0.096008],
                                                 [0.4939998, -0.002244]]), decimal=3)
    assert_almost_equal(mlp.coefs_[1], np.array([[0.04706], [0.154089]]), decimal=3)
    assert_almost_equal(mlp.intercepts_[0], np.array([0.098333, 0.09626]), decimal=3)
    assert_almost_equal(mlp.intercepts_[1], np.array(0.9235), decimal=3)
    assert_almost_equal(mlp.predict_proba(X)[0, 1], 0.739, decimal=3)


@pytest.mark.parametrize("X,y", classification_datasets)
def test_lbfgs_classification(X, y):
    X_train, y_train, X_test = X[:150], y[:150], X[150:]
    for activation in ACTIVATION_TYPES:
        mlp = MLPClassifier(solver="lbfgs", hidden_layer_sizes=50, max_iter=150, shuffle=True,
                            random_state=1, activation=activation)
        mlp.fit(X_train, y_train)
        y_predict = mlp.predict(X_test)
        assert mlp.score(X_train, y_train) > 0.95
        assert (y_predict.shape[0], y_predict.dtype.kind) == (X_test.shape[0],
                                                              y_train.dtype.kind)


def test_lbfgs_regression():
    for activation in ACTIVATION_TYPES:
        mlp = MLPRegressor(solver="lbfgs", hidden_layer_sizes=50, max_iter=200, tol=1e-3,
                           shuffle=True, random_state=1, activation=activation)
        mlp.fit(X_reg, y_reg)
        assert mlp.score(X_reg, y_reg) > (0.80 if activation == "identity" else 0.98)


@pytest.mark.parametrize("Estimator,X,y", [(MLPClassifier, X_digits_multi, y_digits_multi),
                                           (MLPRegressor, X_reg, y_reg)])
def test_lbfgs_maxfun(Estimator, X, y):
    # max_fun limits L-BFGS independently of max_iter.
    for activation in ACTIVATION_TYPES:
        mlp = Estimator(solver="lbfgs", hidden_layer_sizes=50, tol=0.0, max_iter=150,
                        max_fun=10, random_state=1, activation=activation)
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
            mlp.fit(X, y)
        assert 10 >= mlp.n_iter_


@no_convergence_warning
def test_learning_rate_warmstart():
    X = [[3, 2], [1, 6], [5, 6], [-2, -4]]
    y = [1, 1, 1, 0]
    for learning_rate in ["invscaling", "constant"]:
        mlp = MLPClassifier(solver="sgd", hidden_layer_sizes=4, learning_rate=learning_rate,
                            max_iter=1, power_t=0.25, warm_start=True)
        mlp.fit(X, y)
        prev_eta = mlp._optimizer.learning_rate
        mlp.fit(X, y)
        post_eta = mlp._optimizer.learning_rate
        if learning_rate == "constant":
            assert prev_eta == post_eta
        else:
            assert mlp.learning_rate_init / pow(8 + 1, mlp.power_t) == post_eta


def test_multilabel_classification():
    X, y = make_multilabel_classification(n_samples=50, random_state=0, return_indicator=True)
    mlp = MLPClassifier(solver="lbfgs", hidden_layer_sizes=50, alpha=1e-5, max_iter=150,
                        random_state=0, activation="logistic", learning_rate_init=0.2)
    mlp.fit(X, y)
    assert mlp.out_activation_ == "logistic"
    assert mlp.score(X, y) > 0.97
    mlp = MLPClassifier(solver="sgd", hidden_layer_sizes=50, max_iter=150, random_state=0,
                        activation="logistic", alpha=1e-5, learning_rate_init=0.2)
    for _ in range(100):
        mlp.partial_fit(X, y, classes=[0, 1, 2, 3, 4])
    assert mlp.score(X, y) > 0.9
    # early stopping works for multilabel targets (the split is not stratified)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pred = MLPClassifier(early_stopping=True, max_iter=20).fit(X, y).predict(X)
    assert pred.shape == y.shape


def test_multioutput_regression():
    X, y = make_regression(n_samples=200, n_targets=5, random_state=11)
    mlp = MLPRegressor(solver="lbfgs", hidden_layer_sizes=50, max_iter=200, tol=1e-2,
                       random_state=1)
    mlp.fit(X, y)
    assert mlp.score(X, y) > 0.9
    assert mlp.predict(X).shape == y.shape


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_multioutput_squared_error_loss_is_the_minimised_objective(solver):
    # loss_ is half the squared error summed over outputs, averaged over samples, plus the L2
    # term: the function whose gradient is applied (scikit-learn 1.9.1 reports it averaged over
    # outputs). Computed here from predictions and weights with numpy.
    X, y = make_regression(n_samples=60, n_features=4, n_targets=3, random_state=0)
    y = y / 100
    alpha = 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPRegressor(solver=solver, hidden_layer_sizes=8, alpha=alpha, max_iter=30,
                           batch_size=60, shuffle=False, random_state=0).fit(X, y)
    if solver == "lbfgs":
        params_for_loss = mlp   # loss_ is evaluated at the final weights
    else:
        # with one full batch per epoch, loss_ is evaluated at the weights before the last step:
        # redo the last epoch from the weights of epoch 29
        params_for_loss = MLPRegressor(solver=solver, hidden_layer_sizes=8, alpha=alpha,
                                       max_iter=29, batch_size=60, shuffle=False,
                                       random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            params_for_loss.fit(X, y)
    pred = numpy_forward(params_for_loss, X)
    sq = sum(np.sum(W ** 2) for W in params_for_loss.coefs_)
    expected = 0.5 * np.mean(np.sum((y - pred) ** 2, axis=1)) + 0.5 * alpha * sq / len(X)
    assert mlp.loss_ == pytest.approx(expected, rel=1e-9)


def test_partial_fit_classes_error():
    clf = MLPClassifier(solver="sgd")
    clf.partial_fit([[3, 2]], [0], classes=[0, 1])
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit([[3, 2]], [0], classes=[1, 2])


@no_convergence_warning
def test_partial_fit_classification():
    # partial_fit gives the same results as fit, for binary and multi-class targets.
    for X, y in classification_datasets:
        mlp = MLPClassifier(solver="sgd", max_iter=100, random_state=1, tol=0, alpha=1e-5,
                            learning_rate_init=0.2).fit(X, y)
        pred1 = mlp.predict(X)
        mlp = MLPClassifier(solver="sgd", random_state=1, alpha=1e-5, learning_rate_init=0.2)
        for _ in range(100):
            mlp.partial_fit(X, y, classes=np.unique(y))
        assert_array_equal(pred1, mlp.predict(X))
        assert mlp.score(X, y) > 0.95


def test_partial_fit_unseen_classes():
    clf = MLPClassifier(random_state=0)
    clf.partial_fit([[1], [2], [3]], ["a", "b", "c"], classes=["a", "b", "c", "d"])
    clf.partial_fit([[4]], ["d"])
    assert clf.score([[1], [2], [3], [4]], ["a", "b", "c", "d"]) > 0
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
        clf.partial_fit([[5]], ["e"])


@no_convergence_warning
def test_partial_fit_regression():
    for momentum in [0, 0.9]:
        kw = dict(solver="sgd", activation="relu", random_state=1, learning_rate_init=0.01,
                  batch_size=X_reg.shape[0], momentum=momentum)
        pred1 = MLPRegressor(max_iter=100, **kw).fit(X_reg, y_reg).predict(X_reg)
        mlp = MLPRegressor(**kw)
        for _ in range(100):
            mlp.partial_fit(X_reg, y_reg)
        assert_allclose(pred1, mlp.predict(X_reg))
        assert mlp.score(X_reg, y_reg) > 0.65


def test_partial_fit_errors_and_availability():
    X, y = [[3, 2], [1, 6]], [1, 0]
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
        MLPClassifier(solver="sgd").partial_fit(X, y, classes=[2])
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier(solver="sgd").partial_fit(X, y)
    # lbfgs has no partial_fit, for the regressor too (scikit-learn 1.9.1 exposes it there)
    for Est in (MLPClassifier, MLPRegressor):
        assert not hasattr(Est(solver="lbfgs"), "partial_fit")
        assert hasattr(Est(solver="sgd"), "partial_fit")
        assert hasattr(Est(solver="adam"), "partial_fit")
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as exc:
            Est(solver="lbfgs").partial_fit
        assert "lbfgs is not stochastic" in str(exc.value.__cause__)
    assert hasattr(SkMLPRegressor(solver="lbfgs"), "partial_fit")  # the upstream bug


def test_nonfinite_params():
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    msg = ("Solver produced non-finite parameter weights. The input data may contain large"
           " values and need to be preprocessed.")
    for solver in ["adam", "sgd"]:   # (lbfgs stops at its first, infinite, loss: x0 is kept)
        with pytest.raises(ValueError, match=msg):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                MLPRegressor(solver=solver).fit(X, y)


@no_convergence_warning
def test_predict_proba_binary():
    X, y = X_digits_binary[:50], y_digits_binary[:50]
    clf = MLPClassifier(hidden_layer_sizes=5, activation="logistic", random_state=1).fit(X, y)
    y_proba = clf.predict_proba(X)
    y_log_proba = clf.predict_log_proba(X)
    assert y_proba.shape == (50, 2)
    assert_array_equal(y_proba.argmax(axis=1), y_log_proba.argmax(axis=1))
    assert_allclose(y_log_proba, np.log(y_proba))
    assert roc_auc_score(y, y_proba[:, 1]) == 1.0
    p = numpy_forward(clf, X).ravel()
    assert_allclose(y_proba, np.column_stack([1 - p, p]), rtol=1e-12, atol=1e-15)


@no_convergence_warning
def test_predict_proba_multiclass():
    X, y = X_digits_multi[:10], y_digits_multi[:10]
    clf = MLPClassifier(hidden_layer_sizes=5).fit(X, y)
    y_proba = clf.predict_proba(X)
    y_log_proba = clf.predict_log_proba(X)
    assert y_proba.shape == (10, np.unique(y).size)
    assert_array_equal(y_proba.argmax(axis=1), y_log_proba.argmax(axis=1))
    assert_allclose(y_log_proba, np.log(y_proba))
    assert_allclose(y_proba, numpy_forward(clf, X), rtol=1e-12)
    assert_array_equal(clf.predict(X), clf.classes_[y_proba.argmax(axis=1)])


def test_predict_proba_multilabel():
    X, Y = make_multilabel_classification(n_samples=50, random_state=0, return_indicator=True)
    clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=30, random_state=0).fit(X, Y)
    y_proba = clf.predict_proba(X)
    assert y_proba.shape == Y.shape
    assert_array_equal(y_proba > 0.5, Y)
    y_log_proba = clf.predict_log_proba(X)
    assert (y_proba.sum(1) - 1).dot(y_proba.sum(1) - 1) > 1e-10
    assert_array_equal(y_proba.argmax(axis=1), y_log_proba.argmax(axis=1))
    assert_allclose(y_log_proba, np.log(y_proba))
    assert_array_equal(clf.predict(X), (y_proba > 0.5).astype(int))


@no_convergence_warning
def test_shuffle():
    X, y = make_regression(n_samples=50, n_features=5, n_targets=1, random_state=0)
    for shuffle in [True, False]:
        kw = dict(hidden_layer_sizes=1, max_iter=1, batch_size=1, random_state=0,
                  shuffle=shuffle)
        mlp1, mlp2 = MLPRegressor(**kw).fit(X, y), MLPRegressor(**kw).fit(X, y)
        assert np.array_equal(mlp1.coefs_[0], mlp2.coefs_[0])
    kw = dict(hidden_layer_sizes=1, max_iter=1, batch_size=1, random_state=0)
    mlp1 = MLPRegressor(shuffle=True, **kw).fit(X, y)
    mlp2 = MLPRegressor(shuffle=False, **kw).fit(X, y)
    assert not np.array_equal(mlp1.coefs_[0], mlp2.coefs_[0])


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array])
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_sparse_matrices(container, solver):
    X, y = X_digits_binary[:50], y_digits_binary[:50]
    X_sparse = container(X)
    kw = dict(solver=solver, hidden_layer_sizes=15, random_state=1, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**kw).fit(X, y)
        sparse = MLPClassifier(**kw).fit(X_sparse, y)
    for W1, W2 in zip(dense.coefs_, sparse.coefs_):
        assert_allclose(W1, W2, rtol=1e-7, atol=1e-9)
    assert_allclose(dense.predict_proba(X), sparse.predict_proba(X_sparse), rtol=1e-7)
    assert_array_equal(sparse.predict(X), sparse.predict(X_sparse))


def test_tolerance():
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd").fit([[3, 2], [1, 6]], [1, 0])
    assert clf.max_iter > clf.n_iter_


def test_verbose_sgd(capsys):
    X, y = [[3, 2], [1, 6]], [1, 0]
    clf = MLPClassifier(solver="sgd", max_iter=2, verbose=10, hidden_layer_sizes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    clf.partial_fit(X, y)
    out, _ = capsys.readouterr()
    assert out.count("Iteration") == 3


def test_verbose_lbfgs(capsys):
    # scikit-learn 1.9.1 prints nothing for lbfgs with recent scipy; cprop prints each
    # iteration's loss, the final one being loss_.
    clf = MLPRegressor(solver="lbfgs", max_iter=5, verbose=True, hidden_layer_sizes=3,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_reg[:50], y_reg[:50])
    out, _ = capsys.readouterr()
    losses = [float(v) for v in re.findall(r"Iteration \d+, loss = ([0-9.]+)", out)]
    assert len(losses) == clf.n_iter_ == 5
    assert losses[-1] == pytest.approx(clf.loss_, abs=1e-8)
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    quiet = MLPRegressor(solver="lbfgs", max_iter=5, hidden_layer_sizes=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        quiet.fit(X_reg[:50], y_reg[:50])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_early_stopping(Estimator):
    X, y = X_digits_binary[:100], y_digits_binary[:100]
    tol = 0.2
    est = Estimator(tol=tol, max_iter=3000, solver="sgd", early_stopping=True).fit(X, y)
    assert est.max_iter > est.n_iter_
    assert est.best_loss_ is None
    assert isinstance(est.validation_scores_, list)
    assert max(est.validation_scores_) == est.best_validation_score_
    assert est.best_validation_score_ + tol > est.validation_scores_[-2]
    assert est.best_validation_score_ + tol > est.validation_scores_[-1]
    est = Estimator(tol=tol, max_iter=3000, solver="sgd", early_stopping=False).fit(X, y)
    assert est.validation_scores_ is None
    assert est.best_validation_score_ is None
    assert est.best_loss_ is not None


def _replay_split(est, X, y, stratify):
    """The validation split an estimator with an int random_state draws: the RNG first gives
    the Glorot initialisation (W then b per layer), then the split."""
    rs = np.random.RandomState(est.random_state)
    sizes = [c.shape for c in est.coefs_]
    for fan_in, fan_out in sizes:
        rs.uniform(size=(fan_in, fan_out))
        rs.uniform(size=fan_out)
    return train_test_split(X, y, random_state=rs, test_size=est.validation_fraction,
                            stratify=stratify)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_early_stopping_restores_best_weights(Estimator):
    X, y = X_digits_binary[:150], y_digits_binary[:150]
    est = Estimator(solver="sgd", learning_rate_init=0.05, hidden_layer_sizes=10,
                    early_stopping=True, n_iter_no_change=5, tol=0, max_iter=200,
                    validation_fraction=0.3, random_state=3).fit(X, y)
    best_epoch = int(np.argmax(est.validation_scores_))
    assert best_epoch < len(est.validation_scores_) - 1  # the last epoch was not the best
    _, X_val, _, y_val = _replay_split(est, X, y, y if Estimator is MLPClassifier else None)
    score = (accuracy_score if Estimator is MLPClassifier else r2_score)(y_val, est.predict(X_val))
    assert score == pytest.approx(est.best_validation_score_, abs=1e-12)


@no_convergence_warning
def test_adaptive_learning_rate():
    X, y = [[3, 2], [1, 6]], [1, 0]
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive")
    clf.fit(X, y)
    assert clf.max_iter > clf.n_iter_
    assert 1e-6 > clf._optimizer.learning_rate


def test_adaptive_learning_rate_schedule(capsys):
    # Each stall divides the rate by 5, printed as scikit-learn prints it.
    X, y = [[3, 2], [1, 6]], [1, 0]
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive",
                        learning_rate_init=0.1, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    rates = [float(r) for r in re.findall(r"Setting learning rate to ([0-9.]+)", out)]
    assert_allclose(rates, [0.1 / 5 ** (k + 1) for k in range(len(rates))], atol=1e-6)
    assert "Learning rate too small. Stopping." in out
    assert clf._optimizer.learning_rate == pytest.approx(0.1 / 5 ** len(rates))


def test_warm_start():
    X, y = X_iris, y_iris
    clf = MLPClassifier(hidden_layer_sizes=2, solver="lbfgs", warm_start=True, random_state=42,
                        tol=1e-2).fit(X, y)
    clf.fit(X, y)
    clf.fit(X, np.array([0] * 40 + [1] * 40 + [2] * 70))
    for y_i in (np.array([0] * 75 + [1] * 75), np.array([0] * 50 + [1] * 50 + [3] * 50),
                np.array([0] * 37 + [1] * 37 + [2] * 38 + [3] * 38)):
        clf = MLPClassifier(hidden_layer_sizes=2, solver="lbfgs", warm_start=True,
                            random_state=42, tol=1e-2).fit(X, y)
        message = ("warm_start can only be used where `y` has the same classes as in the "
                   "previous call to fit. Previously got [0 1 2], `y` has %s" % np.unique(y_i))
        with pytest.raises(ValueError, match=re.escape(message)):
            clf.fit(X, y_i)


def test_warm_start_continues_from_previous_weights():
    kw = dict(hidden_layer_sizes=5, solver="lbfgs", random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(warm_start=True, **kw).fit(X_iris, y_iris)
        W = [c.copy() for c in clf.coefs_]
        loss_first = clf.loss_
        clf.fit(X_iris, y_iris)
        assert clf.loss_ < loss_first
        cold = MLPClassifier(**kw).fit(X_iris, y_iris)
        cold.fit(X_iris, y_iris)
    assert_array_equal(cold.coefs_[0], W[0])           # a cold refit starts over
    assert not np.array_equal(clf.coefs_[0], W[0])     # a warm one continues
    with pytest.raises(ValueError, match="Fit from scratch"):
        clf.set_params(hidden_layer_sizes=7).fit(X_iris, y_iris)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_warm_start_full_iteration(Estimator):
    clf = Estimator(hidden_layer_sizes=2, solver="sgd", warm_start=True, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_iris, y_iris)
        assert clf.n_iter_ == 3
        clf.fit(X_iris, y_iris)
        assert clf.n_iter_ == 3
    assert len(clf.loss_curve_) == 6


def test_n_iter_no_change():
    X, y = X_digits_binary[:100], y_digits_binary[:100]
    for n_iter_no_change in [2, 5, 10, 50, 100]:
        clf = MLPClassifier(tol=0.01, max_iter=3000, solver="sgd",
                            n_iter_no_change=n_iter_no_change).fit(X, y)
        assert clf._no_improvement_count == n_iter_no_change + 1
        assert 3000 > clf.n_iter_


@no_convergence_warning
def test_n_iter_no_change_inf():
    X, y = X_digits_binary[:100], y_digits_binary[:100]
    clf = MLPClassifier(tol=1e9, max_iter=3000, solver="sgd", n_iter_no_change=np.inf,
                        hidden_layer_sizes=10).fit(X, y)
    assert clf.n_iter_ == 3000
    assert clf._no_improvement_count == clf.n_iter_ - 1


def test_early_stopping_stratified():
    X, y = [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1]
    with pytest.raises(ValueError, match=(r"The least populated classes in y have only 1 "
                                          r"member.*Classes with too few members are: "
                                          r"\['True'\]")):
        MLPClassifier(early_stopping=True).fit(X, y)


def test_early_stopping_stratified_multiclass():
    # Multiclass targets are stratified too (scikit-learn 1.9.1 documents it but does not).
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array(["a"] * 5 + ["b"] * 4 + ["c"])
    with pytest.raises(ValueError, match=r"Classes with too few members are: \['c'\]"):
        MLPClassifier(early_stopping=True, validation_fraction=0.3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # upstream: no stratification, so no error
        SkMLPClassifier(early_stopping=True, validation_fraction=0.3, max_iter=2).fit(X, y)
    X, y = X_digits_multi, y_digits_multi
    clf = MLPClassifier(early_stopping=True, max_iter=3, validation_fraction=0.3,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    _, X_val, _, y_val = _replay_split(clf, X, y, stratify=y)
    assert_array_equal(np.bincount(y_val), [20, 20, 20])
    assert clf.best_validation_score_ == pytest.approx(accuracy_score(y_val, clf.predict(X_val)))


def test_mlp_early_stopping_string_labels():
    X, y = make_classification(n_samples=200, n_features=10, n_classes=3, n_informative=5,
                               random_state=42)
    y = np.array(["class_a", "class_b", "class_c"], dtype=object)[y]
    mlp = MLPClassifier(early_stopping=True, max_iter=50, random_state=42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    assert len(mlp.validation_scores_) == mlp.n_iter_
    assert np.isfinite(mlp.validation_scores_).all()
    assert set(mlp.predict(X)) <= {"class_a", "class_b", "class_c"}


@pytest.mark.parametrize("labels", [np.array(["no", "yes"]), np.array([-3, 7]),
                                    np.array(["x", "y", "z"]), np.array([10, 20, 30])])
def test_string_and_int_labels(labels):
    X, y = X_digits_multi[:150], y_digits_multi[:150] % len(labels)
    clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=10, random_state=0, max_iter=300)
    clf.fit(X, labels[y])
    assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == labels.dtype
    assert np.mean(pred == labels[y]) > 0.95


def test_mlp_classifier_dtypes_casting():
    X, y = load_digits(n_class=2, return_X_y=True)
    kw = dict(alpha=1e-5, hidden_layer_sizes=(5, 3), random_state=1, max_iter=100, tol=1e-1)
    mlp_64 = MLPClassifier(**kw).fit(X[:300], y[:300])
    mlp_32 = MLPClassifier(**kw).fit(X[:300].astype(np.float32), y[:300])
    assert_array_equal(mlp_64.predict(X[300:]), mlp_32.predict(X[300:].astype(np.float32)))
    assert_allclose(mlp_64.predict_proba(X[300:]),
                    mlp_32.predict_proba(X[300:].astype(np.float32)), rtol=1e-2)


def test_mlp_regressor_dtypes_casting():
    X, y = load_digits(n_class=2, return_X_y=True)
    kw = dict(alpha=1e-5, hidden_layer_sizes=(5, 3), random_state=1, max_iter=150, tol=1e-3)
    pred_64 = MLPRegressor(**kw).fit(X[:300], y[:300]).predict(X[300:])
    pred_32 = MLPRegressor(**kw).fit(X[:300].astype(np.float32), y[:300]).predict(
        X[300:].astype(np.float32))
    assert_allclose(pred_64, pred_32, rtol=5e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_mlp_param_dtypes(dtype, Estimator, solver):
    # The input dtype is kept for the weights and predictions, lbfgs included (scikit-learn
    # 1.9.1 returns float64 weights from lbfgs on float32 data).
    X, y = load_digits(n_class=2, return_X_y=True)
    X = X.astype(dtype)
    mlp = Estimator(solver=solver, alpha=1e-5, hidden_layer_sizes=(5, 3), random_state=1,
                    max_iter=50, tol=1e-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X[:300], y[:300])
    pred = mlp.predict(X[300:])
    assert all(c.dtype == dtype for c in mlp.coefs_)
    assert all(b.dtype == dtype for b in mlp.intercepts_)
    if Estimator is MLPRegressor:
        assert pred.dtype == dtype
        # a float32 model given float64 data predicts in float64, like X @ coefs_ would
        assert mlp.predict(X[300:].astype(np.float64)).dtype == np.float64
    else:
        assert mlp.predict_proba(X[300:]).dtype == dtype
    ref = numpy_forward(mlp, X[300:])
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    if Estimator is MLPRegressor:
        assert_allclose(pred, ref.ravel(), rtol=rtol, atol=1e-5)
    else:
        assert_allclose(mlp.predict_proba(X[300:])[:, 1], ref.ravel(), rtol=rtol, atol=1e-6)


def test_mlp_loading_from_joblib_partial_fit(tmp_path):
    est = MLPRegressor(hidden_layer_sizes=(42,), random_state=42, learning_rate_init=0.01,
                       max_iter=200)
    est.fit([[2]], [4])
    joblib.dump(est, tmp_path / "mlp.pkl")
    loaded = joblib.load(tmp_path / "mlp.pkl")
    for _ in range(200):
        loaded.partial_fit([[2]], [1])
    assert_allclose(loaded.predict([[2]]), [1], rtol=1e-4)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_feature_names(Estimator):
    # scikit-learn reads feature names only from real data frames (through narwhals)
    pd = pytest.importorskip("pandas", reason="feature names need a data frame library")
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(20, 2), columns=["colname_a", "colname_b"])
    y = pd.Series(np.arange(20) % 2, name="colname_y")
    model = Estimator(early_stopping=True, validation_fraction=0.2, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # no "X does not have valid feature names"
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        model.predict(X)
    assert_array_equal(model.feature_names_in_, ["colname_a", "colname_b"])
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        model.predict(pd.DataFrame(rng.randn(3, 2), columns=["colname_a", "other"]))


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_mlp_warm_start_with_early_stopping(Estimator):
    mlp = Estimator(max_iter=10, random_state=0, warm_start=True, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_iris, y_iris)
        n_scores = len(mlp.validation_scores_)
        mlp.set_params(max_iter=20)
        mlp.fit(X_iris, y_iris)
    assert len(mlp.validation_scores_) > n_scores


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_mlp_warm_start_no_convergence(Estimator, solver):
    model = Estimator(solver=solver, warm_start=True, early_stopping=False, max_iter=10,
                      n_iter_no_change=np.inf, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X_iris, y_iris)
    assert model.n_iter_ == 10
    model.set_params(max_iter=20)
    with pytest.warns(ConvergenceWarning):
        model.fit(X_iris, y_iris)
    assert model.n_iter_ == 20


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_mlp_partial_fit_after_fit(Estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = Estimator(early_stopping=True, random_state=0, max_iter=20).fit(X_iris, y_iris)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        mlp.partial_fit(X_iris, y_iris)


def test_mlp_diverging_loss():
    mlp = MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd",
                       learning_rate_init=1, max_iter=20, early_stopping=True,
                       n_iter_no_change=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_iris, y_iris)
    assert str(mlp.validation_scores_[-1]) == str(np.nan)
    assert isinstance(mlp.validation_scores_[-1], float)


def test_mlp_sample_weight_with_early_stopping():
    X, y = make_regression(n_samples=100, n_features=2, n_informative=2, random_state=42)
    params = dict(hidden_layer_sizes=10, solver="adam", early_stopping=True, tol=1e-2,
                  learning_rate_init=0.01, batch_size=10, random_state=42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m1 = MLPRegressor(**params).fit(X, y, sample_weight=np.ones_like(y))
        m2 = MLPRegressor(**params).fit(X, y, sample_weight=None)
    assert_allclose(m1.predict(X), m2.predict(X))


@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_vs_poisson_glm_equivalent(seed):
    rng = np.random.default_rng(seed)
    X = np.linspace(0, 1, 100)
    y = rng.poisson(np.exp(X + 1))
    X = X.reshape(100, -1)
    glm = PoissonRegressor(alpha=0, tol=1e-7).fit(X, y)
    kw = dict(hidden_layer_sizes=(1,), activation="identity", alpha=0, solver="lbfgs",
              tol=1e-7, random_state=np.random.RandomState(seed + 1))
    mlp = MLPRegressor(loss="poisson", **kw).fit(X, y)
    assert mlp.out_activation_ == "exp"
    assert_allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)
    mlp = MLPRegressor(loss="squared_error", **kw).fit(X, y)
    assert not np.allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)


def test_poisson_rejects_negative_targets():
    with pytest.raises(ValueError, match="negative, which is not allowed with loss='poisson'"):
        MLPRegressor(loss="poisson").fit([[0.0], [1.0]], [1.0, -1.0])


def test_minimum_input_sample_size():
    X, y = make_regression(n_samples=2, n_features=5, random_state=0)
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor(early_stopping=True, random_state=0).fit(X, y)


# ---- weights, threads, interrupts, persistence ---------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_TYPES)
@pytest.mark.parametrize("Estimator,y", [(MLPClassifier, y_digits_multi),
                                         (MLPClassifier, y_digits_multi == 0),
                                         (MLPRegressor, y_digits_multi / 2.0)])
def test_predict_matches_numpy_forward_pass(activation, Estimator, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = Estimator(hidden_layer_sizes=(7, 5), activation=activation, max_iter=5,
                        random_state=0).fit(X_digits_multi, y)
    out = numpy_forward(est, X_digits_multi)
    got = est.predict_proba(X_digits_multi) if Estimator is MLPClassifier else \
        est.predict(X_digits_multi)
    if got.ndim == 2 and out.shape[1] == 1:
        out = np.column_stack([1 - out, out])
    assert_allclose(got, out.reshape(got.shape), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("how", ["replace_list", "replace_item", "in_place"])
def test_assigned_weights_are_used(how):
    kw = dict(solver="sgd", momentum=0, shuffle=False, hidden_layer_sizes=4, random_state=0,
              learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(max_iter=3, **kw).fit(X_reg, y_reg)
    rng = np.random.RandomState(1)
    new_W = [rng.randn(*W.shape) for W in est.coefs_]
    if how == "replace_list":
        est.coefs_ = new_W
    elif how == "replace_item":
        est.coefs_[0] = new_W[0]
        new_W[1] = est.coefs_[1].copy()
    else:
        est.coefs_[0][...] = new_W[0]
        new_W[1] = est.coefs_[1].copy()
    b = [c.copy() for c in est.intercepts_]
    assert_allclose(est.predict(X_reg), numpy_forward(est, X_reg).ravel(), rtol=1e-12)
    # training continues from the assigned weights: one step equals scikit-learn's from them
    est.partial_fit(X_reg, y_reg)
    sk = SkMLPRegressor(**kw)
    sk.coefs_ = [W.copy() for W in new_W]
    sk.intercepts_ = [c.copy() for c in b]
    sk.n_outputs_, sk.n_features_in_, sk.n_layers_, sk.out_activation_ = 1, 10, 3, "identity"
    sk.t_, sk.n_iter_, sk.best_loss_, sk.loss_curve_, sk._no_improvement_count = \
        0, 0, np.inf, [], 0
    sk.partial_fit(X_reg, y_reg)
    for W1, W2 in zip(est.coefs_ + est.intercepts_, sk.coefs_ + sk.intercepts_):
        assert_allclose(W1, W2, rtol=1e-12, atol=1e-14)
    est.coefs_ = [np.zeros((3, 3)), est.coefs_[1]]
    with pytest.raises(ValueError, match="do not fit a network"):
        est.predict(X_reg)


THREAD_COUNTS = (1, 2, 3)


def _threaded_fits(threaded_passes, Estimator, run, **kw):
    """One estimator per thread count of THREAD_COUNTS, each passed to ``run`` with the thread
    thresholds lowered; checks that every count above one ran its GEMMs and optimizer updates on
    teams of exactly that size (and one thread on none)."""
    ests = []
    for n in THREAD_COUNTS:
        est = Estimator(n_threads=n, **kw)
        with threaded_passes() as teams:
            run(est)
        want = 0 if n == 1 else n
        assert teams["gemm"] == want, (n, teams)
        if kw.get("solver", "adam") != "lbfgs":
            assert teams["update"] == teams["gather"] == want, (n, teams)
        ests.append(est)
    return ests


@pytest.mark.parametrize("sparse", [False, True])
def test_threads_bitwise_identical(sparse, threaded_passes):
    # The thresholds are lowered (threaded_passes) so that every pass runs threaded, and the
    # teams that ran are checked: the 200-row batches of 300 units clear PASS_SERIAL_FLOPS by only
    # 18%, and the 10-output products stay under GEMM_SERIAL_FLOPS at the default thresholds.
    X, y = load_digits(return_X_y=True)
    X, y = MinMaxScaler().fit_transform(X[:600]), y[:600]
    if sparse:
        X = sp.csr_matrix(X)
    kw = dict(hidden_layer_sizes=(300,), random_state=0, max_iter=2)

    def fit_twice(est):
        est.fit(X, y)
        est.fit(X, y)                               # warm start
        if est.solver != "lbfgs":
            est.partial_fit(X[:300], y[:300])

    def partial_fit_twice(est):
        for _ in range(2):
            est.partial_fit(X, y / 9.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver in ["adam", "sgd", "lbfgs"]:
            a, *others = _threaded_fits(threaded_passes, MLPClassifier, fit_twice, solver=solver,
                                        warm_start=True, **kw)
            for b in others:
                for Wa, Wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
                    assert_array_equal(Wa, Wb)
                assert a.loss_ == b.loss_
        a, *others = _threaded_fits(threaded_passes, MLPRegressor, partial_fit_twice,
                                    solver="adam", **kw)
        for b in others:
            for Wa, Wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
                assert_array_equal(Wa, Wb)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_keyboard_interrupt_keeps_weights(monkeypatch, solver):
    calls = {"n": 0}
    # what the fit calls once per epoch (adam) or per evaluation (lbfgs: its runner's loss_grad)
    owner, name = (_Epochs, "__call__") if solver == "adam" else (cprop._train, "Runner")
    original = getattr(owner, name)

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return (original if solver == "adam" else original.loss_grad)(self, *args, **kwargs)

    if solver == "adam":
        monkeypatch.setattr(owner, name, interrupted)
    else:
        monkeypatch.setattr(owner, name, type("Interrupted", (original,),
                                              {"loss_grad": interrupted}))
    # the estimator's Python epoch loop (the compiled one: tests/estimator/test_fitloop.py)
    monkeypatch.setattr(cprop._fast_fit, "FORCE_PYTHON", True)
    est = MLPClassifier(solver=solver, hidden_layer_sizes=5, random_state=0, max_iter=50)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        est.fit(X_digits_multi, y_digits_multi)
    if solver == "adam":
        assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert all(np.isfinite(W).all() for W in est.coefs_)
    assert est.predict(X_digits_multi).shape == y_digits_multi.shape
    init = MLPClassifier(solver=solver, hidden_layer_sizes=5, random_state=0, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        monkeypatch.setattr(owner, name, original)
        init.fit(X_digits_multi, y_digits_multi)
    if solver == "adam":   # the three completed epochs were kept
        assert not np.array_equal(est.coefs_[0], init.coefs_[0])


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_pickle_and_clone(Estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = Estimator(hidden_layer_sizes=6, max_iter=5, random_state=0)
        est.fit(X_digits_multi, y_digits_multi)
    restored = pickle.loads(pickle.dumps(est))
    assert "_params" not in pickle.loads(pickle.dumps(est)).__dict__
    assert_array_equal(restored.predict(X_digits_multi), est.predict(X_digits_multi))
    # training continues identically after the round trip (optimizer state travels too)
    kw = {"classes": np.unique(y_digits_multi)} if Estimator is MLPClassifier else {}
    est.partial_fit(X_digits_multi, y_digits_multi, **kw)
    restored.partial_fit(X_digits_multi, y_digits_multi, **kw)
    for W1, W2 in zip(est.coefs_, restored.coefs_):
        assert_array_equal(W1, W2)
    assert not hasattr(clone(est), "coefs_")
    assert clone(est).get_params() == est.get_params()


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_sample_weight_equals_repetition(solver):
    # Integer weights equal repeated rows (lbfgs: full batch; sgd: one batch holding all rows
    # and no shuffling, so the two data sets give the same batch gradient).
    rng = np.random.RandomState(0)
    X, y = X_reg[:40], y_reg[:40]
    sw = rng.randint(0, 4, size=40)
    kw = dict(solver=solver, hidden_layer_sizes=5, random_state=0, max_iter=20, tol=0,
              shuffle=False, batch_size=200, learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPRegressor(**kw).fit(X, y, sample_weight=sw)
        repeated = MLPRegressor(**kw).fit(X.repeat(sw, axis=0), y.repeat(sw))
        unweighted = MLPRegressor(**kw).fit(X, y)
    assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-7, atol=1e-9)
    assert not np.allclose(weighted.predict(X), unweighted.predict(X))


def test_metadata_routing_sample_weight():
    sw = np.random.RandomState(0).randint(0, 3, size=len(y_iris)).astype(float)
    kw = dict(solver="lbfgs", hidden_layer_sizes=4, random_state=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        direct = MLPClassifier(**kw).fit(X_iris, y_iris, sample_weight=sw)
        with config_context(enable_metadata_routing=True):
            pipe = Pipeline([("mlp", MLPClassifier(**kw).set_fit_request(sample_weight=True))])
            pipe.fit(X_iris, y_iris, sample_weight=sw)
    assert_array_equal(pipe[-1].coefs_[0], direct.coefs_[0])
    assert hasattr(MLPRegressor(), "set_partial_fit_request")
    assert hasattr(MLPRegressor(), "set_score_request")


def test_tags_match_sklearn():
    for ours, theirs in [(MLPClassifier(), SkMLPClassifier()),
                         (MLPRegressor(), SkMLPRegressor())]:
        t1, t2 = ours.__sklearn_tags__(), theirs.__sklearn_tags__()
        assert t1.input_tags == t2.input_tags
        assert t1.classifier_tags == t2.classifier_tags
        assert t1.estimator_type == t2.estimator_type
    # the regressor declares the multi-output support it has
    assert MLPRegressor().__sklearn_tags__().target_tags.multi_output


def test_parameters_match_sklearn():
    for ours, theirs in [(MLPClassifier(), SkMLPClassifier()), (MLPRegressor(), SkMLPRegressor())]:
        p1, p2 = ours.get_params(), theirs.get_params()
        assert p1.pop("n_threads") is None
        # the training-loop parameters (issue 10) default to scikit-learn's behaviour
        new = {"scoring": None, "callbacks": None, "n_init": 1, "warmup_iter": 0}
        if isinstance(ours, MLPClassifier):
            new["class_weight"] = None
        assert {k: p1.pop(k) for k in new} == new
        # the issue-11 extensions, each at the default that keeps scikit-learn's behaviour
        extensions = {"init": "auto", "weight_decay": 0.01, "clip_grad_norm": None,
                      "clip_grad_value": None, "monitor_gradients": False, "dropout": 0.0,
                      "weight_decay_schedule": "constant", "dropout_schedule": "constant"}
        if isinstance(ours, MLPRegressor):
            extensions["huber_delta"] = 1.0
        else:
            extensions["label_smoothing"] = 0.0     # issue 17
        assert {k: p1.pop(k) for k in extensions} == extensions
        assert p1 == p2


# ---- bad input and parameters --------------------------------------------------------------------
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_bad_input(Estimator):
    X, y = X_iris[:20].copy(), y_iris[:20]
    est = Estimator(max_iter=2)
    for bad, msg in [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity")]:
        Xb = X.copy()
        Xb[3, 1] = bad
        with pytest.raises(ValueError, match=msg):
            est.fit(Xb, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.fit(X[:, 0], y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 4 features"):
        est.predict(X[:, :3])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(Xn)
    if Estimator is MLPRegressor:
        with pytest.raises(ValueError, match="Input y contains NaN"):
            est.fit(X, np.where(np.arange(20) == 2, np.nan, y))


@pytest.mark.parametrize("params,err,msg", [
    (dict(n_threads=0), InvalidParameterError, "n_threads"),
    (dict(alpha=-1.0), InvalidParameterError, "alpha"),
    (dict(solver="newton"), InvalidParameterError, "solver"),
    (dict(n_iter_no_change=0), InvalidParameterError, "n_iter_no_change"),
    (dict(beta_1=1.0), InvalidParameterError, "beta_1"),
    (dict(hidden_layer_sizes=(3, 0)), ValueError, r"hidden_layer_sizes must be > 0, got \[3, 0\]"),
])
def test_parameter_validation(params, err, msg):
    with pytest.raises(err, match=msg):
        MLPClassifier(**params).fit(X_iris, y_iris)


def test_batch_size_clipped_with_warning():
    with pytest.warns(UserWarning, match="It is going to be clipped"):
        est = MLPRegressor(batch_size=500, max_iter=1, solver="sgd").fit(X_reg[:20], y_reg[:20])
    assert est.n_iter_ == 1


@no_convergence_warning
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_readonly_and_noncontiguous_inputs(solver):
    X, y = X_digits_multi, y_digits_multi
    kw = dict(solver=solver, hidden_layer_sizes=6, random_state=0, max_iter=10)
    ref = MLPClassifier(**kw).fit(X, y)
    X_ro = X.copy()
    X_ro.setflags(write=False)
    y_ro = y.copy()
    y_ro.setflags(write=False)
    X_f = np.asfortranarray(X)
    X_strided = np.repeat(X, 2, axis=1)[:, ::2]
    assert not X_strided.flags.c_contiguous
    for Xv, yv in [(X_ro, y_ro), (X_f, y), (X_strided, y)]:
        est = MLPClassifier(**kw).fit(Xv, yv)
        for W1, W2 in zip(ref.coefs_, est.coefs_):
            assert_array_equal(W1, W2)
        assert_array_equal(est.predict_proba(Xv), ref.predict_proba(X))


def test_drop_in_pipeline_grid_search():
    # The README's example.
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    grid.fit(X_train, y_train)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(32,), (64,)]
    assert grid.score(X_test, y_test) > 0.95


