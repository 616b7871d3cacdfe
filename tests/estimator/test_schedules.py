"""Per-batch schedules (issue 18): learning_rate='coslog4', weight_decay_schedule and
dropout_schedule='flat_cos' (RealMLP's, Holzmueller et al. 2024).

References: the formulas written with numpy; AdamW's update with both schedules reimplemented in
numpy on a small network (its gradient by hand); a network whose constant dropout rates are the
scheduled ones; and the estimator's Python epoch loop, which the compiled fit loop must match
bitwise (tests/estimator/test_fitloop.py's rule), a spy proving the compiled loop ran.
"""
import warnings

import numpy as np
import pytest

from sklearn.datasets import load_digits, make_regression
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError

import cprop._fast_fit
import cprop._train
from cprop import MLPClassifier, MLPRegressor
from cprop._engine import Network
from cprop._optimizers import OptimizerState, Schedule, coslog4, flat_cos

X_dig, y_dig = load_digits(n_class=4, return_X_y=True)
X_dig = MinMaxScaler().fit_transform(X_dig[:210])
y_dig = y_dig[:210]
X_reg, y_reg = make_regression(n_samples=150, n_features=7, noise=3.0, random_state=1)
y_reg = (y_reg - y_reg.mean()) / y_reg.std()


def np_coslog4(t):
    return 0.5 * (1 - np.cos(2 * np.pi * np.log2(1 + 15 * np.asarray(t, dtype=np.float64))))


def np_flat_cos(t):
    return 0.5 * (1 + np.cos(np.pi * (np.maximum(1.0, 2 * np.asarray(t, dtype=np.float64)) - 1)))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---- the formulas -----------------------------------------------------------------------------
def test_formulas_against_numpy():
    t = np.linspace(0, 1, 1001)
    np.testing.assert_allclose([coslog4(v) for v in t], np_coslog4(t), rtol=0, atol=1e-14)
    np.testing.assert_allclose([flat_cos(v) for v in t], np_flat_cos(t), rtol=0, atol=1e-14)
    # the shapes RealMLP describes: coslog4 peaks where log2(1 + 15 t) = k + 1/2, is 0 at
    # t = (2^k - 1) / 15; flat_cos is 1 on the first half, then falls to 0
    peaks = (2.0 ** (np.arange(4) + 0.5) - 1) / 15
    zeros = (2.0 ** np.arange(5) - 1) / 15
    np.testing.assert_allclose([coslog4(v) for v in peaks], 1.0, atol=1e-12)
    np.testing.assert_allclose([coslog4(v) for v in zeros], 0.0, atol=1e-12)
    assert all(flat_cos(v) == 1.0 for v in t[t <= 0.5])
    assert np.all(np.diff([flat_cos(v) for v in t[t >= 0.5]]) < 0) and flat_cos(1.0) == 0.0


# ---- the recorded rates -------------------------------------------------------------------------
@pytest.mark.parametrize("python", [True, False])
@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw"])
def test_coslog4_curve_is_the_formula(solver, python, monkeypatch):
    monkeypatch.setattr(cprop._fast_fit, "FORCE_PYTHON", python)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), solver=solver, learning_rate="coslog4",
                               learning_rate_init=0.02, max_iter=13, n_iter_no_change=100,
                               batch_size=50, random_state=0).fit, X_dig, y_dig)
    assert clf.n_iter_ == 13
    # each epoch records its first batch's rate, t = e / max_iter
    np.testing.assert_allclose(clf.learning_rate_curve_, 0.02 * np_coslog4(np.arange(13) / 13),
                               rtol=1e-13, atol=1e-17)
    assert [r.learning_rate for r in clf.history_] == clf.learning_rate_curve_


def test_coslog4_partial_fit_past_max_iter_repeats_last_epoch(spy):
    M = 4
    clf = MLPClassifier(hidden_layer_sizes=(6,), learning_rate="coslog4", max_iter=M,
                        learning_rate_init=0.01, random_state=0)
    for _ in range(M + 3):
        clf.partial_fit(X_dig, y_dig, classes=np.unique(y_dig))
    assert spy                     # the compiled loop ran these epochs
    e = np.minimum(np.arange(M + 3), M - 1)
    np.testing.assert_allclose(clf.learning_rate_curve_, 0.01 * np_coslog4(e / M), rtol=1e-13)


# ---- compiled loop == Python loop, bitwise ------------------------------------------------------
def _end_state(est):
    opt = est._optimizer
    return ([W.copy() for W in est.coefs_] + [b.copy() for b in est.intercepts_]
            + [opt.s1.copy(), opt.s2.copy()],
            (list(est.loss_curve_), list(est.learning_rate_curve_), est.n_iter_, est.t_,
             opt.t, opt.learning_rate, est.best_loss_, est._no_improvement_count))


def _both(make, steps, monkeypatch, spy):
    out = []
    for python in (True, False):
        monkeypatch.setattr(cprop._fast_fit, "FORCE_PYTHON", python)
        n0 = len(spy)
        est = make()
        _quiet(steps, est)
        assert (len(spy) > n0) == (not python)       # the compiled loop ran (only) when allowed
        out.append(_end_state(est))
    (arrays_py, rest_py), (arrays_c, rest_c) = out
    for a, b in zip(arrays_py, arrays_c):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert rest_py == rest_c
    return arrays_py


SCHEDULED = [
    dict(solver="adam", learning_rate="coslog4"),
    dict(solver="sgd", learning_rate="coslog4", learning_rate_init=0.1),
    dict(solver="adamw", learning_rate="coslog4", weight_decay=0.2),
    dict(solver="adamw", learning_rate="coslog4", weight_decay=0.2,
         weight_decay_schedule="flat_cos"),
    dict(solver="adamw", weight_decay=0.2, weight_decay_schedule="flat_cos"),
    dict(solver="adamw", learning_rate="cosine", weight_decay=0.2,
         weight_decay_schedule="flat_cos"),
    dict(solver="adamw", learning_rate="coslog4", weight_decay=0.2,
         weight_decay_schedule="flat_cos", clip_grad_norm=0.5),
]


@pytest.mark.parametrize("opt", SCHEDULED, ids=lambda d: "-".join(f"{k}={v}" for k, v in
                                                                     d.items()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_loop_bitwise_equals_python_loop(opt, dtype, monkeypatch, spy):
    X = X_dig.astype(dtype)
    _both(lambda: MLPClassifier(hidden_layer_sizes=(9,), max_iter=11, batch_size=40,
                                random_state=0, **opt), lambda est: est.fit(X, y_dig),
          monkeypatch, spy)


def test_compiled_loop_bitwise_regressor_partial_fit(monkeypatch, spy):
    def steps(est):
        for _ in range(4):
            est.partial_fit(X_reg, y_reg)
    _both(lambda: MLPRegressor(hidden_layer_sizes=(7,), solver="adamw", learning_rate="coslog4",
                               weight_decay=0.1, weight_decay_schedule="flat_cos", max_iter=3,
                               batch_size=32, random_state=0), steps, monkeypatch, spy)


def test_weight_decay_schedule_changes_the_fit():
    """The option reaches the update: flat_cos fits differ from constant ones (only after half
    of max_iter, where flat_cos < 1), and equal them while flat_cos is still 1."""
    def fit(wds, max_iter, n_epochs):
        clf = MLPClassifier(hidden_layer_sizes=(9,), solver="adamw", weight_decay=0.5,
                            weight_decay_schedule=wds, max_iter=max_iter, batch_size=50,
                            random_state=0)
        for _ in range(n_epochs):
            clf.partial_fit(X_dig, y_dig, classes=np.unique(y_dig))
        return clf.coefs_[0]
    np.testing.assert_array_equal(fit("flat_cos", 10, 5), fit("constant", 10, 5))
    assert not np.array_equal(fit("flat_cos", 10, 6), fit("constant", 10, 6))


# ---- AdamW with both schedules against numpy ----------------------------------------------------
def _numpy_adamw(W0, b0, W1, b1, X, Y, batch, epochs, lr0, wd, alpha, beta_1, beta_2, eps,
                 wd_schedule=True):
    """Mini-batch AdamW (scikit-learn's Adam step, decoupled decay on weights only) on a
    tanh -> identity network with squared error, the rate lr0 * coslog4(t) and the decay
    lr * wd * flat_cos(t) per batch, t = batch index / batches in all epochs."""
    params = [W0.copy(), b0.copy(), W1.copy(), b1.copy()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    n = X.shape[0]
    nb = -(-n // batch)
    step = 0
    for e in range(epochs):
        for k in range(nb):
            Xb, Yb = X[k * batch:(k + 1) * batch], Y[k * batch:(k + 1) * batch]
            cn = Xb.shape[0]
            t = (e * nb + k) / (epochs * nb)
            lr = lr0 * np_coslog4(t)
            decay = lr * wd * (np_flat_cos(t) if wd_schedule else 1.0)
            W0, b0, W1, b1 = params
            H = np.tanh(Xb @ W0 + b0)
            D1 = (H @ W1 + b1 - Yb) / cn                   # d(sum of 0.5 (p - y)^2 / cn)/dP
            D0 = (D1 @ W1.T) * (1 - H ** 2)
            grads = [Xb.T @ D0 + alpha / cn * W0, D0.sum(0), H.T @ D1 + alpha / cn * W1,
                     D1.sum(0)]
            step += 1
            lr_t = lr * np.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
            for i, (p, g) in enumerate(zip(params, grads)):
                m[i] = beta_1 * m[i] + (1 - beta_1) * g
                v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
                keep = 1 - decay if i % 2 == 0 else 1.0      # weights decay, biases do not
                params[i] = p * keep - lr_t * m[i] / (np.sqrt(v[i]) + eps)
    return params


def test_adamw_with_coslog4_and_flat_cos_against_numpy():
    rng = np.random.default_rng(0)
    n, d, h = 23, 4, 5
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n, 1))
    W0, b0 = rng.normal(size=(d, h)), rng.normal(size=h) * 0.1
    W1, b1 = rng.normal(size=(h, 1)), rng.normal(size=1) * 0.1
    lr0, wd, alpha, epochs, batch = 0.05, 2.0, 1e-3, 3, 8     # 3 batches per epoch, the last 7
    net = Network([d, h, 1], "tanh", "identity", np.float64)
    params = net.pack([W0, W1], [b0, b1])
    state = OptimizerState("adamw", net.n_params, np.float64, learning_rate=lr0,
                           weight_decay=wd, beta_1=0.9, beta_2=0.95, epsilon=1e-8)
    sched = Schedule("coslog4", "adamw", lr0, max_iter=epochs,
                     weight_decay_schedule="flat_cos")
    for e in range(epochs):
        sched.before_epoch(state, e)
        net.train_epoch(params, state, X, Y, batch_size=batch, alpha=alpha)
    ref = _numpy_adamw(W0, b0, W1, b1, X, Y, batch, epochs, lr0, wd, alpha, 0.9, 0.95, 1e-8)
    got = net.coefs(params)[:1] + net.intercepts(params)[:1] + net.coefs(params)[1:] \
        + net.intercepts(params)[1:]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-13)
    # the check can fail: without the decay schedule the weights are far from these
    plain = _numpy_adamw(W0, b0, W1, b1, X, Y, batch, epochs, lr0, wd, alpha, 0.9, 0.95, 1e-8,
                         wd_schedule=False)
    assert np.abs(plain[0] - got[0]).max() > 1e-4


# ---- the dropout schedule against constant rates ------------------------------------------------
def test_dropout_schedule_uses_scaled_rates():
    """One batch per epoch: epoch e of a flat_cos dropout schedule trains exactly as a network
    whose constant dropout rates are rate * flat_cos(e / max_iter), with the same masks."""
    rng = np.random.default_rng(1)
    n, sizes, rates, M = 30, [5, 12, 9, 1], [0.3, 0.5], 8
    X, Y = rng.normal(size=(n, sizes[0])), rng.normal(size=(n, 1))
    net = Network(sizes, "relu", "identity", np.float64, dropout=rates)
    p0 = np.random.default_rng(2).normal(size=net.n_params) * 0.3

    def state():
        return OptimizerState("adam", net.n_params, np.float64, learning_rate=0.01,
                              dropout_seed=77)
    params, st = p0.copy(), state()
    ref_params, ref_st = p0.copy(), state()
    plain_params, plain_st = p0.copy(), state()
    sched = Schedule("constant", "adam", 0.01, max_iter=M, dropout_schedule="flat_cos")
    for e in range(M):
        sched.before_epoch(st, e)
        net.train_epoch(params, st, X, Y, batch_size=n)
        f = flat_cos(e / M)
        ref_net = Network(sizes, "relu", "identity", np.float64, dropout=[r * f for r in rates])
        ref_net.train_epoch(ref_params, ref_st, X, Y, batch_size=n)
        if ref_net.dropout is None:                  # f == 0: no dropout, same mask epochs
            ref_st.dropout_epoch += 1
        net.train_epoch(plain_params, plain_st, X, Y, batch_size=n)
        np.testing.assert_array_equal(params, ref_params)
        assert f < 1 or np.array_equal(params, plain_params)
    assert flat_cos((M - 1) / M) < 0.5 and not np.array_equal(params, plain_params)


def test_dropout_schedule_estimator_differs_from_constant_after_half():
    def fit(ds, n_epochs):
        clf = MLPClassifier(hidden_layer_sizes=(16,), dropout=0.4, dropout_schedule=ds,
                            max_iter=6, random_state=0)
        for _ in range(n_epochs):
            clf.partial_fit(X_dig, y_dig, classes=np.unique(y_dig))
        return clf.coefs_[0]
    np.testing.assert_array_equal(fit("flat_cos", 3), fit("constant", 3))
    assert not np.array_equal(fit("flat_cos", 4), fit("constant", 4))


# ---- the option rule ------------------------------------------------------------------------------
@pytest.mark.parametrize("Est, params, name", [
    (MLPClassifier, dict(solver="lbfgs", learning_rate="coslog4"), "learning_rate"),
    (MLPClassifier, dict(solver="adam", weight_decay_schedule="flat_cos"),
     "weight_decay_schedule"),
    (MLPRegressor, dict(solver="sgd", weight_decay_schedule="flat_cos"), "weight_decay_schedule"),
    (MLPClassifier, dict(solver="lbfgs", weight_decay_schedule="flat_cos"),
     "weight_decay_schedule"),
    (MLPClassifier, dict(dropout_schedule="flat_cos"), "dropout_schedule"),      # dropout 0
    (MLPRegressor, dict(solver="lbfgs", dropout=0.2, dropout_schedule="flat_cos"), "dropout"),
    (MLPClassifier, dict(learning_rate="coslog4", warmup_iter=3), "warmup_iter"),
    (MLPClassifier, dict(weight_decay_schedule="cosine"), "weight_decay_schedule"),
    (MLPClassifier, dict(dropout_schedule=None), "dropout_schedule"),
])
def test_invalid_combinations_raise_before_changing_anything(Est, params, name):
    X, y = (X_dig, y_dig) if Est is MLPClassifier else (X_reg, y_reg)
    est = _quiet(Est(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit, X, y)
    before = [W.copy() for W in est.coefs_]
    est.set_params(**params)
    with pytest.raises(InvalidParameterError, match=name):
        est.fit(X, y)
    for a, b in zip(before, est.coefs_):
        np.testing.assert_array_equal(a, b)


def test_defaults_are_constant_and_not_per_batch():
    clf = MLPClassifier()
    assert clf.weight_decay_schedule == "constant" and clf.dropout_schedule == "constant"
    _quiet(clf.set_params(hidden_layer_sizes=(4,), max_iter=2).fit, X_dig, y_dig)
    assert clf._optimizer.batch_schedule is None


# ---- persistence and scikit-learn -----------------------------------------------------------------
def test_skops_round_trip_continues_the_schedules():
    sio = pytest.importorskip("skops.io", reason="needs the 'skops' extra")
    clf = MLPClassifier(hidden_layer_sizes=(6,), solver="adamw", learning_rate="coslog4",
                        weight_decay_schedule="flat_cos", dropout=0.2,
                        dropout_schedule="flat_cos", max_iter=6, random_state=0)
    classes = np.unique(y_dig)
    for _ in range(2):
        clf.partial_fit(X_dig, y_dig, classes=classes)
    data = sio.dumps(clf)
    assert sio.get_untrusted_types(data=data) == ["cprop._mlp.MLPClassifier"]
    loaded = sio.loads(data, trusted=["cprop._mlp.MLPClassifier"])
    for _ in range(3):
        clf.partial_fit(X_dig, y_dig)
        loaded.partial_fit(X_dig, y_dig)
    for a, b in zip(clf.coefs_, loaded.coefs_):
        np.testing.assert_array_equal(a, b)
    assert loaded.learning_rate_curve_ == clf.learning_rate_curve_


def test_scheduled_fits_are_bitwise_the_same_for_any_thread_count(threaded_passes):
    fits = []
    for n_threads in (1, 2):
        clf = MLPClassifier(hidden_layer_sizes=(40,), solver="adamw", learning_rate="coslog4",
                            weight_decay_schedule="flat_cos", dropout=0.3,
                            dropout_schedule="flat_cos", max_iter=4, batch_size=50,
                            random_state=0, n_threads=n_threads)
        with threaded_passes() as teams:
            fits.append(_quiet(clf.fit, X_dig, y_dig))
        assert teams["gemm"] == (0 if n_threads == 1 else 2)      # the threads ran
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        np.testing.assert_array_equal(a, b)
    assert fits[0].loss_curve_ == fits[1].loss_curve_
