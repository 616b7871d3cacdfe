"""The sparse (CSR) first layer: the same results as dense input, to rounding, on every kernel path.

References are independent of the sparse kernels: numpy's products on ``X.toarray()`` for a
one-layer network (forward and weight gradient written out), and the engine's dense path (GEMM)
for whole networks, passes and fits.  Thread tests prove that the sparse loops ran threaded
(``_backprop._sparse_teams``) before comparing results bit for bit.
"""
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from cprop import MLPClassifier, MLPRegressor
from cprop._backprop import _sparse_teams
from cprop._engine import Network, OptimizerState, to_engine_csr

DTYPES = [np.float32, np.float64]
# Hidden widths that reach every column block of the row kernel: 8, 4, 2 and 1 vectors of 16
# float32 / 8 float64 lanes (avx512), 8 / 4 (avx2), 4 / 2 (portable), and the tails past them.
WIDTHS = [1, 3, 8, 13, 16, 37, 69, 100, 129, 257]


def _tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


def _csr(rng, n, m, density, dtype, empty_rows=(), unused_cols=()):
    """A random CSR matrix with the named rows and columns holding no entries."""
    X = rng.standard_normal((n, m)) * (rng.random((n, m)) < density)
    X[list(empty_rows), :] = 0
    X[:, list(unused_cols)] = 0
    return sp.csr_matrix(X.astype(dtype))


def _one_hot(rng, n, cards, dtype):
    """One-hot rows of random categoricals (what OneHotEncoder hands an estimator)."""
    cols = np.concatenate([[0], np.cumsum(cards)])
    codes = np.column_stack([rng.integers(0, c, n) for c in cards]) + cols[:-1]
    indptr = np.arange(0, n * len(cards) + 1, len(cards))
    return sp.csr_matrix((np.ones(codes.size, dtype), codes.ravel(), indptr),
                         shape=(n, int(cols[-1])))


# ---- one layer against numpy ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", WIDTHS)
def test_one_layer_matches_numpy(width, dtype, kernel):
    """Identity output, squared error: P = X W + b and grad W = X^T (P - Y) / n + alpha W / n."""
    rng = np.random.default_rng(width)
    n, m, alpha = 70, 41, 0.3
    X = _csr(rng, n, m, 0.15, dtype, empty_rows=(0, 5, 69), unused_cols=(2, 40))
    Xd = X.toarray().astype(np.float64)
    net = Network([m, width], [], "identity", dtype, n_threads=1)
    params = net.init_params(np.random.RandomState(1))
    W, b = net.coefs(params)[0].astype(np.float64), net.intercepts(params)[0].astype(np.float64)
    Y = rng.standard_normal((n, width)).astype(dtype)
    P = Xd @ W + b
    assert_allclose(net.predict(params, X), P, rtol=_tol(dtype), atol=_tol(dtype))
    _, grad = net.loss_grad(params, X, Y, alpha=alpha)
    gW = Xd.T @ (P - Y) / n + alpha * W / n
    assert_allclose(net.coefs(grad)[0], gW, rtol=_tol(dtype) * 10, atol=_tol(dtype))
    # columns never used: their rows hold the L2 term alone
    assert_allclose(net.coefs(grad)[0][[2, 40]], alpha * W[[2, 40]] / n, rtol=_tol(dtype))


# ---- whole networks and passes against the dense path --------------------------------------------
def _pair(dtype, width, rng, X):
    net = Network([X.shape[1], width, 4], "tanh", "softmax", dtype, n_threads=1)
    params = net.init_params(np.random.RandomState(2))
    Y = np.eye(4, dtype=dtype)[rng.integers(0, 4, X.shape[0])]
    return net, params, Y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [5, 37, 100])
def test_forward_loss_grad_and_epoch_match_dense(width, dtype, kernel):
    rng = np.random.default_rng(3)
    X = _csr(rng, 230, 60, 0.1, dtype, empty_rows=range(10, 30), unused_cols=(0, 7, 59))
    Xd = X.toarray()
    net, params, Y = _pair(dtype, width, rng, X)
    sw = (rng.random(230) + 0.5).astype(dtype)
    tol = _tol(dtype)
    assert_allclose(net.predict(params, X), net.predict(params, Xd), rtol=tol, atol=tol)
    ls, gs = net.loss_grad(params, X, Y, sw, alpha=1e-2)
    ld, gd = net.loss_grad(params, Xd, Y, sw, alpha=1e-2)
    assert ls == pytest.approx(ld, rel=tol)
    assert_allclose(gs, gd, rtol=10 * tol, atol=tol)
    # a full-batch pass in chunks: the gradient accumulates over them (70 rows per pass)
    from cprop import _train
    g7 = np.empty_like(params)
    E = to_engine_csr(X, dtype)
    _train.loss_grad(params, None, E.data, E.indices, E.indptr, 60, Y, sw, net.plan(70), 1e-2, g7)
    assert_allclose(g7, gd, rtol=10 * tol, atol=tol)
    # two epochs of Adam in shuffled mini-batches (rows gathered by id)
    out = []
    for Xin in (X, Xd):
        p = params.copy()
        st = OptimizerState("adam", net.n_params, dtype, learning_rate=1e-2)
        for e in range(2):
            net.train_epoch(p, st, Xin, Y, sw, order=np.random.RandomState(e).permutation(230),
                            batch_size=64, alpha=1e-3)
        out.append(p)
    assert_allclose(out[0], out[1], rtol=100 * tol, atol=10 * tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unsorted_and_duplicate_indices(dtype, kernel):
    """CSR with unsorted column indices and duplicates (scipy sums them: X.toarray()) gives the
    dense result; to_engine_csr canonicalises a copy and leaves X as it was."""
    rng = np.random.default_rng(4)
    n, m = 40, 12
    rows, cols, vals = [], [], []
    for r in range(n):
        k = rng.integers(0, 6)
        c = rng.integers(0, m, k)             # unsorted, with repeats
        rows += [r] * k
        cols += list(c)
        vals += list(rng.standard_normal(k))
    indptr = np.searchsorted(rows, np.arange(n + 1))
    X = sp.csr_matrix((np.array(vals, dtype), np.array(cols, np.int32), indptr), shape=(n, m))
    assert not X.has_canonical_format
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    E = to_engine_csr(X, dtype)
    assert E.has_canonical_format
    assert np.all(np.diff(E.indptr) <= np.diff(X.indptr))
    for a, b in zip(before, (X.data, X.indices, X.indptr)):
        assert np.array_equal(a, b)
    Xd = X.toarray()
    net, params, Y = _pair(dtype, 9, rng, X)
    tol = _tol(dtype)
    assert_allclose(net.predict(params, X), net.predict(params, Xd), rtol=tol, atol=tol)
    assert_allclose(net.loss_grad(params, X, Y)[1], net.loss_grad(params, Xd, Y)[1],
                    rtol=10 * tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_stored_entries(dtype):
    """An all-zero CSR matrix (no entries at all) trains like its dense zeros."""
    rng = np.random.default_rng(5)
    X = sp.csr_matrix((50, 8), dtype=dtype)
    net, params, Y = _pair(dtype, 6, rng, X)
    gs, gd = net.loss_grad(params, X, Y)[1], net.loss_grad(params, X.toarray(), Y)[1]
    assert np.array_equal(net.coefs(gs)[0], np.zeros((8, 6)))
    assert_allclose(gs, gd, rtol=_tol(dtype), atol=_tol(dtype))
    ps, pd = params.copy(), params.copy()
    for p, Xin in ((ps, X), (pd, X.toarray())):
        st = OptimizerState("sgd", net.n_params, dtype, learning_rate=0.1)
        net.train_epoch(p, st, Xin, Y, batch_size=16)
    assert_allclose(ps, pd, rtol=_tol(dtype), atol=_tol(dtype))


# ---- estimators ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_whole_fits_match_dense(solver, dtype):
    rng = np.random.default_rng(6)
    X = _one_hot(rng, 300, [3, 5, 8, 2, 6], dtype)
    X = sp.hstack([X, sp.csr_matrix(rng.standard_normal((300, 2)).astype(dtype))]).tocsr()
    y = rng.integers(0, 3, 300)
    kw = dict(hidden_layer_sizes=(33,), solver=solver, max_iter=8, random_state=0,
              n_threads=1, learning_rate_init=0.01)
    with pytest.warns(Warning):      # ConvergenceWarning: 8 iterations
        a = MLPClassifier(**kw).fit(X, y)
    with pytest.warns(Warning):
        b = MLPClassifier(**kw).fit(X.toarray(), y)
    assert a.coefs_[0].dtype == dtype
    tol = 1e-3 if dtype == np.float32 else 1e-9
    for Wa, Wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert_allclose(Wa, Wb, rtol=tol, atol=tol)
    assert_allclose(a.loss_curve_ if solver != "lbfgs" else [a.loss_],
                    b.loss_curve_ if solver != "lbfgs" else [b.loss_], rtol=tol)
    assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()), rtol=tol, atol=tol)
    r = MLPRegressor(hidden_layer_sizes=(20,), max_iter=5, random_state=0, n_threads=1)
    with pytest.warns(Warning):
        ra = r.fit(X, X[:, -1].toarray().ravel()).coefs_
    with pytest.warns(Warning):
        rb = r.fit(X.toarray(), X[:, -1].toarray().ravel()).coefs_
    for Wa, Wb in zip(ra, rb):
        assert_allclose(Wa, Wb, rtol=tol, atol=tol)


# ---- threads -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_across_thread_counts(dtype, kernel):
    """Passes large enough for the threaded sparse loops (forward rows, weight-gradient rows):
    the loops are seen running with more than one thread, and every result is bitwise the
    one-thread result."""
    rng = np.random.default_rng(7)
    n = 1500
    X = _one_hot(rng, n, [7] * 30 + [40] * 5, dtype)            # 410 columns, 35 per row
    y = rng.integers(0, 5, n)
    Y = np.eye(5, dtype=dtype)[y]
    sw = (rng.random(n) + 0.5).astype(dtype)
    order = np.random.RandomState(1).permutation(n)
    results, teams = [], []
    for nt in (1, 2, 3):
        net = Network([X.shape[1], 300, 5], "relu", "softmax", dtype, n_threads=nt)
        params = net.init_params(np.random.RandomState(0))
        _sparse_teams(reset=True)
        loss, grad = net.loss_grad(params, X, Y, sw, alpha=1e-3)
        P = net.predict(params, X)
        st = OptimizerState("adam", net.n_params, dtype, learning_rate=1e-3)
        ep = net.train_epoch(params, st, X, Y, sw, order=order, batch_size=500, alpha=1e-3)
        engine_teams = _sparse_teams(reset=True)
        clf = MLPClassifier(hidden_layer_sizes=(300,), batch_size=500, max_iter=2,
                            random_state=0, n_threads=nt)
        with pytest.warns(Warning):
            clf.fit(X, y)
        teams.append((engine_teams, _sparse_teams(reset=True)))
        results.append([loss, ep, grad, P, params] + clf.coefs_ + clf.intercepts_)
    # (forward, gradient) teams of the engine calls and of the fit: none at one thread
    assert teams == [((0, 0), (0, 0)), ((2, 2), (2, 2)), ((3, 3), (3, 3))]
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert np.array_equal(a, b)
