"""One compiled epoch of mini-batch SGD / Adam against a plain numpy implementation of the same rules."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, softmax

from cprop._engine import Network, OptimizerState

NP_ACT = {"identity": lambda z: z, "logistic": expit, "tanh": np.tanh,
          "relu": lambda z: np.maximum(z, 0), "softmax": lambda z: softmax(z, axis=1),
          "exp": np.exp}
NP_DERIV = {"identity": lambda a: np.ones_like(a), "logistic": lambda a: a * (1 - a),
            "tanh": lambda a: 1 - a ** 2, "relu": lambda a: (a > 0).astype(a.dtype)}


def _numpy_loss(out, Y, P):
    eps = np.finfo(P.dtype).eps
    if out == "identity":
        return 0.5 * ((Y - P) ** 2).sum(1)
    if out == "softmax":
        return -(Y * np.log(np.clip(P, eps, 1 - eps))).sum(1)
    Pc = np.clip(P, eps, 1 - eps)
    return -(Y * np.log(Pc) + (1 - Y) * np.log(1 - Pc)).sum(1)


def numpy_epoch(Ws, bs, hidden, out, X, Y, sw, order, batch, alpha, opt, st):
    """Reference: forward, loss, backward by the chain rule, then the optimizer, batch by batch."""
    n = X.shape[0]
    acc = 0.0
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        A = [X[idx]]
        acts = [hidden] * (len(Ws) - 1) + [out]
        for W, b, a in zip(Ws, bs, acts):
            A.append(NP_ACT[a](A[-1] @ W + b))
        w = sw[idx] if sw is not None else np.ones(len(idx))
        S = w.sum()
        loss = (w * _numpy_loss(out, Y[idx], A[-1])).sum() / S
        loss += 0.5 * alpha * sum((W ** 2).sum() for W in Ws) / S
        acc += loss * len(idx)
        D = (A[-1] - Y[idx]) * w[:, None] / S
        gW, gb = [None] * len(Ws), [None] * len(Ws)
        for l in range(len(Ws) - 1, -1, -1):
            gW[l] = A[l].T @ D + alpha / S * Ws[l]
            gb[l] = D.sum(0)
            if l:
                D = (D @ Ws[l].T) * NP_DERIV[hidden](A[l])
        params, grads = Ws + bs, gW + gb
        if opt == "adam":
            st["t"] += 1
            lr = st["lr"] * np.sqrt(1 - 0.999 ** st["t"]) / (1 - 0.9 ** st["t"])
            for i, (p, g) in enumerate(zip(params, grads)):
                st["m"][i] = 0.9 * st["m"][i] + 0.1 * g
                st["v"][i] = 0.999 * st["v"][i] + 0.001 * g ** 2
                p -= lr * st["m"][i] / (np.sqrt(st["v"][i]) + 1e-8)
        else:
            for i, (p, g) in enumerate(zip(params, grads)):
                st["m"][i] = st["mu"] * st["m"][i] - st["lr"] * g
                p += (st["mu"] * st["m"][i] - st["lr"] * g) if st["nesterov"] else st["m"][i]
    return acc / n


@pytest.mark.parametrize("opt,nesterov", [("adam", False), ("sgd", True), ("sgd", False)])
@pytest.mark.parametrize("hidden,out", [("relu", "softmax"), ("tanh", "identity"),
                                        ("logistic", "logistic")])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_epochs_match_numpy_reference(kernel, opt, nesterov, hidden, out, weighted, sparse):
    """Every kernel path: each brings its own build of the optimizer update and the epilogues."""
    rng = np.random.default_rng(0)
    n, sizes, batch, alpha = 103, [9, 11, 7, 3], 16, 0.01
    X = rng.standard_normal((n, sizes[0]))
    if out == "softmax":
        Y = np.eye(3)[rng.integers(0, 3, n)]
    elif out == "logistic":
        Y = (rng.random((n, 3)) > 0.5).astype(float)
    else:
        Y = rng.standard_normal((n, 3))
    sw = rng.random(n) + 0.5 if weighted else None
    net = Network(sizes, hidden, out, np.float64, n_threads=2)
    params = net.init_params(np.random.RandomState(0))
    Ws = [W.copy() for W in net.coefs(params)]
    bs = [b.copy() for b in net.intercepts(params)]
    lr = 0.05 if opt == "sgd" else 0.01
    state = OptimizerState(opt, net.n_params, np.float64, learning_rate=lr, momentum=0.9,
                           nesterov=nesterov)
    st = {"t": 0, "lr": lr, "mu": 0.9, "nesterov": nesterov,
          "m": [np.zeros_like(p) for p in Ws + bs], "v": [np.zeros_like(p) for p in Ws + bs]}
    Xin = sp.csr_matrix(X) if sparse else X
    for epoch in range(3):
        order = np.random.RandomState(epoch).permutation(n) if epoch != 1 else None
        loss = net.train_epoch(params, state, Xin, Y, sw, order=order, batch_size=batch,
                               alpha=alpha)
        ref = numpy_epoch(Ws, bs, hidden, out, X, Y, sw,
                          order if order is not None else np.arange(n), batch, alpha, opt, st)
        assert loss == pytest.approx(ref, rel=1e-11)
    for W, Wr in zip(net.coefs(params), Ws):
        np.testing.assert_allclose(W, Wr, rtol=1e-10, atol=1e-12)
    for b, br in zip(net.intercepts(params), bs):
        np.testing.assert_allclose(b, br, rtol=1e-10, atol=1e-12)
    if opt == "adam":
        assert state.t == st["t"] == 3 * int(np.ceil(n / batch))


def test_float32_training_stays_float32_and_tracks_float64():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 10))
    Y = np.eye(4)[rng.integers(0, 4, 200)]
    res = {}
    for dt in (np.float32, np.float64):
        net = Network([10, 16, 4], "relu", "softmax", dt)
        p = net.init_params(np.random.RandomState(0))
        st = OptimizerState("adam", net.n_params, dt, learning_rate=1e-3)
        losses = [net.train_epoch(p, st, X.astype(dt), Y.astype(dt), batch_size=32)
                  for _ in range(5)]
        assert p.dtype == dt and st.s1.dtype == dt
        res[dt] = (losses, p)
    np.testing.assert_allclose(res[np.float32][0], res[np.float64][0], rtol=1e-4)
    np.testing.assert_allclose(res[np.float32][1], res[np.float64][1], rtol=1e-3, atol=1e-4)


def test_training_reduces_loss_on_a_learnable_problem():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 5))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR-like: needs the hidden layer
    Y = np.eye(2)[y]
    net = Network([5, 32, 2], "relu", "softmax", np.float64)
    p = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, np.float64, learning_rate=0.01)
    first = net.train_epoch(p, st, X, Y, batch_size=50)
    for _ in range(60):
        last = net.train_epoch(p, st, X, Y, batch_size=50)
    assert last < 0.5 * first
    acc = (net.predict(p, X).argmax(1) == y).mean()
    assert acc > 0.9


def test_train_epoch_rejects_bad_arguments():
    net = Network([3, 4, 2], "relu", "softmax", np.float64)
    p = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, np.float64)
    X, Y = np.zeros((6, 3)), np.eye(2)[[0, 1, 0, 1, 0, 1]]
    with pytest.raises(ValueError, match="order"):
        net.train_epoch(p, st, X, Y, order=np.arange(5), batch_size=2)
    with pytest.raises(ValueError, match="order"):
        net.train_epoch(p, st, X, Y, order=np.arange(1, 7), batch_size=2)
    with pytest.raises(ValueError, match="at least one sample"):
        net.train_epoch(p, st, X[:0], Y[:0], batch_size=2)
    with pytest.raises(ValueError, match="solver"):
        OptimizerState("rmsprop", net.n_params, np.float64)


def test_prepared_epochs_equal_train_epoch_calls():
    """Network.epochs (arguments checked once, what a fit's loop calls) trains bitwise as
    train_epoch calls with the same orders; a mutation of the learning rate between epochs is
    seen, and sample weights are checked against each epoch's own order."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((90, 5))
    Y = np.eye(3)[rng.integers(0, 3, 90)]
    sw = rng.random(90) + 0.1
    net = Network([5, 7, 3], "tanh", "softmax", np.float64, n_threads=1)
    p0 = net.init_params(np.random.RandomState(0))
    orders = [rng.permutation(90) for _ in range(3)] + [None]
    pa, pb = p0.copy(), p0.copy()
    sa = OptimizerState("sgd", net.n_params, np.float64, learning_rate=0.05)
    sb = OptimizerState("sgd", net.n_params, np.float64, learning_rate=0.05)
    run = net.epochs(pb, sb, X, Y, sw, batch_size=16, alpha=1e-3)
    for e, order in enumerate(orders):
        sa.learning_rate = sb.learning_rate = 0.05 / (e + 1)
        la = net.train_epoch(pa, sa, X, Y, sw, order=order, batch_size=16, alpha=1e-3)
        assert run(order) == la
        np.testing.assert_array_equal(pa, pb)
    # batch 0 of the plain order has zero weight; a shuffled order without such a batch trains
    sw0 = sw.copy()
    sw0[:16] = 0
    run0 = net.epochs(pb, sb, X, Y, sw0, batch_size=16)
    mixed = np.r_[np.arange(0, 90, 2), np.arange(1, 90, 2)]
    assert np.isfinite(run0(mixed))
    with pytest.raises(ValueError, match="mini-batch 0 .* summing to 0"):
        run0()
    with pytest.raises(ValueError, match="order must hold 90"):
        run0(np.arange(1, 91))


# ---- AdamW (issue 11) -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_matches_numpy_reference_epoch(dtype, kernel):
    """One epoch of AdamW against numpy: each batch's gradient from the engine's full-batch
    loss_grad (checked against central differences elsewhere), the update written out in numpy."""
    from cprop._engine import Network, OptimizerState
    rng = np.random.default_rng(21)
    n, sizes, bs = 53, [6, 9, 4], 16
    net = Network(sizes, "tanh", "softmax", dtype, n_threads=1)
    p0 = net.init_params(np.random.RandomState(0))
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)].astype(dtype)
    sw = (rng.random(n) + 0.5).astype(dtype)
    order = rng.permutation(n)
    lr, wd, alpha, b1, b2, eps = 0.01, 0.3, 0.05, 0.9, 0.999, 1e-8
    # the engine
    params = p0.copy()
    st = OptimizerState("adamw", net.n_params, dtype, learning_rate=lr, weight_decay=wd)
    net.train_epoch(params, st, X, Y, sw, order=order, batch_size=bs, alpha=alpha)
    assert st.t == 4
    # numpy, in the model's dtype (float32 arrays with Python-float constants stay float32)
    ref = p0.copy()
    m = np.zeros_like(ref)
    v = np.zeros_like(ref)
    is_w = np.zeros(ref.size, bool)
    for o, (a, b) in zip(net._w_off, zip(sizes[:-1], sizes[1:])):
        is_w[o:o + a * b] = True
    decay = np.where(is_w, 1 - lr * wd, 1.0).astype(dtype)
    for t, start in enumerate(range(0, n, bs), 1):
        rows = order[start:start + bs]
        _, g = net.loss_grad(ref, X[rows], Y[rows], sw[rows], alpha)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (g * g)
        lr_t = float(lr * np.sqrt(1 - b2**t) / (1 - b1**t))
        ref = ref * decay - lr_t * m / (np.sqrt(v) + eps)
        assert ref.dtype == dtype
    if dtype == np.float64:
        np.testing.assert_allclose(params, ref, rtol=1e-12, atol=1e-15)
    else:
        # float32 rounding (a few ulps per step, more where m / (sqrt(v) + eps) divides by a
        # gradient entry near 0): within 1e-5 relative or 1e-4 of one step (lr)
        np.testing.assert_allclose(params, ref, rtol=1e-5, atol=1e-4 * lr)
    # and the decay did act: without it the weights differ by about lr * wd * |w| per step
    assert np.max(np.abs(params - p0)[is_w]) > 0


def test_adamw_without_decay_is_adam():
    from cprop._engine import Network, OptimizerState
    rng = np.random.default_rng(22)
    net = Network([5, 7, 3], "relu", "logistic", np.float64, n_threads=1)
    p0 = net.init_params(np.random.RandomState(1))
    X = rng.standard_normal((40, 5))
    Y = (rng.random((40, 3)) > 0.5).astype(float)
    out = []
    for solver in ("adam", "adamw"):
        p = p0.copy()
        st = OptimizerState(solver, net.n_params, np.float64, learning_rate=0.01, weight_decay=0.0)
        net.train_epoch(p, st, X, Y, order=rng.permutation(40) * 0 + np.arange(40), batch_size=8,
                        alpha=0.01)
        out.append(p)
    assert np.array_equal(out[0], out[1])


# ---- gradient clipping and gradient norms (issue 11) -------------------------------------------------
def _sgd_reference_epoch(net, p0, X, Y, sw, order, bs, lr, alpha, clip_norm, clip_value):
    """Plain SGD (momentum 0) in numpy on the engine's per-batch loss_grad; returns the final
    params and each batch's per-layer weight-gradient norms (before clipping)."""
    ref = p0.copy()
    norms = []
    s = net.layer_sizes
    for start in range(0, X.shape[0], bs):
        rows = order[start:start + bs]
        _, g = net.loss_grad(ref, X[rows], Y[rows], None if sw is None else sw[rows], alpha)
        norms.append([np.linalg.norm(g[o:o + s[i] * s[i + 1]]) for i, o in enumerate(net._w_off)])
        if clip_norm:
            total = np.linalg.norm(g)
            if total > clip_norm:
                g = g * (clip_norm / (total + 1e-6))
        if clip_value:
            g = np.clip(g, -clip_value, clip_value)
        ref = ref - lr * g
    return ref, np.array(norms)


@pytest.mark.parametrize("clip_norm, clip_value", [(0.5, None), (None, 0.01), (0.5, 0.01),
                                                   (1e9, None)])
def test_clipping_matches_numpy_reference(clip_norm, clip_value, kernel):
    rng = np.random.default_rng(31)
    n, sizes, bs, lr, alpha = 47, [6, 8, 5, 3], 10, 0.3, 0.2
    net = Network(sizes, "tanh", "softmax", np.float64, n_threads=1)
    p0 = net.init_params(np.random.RandomState(2))
    X = rng.standard_normal((n, sizes[0])) * 3
    Y = np.eye(3)[rng.integers(0, 3, n)]
    sw = rng.random(n) + 0.5
    order = rng.permutation(n)
    p = p0.copy()
    st = OptimizerState("sgd", net.n_params, np.float64, learning_rate=lr, momentum=0.0,
                        clip_grad_norm=clip_norm, clip_grad_value=clip_value, gradient_norms=[])
    net.train_epoch(p, st, X, Y, sw, order=order, batch_size=bs, alpha=alpha)
    ref, norms = _sgd_reference_epoch(net, p0, X, Y, sw, order, bs, lr, alpha, clip_norm,
                                      clip_value)
    np.testing.assert_allclose(p, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.gradient_norms[0], norms.mean(axis=0), rtol=1e-12)
    if clip_norm == 0.5:   # the clip was active: it changed the result
        unclipped, _ = _sgd_reference_epoch(net, p0, X, Y, sw, order, bs, lr, alpha, None, None)
        assert np.max(np.abs(unclipped - ref)) > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver, clip_norm, clip_value", [("sgd", 0.1, None), ("sgd", None, 0.002),
                                                           ("adam", 0.1, 0.002)])
def test_clipping_bitwise_identical_across_thread_counts(dtype, solver, clip_norm, clip_value,
                                                         threaded_passes, kernel):
    """Clipping by norm and by value, and the monitored norms, over threaded passes: the
    thresholds are lowered so these 128-row batches run threaded (they are under
    PASS_SERIAL_FLOPS), and the OpenMP teams that ran are checked.  SGD with norm clipping alone
    moves the weights in proportion to the clip scale, so a global norm whose sum depended on the
    thread count (an OpenMP reduction, say) changes the weights' last bits here.  Every kernel
    path: each brings its own build of the updates, norms and clipping."""
    rng = np.random.default_rng(32)
    n, sizes = 400, [300, 128, 64, 10]    # 38,400 weights in layer 0: five update chunks
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]
    out = []
    for nt in (1, 2, 3):
        net = Network(sizes, "relu", "softmax", dtype, n_threads=nt)
        p = net.init_params(np.random.RandomState(0))
        st = OptimizerState(solver, net.n_params, dtype, learning_rate=1e-2, momentum=0.9,
                            clip_grad_norm=clip_norm, clip_grad_value=clip_value,
                            gradient_norms=[])
        with threaded_passes() as teams:
            loss = net.train_epoch(p, st, X, Y, order=np.arange(n)[::-1].copy(),
                                   batch_size=128, alpha=1e-3)
        # one thread: no team at all; more: every loop of the epoch ran with exactly nt threads
        expected = 0 if nt == 1 else nt
        assert teams == {"gemm": expected, "update": expected, "grad_norm": expected,
                         "clip": expected, "gather": expected}
        out.append((loss, p, st.gradient_norms[0]))
    for loss, p, g in out[1:]:
        assert loss == out[0][0]
        assert np.array_equal(p, out[0][1]) and np.array_equal(g, out[0][2])


def test_thread_threshold_hook_checks_its_values_and_restores():
    from cprop import _openmp
    assert _openmp._thread_thresholds() == _openmp.DEFAULT_THREAD_THRESHOLDS
    for bad in (-1, float("nan"), "0", [0]):
        with pytest.raises(ValueError, match="pass_serial_flops must be a number >= 0"):
            _openmp._set_thread_thresholds(pass_serial_flops=bad)
    assert _openmp._thread_thresholds() == _openmp.DEFAULT_THREAD_THRESHOLDS   # nothing changed
    old = _openmp._set_thread_thresholds(gemm_serial_flops=0)
    try:
        assert old == _openmp.DEFAULT_THREAD_THRESHOLDS
        assert _openmp._thread_thresholds() == {**old, "gemm_serial_flops": 0.0}
    finally:
        _openmp._set_thread_thresholds(**old)
    assert _openmp._thread_thresholds() == _openmp.DEFAULT_THREAD_THRESHOLDS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thresholds_lowered_after_a_plan_was_made(dtype, threaded_passes):
    """A plan made at the default thresholds, whose products all run on one thread there, stays
    valid when a test lowers them: its GEMM workspace holds an A~ per thread of the plan's count.
    (Sized for one thread, the 8 x 200 x 400 product's twelve column tasks on 3 threads pack
    A's partial row panel past the workspace: a crash here, an ASan report in .ci/asan.sh;
    both seen.)"""
    rng = np.random.default_rng(33)
    sizes = [400, 200, 2]        # 8 x 200 x 400 = 1.3e6 flops: under GEMM_SERIAL_FLOPS
    net = Network(sizes, "tanh", "softmax", dtype, n_threads=3)
    p = net.init_params(np.random.RandomState(0))
    X = rng.standard_normal((8, sizes[0])).astype(dtype)
    serial = net.predict(p, X)
    W, b = net.coefs(p), net.intercepts(p)
    ref = softmax(np.tanh(X.astype(np.float64) @ W[0] + b[0]) @ W[1] + b[1], axis=1)
    np.testing.assert_allclose(serial, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    with threaded_passes() as teams:
        threaded = net.predict(p, X)
    assert teams["gemm"] == 3
    assert np.array_equal(threaded, serial)


def test_full_batch_passes_hold_about_the_poll_interval_of_flops():
    """A full-batch pass (L-BFGS) is sized so that the compiled loss_grad handles signals after
    every pass: rows * row_flops reaches DEFAULT_POLL_FLOPS (in 64..4096 rows).  row_flops is
    checked against the products a row goes through: X W_l forward, A_l^T D weight gradients and
    D W_l^T input gradients after layer 0, each 2 m n k flops."""
    from cprop import _train
    from cprop._engine import full_batch_rows, FULL_BATCH_CHUNK
    for sizes in ([64, 100, 10], [784, 100, 10], [784, 1024, 10], [784, 512, 256, 10],
                  [4096, 4096, 4096]):
        w = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
        by_hand = 2 * sum(w) + 2 * sum(w) + 2 * sum(w[1:])
        assert _train.row_flops(sizes) == by_hand
        rows = full_batch_rows(sizes)
        assert 64 <= rows <= FULL_BATCH_CHUNK
        if rows < FULL_BATCH_CHUNK:
            reach = rows * by_hand >= _train.DEFAULT_POLL_FLOPS
            assert reach and (rows == 64 or (rows - 1) * by_hand < _train.DEFAULT_POLL_FLOPS)
        else:
            assert (FULL_BATCH_CHUNK - 1) * by_hand < _train.DEFAULT_POLL_FLOPS
