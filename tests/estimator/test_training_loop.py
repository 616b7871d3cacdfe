"""The training loop beyond scikit-learn's MLP (issue 10), each feature against an independent
reference: scikit-learn's own estimators, metrics and utilities, numpy formulas, or cprop fits
that reach the same state another way (an explicit split, separate seeded fits, a replayed
partial epoch).
"""
import functools
import json
import csv
import os
import pickle
import signal
import sys
import time
import warnings

import numpy as np
import pytest

from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.metrics import get_scorer, log_loss, mean_poisson_deviance, mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils._testing import assert_allclose, assert_array_equal
from sklearn.utils.class_weight import compute_sample_weight

import cprop._engine
import cprop._fast_fit
import cprop._progress
import cprop.callbacks
from cprop import MLPClassifier, MLPRegressor
from cprop._engine import Network, _Epochs
from cprop.callbacks import HistoryLogger, ModelCheckpoint

X_dig, y_dig = load_digits(n_class=4, return_X_y=True)
X_dig = MinMaxScaler().fit_transform(X_dig[:300])
y_dig = y_dig[:300]
X_val_dig, y_val_dig = X_dig[240:], y_dig[240:]
X_tr_dig, y_tr_dig = X_dig[:240], y_dig[:240]

X_reg, y_reg = make_regression(n_samples=200, n_features=8, noise=10.0, random_state=3)
y_reg = (y_reg - y_reg.mean()) / y_reg.std()


pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ---- 1. own validation data ------------------------------------------------------------------
def test_X_val_equals_the_validation_fraction_split_given_explicitly(assert_same_weights):
    # early stopping's split, replayed with the RandomState draws it follows (the initial
    # weights, then train_test_split); shuffle=False so no later draw differs
    kw = dict(hidden_layer_sizes=(7,), random_state=5, early_stopping=True, shuffle=False,
              max_iter=60, validation_fraction=0.2, n_iter_no_change=5)
    split_run = MLPRegressor(**kw).fit(X_reg, y_reg)
    rs = np.random.RandomState(5)
    for fan_in, fan_out in [(8, 7), (7, 1)]:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        rs.uniform(-bound, bound, (fan_in, fan_out))
        rs.uniform(-bound, bound, fan_out)
    X_tr, X_va, y_tr, y_va = train_test_split(X_reg, y_reg, random_state=rs, test_size=0.2)
    own = MLPRegressor(**kw).fit(X_tr, y_tr, X_val=X_va, y_val=y_va)
    assert_same_weights(split_run, own)
    assert own.validation_scores_ == split_run.validation_scores_
    assert own.n_iter_ == split_run.n_iter_
    assert own.best_validation_score_ == split_run.best_validation_score_
    assert_allclose(own.validation_loss_curve_, split_run.validation_loss_curve_, rtol=0)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_validation_loss_curve_matches_sklearn_metrics(solver, assert_same_weights):
    clf = MLPClassifier(hidden_layer_sizes=(10,), solver=solver, max_iter=8, random_state=0)
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == clf.n_iter_ == 8
    assert_allclose(clf.validation_loss_curve_[-1],
                    log_loss(y_val_dig, clf.predict_proba(X_val_dig), labels=clf.classes_),
                    rtol=1e-12)
    assert_allclose(clf.validation_scores_[-1], clf.score(X_val_dig, y_val_dig), rtol=1e-12)
    # weighted validation data
    sw = np.linspace(0.5, 2.0, len(y_val_dig))
    clf2 = clone(clf).fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig,
                          sample_weight_val=sw)
    assert_allclose(clf2.validation_loss_curve_[-1],
                    log_loss(y_val_dig, clf2.predict_proba(X_val_dig), sample_weight=sw),
                    rtol=1e-12)
    assert_same_weights(clf, clf2)           # validation weights never touch training


def test_validation_loss_regression_binary_multilabel_poisson():
    reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    reg.fit(X_reg[:150], y_reg[:150], X_val=X_reg[150:], y_val=y_reg[150:])
    assert_allclose(reg.validation_loss_curve_[-1],
                    0.5 * mean_squared_error(y_reg[150:], reg.predict(X_reg[150:])), rtol=1e-12)
    pois = MLPRegressor(loss="poisson", hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    yp = np.exp(y_reg / 3)
    pois.fit(X_reg[:150], yp[:150], X_val=X_reg[150:], y_val=yp[150:])
    assert_allclose(pois.validation_loss_curve_[-1],
                    0.5 * mean_poisson_deviance(yp[150:], pois.predict(X_reg[150:])), rtol=1e-10)
    yb = (y_tr_dig > 1).astype(int)
    binc = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    binc.fit(X_tr_dig, yb, X_val=X_val_dig, y_val=(y_val_dig > 1).astype(int))
    assert_allclose(binc.validation_loss_curve_[-1],
                    log_loss((y_val_dig > 1).astype(int), binc.predict_proba(X_val_dig)),
                    rtol=1e-12)
    Xm, Ym = make_multilabel_classification(n_samples=120, n_features=10, n_classes=3,
                                            random_state=0)
    ml = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    ml.fit(Xm[:100], Ym[:100], X_val=Xm[100:], y_val=Ym[100:])
    P = ml.predict_proba(Xm[100:])
    ref = -np.mean((Ym[100:] * np.log(P) + (1 - Ym[100:]) * np.log(1 - P)).sum(axis=1))
    assert_allclose(ml.validation_loss_curve_[-1], ref, rtol=1e-10)


def test_X_val_without_early_stopping_only_records(assert_same_weights):
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=1).fit(X_tr_dig, y_tr_dig)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=1)
    b.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert_same_weights(a, b)
    assert a.loss_curve_ == b.loss_curve_
    assert a.validation_scores_ is None and a.validation_loss_curve_ is None
    assert b.best_validation_score_ == max(b.validation_scores_)


def test_partial_fit_records_validation_history():
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=1)
    for _ in range(3):
        clf.partial_fit(X_tr_dig, y_tr_dig, classes=np.unique(y_dig), X_val=X_val_dig,
                        y_val=y_val_dig)
    assert len(clf.validation_loss_curve_) == len(clf.loss_curve_) == 3
    assert_allclose(clf.validation_loss_curve_[-1],
                    log_loss(y_val_dig, clf.predict_proba(X_val_dig), labels=clf.classes_),
                    rtol=1e-12)


def test_sparse_validation_data_and_lbfgs_restarts():
    import scipy.sparse as sp
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0, scoring="accuracy")
    a.fit(sp.csr_matrix(X_tr_dig), y_tr_dig, X_val=sp.csc_matrix(X_val_dig), y_val=y_val_dig)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0, scoring="accuracy")
    b.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert_allclose(a.validation_loss_curve_, b.validation_loss_curve_, rtol=1e-12)
    assert a.validation_scores_ == b.validation_scores_
    # lbfgs trains on X only and ranks its restarts by the score on X_val
    lb = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=20, n_init=2,
                       random_state=0).fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    scores = [r["score"] for r in lb.restarts_]
    assert lb.score(X_val_dig, y_val_dig) == max(scores)


def test_bad_validation_data():
    clf = MLPClassifier(max_iter=2)
    with pytest.raises(ValueError, match="X_val and y_val must be given together"):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig)
    with pytest.raises(ValueError, match="classes"):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig + 10)
    with pytest.raises(ValueError, match="features"):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig[:, :5], y_val=y_val_dig)


def test_X_val_through_metadata_routing():
    with config_context(enable_metadata_routing=True):
        mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0)
        mlp.set_fit_request(X_val=True, y_val=True)
        pipe = Pipeline([("scale", StandardScaler()), ("mlp", mlp)], transform_input=["X_val"])
        pipe.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
        fitted = pipe.named_steps["mlp"]
        Xv = pipe.named_steps["scale"].transform(X_val_dig)
        assert_allclose(fitted.validation_loss_curve_[-1],
                        log_loss(y_val_dig, fitted.predict_proba(Xv)), rtol=1e-12)


# ---- 2. scoring ------------------------------------------------------------------------------
def test_scoring_loss_is_minus_validation_loss():
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0, scoring="loss")
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert_array_equal(clf.validation_scores_, -np.asarray(clf.validation_loss_curve_))


@pytest.mark.parametrize("scoring", ["neg_log_loss", "balanced_accuracy", "callable"])
def test_scorer_early_stopping_keeps_the_best_epoch(scoring):
    if scoring == "callable":
        scoring = get_scorer("f1_macro")
    clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=40, random_state=0,
                        early_stopping=True, n_iter_no_change=3, scoring=scoring,
                        learning_rate_init=0.01)
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    scorer = get_scorer(scoring) if isinstance(scoring, str) else scoring
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the kept weights are the best epoch's: the scorer on them gives the best score
    assert_allclose(scorer(clf, X_val_dig, y_val_dig), clf.best_validation_score_, rtol=1e-12)


def test_scoring_with_the_internal_split():
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0,
                        early_stopping=True, scoring="neg_log_loss")
    clf.fit(X_dig, y_dig)
    assert all(s <= 0 for s in clf.validation_scores_)
    assert_allclose(clf.validation_scores_, -np.asarray(clf.validation_loss_curve_), rtol=1e-10)


# ---- 3. history -------------------------------------------------------------------------------
def test_history_learning_rates_and_times():
    clf = MLPClassifier(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1,
                        power_t=0.5, hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    clf.fit(X_tr_dig, y_tr_dig)
    n = len(y_tr_dig)
    ref = [0.1] + [0.1 / (k * n + 1) ** 0.5 for k in range(1, 5)]
    assert_allclose(clf.learning_rate_curve_, ref, rtol=1e-15)
    assert len(clf.epoch_times_) == 5 and all(t > 0 for t in clf.epoch_times_)
    assert [r.loss for r in clf.history_] == clf.loss_curve_
    assert [r.epoch for r in clf.history_] == [1, 2, 3, 4, 5]
    assert all(r.n_samples == n and not r.partial for r in clf.history_)


def test_history_records_adaptive_divisions():
    clf = MLPClassifier(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5,
                        hidden_layer_sizes=(8,), max_iter=60, random_state=0, tol=1.0,
                        n_iter_no_change=2)
    clf.fit(X_tr_dig, y_tr_dig)
    lrs = np.asarray(clf.learning_rate_curve_)
    ratios = lrs[1:] / lrs[:-1]
    assert set(np.round(ratios, 12)) <= {1.0, 0.2} and (ratios < 1).any()


# ---- 4. callbacks -------------------------------------------------------------------------------
class _Recorder:
    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.records = []

    def __call__(self, est, record):
        self.records.append(record)
        return self.stop_at is not None and record.epoch >= self.stop_at


def test_callbacks_see_each_epoch_and_can_stop(assert_same_weights):
    rec = _Recorder(stop_at=4)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0, callbacks=[rec])
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert clf.n_iter_ == 4 and len(rec.records) == 4
    assert [r.loss for r in rec.records] == clf.loss_curve_
    assert [r.validation_loss for r in rec.records] == clf.validation_loss_curve_
    ref = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0)
    ref.fit(X_tr_dig, y_tr_dig)
    assert_same_weights(clf, ref)                      # stopping cleanly after epoch 4
    with pytest.raises(AttributeError):
        rec.records[0].loss = 0.0               # records are read-only


def test_callbacks_survive_clone_and_pickle(tmp_path, assert_same_weights):
    ckpt = ModelCheckpoint(monitor="loss")
    log = HistoryLogger(str(tmp_path / "h.csv"))
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                        callbacks=[ckpt, log])
    c2 = clone(clf)
    assert [type(c) for c in c2.callbacks] == [ModelCheckpoint, HistoryLogger]
    assert c2.callbacks[0] is not ckpt and c2.callbacks[0].monitor == "loss"
    clf.fit(X_tr_dig, y_tr_dig)
    back = pickle.loads(pickle.dumps(clf))
    assert back.callbacks[0].best_epoch_ == ckpt.best_epoch_
    assert_array_equal(back.callbacks[0].best_coefs_[0], ckpt.best_coefs_[0])
    assert back.history_ == clf.history_
    c2.fit(X_tr_dig, y_tr_dig)
    assert_same_weights(c2, clf)


def test_checkpoint_restores_exactly_the_best_epoch(tmp_path, assert_same_weights):
    path = tmp_path / "best.pkl"
    ckpt = ModelCheckpoint(monitor="validation_loss", path=path)
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.05, max_iter=25,
                        random_state=0, callbacks=[ckpt], n_iter_no_change=1000)
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    best = int(np.argmin(clf.validation_loss_curve_)) + 1
    assert ckpt.best_epoch_ == best and best < clf.n_iter_     # overfits after its best epoch
    ref = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.05, max_iter=best,
                        random_state=0, n_iter_no_change=1000).fit(X_tr_dig, y_tr_dig)
    ckpt.restore(clf)
    assert_same_weights(clf, ref)
    assert_allclose(log_loss(y_val_dig, clf.predict_proba(X_val_dig)), ckpt.best_value_,
                    rtol=1e-12)
    with open(path, "rb") as f:
        saved = pickle.load(f)
    assert_same_weights(saved, ref)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_history_logger(tmp_path, fmt):
    path = tmp_path / f"history.{fmt}"
    clf = MLPRegressor(hidden_layer_sizes=(5,), max_iter=4, random_state=0,
                       callbacks=[HistoryLogger(path)])
    clf.fit(X_reg[:150], y_reg[:150], X_val=X_reg[150:], y_val=y_reg[150:])
    if fmt == "csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        losses = [float(r["loss"]) for r in rows]
        vlosses = [float(r["validation_loss"]) for r in rows]
    else:
        with open(path) as f:
            rows = json.load(f)
        losses = [r["loss"] for r in rows]
        vlosses = [r["validation_loss"] for r in rows]
    assert losses == clf.loss_curve_ and vlosses == clf.validation_loss_curve_
    clf.fit(X_reg[:150], y_reg[:150])           # a new fit rewrites the file
    with open(path) as f:
        n_lines = len(f.read().strip().splitlines())
    assert n_lines == (5 if fmt == "csv" else n_lines) and len(clf.loss_curve_) == 4


# ---- 5. progress --------------------------------------------------------------------------------
def test_progress_plain_line_advances_inside_epochs(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)          # as if tqdm were not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(cprop._engine, "POLL_FLOPS", 1)    # poll after every batch
    inside = []
    original = cprop._progress.ProgressBar.update

    def update(self, rows):
        inside.append(rows)
        return original(self, rows)

    monkeypatch.setattr(cprop._progress.ProgressBar, "update", update)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, batch_size=50, random_state=0,
                        verbose=2)
    clf.fit(X_tr_dig, y_tr_dig)
    err = capsys.readouterr().err
    assert "samples/s" in err and "100.0%" in err and err.endswith("\n")
    # every epoch of 240 rows reported 50, 100, 150, 200 rows from inside the compiled loop
    assert inside == [50, 100, 150, 200] * 3


def test_progress_uses_tqdm_when_installed(capsys):
    pytest.importorskip("tqdm", reason="tqdm (optional) is not installed")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0, verbose=2)
    clf.fit(X_tr_dig, y_tr_dig)
    captured = capsys.readouterr()
    assert "samples" in captured.err and "Iteration 2" in captured.out


def test_polling_does_not_change_results(monkeypatch, assert_same_weights):
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X_dig, y_dig)
    monkeypatch.setattr(cprop._engine, "POLL_FLOPS", 1)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0, verbose=2)
    b.fit(X_dig, y_dig)
    assert_same_weights(a, b)
    assert a.loss_curve_ == b.loss_curve_


# ---- 6. Ctrl-C ----------------------------------------------------------------------------------
def test_interrupt_inside_an_epoch_keeps_a_consistent_model(monkeypatch, assert_same_weights):
    """Ctrl-C after 3 batches of epoch 3: the partial epoch is kept and counted; everything
    equals two full epochs followed by an engine epoch over those 3 batches' rows."""
    monkeypatch.setattr(cprop._engine, "POLL_FLOPS", 1)
    orders = []
    original = _Epochs.__call__         # what the fit's loop calls once per epoch

    def spy(self, order, *args, **kwargs):
        orders.append(np.array(order))
        return original(self, order, *args, **kwargs)

    monkeypatch.setattr(_Epochs, "__call__", spy)
    calls = {"n": 0}

    def update(self, rows):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 3:       # 4 polls per epoch (5 batches of 48), then 3 batches
            raise KeyboardInterrupt

    monkeypatch.setattr(cprop._progress.ProgressBar, "update", update)
    kw = dict(hidden_layer_sizes=(9,), batch_size=48, random_state=0, max_iter=20)
    clf = MLPClassifier(verbose=2, **kw)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        clf.fit(X_tr_dig, y_tr_dig)
    n = len(y_tr_dig)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and clf.t_ == 2 * n + 3 * 48
    assert clf.history_[-1].partial and clf.history_[-1].n_samples == 3 * 48
    assert clf._optimizer.t == 5 + 5 + 3

    monkeypatch.setattr(_Epochs, "__call__", original)
    ref = MLPClassifier(**dict(kw, max_iter=2)).fit(X_tr_dig, y_tr_dig)
    rows = orders[2][:3 * 48]
    net = ref._network(ref._layer_units(), np.float64)
    Y = ref._label_binarizer.transform(y_tr_dig).astype(np.float64)
    loss = net.train_epoch(ref._params, ref._optimizer, X_tr_dig[rows], Y[rows], None, None,
                           48, ref.alpha)
    assert_same_weights(clf, ref)
    assert_array_equal(clf._optimizer.s1, ref._optimizer.s1)
    assert_array_equal(clf._optimizer.s2, ref._optimizer.s2)
    assert clf.loss_curve_[-1] == loss


# (after child_process.LONG_EPOCHS)
_CHILD = r"""
def announce(est, rec):
    print("EPOCH", rec.epoch, round(rec.time, 3), flush=True)

clf = MLPClassifier(hidden_layer_sizes=(1024,), max_iter=50, random_state=0, n_threads=1,
                    callbacks=[announce])
clf.fit(X, y)
n = len(y)
last = clf.history_[-1]
consistent = (clf.n_iter_ == len(clf.loss_curve_) and clf.t_ == (clf.n_iter_ - 1) * n
              + last.n_samples and last.partial and 0 < last.n_samples < n)
print("FIT RETURNED", clf.n_iter_, consistent, flush=True)
clf.callbacks = None
i = -1
try:
    for i in range(1000):
        clf.partial_fit(X, y)
        print("PF", i, flush=True)
except KeyboardInterrupt:
    print("LOOP STOPPED", i, clf.history_[-1].partial, clf.n_iter_, flush=True)
lb = MLPClassifier(hidden_layer_sizes=(1024,), solver="lbfgs", max_iter=50, random_state=0,
                   n_threads=1, verbose=True)
# the time of one pass of the full-batch loss and gradient (the polling unit)
from cprop._engine import full_batch_rows
net = clf._network(clf._layer_units(), np.float32)
Y = clf._label_binarizer.transform(y).astype(np.float32)
rows = full_batch_rows(net.layer_sizes)
t = time.perf_counter()
net.loss_grad(clf._params, X[:rows], Y[:rows])
print("PASS", time.perf_counter() - t, rows, flush=True)
lb.fit(X, y)             # prints "Iteration k, loss = ..." (python -u: unbuffered)
print("LBFGS RETURNED", lb.n_iter_, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_latency_inside_a_long_compiled_epoch(child_process):
    proc = child_process.start(child_process.LONG_EPOCHS + _CHILD)
    try:
        line, _ = child_process.wait_for(proc, "EPOCH 1", 120)
        epoch_s = float(line.split()[2])
        assert epoch_s > 0.5                     # long epochs: the interrupt lands inside one
        time.sleep(min(0.3, epoch_s / 3))
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line, t1 = child_process.wait_for(proc, "FIT RETURNED", 60)
        fit_latency = t1 - t0
        assert line.split()[3] == "True", line   # n_iter_, t_, loss_curve_ and history agree
        child_process.wait_for(proc, "PF 0", 60)
        time.sleep(min(0.3, epoch_s / 3))
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line, t1 = child_process.wait_for(proc, "LOOP STOPPED", 60)
        loop_latency = t1 - t0
        assert line.split()[3] == "True", line   # the partial_fit loop stopped mid-epoch
        # L-BFGS: the interrupt lands inside a full-batch loss/gradient evaluation
        line, _ = child_process.wait_for(proc, "PASS", 60)
        pass_s, pass_rows = float(line.split()[1]), int(line.split()[2])
        child_process.wait_for(proc, "Iteration 1,", 120)
        time.sleep(0.2)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line, t1 = child_process.wait_for(proc, "LBFGS RETURNED", 60)
        lbfgs_latency = t1 - t0
    finally:
        proc.kill()
        proc.wait()
    print(f"Ctrl-C latency: fit {fit_latency:.3f} s, partial_fit loop {loop_latency:.3f} s, "
          f"lbfgs {lbfgs_latency:.3f} s (one {pass_rows}-row pass {pass_s:.3f} s), "
          f"epoch {epoch_s:.2f} s")
    assert fit_latency < 0.2 and loop_latency < 0.2
    # L-BFGS handles signals between full-batch passes of about 1e9 flops (306 rows of this
    # 784-1024-10 network, not 4096 rows and 1.3e10 flops)
    assert pass_rows < 4096
    assert lbfgs_latency < 0.2


# ---- 7. class weights -------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_class_weight_balanced_equals_sample_weight(solver):
    y = y_tr_dig.copy()
    y[y == 3] = 2                                 # unbalanced: classes 0, 1 and a double 2
    a = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, max_iter=10, random_state=0,
                      class_weight="balanced").fit(X_tr_dig, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, max_iter=10, random_state=0)
    b.fit(X_tr_dig, y, sample_weight=compute_sample_weight("balanced", y))
    assert_allclose(np.concatenate([W.ravel() for W in a.coefs_]),
                    np.concatenate([W.ravel() for W in b.coefs_]), rtol=1e-13, atol=1e-15)


def test_class_weight_dict_times_sample_weight(assert_same_weights):
    sw = np.linspace(0.2, 3.0, len(y_tr_dig))
    cw = {0: 1.0, 1: 3.0, 2: 0.5, 3: 2.0}
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, class_weight=cw)
    a.fit(X_tr_dig, y_tr_dig, sample_weight=sw)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    b.fit(X_tr_dig, y_tr_dig, sample_weight=sw * np.array([cw[c] for c in y_tr_dig]))
    assert_same_weights(a, b)


def test_class_weight_equals_repeated_rows_under_lbfgs():
    # weight 2 on class 1 is the full-batch objective of the data with class 1's rows twice
    rows = np.concatenate([np.arange(len(y_tr_dig)), np.flatnonzero(y_tr_dig == 1)])
    a = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=15, random_state=0,
                      class_weight={1: 2.0}).fit(X_tr_dig, y_tr_dig)
    b = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=15, random_state=0)
    b.fit(X_tr_dig[rows], y_tr_dig[rows])
    assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-7, atol=1e-9)


def test_class_weight_multilabel_and_errors(assert_same_weights):
    Xm, Ym = make_multilabel_classification(n_samples=100, n_features=10, n_classes=3,
                                            random_state=0)
    cw = [{0: 1, 1: 2}, {0: 1, 1: 3}, {0: 2, 1: 1}]
    a = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0, class_weight=cw)
    a.fit(Xm, Ym)
    sw = np.prod([np.where(Ym[:, j] == 1, cw[j][1], cw[j][0]) for j in range(3)], axis=0)
    b = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    b.fit(Xm, Ym, sample_weight=sw)
    assert_same_weights(a, b)
    with pytest.raises(ValueError, match="ambiguous for multilabel"):
        MLPClassifier(max_iter=2, class_weight={0: 1, 1: 2}).fit(Xm, Ym)
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X_tr_dig, y_tr_dig,
                                                           classes=np.arange(4))


# ---- 8. cosine schedule -------------------------------------------------------------------------
def _sk_epochwise(Sk, solver, lrs, X, y, **kw):
    """scikit-learn's MLP trained epoch by epoch with the given learning rates (a RandomState
    instance keeps one random stream across partial_fit calls, as fit has)."""
    sk = Sk(solver=solver, random_state=np.random.RandomState(0), **kw)
    extra = {"classes": np.unique(y)} if Sk is SkMLPClassifier else {}
    for lr in lrs:
        if hasattr(sk, "_optimizer"):
            if solver == "adam":
                sk._optimizer.learning_rate_init = lr
            else:
                sk._optimizer.learning_rate = lr
        else:
            sk.set_params(learning_rate_init=lr)
        sk.partial_fit(X, y, **extra)
    return sk


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_cosine_schedule_matches_sklearn_epoch_by_epoch(solver):
    T, warm, lr0 = 12, 3, 0.05
    ref = [lr0 * (e + 1) / warm if e < warm
           else lr0 / 2 * (1 + np.cos(np.pi * (e - warm) / (T - warm))) for e in range(T)]
    ours = MLPRegressor(solver=solver, learning_rate="cosine", warmup_iter=warm,
                        learning_rate_init=lr0, max_iter=T, random_state=0,
                        hidden_layer_sizes=(7,), n_iter_no_change=np.inf)
    ours.fit(X_reg, y_reg)
    assert_allclose(ours.learning_rate_curve_, ref, rtol=1e-15)
    sk = _sk_epochwise(SkMLPRegressor, solver, ref, X_reg, y_reg, hidden_layer_sizes=(7,))
    for Wa, Wb in zip(ours.coefs_, sk.coefs_):
        assert_allclose(Wa, Wb, rtol=1e-10, atol=1e-12)
    assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=1e-10)


# ---- 9. restarts ---------------------------------------------------------------------------------
def test_n_init_keeps_the_best_of_separately_seeded_fits(assert_same_weights):
    kw = dict(hidden_layer_sizes=(4,), max_iter=15, learning_rate_init=0.01)
    est = MLPClassifier(n_init=3, random_state=7, **kw).fit(X_tr_dig, y_tr_dig)
    seeds = np.random.RandomState(7).randint(np.iinfo(np.int32).max, size=3)
    fits = [MLPClassifier(random_state=int(s), **kw).fit(X_tr_dig, y_tr_dig) for s in seeds]
    assert [r["seed"] for r in est.restarts_] == list(seeds)
    for r, f in zip(est.restarts_, fits):
        assert r["loss"] == f.loss_
        assert_array_equal(r["coefs"][0], f.coefs_[0])
    best = int(np.argmin([f.loss_ for f in fits]))
    assert est.best_restart_ == best
    assert_same_weights(est, fits[best])
    assert est.random_state == 7 and est.n_init == 3        # parameters untouched


def test_n_init_by_validation_score():
    kw = dict(hidden_layer_sizes=(4,), max_iter=10)
    est = MLPClassifier(n_init=3, random_state=1, **kw)
    est.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    seeds = np.random.RandomState(1).randint(np.iinfo(np.int32).max, size=3)
    scores = [MLPClassifier(random_state=int(s), **kw).fit(X_tr_dig, y_tr_dig)
              .score(X_val_dig, y_val_dig) for s in seeds]
    assert [r["score"] for r in est.restarts_] == pytest.approx(scores, rel=1e-12)
    assert est.best_restart_ == int(np.argmax(scores))


# ---- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    (dict(scoring="no_such_scorer"), "scoring"),
    (dict(callbacks="not a list"), "callbacks"),
    (dict(callbacks=[1]), "callbacks"),
    (dict(n_init=0), "n_init"),
    (dict(warmup_iter=-1), "warmup_iter"),
    (dict(warmup_iter=2), "warmup_iter"),          # without learning_rate='cosine'
    (dict(learning_rate="cosin"), "learning_rate"),
    (dict(class_weight="balance"), "class_weight"),
    (dict(class_weight=[1, 2]), "class_weight"),
])
def test_bad_loop_parameters(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        MLPClassifier(max_iter=2, **params).fit(X_tr_dig, y_tr_dig)


def test_other_exception_inside_an_epoch_propagates_and_the_fit_is_rolled_back(monkeypatch):
    """An exception other than Ctrl-C from a poll inside the compiled epoch (a signal handler, a
    progress hook) propagates; the partial epoch is recorded first, then the failed call is rolled
    back as every failed fit is (see test_reliability.py): the previous model, unchanged."""
    monkeypatch.setattr(cprop._engine, "POLL_FLOPS", 1)
    fail = {"on": False}

    def update(self, rows):
        if fail["on"] and rows == 96:
            raise RuntimeError("from a signal handler")

    monkeypatch.setattr(cprop._progress.ProgressBar, "update", update)
    clf = MLPClassifier(hidden_layer_sizes=(9,), batch_size=48, random_state=0, max_iter=5,
                        verbose=2)
    fail["on"] = True
    with pytest.raises(RuntimeError, match="from a signal handler"):
        clf.fit(X_tr_dig, y_tr_dig)
    assert not hasattr(clf, "coefs_") and not hasattr(clf, "n_iter_")   # never fitted
    fail["on"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_tr_dig, y_tr_dig)
    before = (clf.n_iter_, clf.t_, list(clf.loss_curve_), clf._optimizer.t)
    weights = [W.copy() for W in clf.coefs_]
    clf.set_params(warm_start=True)
    fail["on"] = True
    with pytest.raises(RuntimeError, match="from a signal handler"):
        clf.fit(X_tr_dig, y_tr_dig)
    assert (clf.n_iter_, clf.t_, list(clf.loss_curve_), clf._optimizer.t) == before
    for W, W0 in zip(clf.coefs_, weights):
        np.testing.assert_array_equal(W, W0)


# ---- issue 17: the training loop's findings, each against an independent reference ------------
def _snapshot(est):
    return [a.copy() for a in est.coefs_ + est.intercepts_]


def _last_weights_recorder():
    seen = {}

    def record(est, rec):
        seen["w"] = _snapshot(est)
        seen["epochs"] = seen.get("epochs", 0) + 1
    return seen, record


@pytest.mark.parametrize("case", ["one_row_r2", "float32_overflow"])
def test_i17_nan_validation_score_never_restores_unscored_weights(case, assert_same_weights):
    """A NaN validation score is no improvement and never the best: early stopping stops after
    n_iter_no_change + 1 such epochs with a warning and keeps the last weights (never the
    initial, unscored ones)."""
    X, y = X_reg, y_reg
    if case == "one_row_r2":
        X_val, y_val = X[:1], y[:1]                      # R^2 of one sample is NaN
    else:
        X, y = X.astype(np.float32), y.astype(np.float32)
        X_val, y_val = np.full((4, X.shape[1]), 3e38, np.float32), y[:4]
    seen, record = _last_weights_recorder()
    kw = dict(hidden_layer_sizes=(7,), random_state=0, max_iter=40, n_iter_no_change=3,
              learning_rate_init=0.01)
    reg = MLPRegressor(early_stopping=True, callbacks=[record], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        with pytest.warns(RuntimeWarning, match="validation score is nan"):
            reg.fit(X, y, X_val=X_val, y_val=y_val)
    assert reg.n_iter_ == 3 + 1 == seen["epochs"]
    assert all(np.isnan(reg.validation_scores_))
    for a, b in zip(_snapshot(reg), seen["w"]):
        assert_array_equal(a, b)
    # the same epochs without validation data: the same weights
    plain = MLPRegressor(**dict(kw, max_iter=4)).fit(X, y)
    assert_same_weights(reg, plain)


def test_i17_nan_scorer_is_never_best():
    seen, record = _last_weights_recorder()
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=30, early_stopping=True,
                        n_iter_no_change=2, scoring=lambda est, X, y: np.nan,
                        callbacks=[record])
    with pytest.warns(RuntimeWarning, match="validation score is nan"):
        clf.fit(X_dig, y_dig)
    assert clf.n_iter_ == 3 and clf.best_validation_score_ == -np.inf
    for a, b in zip(_snapshot(clf), seen["w"]):
        assert_array_equal(a, b)


@pytest.mark.parametrize("loss", ["absolute_error", "huber"])
def test_i17_validation_loss_is_the_training_loss(loss):
    """validation_loss_curve_ of the robust losses is their own loss (numpy reference)."""
    rng = np.random.RandomState(0)
    sw = rng.rand(40) + 0.5
    reg = MLPRegressor(loss=loss, hidden_layer_sizes=(6,), random_state=0, max_iter=3,
                       huber_delta=0.5 if loss == "huber" else 1.0)
    reg.fit(X_reg[:160], y_reg[:160], X_val=X_reg[160:], y_val=y_reg[160:], sample_weight_val=sw)
    r = np.abs(reg.predict(X_reg[160:]) - y_reg[160:])
    rows = r if loss == "absolute_error" else np.where(r <= 0.5, 0.5 * r ** 2, 0.5 * (r - 0.25))
    assert_allclose(reg.validation_loss_curve_[-1], np.average(rows, weights=sw), rtol=1e-12)


def test_i17_adamw_restarts_ranked_by_validation_score():
    """With early stopping's split, adamw restarts are ranked by their best validation score,
    as a separate fit with each restart's seed finds it."""
    kw = dict(solver="adamw", hidden_layer_sizes=(5,), max_iter=4, early_stopping=True)
    clf = MLPClassifier(random_state=0, n_init=3, **kw).fit(X_dig, y_dig)
    for r in clf.restarts_:
        alone = MLPClassifier(random_state=r["seed"], **kw).fit(X_dig, y_dig)
        assert r["score"] == alone.best_validation_score_
    assert clf.best_restart_ == int(np.argmax([r["score"] for r in clf.restarts_]))


@pytest.mark.parametrize("solver", ["adamw", "lbfgs"])
def test_i17_scoring_loss_ranks_restarts(solver):
    clf = MLPClassifier(solver=solver, hidden_layer_sizes=(5,), random_state=0, max_iter=3,
                        n_init=2, scoring="loss")
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    probe = clone(clf).set_params(n_init=1, max_iter=1)
    probe.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig) if solver != "lbfgs" else \
        probe.fit(X_tr_dig, y_tr_dig)
    for r in clf.restarts_:
        probe.coefs_, probe.intercepts_ = r["coefs"], r["intercepts"]
        assert_allclose(r["score"], -log_loss(y_val_dig, probe.predict_proba(X_val_dig)),
                        rtol=1e-10)


def test_i17_numpy_true_from_a_callback_stops():
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, max_iter=10,
                        callbacks=[lambda est, rec: np.True_])
    clf.fit(X_dig, y_dig)
    assert clf.n_iter_ == 1


def test_i17_weights_assigned_in_a_callback_are_trained_on(assert_same_weights):
    """A callback's coefs_/intercepts_ are the weights the next epochs train (as partial_fit
    after assigning them would)."""
    def halve(est, rec):
        if rec.epoch == 1:
            est.coefs_ = [W * 0.5 for W in est.coefs_]
            est.intercepts_ = [b * 0.5 for b in est.intercepts_]
    kw = dict(hidden_layer_sizes=(6,), random_state=0, shuffle=False, tol=0.0,
              n_iter_no_change=100)
    reg = MLPRegressor(max_iter=3, callbacks=[halve], **kw).fit(X_reg, y_reg)
    ref = MLPRegressor(**kw).partial_fit(X_reg, y_reg)
    ref.coefs_ = [W * 0.5 for W in ref.coefs_]
    ref.intercepts_ = [b * 0.5 for b in ref.intercepts_]
    ref.partial_fit(X_reg, y_reg).partial_fit(X_reg, y_reg)
    assert_same_weights(reg, ref)
    assert reg.loss_curve_ == ref.loss_curve_


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_i17_reentrant_fit_from_a_callback_raises_and_the_outer_fit_is_intact(method,
                                                                              assert_same_weights):
    errors, inside = [], []

    def reenter(est, rec):
        if inside:                # (code without the guard would recurse)
            return
        inside.append(1)
        try:
            if method == "fit":
                est.fit(X_dig[:50], y_dig[:50])
            else:
                est.partial_fit(X_dig[:50], y_dig[:50])
        except RuntimeError as exc:
            errors.append(str(exc))
        finally:
            inside.pop()
    kw = dict(hidden_layer_sizes=(5,), random_state=0, max_iter=4)
    clf = MLPClassifier(callbacks=[reenter], **kw).fit(X_dig, y_dig)
    assert len(errors) == 4 and "while this estimator is being fitted" in errors[0]
    ref = MLPClassifier(**kw).fit(X_dig, y_dig)
    assert_same_weights(clf, ref)
    assert clf.loss_curve_ == ref.loss_curve_ and clf.t_ == ref.t_


def test_i17_failed_partial_fit_keeps_no_gradient_norms():
    def fail(est, rec):
        raise ValueError("callback failed")
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, monitor_gradients=True)
    clf.partial_fit(X_dig, y_dig, classes=np.unique(y_dig))
    clf.set_params(callbacks=[fail])
    with pytest.raises(ValueError, match="callback failed"):
        clf.partial_fit(X_dig, y_dig)
    assert clf.gradient_norms_.shape[0] == 1 and len(clf._optimizer.gradient_norms) == 1
    clf.set_params(callbacks=None)
    clf.partial_fit(X_dig, y_dig)
    ref = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, monitor_gradients=True)
    ref.partial_fit(X_dig, y_dig, classes=np.unique(y_dig)).partial_fit(X_dig, y_dig)
    assert_array_equal(clf.gradient_norms_, ref.gradient_norms_)


def test_i17_class_weight_dict_with_a_batch_lacking_the_weighted_class(assert_same_weights):
    """Weights come from classes_, not from the batch: partial_fit on a batch without class 2
    and validation labels without it equal the explicit sample weights."""
    cw = {2: 5.0, 0: 0.5}
    part = y_dig != 2
    X_b, y_b = X_dig[part][:120], y_dig[part][:120]
    kw = dict(hidden_layer_sizes=(5,), random_state=0)
    clf = MLPClassifier(class_weight=cw, **kw).partial_fit(X_b, y_b, classes=np.unique(y_dig))
    sw = np.array([cw.get(c, 1.0) for c in y_b])
    ref = MLPClassifier(**kw).partial_fit(X_b, y_b, classes=np.unique(y_dig), sample_weight=sw)
    assert_same_weights(clf, ref)
    Xv, yv = X_dig[part][120:160], y_dig[part][120:160]
    clf = MLPClassifier(class_weight=cw, max_iter=2, **kw).fit(X_dig, y_dig, X_val=Xv, y_val=yv)
    swv = np.array([cw.get(c, 1.0) for c in yv])
    assert_allclose(clf.validation_loss_curve_[-1],
                    log_loss(yv, clf.predict_proba(Xv), sample_weight=swv, labels=clf.classes_),
                    rtol=1e-10)


def test_i17_refit_drops_records_it_does_not_make():
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, max_iter=3, n_init=2,
                        monitor_gradients=True).fit(X_dig, y_dig)
    assert hasattr(clf, "restarts_") and hasattr(clf, "gradient_norms_")
    clf.set_params(n_init=1, monitor_gradients=False, solver="lbfgs")
    clf.fit(X_dig, y_dig)
    for name in ("restarts_", "best_restart_", "gradient_norms_", "history_", "epoch_times_"):
        assert not hasattr(clf, name), name
    clf.set_params(solver="adam", monitor_gradients=True).fit(X_dig, y_dig)
    clf.set_params(n_init=2, monitor_gradients=False).fit(X_dig, y_dig)
    assert not hasattr(clf, "gradient_norms_") and len(clf.restarts_) == 2


def test_i17_interrupted_epoch_keeps_the_validation_curves_aligned(monkeypatch):
    monkeypatch.setattr(cprop._engine, "POLL_FLOPS", 1)
    calls = {"n": 0}

    def update(self, rows):
        calls["n"] += 1
        if calls["n"] == 4 + 2:           # 4 polls per epoch (5 batches of 48), then 2 batches
            raise KeyboardInterrupt

    monkeypatch.setattr(cprop._progress.ProgressBar, "update", update)
    clf = MLPClassifier(hidden_layer_sizes=(9,), batch_size=48, random_state=0, max_iter=20,
                        verbose=2)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert clf.n_iter_ == 2
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == 2
    assert_allclose(clf.validation_loss_curve_[-1],
                    log_loss(y_val_dig, clf.predict_proba(X_val_dig)), rtol=1e-10)
    assert clf.validation_scores_[-1] == clf.score(X_val_dig, y_val_dig)


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_i17_ctrl_c_after_the_last_update_keeps_its_bookkeeping(monkeypatch, assert_same_weights):
    """SIGINT arriving just as the compiled epoch returns (after its only batch's update): the
    epoch is counted (n_iter_, t_, Adam's t) and equals a one-epoch fit."""
    import cprop._train as _train
    original = _train.Runner

    class ThenCtrlC(original):      # the compiled epoch of the fit's runner
        def epoch(self, *args, **kwargs):
            result = super().epoch(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)
            return result

    monkeypatch.setattr(_train, "Runner", ThenCtrlC)
    # the estimator's Python loop (the one that calls Runner.epoch); the compiled small-fit loop
    # polls signals after each epoch's bookkeeping (tests/estimator/test_fitloop.py
    # covers its interrupts)
    monkeypatch.setattr(cprop._fast_fit, "FORCE_PYTHON", True)
    kw = dict(hidden_layer_sizes=(6,), random_state=0, batch_size=len(y_dig))
    clf = MLPClassifier(max_iter=5, **kw)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        clf.fit(X_dig, y_dig)
    assert clf.n_iter_ == 1 and clf.t_ == len(y_dig) and clf._optimizer.t == 1
    assert len(clf.loss_curve_) == 1
    monkeypatch.setattr(_train, "Runner", original)
    assert_same_weights(clf, MLPClassifier(max_iter=1, **kw).fit(X_dig, y_dig))


def test_i17_n_init_draws_seeds_as_restarts_start():
    import tracemalloc

    def interrupt(est, rec):
        raise KeyboardInterrupt
    clf = MLPClassifier(hidden_layer_sizes=(3,), random_state=0, max_iter=2, n_init=10 ** 7,
                        callbacks=[interrupt])
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            clf.fit(X_dig, y_dig)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(clf.restarts_) == 1 and peak < 10 * 2 ** 20
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max)
    assert clf.restarts_[0]["seed"] == seed


@pytest.mark.parametrize("params, fit_kw", [
    (dict(solver="adam", weight_decay=0.1), {}),
    (dict(solver="lbfgs", clip_grad_norm=1.0), {}),
    (dict(solver="lbfgs", clip_grad_value=1.0), {}),
    (dict(solver="lbfgs", monitor_gradients=True), {}),
    (dict(solver="lbfgs", learning_rate="cosine"), {}),
    (dict(solver="lbfgs", dropout=0.2), {}),
    (dict(solver="lbfgs", callbacks=[lambda est, rec: None]), {}),
    (dict(solver="lbfgs"), dict(X_val=X_val_dig, y_val=y_val_dig)),
])
def test_i17_options_that_do_not_apply_raise_before_anything_changes(params, fit_kw):
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=3).fit(X_dig, y_dig)
    before = _snapshot(clf)
    clf.set_params(**params)
    with pytest.raises(InvalidParameterError, match="applies only with|only to rank"):
        clf.fit(X_dig, y_dig, **fit_kw)
    for a, b in zip(_snapshot(clf), before):
        assert_array_equal(a, b)


def test_i17_huber_delta_without_huber_raises_and_sklearn_params_are_ignored(assert_same_weights):
    with pytest.raises(InvalidParameterError, match="'huber_delta' .* loss='huber'"):
        MLPRegressor(huber_delta=2.0, max_iter=2).fit(X_reg, y_reg)
    # scikit-learn's own parameters keep its behaviour: momentum with adam is ignored
    a = MLPRegressor(hidden_layer_sizes=(4,), random_state=0, max_iter=2, momentum=0.1)
    b = MLPRegressor(hidden_layer_sizes=(4,), random_state=0, max_iter=2)
    assert_same_weights(a.fit(X_reg, y_reg), b.fit(X_reg, y_reg))


def test_i17_untransformed_validation_data_in_a_pipeline_warns():
    X_raw = X_dig * 40 + 200
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(hidden_layer_sizes=(5,), max_iter=2,
                                           random_state=0))])
    with pytest.warns(UserWarning, match=r"transform_input=\['X_val'\]"):
        pipe.fit(X_raw[:240], y_dig[:240], mlp__X_val=X_raw[240:], mlp__y_val=y_dig[240:])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(
            X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
        with config_context(enable_metadata_routing=True):
            mlp = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0)
            mlp.set_fit_request(X_val=True, y_val=True)
            Pipeline([("scale", StandardScaler()), ("mlp", mlp)], transform_input=["X_val"]).fit(
                X_raw[:240], y_dig[:240], X_val=X_raw[240:], y_val=y_dig[240:])


def test_i17_validation_errors_name_the_argument():
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2)
    with pytest.raises(ValueError, match="got sample_weight_val without X_val and y_val"):
        clf.fit(X_tr_dig, y_tr_dig, sample_weight_val=np.ones(60))
    with pytest.raises(ValueError, match="^X_val: .*features"):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig[:, :5], y_val=y_val_dig)
    with pytest.raises(ValueError, match="^sample_weight_val: "):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig,
                sample_weight_val=np.ones(3))
    with pytest.raises(ValueError, match="^X_val and y_val: .*inconsistent"):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig[:-1])


def test_i17_roc_auc_on_multiclass_names_roc_auc_ovr():
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, scoring="roc_auc",
                        random_state=0)
    with pytest.raises(ValueError, match="'roc_auc_ovr'"):
        clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    assert not hasattr(clf, "coefs_")
    clf.set_params(scoring="roc_auc_ovr").fit(X_tr_dig, y_tr_dig, X_val=X_val_dig,
                                              y_val=y_val_dig)
    assert clf.validation_scores_[-1] == get_scorer("roc_auc_ovr")(clf, X_val_dig, y_val_dig)


# ---- issue 17: what users asked for ---------------------------------------------------------------
def _replay_patience(values, patience, min_delta, minimise=True):
    """(stop epoch or None, best epoch), 1-based, by Keras' rule written out here."""
    best, best_epoch, wait = None, None, 0
    for e, v in enumerate(values, 1):
        if np.isfinite(v) and (best is None or (best - v if minimise else v - best) > min_delta):
            best, best_epoch, wait = v, e, 0
            continue
        wait += 1
        if wait >= patience:
            return e, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("monitor, min_delta", [("validation_loss", 0.0),
                                                ("validation_loss", 0.01),
                                                ("accuracy", 0.0)])
def test_i17_early_stopping_callback_patience_and_best_weights(monitor, min_delta):
    from cprop import EarlyStopping
    es = EarlyStopping(monitor=monitor, patience=3, min_delta=min_delta)
    ckpt = ModelCheckpoint(monitor="validation_loss" if monitor == "validation_loss"
                           else "validation_score", min_delta=min_delta)
    clf = MLPClassifier(hidden_layer_sizes=(10,), random_state=0, max_iter=300,
                        learning_rate_init=0.05, n_iter_no_change=np.inf,
                        scoring=["accuracy", "neg_log_loss"], callbacks=[ckpt, es])
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    values = [r.validation_loss if monitor == "validation_loss" else r.scores["accuracy"]
              for r in clf.history_]
    stop, best = _replay_patience(values, 3, min_delta, minimise=monitor == "validation_loss")
    assert stop is not None and clf.n_iter_ == stop == es.stopped_epoch_
    assert es.best_epoch_ == best == ckpt.best_epoch_
    for W, Wb in zip(clf.coefs_ + clf.intercepts_, ckpt.best_coefs_ + ckpt.best_intercepts_):
        assert_array_equal(W, Wb)


def test_i17_early_stopping_callback_restarts_per_n_init():
    from cprop import EarlyStopping
    es = EarlyStopping(monitor="loss", patience=2, min_delta=0.5, restore_best_weights=False)
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, max_iter=50, n_init=2,
                        callbacks=[es]).fit(X_dig, y_dig)
    for i, r in enumerate(clf.restarts_):
        losses = [h.loss for h in clf.history_] if i == clf.best_restart_ else None
        assert r["n_iter"] == 3                       # epochs 2 and 3 improve by < 0.5
        if losses is not None:
            assert _replay_patience(losses, 2, 0.5)[0] == 3


def test_i17_plateau_schedule(assert_same_weights):
    """'plateau' is scikit-learn's 'adaptive' rule for every stochastic solver: bitwise the
    same as 'adaptive' with sgd; with adam the rate drops 5-fold whenever the no-improvement
    counter runs out, and training stops once the rate is <= 1e-6."""
    kw = dict(hidden_layer_sizes=(5,), random_state=0, max_iter=60, tol=10.0,
              n_iter_no_change=2)
    a = MLPClassifier(solver="sgd", learning_rate="adaptive", **kw).fit(X_dig, y_dig)
    p = MLPClassifier(solver="sgd", learning_rate="plateau", **kw).fit(X_dig, y_dig)
    assert_same_weights(a, p)
    assert a.learning_rate_curve_ == p.learning_rate_curve_
    adam = MLPClassifier(learning_rate="plateau", **kw).fit(X_dig, y_dig)
    expected, lr = [1e-3], 1e-3       # the first epoch improves on best_loss_=inf
    while True:                       # tol=10: no later epoch improves; 3 epochs per rate
        expected += [lr] * 3
        if lr <= 1e-6:
            break
        lr /= 5.0
    assert_allclose(adam.learning_rate_curve_, expected, rtol=1e-15)
    # scikit-learn's schedules stay ignored by adam
    const = MLPClassifier(learning_rate="adaptive", **kw).fit(X_dig, y_dig)
    assert const.learning_rate_curve_ == [1e-3] * const.n_iter_


def test_i17_multi_metric_scoring_in_history():
    clf = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=3,
                        scoring={"acc": "accuracy", "nll": "neg_log_loss", "loss": "loss"})
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    last = clf.history_[-1].scores
    assert set(last) == {"acc", "nll", "loss"}
    assert last["acc"] == clf.validation_scores_[-1] == clf.score(X_val_dig, y_val_dig)
    assert_allclose(last["nll"], get_scorer("neg_log_loss")(clf, X_val_dig, y_val_dig),
                    rtol=1e-12)
    assert last["loss"] == -clf.validation_loss_curve_[-1]
    with pytest.raises(InvalidParameterError, match="scoring"):
        clf.set_params(scoring=["accuracy", "no_such_metric"]).fit(X_dig, y_dig)


def test_i17_progress_bar_shows_the_validation_metrics(capsys, monkeypatch):
    monkeypatch.setattr(cprop._progress.ProgressBar, "__init__", functools.partialmethod(
        cprop._progress.ProgressBar.__init__, use_tqdm=False))
    clf = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=2, verbose=2)
    clf.fit(X_tr_dig, y_tr_dig, X_val=X_val_dig, y_val=y_val_dig)
    err = capsys.readouterr().err
    assert f"val_loss {clf.validation_loss_curve_[-1]:.5g}" in err
    assert f"val_score {clf.validation_scores_[-1]:.5g}" in err


def test_i17_cosine_decays_over_max_iter_even_when_early_stopping_ends_sooner():
    """The documented choice: cosine's rate depends on the epoch and max_iter only, so an
    early-stopped fit ends partway down the curve ('plateau' adapts to the fit instead)."""
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, max_iter=200,
                        learning_rate="cosine", early_stopping=True, n_iter_no_change=2,
                        tol=10.0).fit(X_dig, y_dig)
    assert clf.n_iter_ == 4           # the first epoch improves on -inf, then 3 do not
    assert_allclose(clf.learning_rate_curve_,
                    [0.5e-3 * (1 + np.cos(np.pi * e / 200)) for e in range(4)], rtol=1e-15)


def test_i17_optimizer_registry_and_old_optimizer_pickles():
    """One registry: the solver and schedule options, partial_fit's availability and the
    optimizer state derive from cprop._optimizers; a state pickled before a field existed loads
    with that field's default."""
    from cprop._optimizers import SCHEDULES, SOLVERS, STOCHASTIC_SOLVERS, OptimizerState
    for est in (MLPClassifier(), MLPRegressor()):
        assert est._parameter_constraints["solver"][0].options == set(SOLVERS)
        assert est._parameter_constraints["learning_rate"][0].options == set(SCHEDULES)
    for solver in SOLVERS:
        assert hasattr(MLPClassifier(solver=solver), "partial_fit") == \
            (solver in STOCHASTIC_SOLVERS)
    assert cprop._engine.OptimizerState is OptimizerState        # the old import path
    st = OptimizerState("adam", 3, np.float64, learning_rate=0.01)
    old = {k: v for k, v in vars(st).items()
           if k not in ("epochs_checked", "clip_grad_norm", "dropout_epoch", "weight_decay")}
    loaded = OptimizerState.__new__(OptimizerState)
    loaded.__setstate__(old)
    assert (loaded.epochs_checked, loaded.clip_grad_norm, loaded.dropout_epoch,
            loaded.weight_decay) == (0, None, -1, 0.0)
    assert loaded.learning_rate == 0.01 and loaded.s1 is old["s1"]
    assert vars(pickle.loads(pickle.dumps(st))).keys() == vars(st).keys()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
@pytest.mark.parametrize("n_signals", [1, 2])
def test_i17_ctrl_c_in_a_callback_ends_after_the_epoch_or_at_once(n_signals):
    """One Ctrl-C during a callback: the epoch's other callbacks still run, training stops after
    it. A second one raises at once, inside the callback."""
    ran = []

    def ctrl_c(est, rec):
        if rec.epoch == 2:
            for _ in range(n_signals):
                os.kill(os.getpid(), signal.SIGINT)
            ran.append("after the signals")

    def later(est, rec):
        ran.append(rec.epoch)
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=10,
                        callbacks=[ctrl_c, later])
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        clf.fit(X_dig, y_dig)
    assert clf.n_iter_ == 2 and len(clf.history_) == 2
    assert ran == ([1, "after the signals", 2] if n_signals == 1 else [1])
