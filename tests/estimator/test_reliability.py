"""Reliability: what a user hits when processes fork, input is malformed, memory or threads run
out, a fit fails half-way, or the private engine entry points get bad arguments.

Whatever could hang or crash the interpreter runs in a child process with a timeout
(``_isolated``), so a regression fails one test instead of killing or stalling the suite.
"""
import multiprocessing
import re
import subprocess
import sys
import traceback
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.utils._param_validation import InvalidParameterError

import cprop
from cprop import MLPClassifier, MLPRegressor
from cprop import _backprop, _engine, _train
from cprop._engine import Network, OptimizerState
from cprop._openmp import engine_threads, fork_serial, thread_ceiling

HAS_FORK = "fork" in multiprocessing.get_all_start_methods()
TIMEOUT = 120   # seconds; a healthy child answers in about one


def _child_main(conn, func, args):
    try:
        conn.send(("ok", func(*args)))
    except BaseException as exc:  # report any exception, with its type, to the parent
        conn.send(("raised", type(exc).__name__, str(exc), traceback.format_exc()))
    conn.close()


def _isolated(func, *args, timeout=TIMEOUT):
    """Run func(*args) in a child process; return ("ok", value) or ("raised", type, message, tb).

    Fails the test (instead of the suite) when the child dies from a signal or hangs.
    """
    ctx = multiprocessing.get_context("fork" if HAS_FORK else "spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child, func, args))
    proc.start()
    child.close()
    ready = parent.poll(timeout)
    result = parent.recv() if ready else None
    proc.join(5 if ready else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is None:
        pytest.fail(f"child process {'hung' if not ready else 'died'} "
                    f"(exit code {proc.exitcode}) running {func.__name__}{args!r}")
    return result


def _expect_raise(result, exc_type, match):
    assert result[0] == "raised", f"expected {exc_type}, got a result: {result!r}"
    assert result[1] == exc_type, f"expected {exc_type}, got {result[1]}: {result[2]}\n{result[3]}"
    assert re.search(match, result[2]), result[2]


def _data(n=2000, f=20, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, f))
    return X, X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(n)


# ---- fork safety ---------------------------------------------------------------------------------
def _fit_small(X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=2, random_state=0,
                            n_threads=2).fit(X, y)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_child_process_after_threads_in_parent(method):
    """The issue's case: a threaded predict in the parent, then predict and fit in a child.

    GNU libgomp's thread pool does not survive fork: without the fork guard the forked child
    waits forever for threads that were not copied."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method!r} does not exist on this platform")
    X, y = _data()
    m = _fit_small(X, y)
    expected = m.predict(X)                      # 2,000 rows on 2 threads: a threaded pass
    assert engine_threads(2) == 2 and not fork_serial()
    ctx = multiprocessing.get_context(method)
    # (only cprop callables cross to the child: spawned children cannot import this module
    # under pytest's importlib mode)
    fresh = MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=2, random_state=0, n_threads=2)
    with ctx.Pool(1) as pool:
        got = pool.apply_async(m.predict, (X,)).get(TIMEOUT)
        serial = pool.apply_async(fork_serial).get(TIMEOUT)
        refit = pool.apply_async(fresh.fit, (X, y)).get(TIMEOUT)
    # bitwise: rows and results do not depend on the thread count
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(refit.predict(X), expected)
    # only a forked child inherits the parent's (dead) pool and goes serial
    assert serial == (method == "fork" and cprop._openmp.build_info()["openmp"]
                      and cprop._openmp.FORK_GUARD)


def test_fork_child_threads_stay_identical_in_grandchild():
    X, y = _data(n=600)
    m = _fit_small(X, y)
    expected = m.predict(X)

    def grandchild():
        return _isolated(m.predict, X)

    result = _isolated(grandchild)
    assert result[0] == "ok" and result[1][0] == "ok"
    np.testing.assert_array_equal(result[1][1], expected)


# ---- malformed sparse input ----------------------------------------------------------------------
def _malformed(kind, n=40, f=6, fmt="csr"):
    rng = np.random.RandomState(3)
    X = sp.random(n, f, density=0.4, format=fmt, random_state=rng, dtype=np.float64)
    if fmt == "csc":
        n_minor = n
    else:
        n_minor = f
    if kind == "index_eq_n":
        X.indices[0] = n_minor
    elif kind == "index_minus_1":
        X.indices[0] = -1
    elif kind == "index_huge":
        X.indices[len(X.indices) // 2] = 10 ** 8
    elif kind == "indptr_decreasing":
        X.indptr[3] = X.indptr[5] + 1
    elif kind == "indptr_past_end":
        X.indptr[-1] = len(X.indices) + 1000
    return X


MALFORMED = ["index_eq_n", "index_minus_1", "index_huge", "indptr_decreasing", "indptr_past_end"]


def _fit_on(X, y):
    MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    return "fitted"


def _predict_on(model, X):
    return model.predict(X)


def _engine_predict_on(X):
    net = Network([X.shape[1], 5, 1], "relu", "identity", np.float64, n_threads=1)
    return net.predict(net.init_params(np.random.RandomState(0)), X)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_sparse_input_raises(kind, fmt):
    X = _malformed(kind, fmt=fmt)
    y = np.arange(X.shape[0], dtype=float)
    good = sp.random(40, 6, density=0.4, format="csr", random_state=np.random.RandomState(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(good, y)
    for func, args in [(_fit_on, (X, y)), (_predict_on, (model, X)), (_engine_predict_on, (X,))]:
        _expect_raise(_isolated(func, *args), "ValueError", "malformed sparse")


def test_malformed_sparse_is_not_modified_by_the_check():
    X = _malformed("index_eq_n")
    before = [a.copy() for a in (X.data, X.indices, X.indptr)]
    with pytest.raises(ValueError, match="column index 6 is outside"):
        _engine.check_sparse_structure(X)
    for a, b in zip(before, (X.data, X.indices, X.indptr)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _raw_csr_call(entry, kind):
    """The private compiled entry points with a malformed CSR triple."""
    X = _malformed(kind)
    data = np.ascontiguousarray(X.data)
    indices = np.ascontiguousarray(X.indices, dtype=np.intp)
    indptr = np.ascontiguousarray(X.indptr, dtype=np.intp)
    n, f = X.shape
    net = Network([f, 5, 2], "relu", "softmax", np.float64, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    Y = np.eye(2)[np.arange(n) % 2]
    if entry == "predict":
        _train.predict(p, None, data, indices, indptr, f, net.plan(n), np.empty((n, 2)))
    elif entry == "loss_grad":
        _train.loss_grad(p, None, data, indices, indptr, f, Y, None, net.plan(n), 0.0,
                         np.empty_like(p))
    else:
        st = OptimizerState("adam", net.n_params, np.float64)
        _train.train_epoch(p, np.empty_like(p), st.s1, st.s2, None, data, indices, indptr, f, Y,
                           None, None, 8, net.plan(8), 0.0, "adam", 1e-3)
    return "no error"


@pytest.mark.parametrize("entry", ["predict", "loss_grad", "train_epoch"])
@pytest.mark.parametrize("kind", MALFORMED)
def test_engine_entry_points_reject_malformed_csr(entry, kind):
    _expect_raise(_isolated(_raw_csr_call, entry, kind), "ValueError",
                  "X_indptr|malformed CSR")


# ---- transactional fit ---------------------------------------------------------------------------
def _state(est):
    """Everything a user can see of a fitted model, as comparable values."""
    out = {}
    for k, v in vars(est).items():
        if k in ("_nets",):
            continue
        if isinstance(v, np.ndarray):
            out[k] = ("array", v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            out[k] = [("array", a.dtype.str, a.shape, a.tobytes()) for a in v]
        elif isinstance(v, (list, tuple, str, int, float, bool, type(None))):
            out[k] = repr(v)
        elif k == "_optimizer":
            out[k] = (v.s1.tobytes(), v.s2.tobytes(), v.t, v.learning_rate)
        else:
            out[k] = type(v).__name__
    return out


def _refit_out_of_memory():
    """Refit a 3-class model with 2 classes and a layer too large to allocate, under an
    address-space limit so the allocation fails the same way on any machine."""
    import resource
    X, _ = _data(n=300, f=8)
    y3 = np.arange(300) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(X, y3)
    before, proba = _state(clf), clf.predict_proba(X)
    vm = int(re.search(r"VmSize:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
    clf.set_params(hidden_layer_sizes=(2 ** 31,))
    try:
        clf.fit(X, np.arange(300) % 2)
    except MemoryError:
        pass
    else:
        return "fit did not fail"
    clf.set_params(hidden_layer_sizes=(16,))
    return (_state(clf) == before, np.array_equal(clf.predict_proba(X), proba),
            list(clf.classes_), clf.n_outputs_, clf.out_activation_)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_AS")
def test_failed_refit_leaves_previous_model_unchanged():
    result = _isolated(_refit_out_of_memory)
    assert result[0] == "ok", result
    assert result[1] == (True, True, [0, 1, 2], 3, "softmax")


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_failed_continued_fit_restores_weights_and_optimizer(how):
    """A continued fit trains weights and optimizer state in place; when it then fails (here:
    the weights overflow), they are put back."""
    X, y = _data(n=200, f=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(7,), max_iter=3, random_state=0,
                           warm_start=how == "warm_start").fit(X, y)
    before, pred = _state(reg), reg.predict(X)
    huge = np.full_like(X, np.finfo(np.float64).max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="non-finite"):
            if how == "partial_fit":
                reg.partial_fit(huge, y)
            else:
                reg.fit(huge, y)
    assert _state(reg) == before
    np.testing.assert_array_equal(reg.predict(X), pred)


def test_failed_first_partial_fit_leaves_estimator_unfitted():
    clf = MLPClassifier(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="sums to 0"):
        clf.partial_fit(np.ones((4, 2)), [0, 1, 0, 1], sample_weight=[1.0, -1.0, 2.0, -2.0],
                        classes=[0, 1])
    assert not hasattr(clf, "classes_") and not hasattr(clf, "coefs_")


# ---- n_threads ------------------------------------------------------------------------------------
def test_huge_n_threads_is_capped_with_a_message():
    X, y = _data(n=300, f=6)
    with pytest.warns(UserWarning, match=r"n_threads=1000000 is more threads.*usable CPUs"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            big = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                               n_threads=10 ** 6).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                           n_threads=1).fit(X, y)
    np.testing.assert_array_equal(big.predict(X), one.predict(X))
    assert cprop._openmp.effective_n_threads(thread_ceiling()) == thread_ceiling()


@pytest.mark.parametrize("bad", [2.5, "2", 0, -10 ** 9 + 0.5])
def test_n_threads_set_after_fit_is_validated_at_use(bad):
    X, y = _data(n=100, f=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    reg.set_params(n_threads=bad)
    with pytest.raises(InvalidParameterError, match="n_threads"):
        reg.predict(X)


_THREADS_UNDER_LIMIT = r"""
import re, resource, warnings
import numpy as np
from cprop._engine import Network
net = Network([200, 256, 256, 10], "relu", "softmax", np.float64, n_threads=4)
p = net.init_params(np.random.RandomState(0))
X = np.random.RandomState(1).rand(2000, 200)
expected = Network([200, 256, 256, 10], "relu", "softmax", np.float64, n_threads=1).predict(p, X)
vm = int(re.search(r"VmSize:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
# OMP_STACKSIZE=1G: room for one more thread stack, not for three
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 29), resource.RLIM_INFINITY))
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    out = net.predict(p, X)
print("identical" if np.array_equal(out, expected) else "different")
print("warned" if any("could start only" in str(x.message) for x in w) else "silent")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_AS")
def test_thread_creation_failure_does_not_exit_the_process(tmp_path, cprop_env):
    """libgomp calls exit(1) when it cannot create a thread; the engine checks first and runs
    on the threads it could start."""
    env = cprop_env(OMP_STACKSIZE="1G")
    out = subprocess.run([sys.executable, "-c", _THREADS_UNDER_LIMIT], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["identical", "warned"], out.stdout + out.stderr


# ---- smaller findings -----------------------------------------------------------------------------
def test_plan_cache_is_bounded():
    net = Network([5, 7, 1], "relu", "identity", np.float64, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    X = np.random.RandomState(1).rand(300, 5)
    for n in range(1, 200):
        net.predict(p, X[:n])
    assert len(net._plans) <= _engine.PLAN_CACHE_SIZE
    # the most recent plans are the ones kept, and a kept plan is reused
    assert 199 in net._plans and net._checked_plan(199) is net._plans[199]


def test_concurrent_predicts_with_distinct_row_counts():
    """8 Python threads predict at once through one model, each with its own row counts (so
    they create and evict plans concurrently); every answer equals the serial one."""
    from concurrent.futures import ThreadPoolExecutor
    X, y = _data(n=400, f=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(9,), max_iter=2, random_state=0,
                           n_threads=1).fit(X, y)
    expected = reg.predict(X)

    def work(t):
        return all(np.array_equal(reg.predict(X[:n]), expected[:n])
                   for n in range(1 + t, 400, 8))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))


def test_non_integer_hidden_layer_sizes_raise_type_error_like_sklearn():
    X, y = np.random.RandomState(0).rand(20, 3), np.arange(20) % 2
    with pytest.raises(TypeError):
        SkMLPClassifier(hidden_layer_sizes=(2.5,), max_iter=1).fit(X, y)
    with pytest.raises(TypeError, match="hidden_layer_sizes must hold integers"):
        MLPClassifier(hidden_layer_sizes=(2.5,), max_iter=1).fit(X, y)
    with pytest.raises(TypeError, match="hidden_layer_sizes must hold integers"):
        MLPClassifier(hidden_layer_sizes=(4, "3"), max_iter=1).fit(X, y)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_zero_sample_weights_raise_clearly(solver):
    X, y = _data(n=50, f=3)
    cancel = np.tile([1.0, -1.0], 25)          # non-zero weights with a zero sum
    with pytest.raises(ValueError, match="sample_weight sums to 0"):
        MLPRegressor(solver=solver, max_iter=2).fit(X, y, sample_weight=cancel)
    with pytest.raises(ValueError, match="sample_weight sums to 0"):
        MLPClassifier(solver=solver, max_iter=2).fit(X, y > 0, sample_weight=cancel)
    # all zero: scikit-learn's own check answers first
    with pytest.raises(ValueError, match="at least one non-zero"):
        MLPRegressor(solver=solver, max_iter=2).fit(X, y, sample_weight=np.zeros(50))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_zero_weight_mini_batch_raises_clearly(solver):
    X, y = _data(n=50, f=3)
    sw = np.ones(50)
    sw[10:20] = 0                      # batch 1 of size 10, in order (shuffle=False)
    reg = MLPRegressor(solver=solver, batch_size=10, shuffle=False, max_iter=2)
    with pytest.raises(ValueError, match=r"mini-batch 1 \(rows 10 to 19.*summing to 0"):
        reg.fit(X, y, sample_weight=sw)
    assert not hasattr(reg, "coefs_")


def test_float32_coefs_assigned_to_float64_model_then_partial_fit():
    X, y = _data(n=100, f=4)
    reg = MLPRegressor(hidden_layer_sizes=(5,), random_state=0).partial_fit(X, y)
    c32 = [c.astype(np.float32) for c in reg.coefs_]
    i32 = [b.astype(np.float32) for b in reg.intercepts_]
    twin = MLPRegressor(hidden_layer_sizes=(5,), random_state=0).partial_fit(X, y)
    reg.coefs_, reg.intercepts_ = c32, i32
    twin.coefs_ = [c.astype(np.float64) for c in c32]        # the same values, exactly
    twin.intercepts_ = [b.astype(np.float64) for b in i32]
    reg.partial_fit(X, y)
    twin.partial_fit(X, y)
    assert reg.coefs_[0].dtype == np.float64
    for a, b in zip(reg.coefs_ + reg.intercepts_, twin.coefs_ + twin.intercepts_):
        np.testing.assert_array_equal(a, b)


def _bad_private_call(case):
    net = Network([3, 4, 2], "relu", "softmax", np.float64, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    X, Y = np.random.RandomState(0).rand(6, 3), np.eye(2)[[0, 1, 0, 1, 0, 1]]
    g, st = np.empty_like(p), OptimizerState("sgd", net.n_params, np.float64)
    plan = net.plan(6)
    if case == "predict_X_None":
        _train.predict(p, None, None, None, None, 3, plan, np.empty((6, 2)))
    elif case == "predict_more_rows_than_X":
        _train.predict(p, X, None, None, None, 3, plan, np.empty((600, 2)))
    elif case == "predict_wrong_outputs":
        _train.predict(p, X, None, None, None, 3, plan, np.empty((6, 5)))
    elif case == "loss_grad_X_None":
        _train.loss_grad(p, None, None, None, None, 3, Y, None, plan, 0.0, g)
    elif case == "loss_grad_short_weights":
        _train.loss_grad(p, X, None, None, None, 3, Y, np.ones(2), plan, 0.0, g)
    elif case == "loss_grad_fewer_X_rows":
        _train.loss_grad(p, X[:2], None, None, None, 3, Y, None, plan, 0.0, g)
    elif case == "train_epoch_order_out_of_range":
        _train.train_epoch(p, g, st.s1, st.s2, X, None, None, None, 3, Y, None,
                           np.array([0, 1, 2, 3, 4, 10 ** 9], dtype=np.intp), 2, plan, 0.0,
                           "sgd", 0.1)
    elif case == "train_epoch_negative_order":
        _train.train_epoch(p, g, st.s1, st.s2, X, None, None, None, 3, Y, None,
                           np.array([0, 1, 2, 3, 4, -5], dtype=np.intp), 2, plan, 0.0,
                           "sgd", 0.1)
    elif case == "train_epoch_short_weights":
        _train.train_epoch(p, g, st.s1, st.s2, X, None, None, None, 3, Y, np.ones(3), None, 2,
                           plan, 0.0, "sgd", 0.1)
    elif case == "train_epoch_X_None":
        _train.train_epoch(p, g, st.s1, st.s2, None, None, None, None, 3, Y, None, None, 2,
                           plan, 0.0, "sgd", 0.1)
    elif case == "plan_bad_activation_code":
        _backprop.make_plan([3, 4, 2], [3, 99], 1, 6, np.float64, 1)
    elif case == "plan_softmax_hidden":
        _backprop.make_plan([3, 4, 2], [5, 5], 1, 6, np.float64, 1)
    elif case == "plan_bad_loss_code":
        _backprop.make_plan([3, 4, 2], [3, 5], 42, 6, np.float64, 1)
    elif case == "plan_float_sizes":
        _backprop.make_plan([3, 4.5, 2], [3, 5], 1, 6, np.float64, 1)
    elif case == "plan_zero_cap":
        _backprop.make_plan([3, 4, 2], [3, 5], 1, 0, np.float64, 1)
    elif case == "tampered_plan_offset":
        bad = dict(plan, w_off=plan["w_off"] + 1000)
        _train.predict(p, X, None, None, None, 3, bad, np.empty((6, 2)))
    elif case == "tampered_plan_work_size":
        bad = dict(plan, work_size=10)
        _train.predict(p, X, None, None, None, 3, bad, np.empty((6, 2)))
    elif case == "tampered_plan_cap":
        bad = dict(plan, cap=10 ** 6)
        _train.predict(p, X, None, None, None, 3, bad, np.empty((6, 2)))
    elif case == "tampered_plan_codes":
        bad = dict(plan, acts=np.array([3, 77], dtype=np.intc))
        _train.predict(p, X, None, None, None, 3, bad, np.empty((6, 2)))
    elif case == "plan_missing_key":
        bad = {k: v for k, v in plan.items() if k != "d_off"}
        _train.predict(p, X, None, None, None, 3, bad, np.empty((6, 2)))
    elif case == "float64_plan_float32_params":
        _train.predict(p.astype(np.float32), X.astype(np.float32), None, None, None, 3,
                       dict(plan, work_size=plan["work_size"] // 4), np.empty((6, 2), np.float32))
    elif case == "checked_float64_plan_float32_params":
        _train.predict(p.astype(np.float32), X.astype(np.float32), None, None, None, 3,
                       net._checked_plan(6), np.empty((6, 2), np.float32))
    elif case == "checked_plan_other_network":
        other = Network([3, 9, 2], "relu", "softmax", np.float64, n_threads=1)
        _train.train_epoch(p, g, st.s1, st.s2, X, None, None, None, 3, Y, None, None, 2,
                           other._checked_plan(6), 0.0, "sgd", 0.1)
    elif case == "checked_plan_from_tampered_dict":
        _train.CheckedPlan(dict(plan, w_off=plan["w_off"] + 1000), np.float64)
    return "no error"


PRIVATE_CASES = [
    "predict_X_None", "predict_more_rows_than_X", "predict_wrong_outputs", "loss_grad_X_None",
    "loss_grad_short_weights", "loss_grad_fewer_X_rows", "train_epoch_order_out_of_range",
    "train_epoch_negative_order", "train_epoch_short_weights", "train_epoch_X_None",
    "plan_bad_activation_code", "plan_softmax_hidden", "plan_bad_loss_code", "plan_float_sizes",
    "plan_zero_cap", "tampered_plan_offset", "tampered_plan_work_size", "tampered_plan_cap",
    "tampered_plan_codes", "plan_missing_key", "float64_plan_float32_params",
    "checked_float64_plan_float32_params", "checked_plan_other_network",
    "checked_plan_from_tampered_dict",
]


def test_checked_plan_keeps_its_own_copy():
    """Network passes a CheckedPlan, checked once: editing the dict it came from afterwards must
    not reach the kernels (it holds copies), and the results still match a fresh network's."""
    net = Network([3, 4, 2], "relu", "softmax", np.float64, n_threads=1)
    p = net.init_params(np.random.RandomState(0))
    X = np.random.RandomState(1).rand(6, 3)
    expected = Network([3, 4, 2], "relu", "softmax", np.float64, n_threads=1).predict(p, X)
    checked = net._checked_plan(6)
    checked.plan["w_off"][:] = 10 ** 6
    checked.plan["a_off"][:] = -(10 ** 6)
    np.testing.assert_array_equal(net.predict(p, X), expected)
    with pytest.raises(TypeError, match="plan must be a dict"):
        _train.predict(p, X, None, None, None, 3, [1, 2], np.empty((6, 2)))


def test_private_entry_points_validate_their_arguments():
    """Every case raises ValueError in one child process (run together: one fork, not 21)."""
    def all_cases():
        out = {}
        for case in PRIVATE_CASES:
            try:
                out[case] = _bad_private_call(case)
            except ValueError as exc:
                out[case] = "ValueError: " + str(exc)
            except Exception as exc:
                out[case] = f"{type(exc).__name__}: {exc}"
        return out

    result = _isolated(all_cases)
    assert result[0] == "ok", result
    wrong = {k: v for k, v in result[1].items() if not v.startswith("ValueError")}
    assert not wrong, wrong
