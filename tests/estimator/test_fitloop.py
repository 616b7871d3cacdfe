"""The compiled fit loop (cprop._train.fit_epochs driven by cprop._fast_fit, issue 19).

The reference is the estimator's own Python epoch loop (forced with ``_fast_fit.FORCE_PYTHON``),
which tests/estimator/test_compare_sklearn.py holds bitwise equal to scikit-learn's: every fitted
attribute, the optimizer state, the history, the warnings and the RandomState's state after the
fit must be bitwise the same, and the compiled path must really have run (a spy counts its
calls).  The shuffle is checked against numpy's ``RandomState.shuffle`` itself.
"""
import signal
import sys
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn.datasets import load_digits, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._testing import assert_array_equal

import cprop
import cprop._engine
import cprop._fast_fit
import cprop._train
from cprop import MLPClassifier, MLPRegressor
from cprop._engine import Network, OptimizerState

X_dig, y_dig = load_digits(n_class=5, return_X_y=True)
X_dig = MinMaxScaler().fit_transform(X_dig[:260])
y_dig = y_dig[:260]
X_reg, y_reg = make_regression(n_samples=230, n_features=9, noise=5.0, random_state=2)
y_reg = (y_reg - y_reg.mean()) / y_reg.std()


def _state(est):
    """Everything a stochastic fit leaves behind that the two loops must agree on."""
    opt = est._optimizer
    rs = est._random_state.get_state(legacy=False)
    return dict(
        coefs=[W.copy() for W in est.coefs_], intercepts=[b.copy() for b in est.intercepts_],
        loss_curve=list(est.loss_curve_), n_iter=est.n_iter_, t=est.t_, loss=est.loss_,
        best_loss=est.best_loss_, count=est._no_improvement_count,
        lr_curve=list(est.learning_rate_curve_),
        history=[(r.epoch, r.loss, r.learning_rate, r.n_samples, r.partial, r.restart,
                  r.validation_loss, r.validation_score) for r in est.history_],
        opt=(opt.t, opt.learning_rate, opt.s1.copy(), opt.s2.copy()),
        rng=(rs["state"]["key"].copy(), rs["state"]["pos"], rs["has_gauss"], rs["gauss"]),
        interrupted=est._interrupted)


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        va, vb = a[key], b[key]
        if key in ("coefs", "intercepts"):
            for x, y in zip(va, vb):
                assert x.dtype == y.dtype
                assert_array_equal(x, y)
        elif key in ("opt", "rng"):
            for x, y in zip(va, vb):
                assert_array_equal(x, y)
        else:
            assert va == vb, key
            if key == "loss_curve":
                assert all(type(v) is float for v in va)


def _run(make, steps, python):
    """Run ``steps(est)`` on a fresh estimator with the Python or compiled loop; returns the
    end state and the warnings raised (category, message)."""
    old = cprop._fast_fit.FORCE_PYTHON
    cprop._fast_fit.FORCE_PYTHON = python
    try:
        est = make()
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            steps(est)
    finally:
        cprop._fast_fit.FORCE_PYTHON = old
    return _state(est), [(w.category, str(w.message)) for w in rec]


def _compare(make, steps, spy, expect_compiled=True):
    n0 = len(spy)
    ref, ref_warn = _run(make, steps, python=True)
    n_ref = len(spy)
    got, got_warn = _run(make, steps, python=False)
    assert n_ref == n0                          # the forced Python loop never calls it
    assert (len(spy) > n_ref) == expect_compiled
    _assert_same(ref, got)
    assert ref_warn == got_warn
    return got, got_warn


def _fit(X, y):
    return lambda est: est.fit(X, y)


OPTIMIZERS = [
    dict(solver="adam"),
    dict(solver="adam", beta_1=0.8, beta_2=0.99, epsilon=1e-7),
    dict(solver="adamw", weight_decay=0.05),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    dict(solver="sgd", momentum=0.0),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05, power_t=0.3),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.2, tol=1e-2,
         n_iter_no_change=2),
    dict(solver="adam", learning_rate="cosine", warmup_iter=3),
    dict(solver="sgd", learning_rate="cosine", learning_rate_init=0.1),
    dict(solver="adam", clip_grad_norm=0.5),
    dict(solver="sgd", clip_grad_value=0.01, learning_rate_init=0.1),
]


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda d: "-".join(f"{k}={v}" for k, v in
                                                                      d.items()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_classifier_bitwise_equal_to_python_loop(opt, dtype, spy):
    X = X_dig.astype(dtype)
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(11,), max_iter=15, batch_size=48,
                                   random_state=0, **opt), _fit(X, y_dig), spy)


@pytest.mark.parametrize("opt", OPTIMIZERS[:8], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["squared_error", "huber"])
def test_regressor_bitwise_equal_to_python_loop(opt, dtype, loss, spy):
    X = X_reg.astype(dtype)
    _compare(lambda: MLPRegressor(loss=loss, hidden_layer_sizes=(7, 5), max_iter=12,
                                  batch_size=40, random_state=1, **opt), _fit(X, y_reg), spy)


@pytest.mark.parametrize("shuffle", [True, False])
def test_shuffle_on_and_off(shuffle, spy):
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(9,), max_iter=8, shuffle=shuffle,
                                   random_state=3), _fit(X_dig, y_dig), spy)


def test_tol_stopping_stops_at_the_same_epoch(spy):
    got, warns = _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), max_iter=500,
                                                tol=1e-2, n_iter_no_change=3, random_state=0),
                          _fit(X_dig, y_dig), spy)
    assert got["n_iter"] < 500 and not warns          # stopped by tol, no ConvergenceWarning


def test_n_iter_no_change_inf_never_stops(spy):
    got, _ = _compare(lambda: MLPRegressor(hidden_layer_sizes=(5,), max_iter=7, tol=10.0,
                                           n_iter_no_change=np.inf, random_state=0),
                      _fit(X_reg, y_reg), spy)
    assert got["n_iter"] == 7 and got["count"] == 6     # every epoch but the first


def test_max_iter_warning(spy):
    got, warns = _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), max_iter=4,
                                                random_state=0), _fit(X_dig, y_dig), spy)
    assert got["n_iter"] == 4
    assert [c for c, _ in warns] == [ConvergenceWarning]


def test_adaptive_schedule_divides_the_rate(spy):
    got, _ = _compare(lambda: MLPClassifier(
        hidden_layer_sizes=(10,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.3,
        tol=0.5, n_iter_no_change=1, max_iter=40, random_state=0), _fit(X_dig, y_dig), spy)
    rates = got["lr_curve"]
    assert rates[0] == 0.3 and min(rates) < 0.3 / 5      # divided at least twice


def test_batch_size_clipping_warning_and_odd_batches(spy):
    _compare(lambda: MLPRegressor(hidden_layer_sizes=(6,), batch_size=1000, max_iter=5,
                                  random_state=0), _fit(X_reg, y_reg), spy)
    _compare(lambda: MLPRegressor(hidden_layer_sizes=(6,), batch_size=37, max_iter=5,
                                  random_state=0), _fit(X_reg, y_reg), spy)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "poisson"])
def test_other_outputs(kind, spy):
    if kind == "binary":
        make = lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=0)
        steps = _fit(X_dig, y_dig % 2)
    elif kind == "multilabel":
        X, Y = make_multilabel_classification(n_samples=150, n_classes=4, random_state=0)
        make = lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=0)
        steps = _fit(X / X.max(), Y)
    else:
        make = lambda: MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=6,
                                    random_state=0)
        steps = _fit(X_reg, np.exp(y_reg / 3))
    _compare(make, steps, spy)


def test_sparse_input(spy):
    X = sp.csr_matrix(np.where(X_dig > 0.5, X_dig, 0.0))
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), max_iter=6, random_state=0),
             _fit(X, y_dig), spy)


def test_partial_fit(spy):
    def steps(est):
        est.partial_fit(X_dig, y_dig, classes=np.unique(y_dig))
        for _ in range(4):
            est.partial_fit(X_dig[:200], y_dig[:200])
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), random_state=0), steps, spy)
    # the cosine schedule's epoch count runs on over partial_fit calls
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), random_state=0,
                                   learning_rate="cosine", max_iter=4), steps, spy)


def test_warm_start_continues_the_bookkeeping(spy):
    def steps(est):
        est.fit(X_dig, y_dig)
        est.set_params(max_iter=9, tol=1e-3)
        est.fit(X_dig, y_dig)
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), warm_start=True, max_iter=6,
                                   random_state=0), steps, spy)
    # after an lbfgs fit (no optimizer state, no loss curve)
    def after_lbfgs(est):
        est.fit(X_dig, y_dig)
        est.set_params(solver="adam", max_iter=5)
        est.fit(X_dig, y_dig)
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=5,
                                   warm_start=True, random_state=0), after_lbfgs, spy)


def test_random_state_instance_is_left_as_the_python_loop_leaves_it(spy):
    for python in (True, False):
        rs = np.random.RandomState(7)
        cprop._fast_fit.FORCE_PYTHON = python
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=rs).fit(
                    X_dig, y_dig)
        finally:
            cprop._fast_fit.FORCE_PYTHON = False
        draws = rs.randint(0, 2 ** 31, size=8)
        if python:
            ref = draws
    assert_array_equal(draws, ref)
    assert len(spy) == 1


def test_threads_bitwise_identical(spy):
    _compare(lambda: MLPClassifier(hidden_layer_sizes=(40,), max_iter=5, random_state=0,
                                   n_threads=2), _fit(X_dig, y_dig), spy)
    one, _ = _run(lambda: MLPClassifier(hidden_layer_sizes=(40,), max_iter=5, random_state=0,
                                        n_threads=1), _fit(X_dig, y_dig), python=False)
    two, _ = _run(lambda: MLPClassifier(hidden_layer_sizes=(40,), max_iter=5, random_state=0,
                                        n_threads=2), _fit(X_dig, y_dig), python=False)
    for key in ("coefs", "intercepts", "loss_curve"):
        one[key] = one[key]
    _assert_same({k: one[k] for k in ("coefs", "intercepts", "loss_curve")},
                 {k: two[k] for k in ("coefs", "intercepts", "loss_curve")})


@pytest.mark.parametrize("params", [
    dict(early_stopping=True), dict(verbose=1), dict(callbacks=[lambda est, rec: None]),
    dict(dropout=0.2), dict(monitor_gradients=True), dict(class_weight="balanced")], ids=str)
def test_features_that_need_python_keep_the_python_loop(params, spy, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0, **params).fit(
            X_dig, y_dig)
    assert not spy
    sw = np.ones(len(y_dig))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(
            X_dig, y_dig, sample_weight=sw)
    assert not spy


# ---- the shuffle ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1000, 70000])
@pytest.mark.parametrize("bitgen", ["MT19937", "PCG64"])
def test_shuffle_draws_what_numpy_draws(n, bitgen):
    make = getattr(np.random, bitgen)
    a_rs = np.random.RandomState(make(12345))
    b_rs = np.random.RandomState(make(12345))
    a = np.arange(n, dtype=np.intp) * 3 + 1
    b = a.copy()
    for _ in range(3):
        a_rs.shuffle(a)
        cprop._train.shuffle_like_numpy(b_rs._bit_generator, b)
        assert_array_equal(a, b)
    assert a_rs.randint(0, 2 ** 62) == b_rs.randint(0, 2 ** 62)   # same state afterwards


# ---- the engine call itself -----------------------------------------------------------------------
def _engine_args(net, X, Y, n_epochs, **kw):
    params = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, net.dtype)
    args = dict(t=0.0, schedule=0, learning_rate=1e-3, learning_rate_init=1e-3, power_t=0.5,
                warmup_iter=0, max_iter=n_epochs, epoch0=0, n_seen=0, tol=1e-4,
                n_iter_no_change=10, no_improvement=0, best_loss=np.inf, poll_flops=1e9,
                out_loss=np.empty(n_epochs), out_lr=np.empty(n_epochs),
                out_time=np.empty(n_epochs), out_rows=np.empty(n_epochs, dtype=np.intp),
                momentum=0.9, nesterov=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                weight_decay=0.0, clip_grad_norm=0.0, clip_grad_value=0.0)
    args.update(kw)
    return params, st, args


def test_engine_interrupt_between_batches_keeps_a_partial_epoch():
    """A hook raising at its 8th call (poll_flops tiny: a poll after each of the 5 first
    batches of an epoch and one at its end) ends the call after batch 2 of epoch 2: everything equals epoch 1 by
    train_epoch plus a train_epoch over those two batches' rows."""
    X = X_dig
    Y = np.eye(5)[y_dig]
    net = Network([64, 8, 5], "relu", "softmax", np.float64, n_threads=1)
    params, st, args = _engine_args(net, X, Y, 4, poll_flops=1.0)
    calls = []

    def hook(rows):
        calls.append(rows)
        if len(calls) == 8:
            raise KeyboardInterrupt

    idx = np.arange(len(Y), dtype=np.intp)
    rs = np.random.RandomState(0)
    grad = np.empty_like(params)
    res = cprop._train.fit_epochs(params, grad, st.s1, st.s2, X, None, None, None, 64, Y, idx,
                                  rs._bit_generator, 48, net._checked_plan(48), 1e-4, "adam",
                                  hook=hook, **args)
    done, t, n_seen, lr, count, best, stopped, partial, exc = res
    assert isinstance(exc, KeyboardInterrupt) and partial and not stopped
    assert done == 2 and t == 6 + 2 and n_seen == 260 + 96
    assert calls == [48, 96, 144, 192, 240, 260, 48, 96]  # 5 batch polls, the epoch end, 2 more
    # reference: the same two shuffles and engine epochs
    p2 = net.init_params(np.random.RandomState(0))
    st2 = OptimizerState("adam", net.n_params, net.dtype)
    rs2 = np.random.RandomState(0)
    order = np.arange(len(Y))
    perm = np.arange(len(Y))
    rs2.shuffle(perm)
    order = order[perm]
    l1 = net.train_epoch(p2, st2, X, Y, None, order, 48, 1e-4)
    perm = np.arange(len(Y))
    rs2.shuffle(perm)
    order = order[perm]
    l2 = net.train_epoch(p2, st2, X[order[:96]], Y[order[:96]], None, None, 48, 1e-4)
    assert_array_equal(params, p2)
    assert_array_equal(st.s1, st2.s1)
    assert args["out_loss"][0] == l1 and args["out_loss"][1] == l2
    assert list(args["out_rows"][:2]) == [260, 96]
    assert_array_equal(idx, order)
    assert rs.randint(0, 2 ** 31) == rs2.randint(0, 2 ** 31)


def test_engine_interrupt_at_an_epoch_end_keeps_whole_epochs():
    X = X_dig
    Y = np.eye(5)[y_dig]
    net = Network([64, 8, 5], "relu", "softmax", np.float64, n_threads=1)
    # poll_flops = an epoch's flops: one poll per epoch, at its end
    params, st, args = _engine_args(net, X, Y, 5,
                                    poll_flops=260 * cprop._train.row_flops([64, 8, 5]))
    calls = []

    def hook(rows):
        calls.append(rows)
        if len(calls) == 2:
            raise KeyboardInterrupt

    idx = np.arange(len(Y), dtype=np.intp)
    res = cprop._train.fit_epochs(params, np.empty_like(params), st.s1, st.s2, X, None, None,
                                  None, 64, Y, idx, None, 48, net._checked_plan(48), 1e-4, "adam",
                                  hook=hook, **args)
    done, t, n_seen, lr, count, best, stopped, partial, exc = res
    assert calls == [260, 260] and done == 2 and not partial and n_seen == 520
    assert isinstance(exc, KeyboardInterrupt)
    assert best == min(args["out_loss"][:2])


def test_engine_rejects_bad_arguments():
    net = Network([64, 8, 5], "relu", "softmax", np.float64, n_threads=1)
    Y = np.eye(5)[y_dig]
    params, st, args = _engine_args(net, X_dig, Y, 2)
    plan = net._checked_plan(48)
    good = np.arange(len(Y), dtype=np.intp)
    with pytest.raises(ValueError, match="sample_idx must hold"):
        cprop._train.fit_epochs(params, np.empty_like(params), st.s1, st.s2, X_dig, None, None,
                                None, 64, Y, good[:-1], None, 48, plan, 0.0, "adam", **args)
    bad = good.copy()
    bad[3] = len(Y)
    with pytest.raises(ValueError, match="sample_idx must hold"):
        cprop._train.fit_epochs(params, np.empty_like(params), st.s1, st.s2, X_dig, None, None,
                                None, 64, Y, bad, None, 48, plan, 0.0, "adam", **args)
    with pytest.raises(ValueError, match="schedule"):
        cprop._train.fit_epochs(params, np.empty_like(params), st.s1, st.s2, X_dig, None, None,
                                None, 64, Y, good, None, 48, plan, 0.0, "adam",
                                **dict(args, schedule=7))
    with pytest.raises(ValueError, match="batch_size"):
        cprop._train.fit_epochs(params, np.empty_like(params), st.s1, st.s2, X_dig, None, None,
                                None, 64, Y, good, None, 49, plan, 0.0, "adam", **args)


# ---- Ctrl-C in a compiled fit (as tests/estimator/test_training_loop.py's child, without callbacks)
# (after child_process.LONG_EPOCHS)
_CHILD = r"""
import cprop._train
calls = []
class Counting(cprop._train.Runner):
    def fit_epochs(self, *a, **k):
        calls.append(1)
        return super().fit_epochs(*a, **k)
cprop._train.Runner = Counting
clf = MLPClassifier(hidden_layer_sizes=(1024,), max_iter=50, random_state=0, n_threads=1)
print("START", flush=True)
clf.fit(X, y)
n = len(y)
last = clf.history_[-1]
consistent = (clf.n_iter_ == len(clf.loss_curve_) == len(clf.history_) and clf.t_ ==
              (clf.n_iter_ - 1) * n + last.n_samples and last.partial and 0 < last.n_samples < n
              and len(calls) == 1)
print("FIT RETURNED", clf.n_iter_, consistent, flush=True)
i = -1
try:
    for i in range(1000):
        clf.partial_fit(X, y)
        print("PF", i, flush=True)
except KeyboardInterrupt:
    print("LOOP STOPPED", i, clf.history_[-1].partial, clf.n_iter_, len(calls) > 1, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_stops_a_compiled_fit_promptly(child_process):
    proc = child_process.start(child_process.LONG_EPOCHS + _CHILD)
    try:
        child_process.wait_for(proc, "START", 120)
        time.sleep(0.8)           # validation, then into the first (about 1.5 s) epoch
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line, t1 = child_process.wait_for(proc, "FIT RETURNED", 60)
        fit_latency = t1 - t0
        assert line.split()[3] == "True", line   # n_iter_, t_, loss_curve_ and history agree
        _, t_pf = child_process.wait_for(proc, "PF 0", 60)
        time.sleep(0.5)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line, t1 = child_process.wait_for(proc, "LOOP STOPPED", 60)
        loop_latency = t1 - t0
        assert line.split()[3] == "True" and line.split()[5] == "True", line
    finally:
        proc.kill()
        proc.wait()
    print(f"Ctrl-C latency (compiled loop): fit {fit_latency:.3f} s, partial_fit loop "
          f"{loop_latency:.3f} s")
    assert fit_latency < 0.2 and loop_latency < 0.2
