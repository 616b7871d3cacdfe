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
def test_bitwise_identical_across_thread_counts(dtype, sparse):
    """Large enough that every GEMM and row loop takes its threaded path with 2 threads."""
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
        loss, grad = net.loss_grad(params, X, Y, sw, alpha=1e-3)
        P = net.predict(params, X)
        from cprop._engine import OptimizerState
        st = OptimizerState("adam", net.n_params, dtype, learning_rate=1e-3)
        order = np.random.RandomState(1).permutation(n)
        ep = net.train_epoch(params, st, X, Y, sw, order=order, batch_size=256, alpha=1e-3)
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
def test_new_activations_bitwise_identical_across_thread_counts(dtype):
    rng = np.random.default_rng(10)
    n, sizes = 600, [120, 96, 64, 10]
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = _targets("softmax", rng, n, sizes[-1])
    results = []
    for nt in (1, 2, 3):
        net = Network(sizes, ["gelu", "mish"], "softmax", dtype, n_threads=nt)
        params = net.init_params(np.random.RandomState(0))
        loss, grad = net.loss_grad(params, X, Y, None, alpha=1e-3)
        results.append((loss, grad))
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        assert np.array_equal(grad, results[0][1])
