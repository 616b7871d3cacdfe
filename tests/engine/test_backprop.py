"""Whole-network forward/backward: gradients vs central differences, sparse vs dense, chunking, threads."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, softmax

from cprop import _train
from cprop._engine import Network

HIDDEN = ["identity", "logistic", "tanh", "relu"]
OUTPUTS = ["identity", "softmax", "logistic", "exp"]
NP_ACT = {"identity": lambda z: z, "logistic": expit, "tanh": np.tanh,
          "relu": lambda z: np.maximum(z, 0), "exp": np.exp,
          "softmax": lambda z: softmax(z, axis=1)}


def _targets(out, rng, n, k):
    if out == "softmax":
        return np.eye(k)[rng.integers(0, k, n)]
    if out == "logistic":
        return (rng.random((n, k)) > 0.5).astype(float)
    if out == "exp":
        return rng.poisson(1.5, (n, k)).astype(float)
    return rng.standard_normal((n, k))


def _numpy_forward(net, params, X):
    A = np.asarray(X.todense()) if sp.issparse(X) else X
    acts = net.activations + [net.out_activation]
    for W, b, act in zip(net.coefs(params), net.intercepts(params), acts):
        A = NP_ACT[act](A @ W + b)
    return A


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out", OUTPUTS)
def test_gradient_matches_central_differences(hidden, out):
    rng = np.random.default_rng(hash((hidden, out)) % 2**32)
    n, sizes = 11, [4, 6, 5, 3]
    net = Network(sizes, hidden, out, np.float64, n_threads=1)
    params = net.init_params(np.random.RandomState(0), 2.0 if hidden == "logistic" else 6.0)
    X = rng.standard_normal((n, sizes[0]))
    if hidden == "relu":  # keep pre-activations away from the kink where FD is undefined
        params = params + 0.05
    Y = _targets(out, rng, n, sizes[-1])
    sw = rng.random(n) + 0.5
    alpha = 0.37
    loss, grad = net.loss_grad(params, X, Y, sw, alpha)
    h = 1e-6
    fd = np.empty_like(params)
    for i in range(params.size):
        p1, p2 = params.copy(), params.copy()
        p1[i] += h
        p2[i] -= h
        fd[i] = (net.loss_grad(p1, X, Y, sw, alpha)[0] - net.loss_grad(p2, X, Y, sw, alpha)[0]) / (2 * h)
    rel = np.linalg.norm(grad - fd) / np.linalg.norm(fd)
    assert rel <= 1e-6, rel


@pytest.mark.parametrize("out", OUTPUTS)
def test_loss_matches_numpy_reference(out):
    """loss = sum_i sw_i l_i / sum(sw) + alpha/(2 sum(sw)) sum ||W||^2, with numpy forward."""
    rng = np.random.default_rng(5)
    n, sizes = 23, [5, 7, 4]
    net = Network(sizes, "tanh", out, np.float64)
    params = net.init_params(np.random.RandomState(1))
    X = rng.standard_normal((n, sizes[0]))
    Y = _targets(out, rng, n, sizes[-1])
    sw = rng.random(n) + 0.1
    alpha = 0.1
    P = _numpy_forward(net, params, X)
    eps = np.finfo(np.float64).eps
    if out == "identity":
        per = 0.5 * ((Y - P) ** 2).sum(1)
    elif out == "softmax":
        per = -(Y * np.log(np.clip(P, eps, 1 - eps))).sum(1)
    elif out == "logistic":
        Pc = np.clip(P, eps, 1 - eps)
        per = -(Y * np.log(Pc) + (1 - Y) * np.log(1 - Pc)).sum(1)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            per = (np.where(Y > 0, Y * np.log(Y / P), 0) - Y + P).sum(1)
    l2 = sum((W ** 2).sum() for W in net.coefs(params))
    ref = (sw * per).sum() / sw.sum() + 0.5 * alpha * l2 / sw.sum()
    loss, _ = net.loss_grad(params, X, Y, sw, alpha)
    assert loss == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(net.predict(params, X), P, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_matches_dense(dtype, fmt):
    rng = np.random.default_rng(2)
    n, sizes = 57, [30, 9, 4]
    Xd = rng.standard_normal((n, sizes[0])) * (rng.random((n, sizes[0])) < 0.2)
    Xs = sp.csr_matrix(Xd) if fmt == "csr" else sp.csc_matrix(Xd)
    net = Network(sizes, "relu", "softmax", dtype, n_threads=2)
    params = net.init_params(np.random.RandomState(3))
    Y = _targets("softmax", rng, n, sizes[-1])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(net.predict(params, Xs), net.predict(params, Xd), rtol=tol, atol=tol)
    ld, gd = net.loss_grad(params, Xd, Y, alpha=0.01)
    ls, gs = net.loss_grad(params, Xs, Y, alpha=0.01)
    assert ls == pytest.approx(ld, rel=tol)
    np.testing.assert_allclose(gs, gd, rtol=tol * 10, atol=tol)


def test_full_batch_accumulates_over_chunks():
    """Gradient over chunks of 7 rows equals the one-pass gradient (and central differences agree)."""
    rng = np.random.default_rng(4)
    n, sizes = 50, [6, 8, 3]
    net = Network(sizes, "logistic", "softmax", np.float64, n_threads=1)
    params = net.init_params(np.random.RandomState(2))
    X = rng.standard_normal((n, sizes[0]))
    Y = _targets("softmax", rng, n, sizes[-1])
    sw = rng.random(n)
    g_small = np.empty_like(params)
    l_small = _train.loss_grad(params, X, None, None, None, sizes[0], Y, sw, net.plan(7), 0.2, g_small)
    l_one, g_one = net.loss_grad(params, X, Y, sw, 0.2)
    assert l_small == pytest.approx(l_one, rel=1e-13)
    np.testing.assert_allclose(g_small, g_one, rtol=1e-12, atol=1e-15)
    # sparse input through the same chunking
    g_sp = np.empty_like(params)
    Xs = sp.csr_matrix(X)
    _train.loss_grad(params, None, Xs.data, Xs.indices.astype(np.intp), Xs.indptr.astype(np.intp),
                     sizes[0], Y, sw, net.plan(7), 0.2, g_sp)
    np.testing.assert_allclose(g_sp, g_one, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_close_to_float64(dtype):
    rng = np.random.default_rng(6)
    sizes = [20, 16, 5]
    net64 = Network(sizes, "relu", "logistic", np.float64)
    net = Network(sizes, "relu", "logistic", dtype)
    p64 = net64.init_params(np.random.RandomState(0))
    X = rng.standard_normal((40, 20))
    Y = _targets("logistic", rng, 40, 5)
    l64, g64 = net64.loss_grad(p64, X, Y, alpha=1e-3)
    l, g = net.loss_grad(p64.astype(dtype), X.astype(dtype), Y.astype(dtype), alpha=1e-3)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, g64, rtol=1e-4, atol=1e-5)
    assert l == pytest.approx(l64, rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
def test_bitwise_identical_across_thread_counts(dtype, sparse, threaded_passes):
    """Large enough that the passes run threaded at the default thresholds (a sparse epoch's
    lowered; checked: the GEMM's
    and the optimizer update's OpenMP teams)."""
    rng = np.random.default_rng(7)
    n, sizes = 600, [120, 96, 64, 10]
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if sparse:
        X = sp.csr_matrix(X * (rng.random(X.shape) < 0.3))
    Y = _targets("softmax", rng, n, sizes[-1])
    sw = rng.random(n) + 0.5
    results = []
    for nt in (1, 2, 3):
        net = Network(sizes, "tanh", "softmax", dtype, n_threads=nt)
        params = net.init_params(np.random.RandomState(0))
        with threaded_passes(lower=False) as teams:
            loss, grad = net.loss_grad(params, X, Y, sw, alpha=1e-3)
            P = net.predict(params, X)
        assert teams["gemm"] == (0 if nt == 1 else nt)
        from cprop._engine import OptimizerState
        st = OptimizerState("adam", net.n_params, dtype, learning_rate=1e-3)
        order = np.random.RandomState(1).permutation(n)
        # a CSR batch's pass counts its first layer by the stored entries (_train's
        # _sparse_pass_rows): 256 sparse rows run serially at the default thresholds
        with threaded_passes(lower=sparse) as teams:
            ep = net.train_epoch(params, st, X, Y, sw, order=order, batch_size=256, alpha=1e-3)
        assert teams["gemm"] == teams["update"] == (0 if nt == 1 else nt)
        results.append((loss, grad, P, ep, params))
    for other in results[1:]:
        assert other[0] == results[0][0]
        assert other[3] == results[0][3]
        for a, b in zip(other[1:], results[0][1:]):
            if isinstance(a, np.ndarray):
                assert np.array_equal(a, b)


def test_engine_rejects_bad_arguments():
    net = Network([3, 4, 2], "relu", "identity", np.float64)
    params = net.init_params(np.random.RandomState(0))
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match="params must be"):
        net.predict(params[:-1], X)
    with pytest.raises(ValueError, match="params must be"):
        net.predict(params.astype(np.float32), X)
    with pytest.raises(ValueError, match="features"):
        net.predict(params, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="targets have shape"):
        net.loss_grad(params, X, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="sample_weight"):
        net.loss_grad(params, X, np.zeros((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="Unknown activation"):
        Network([3, 4, 2], "swish", "identity", np.float64)
    with pytest.raises(ValueError, match="dtype"):
        Network([3, 4, 2], "relu", "identity", np.int64)
    with pytest.raises(ValueError, match="positive"):
        Network([3, 0, 2], "relu", "identity", np.float64)
    with pytest.raises(ValueError, match="layer 0"):
        net.pack([np.zeros((3, 5)), np.zeros((4, 2))], [np.zeros(4), np.zeros(2)])


# ---- activations beyond scikit-learn (issue 11): every kernel path, dense and sparse --------------
NEW_HIDDEN = ["leaky_relu", "elu", "selu", "softplus", "gelu", "gelu_tanh", "silu", "mish"]


def _central_differences(net, params, X, Y, sw, alpha, h=1e-6):
    fd = np.empty_like(params)
    for i in range(params.size):
        p1, p2 = params.copy(), params.copy()
        p1[i] += h
        p2[i] -= h
        fd[i] = (net.loss_grad(p1, X, Y, sw, alpha)[0] - net.loss_grad(p2, X, Y, sw, alpha)[0]) / (2 * h)
    return fd


@pytest.mark.parametrize("hidden", NEW_HIDDEN)
@pytest.mark.parametrize("sparse", [False, True])
def test_new_activation_gradients(hidden, sparse, kernel):
    """The fused forward epilogue (with the saved pre-activation for gelu/silu/mish) and the
    derivative epilogue, through two hidden layers, against central differences."""
    rng = np.random.default_rng(8)
    n, sizes = 13, [5, 7, 6, 3]
    net = Network(sizes, [hidden, hidden], "softmax", np.float64, n_threads=1)
    params = net.init_params(np.random.RandomState(4)) + 0.03  # away from the kinks at 0
    X = rng.standard_normal((n, sizes[0]))
    if sparse:
        X = sp.csr_matrix(X * (rng.random(X.shape) < 0.5))
    Y = _targets("softmax", rng, n, sizes[-1])
    sw = rng.random(n) + 0.5
    _, grad = net.loss_grad(params, X, Y, sw, 0.1)
    fd = _central_differences(net, params, X, Y, sw, 0.1)
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) <= 1e-6
    # the forward pass against numpy, with each layer's own activation
    ref = np.asarray(X.todense()) if sparse else X
    for W, b, act in zip(net.coefs(params), net.intercepts(params), [hidden, hidden, "softmax"]):
        Z = ref @ W + b
        if act == "softmax":
            ref = softmax(Z, axis=1)
        else:
            ref = Z.copy()
            from cprop._activations import forward as act_forward
            act_forward(act, ref)
    np.testing.assert_allclose(net.predict(params, X), ref, rtol=1e-12, atol=1e-15)


def test_mixed_activations_per_layer_gradient(kernel):
    """One activation per hidden layer: a z-reading one between two output-reading ones."""
    rng = np.random.default_rng(9)
    n, sizes = 9, [4, 5, 6, 5, 2]
    acts = ["selu", "gelu", "softplus"]
    net = Network(sizes, acts, "identity", np.float64, n_threads=1)
    params = net.init_params(np.random.RandomState(5))
    X = rng.standard_normal((n, sizes[0]))
    Y = rng.standard_normal((n, sizes[-1]))
    _, grad = net.loss_grad(params, X, Y, None, 0.0)
    fd = _central_differences(net, params, X, Y, None, 0.0)
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) <= 1e-6
    z_off = net.plan(8)["z_off"]   # only gelu's layer keeps its pre-activation
    assert z_off[1] == -1 and z_off[2] >= 0 and z_off[3] == -1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_new_activations_bitwise_identical_across_thread_counts(dtype, threaded_passes):
    rng = np.random.default_rng(10)
    n, sizes = 600, [120, 96, 64, 10]
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = _targets("softmax", rng, n, sizes[-1])
    results = []
    for nt in (1, 2, 3):
        net = Network(sizes, ["gelu", "mish"], "softmax", dtype, n_threads=nt)
        params = net.init_params(np.random.RandomState(0))
        with threaded_passes(lower=False) as teams:
            loss, grad = net.loss_grad(params, X, Y, None, alpha=1e-3)
        assert teams["gemm"] == (0 if nt == 1 else nt)       # threaded at the default thresholds
        results.append((loss, grad))
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        assert np.array_equal(grad, results[0][1])


# ---- dropout (issue 11) -----------------------------------------------------------------------------
from scipy.special import erf  # noqa: E402

M64 = (1 << 64) - 1


def _gelu(z):
    return 0.5 * z * (1 + erf(z / np.sqrt(2)))


def _mix64(z):
    z = int(z) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def _numpy_mask(seed, epoch, layer, samples, m, rate):
    """The documented key (seed, epoch, layer, sample, unit // 4) -> splitmix64 -> 16-bit field
    unit % 4 -> u = field / 2^16; keep u >= rate."""
    out = np.empty((len(samples), m))
    for r, sample in enumerate(samples):
        h = _mix64(seed + 0x9e3779b97f4a7c15)
        h = _mix64(h ^ epoch)
        h = _mix64(h ^ layer)
        key = _mix64(h ^ int(sample))
        for j in range(m):
            h = _mix64(key ^ (((j // 4) * 0x9e3779b97f4a7c15) & M64))
            u = ((h >> (16 * (j % 4))) & 0xFFFF) / 65536.0
            out[r, j] = 1.0 / (1.0 - rate) if u >= rate else 0.0
    return out


@pytest.mark.parametrize("sparse", [False, True])
def test_dropout_forward_matches_numpy_masks(sparse, kernel):
    rng = np.random.default_rng(40)
    n, sizes, rates = 17, [5, 9, 7, 3], [0.3, 0.6]
    net = Network(sizes, ["tanh", "gelu"], "softmax", np.float64, n_threads=1, dropout=rates)
    params = net.init_params(np.random.RandomState(1))
    X = rng.standard_normal((n, sizes[0]))
    Y = _targets("softmax", rng, n, sizes[-1])
    Xin = sp.csr_matrix(X * (X > 0)) if sparse else X
    Xd = X * (X > 0) if sparse else X
    loss, _ = net.loss_grad(params, Xin, Y, None, 0.0, dropout_seed=12, dropout_epoch=3)
    A = Xd
    W, b = net.coefs(params), net.intercepts(params)
    A = np.tanh(A @ W[0] + b[0]) * _numpy_mask(12, 3, 1, range(n), sizes[1], rates[0])
    A = _gelu(A @ W[1] + b[1]) * _numpy_mask(12, 3, 2, range(n), sizes[2], rates[1])
    P = softmax(A @ W[2] + b[2], axis=1)
    ref = -(Y * np.log(P)).sum(1).mean()
    assert loss == pytest.approx(ref, rel=1e-12)
    no_drop, _ = net.loss_grad(params, Xin, Y, None, 0.0)
    assert abs(no_drop - loss) > 1e-3            # the masks did act ...
    P_pred = net.predict(params, Xin)            # ... and never at prediction
    ref_pred = softmax(_gelu(np.tanh(Xd @ W[0] + b[0]) @ W[1] + b[1]) @ W[2] + b[2], axis=1)
    np.testing.assert_allclose(P_pred, ref_pred, rtol=1e-12)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_kept_fraction_matches_rate(rate):
    """Identity hidden layer of m ones: d loss / d b_out = mean over rows of kept/(1 - rate)."""
    n, m = 2000, 100
    net = Network([1, m, 1], "identity", "identity", np.float64, n_threads=1, dropout=rate)
    params = np.zeros(net.n_params)
    net.coefs(params)[0][...] = 1.0
    net.coefs(params)[1][...] = 1.0
    _, g = net.loss_grad(params, np.ones((n, 1)), np.zeros((n, 1)), dropout_seed=5)
    kept = net.intercepts(g)[1][0] * (1 - rate) / m
    assert abs(kept - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / (n * m)), kept


def test_dropout_epochs_and_seeds_give_other_masks():
    net = Network([1, 50, 1], "identity", "identity", np.float64, n_threads=1, dropout=0.5)
    params = np.ones(net.n_params)
    X, Y = np.ones((40, 1)), np.zeros((40, 1))
    base = net.loss_grad(params, X, Y, dropout_seed=1, dropout_epoch=0)[1]
    assert np.array_equal(base, net.loss_grad(params, X, Y, dropout_seed=1, dropout_epoch=0)[1])
    assert not np.array_equal(base, net.loss_grad(params, X, Y, dropout_seed=1, dropout_epoch=1)[1])
    assert not np.array_equal(base, net.loss_grad(params, X, Y, dropout_seed=2, dropout_epoch=0)[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_training_bitwise_identical_across_thread_counts(dtype, threaded_passes):
    rng = np.random.default_rng(41)
    n, sizes = 500, [120, 96, 64, 10]
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = _targets("softmax", rng, n, sizes[-1]).astype(dtype)
    order = rng.permutation(n)
    out = []
    for nt in (1, 2, 3):
        net = Network(sizes, "relu", "softmax", dtype, n_threads=nt, dropout=[0.2, 0.5])
        p = net.init_params(np.random.RandomState(0))
        from cprop._engine import OptimizerState
        st = OptimizerState("adam", net.n_params, dtype, learning_rate=1e-3, dropout_seed=9)
        with threaded_passes(lower=False) as teams:
            losses = [net.train_epoch(p, st, X, Y, order=order, batch_size=250)
                      for _ in range(2)]
        assert teams["gemm"] == teams["update"] == (0 if nt == 1 else nt)   # default thresholds
        out.append((losses, p))
    for losses, p in out[1:]:
        assert losses == out[0][0] and np.array_equal(p, out[0][1])


@pytest.mark.parametrize("hidden", NEW_HIDDEN)
def test_new_activations_float32_close_to_float64(hidden, kernel):
    """The float32 builds of the fused epilogues (both kernel paths) track the float64 ones."""
    rng = np.random.default_rng(11)
    sizes = [20, 16, 12, 5]
    net64 = Network(sizes, hidden, "logistic", np.float64, n_threads=1)
    net32 = Network(sizes, hidden, "logistic", np.float32, n_threads=1)
    p64 = net64.init_params(np.random.RandomState(0))
    X = rng.standard_normal((40, 20))
    Y = _targets("logistic", rng, 40, 5)
    l64, g64 = net64.loss_grad(p64, X, Y, alpha=1e-3)
    l32, g32 = net32.loss_grad(p64.astype(np.float32), X.astype(np.float32),
                               Y.astype(np.float32), alpha=1e-3)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(net32.predict(p64.astype(np.float32), X.astype(np.float32)),
                               net64.predict(p64, X), rtol=1e-5, atol=1e-6)
