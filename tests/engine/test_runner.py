"""One trust boundary per fit (issue 17): the checked, immutable plan (``_train.CheckedPlan``) and
the runner (``_train.Runner``) that a fit builds once: data checked once, work buffers allocated
once, and the same runner for mini-batch epochs, compiled fits and L-BFGS."""
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from sklearn.datasets import load_digits

import cprop._engine as _engine
import cprop._fast_fit as _fast_fit
from cprop import MLPClassifier, MLPRegressor, _backprop, _train
from cprop._engine import Network
from cprop._optimizers import OptimizerState


def _data(n=120, f=8, k=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)).astype(dtype)
    Y = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    return X, Y


# ---- the checked plan is immutable ------------------------------------------------------------------
def test_checked_plan_cannot_be_changed_after_checking():
    """Neither the dict it hands out, nor its fields, nor a second __init__ reach what the
    kernels read: predictions stay those of an untouched plan."""
    net = Network([8, 6, 3], "relu", "softmax", np.float64, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    X, _ = _data(10)
    expected = net.predict(p, X)
    cp = net._checked_plan(10)
    before = cp.plan
    handed = cp.plan
    assert handed is not before                        # a fresh copy each time
    for key, value in handed.items():
        if isinstance(value, np.ndarray):
            value[...] = 10 ** 6 if value.dtype.kind in "iu" else 7.0
        else:
            handed[key] = -1
    after = cp.plan
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) if isinstance(before[k], np.ndarray)
               else after[k] == before[k] for k in before)
    with pytest.raises(AttributeError):
        cp.n_params = 5
    with pytest.raises(AttributeError):
        cp.plan = handed
    other = _backprop.make_plan([8, 9, 3], net._acts, cp.plan["loss"], 10, np.float64, 1)
    cp.__init__(other, np.float64)                     # __cinit__ ran once: nothing changes
    assert cp.n_params == net.n_params
    out = np.empty((10, 3))
    _train.predict(p, X, None, None, None, 8, cp, out)
    np.testing.assert_array_equal(out, expected)


def test_checked_plan_copies_the_callers_dict():
    plan = _backprop.make_plan([4, 3, 2], [3, 5], 1, 6, np.float64, 1)
    cp = _train.CheckedPlan(plan, np.float64)
    plan["w_off"][:] = 10 ** 6                         # the caller's dict, after checking
    assert cp.plan["w_off"].max() < cp.n_params


# ---- the runner: checked once, buffers once ---------------------------------------------------------
def _epochs_setup(dtype=np.float32, n=600, batch=50):
    X, Y = _data(n, 20, 4, dtype=dtype)
    net = Network([20, 64, 4], "relu", "softmax", dtype, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, dtype, learning_rate=1e-3)
    return net, p, st, X, Y


def test_runner_buffers_are_the_same_across_epochs():
    net, p, st, X, Y = _epochs_setup()
    run = net.epochs(p, st, X, Y, batch_size=50, alpha=1e-4)
    runner, work, grad = run.runner, run.runner.work, run.runner.grad
    for e in range(3):
        run(np.random.RandomState(e).permutation(X.shape[0]))
        assert run.runner is runner and runner.work is work and runner.grad is grad
    assert runner.params is p and runner.state1 is st.s1 and runner.state2 is st.s2


def test_an_epoch_allocates_no_work_buffers():
    """The one-shot call (train_epoch) allocates its work buffer every call; a runner's epoch
    allocates none of it: traced peak memory of an epoch below a tenth of the work buffer."""
    net, p, st, X, Y = _epochs_setup(n=2000, batch=200)
    run = net.epochs(p, st, X, Y, batch_size=200, alpha=1e-4)
    order = np.random.RandomState(0).permutation(X.shape[0])
    run(order)                                         # warm (first-call caches)
    work_bytes = run.runner.work.nbytes
    assert work_bytes > 100_000

    def peak(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one_shot = peak(lambda: net.train_epoch(p, st, X, Y, order=order, batch_size=200,
                                            alpha=1e-4))
    assert one_shot >= work_bytes                      # the measurement sees the allocation
    assert peak(lambda: run(order)) < work_bytes / 10


def test_data_is_checked_once_per_fit(monkeypatch):
    """X is converted and checked once per fit, whatever the epochs or L-BFGS iterations."""
    calls = []
    original = _engine._as_input

    def counting(X, dtype):
        calls.append(1)
        return original(X, dtype)

    monkeypatch.setattr(_engine, "_as_input", counting)
    X, Y = _data(200, 8, 3)
    y = Y.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=20,
                            random_state=0).fit(X, y)
        assert clf.n_iter_ > 5 and len(calls) == 1
        calls.clear()
        # the Python epoch loop (verbose needs Python per epoch)
        clf = MLPClassifier(max_iter=6, random_state=0, verbose=True, batch_size=50)
        clf.fit(X, y, sample_weight=np.ones(200))
        assert clf.n_iter_ == 6 and len(calls) == 1


def test_compiled_fit_uses_one_runner(monkeypatch):
    """A compiled fit split over several fit_epochs calls keeps one runner (and its buffers)."""
    seen = []

    class Recording(_train.Runner):
        def fit_epochs(self, *args, **kwargs):
            seen.append((id(self), id(self.work)))
            return super().fit_epochs(*args, **kwargs)

    monkeypatch.setattr(_train, "Runner", Recording)
    monkeypatch.setattr(_fast_fit, "CHUNK_EPOCHS", 2)
    X, Y = _data(200, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(max_iter=7, tol=0, random_state=0).fit(X, Y.argmax(1))
    assert len(seen) == 4 and len(set(seen)) == 1


def test_runner_checks_its_arguments():
    net, p, st, X, Y = _epochs_setup(np.float64)
    run = net.runner(p, X, Y, batch_size=50)
    with pytest.raises(ValueError, match="set_optimizer"):
        run.epoch(None, 0.1)
    with pytest.raises(ValueError, match="x has shape"):
        run.loss_grad(np.zeros(3))
    with pytest.raises(ValueError, match="shape of params"):
        run.set_optimizer(st.s1[:-1], st.s2, "adam")
    with pytest.raises(ValueError, match="solver"):
        run.set_optimizer(st.s1, st.s2, "rmsprop")
    run.set_optimizer(st.s1, st.s2, "adam")
    with pytest.raises(ValueError, match="order must hold"):
        run.epoch(np.arange(1, X.shape[0] + 1), 0.1)
    with pytest.raises(ValueError, match="batch_size=700"):
        _train.Runner(net._checked_plan(50), p, None, X, None, None, None, 20, Y, None, 700)
    with pytest.raises(TypeError, match="float32 or float64"):
        _train.Runner(net._checked_plan(50), list(p), None, X, None, None, None, 20, Y, None, 50)
    ro = p.copy()
    ro.flags.writeable = False
    read_only = net.runner(ro, X, Y, batch_size=50)
    assert np.isfinite(read_only.loss_grad())          # a loss needs no write access
    with pytest.raises(ValueError, match="read-only"):
        read_only.set_optimizer(st.s1, st.s2, "adam")
    sw = np.tile([1.0, -1.0], X.shape[0] // 2)
    with pytest.raises(ValueError, match="sample_weight sums to 0"):
        net.runner(p, X, Y, sw).loss_grad()


# ---- L-BFGS through the runner -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_runner_loss_grad_equals_one_shot_calls(dtype, sparse):
    """Repeated runner.loss_grad(x) (buffers reused) gives bitwise what a fresh one-shot call
    gives at each x, with sample weights and the L2 term; the runner's params follow x."""
    X, Y = _data(300, 12, 3, dtype=dtype)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0))
    sw = np.random.default_rng(1).random(300) + 0.5
    net = Network([12, 7, 3], "tanh", "softmax", dtype, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    run = net.runner(p.copy(), X, Y, sw, alpha=1e-2)
    rng = np.random.default_rng(2)
    for _ in range(4):
        x = p.astype(np.float64) + 0.1 * rng.standard_normal(p.shape[0])
        loss = run.loss_grad(x)
        ref_loss, ref_grad = net.loss_grad(x.astype(dtype), X, Y, sw, 1e-2)
        assert loss == ref_loss
        np.testing.assert_array_equal(run.grad, ref_grad)
        np.testing.assert_array_equal(run.params, x.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_fit_equals_scipy_on_one_shot_calls(dtype):
    """MLPClassifier(solver='lbfgs') (one runner per fit) gives bitwise the weights of scipy's
    L-BFGS-B driven by a one-shot loss_grad per iteration (everything checked and allocated
    afresh each time: the path before the runner)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0)[:500]
    y = y[:500]
    clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=25, random_state=0,
                        alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X.astype(dtype), y)
    net = Network([64, 20, 10], "relu", "softmax", dtype)
    rs = np.random.RandomState(0)
    p0 = net.init_params(rs)
    Xd, Y = X.astype(dtype), np.eye(10, dtype=dtype)[y]

    def fun(x):
        loss, grad = net.loss_grad(np.ascontiguousarray(x.astype(dtype)), Xd, Y, None, 1e-3)
        return loss, grad.astype(np.float64)

    res = scipy.optimize.minimize(fun, p0.astype(np.float64), method="L-BFGS-B", jac=True,
                                  options={"maxfun": clf.max_fun, "maxiter": 25,
                                           "gtol": clf.tol})
    np.testing.assert_array_equal(clf._params, res.x.astype(dtype))
    assert clf.loss_ == float(res.fun)


def test_failed_lbfgs_fit_leaves_params_alone(monkeypatch):
    """The L-BFGS runner works on its own copy: an error inside the optimisation leaves the
    estimator's parameter vector as it was."""
    X, y = load_digits(return_X_y=True)
    X = X[:200] / 16.0
    y = y[:200]
    reg = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    before = reg._params.copy()
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        fun = args[0]
        fun(args[1] + 1.0)                     # the runner's copy moves...
        raise RuntimeError("solver failed")

    monkeypatch.setattr(scipy.optimize, "minimize", failing)
    reg.set_params(warm_start=True)
    with pytest.raises(RuntimeError, match="solver failed"):
        reg.fit(X, y)
    assert calls
    np.testing.assert_array_equal(reg._params, before)    # ...the model's does not
