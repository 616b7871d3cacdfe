"""The input block (typed per-feature layers before the first dense layer: ``scale`` and RealMLP's
``periodic`` PBLD embedding) and parameter groups (lr / weight-decay factors per segment of the
flat vector), issue 18 item 2.

References: a numpy forward of the block and the dense layers; central differences of the
engine's own loss for every parameter (float64, every kernel path); numpy Adam / AdamW / SGD
steps with the groups' factors; the one-thread results, bit for bit, at 2 and 3 threads with the
block's threaded loops seen running (``_backprop._block_teams``).
"""
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

import cprop._train
from cprop._engine import Network, OptimizerState

DTYPES = [np.float32, np.float64]
PERIODIC = {"kind": "periodic", "n_frequencies": 5, "n_outputs": 3, "features": [0, 2, 3]}


def _net(dtype, block, n_features=5, hidden=(7,), out="identity", n_out=2, **kw):
    return Network([n_features, *hidden, n_out], "tanh", out, dtype, input_block=block, **kw)


def _numpy_block(net, params, X):
    """The block's forward from its definition, in float64."""
    H = np.asarray(X, dtype=np.float64)
    for layer, view in zip(net.input_block, net.block_params(params)):
        if layer[0] == "scale":
            H = H * view["scale"].astype(np.float64)
            continue
        _, k, m, feats = layer
        cols = []
        where = {j: e for e, j in enumerate(feats)}
        for j in range(H.shape[1]):
            x = H[:, j:j + 1]
            if j not in where:
                cols.append(x)
                continue
            e = where[j]
            w1, b1 = view["w1"][e].astype(np.float64), view["b1"][e].astype(np.float64)
            W2, b2 = view["W2"][e].astype(np.float64), view["b2"][e].astype(np.float64)
            h = np.cos(2 * np.pi * x * w1 + b1)            # (n, k)
            cols.append(h @ W2 + b2)                       # (n, m)
            cols.append(x)
        H = np.hstack(cols)
    return H


def _numpy_forward(net, params, X):
    A = _numpy_block(net, params, X)
    W, b = net.coefs(params), net.intercepts(params)
    for l in range(len(W)):
        A = A @ W[l].astype(np.float64) + b[l].astype(np.float64)
        if l < len(W) - 1:
            A = np.tanh(A)
    return A


BLOCKS = {
    "scale": ["scale"],
    "periodic_all": [{"kind": "periodic", "n_frequencies": 4, "n_outputs": 2}],
    "periodic_subset_then_scale": [PERIODIC, "scale"],
    "scale_then_periodic_subset": ["scale", PERIODIC],
}


# ---- forward ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_forward_matches_numpy(block, dtype, kernel, perturbed_params):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((45, 5)).astype(dtype)         # 45: one full row chunk and a part
    net = _net(dtype, BLOCKS[block])
    params = perturbed_params(net)
    expected = _numpy_forward(net, params, X)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert_allclose(net.predict(params, X), expected, rtol=tol, atol=tol)


def test_periodic_output_layout_and_widths(perturbed_params):
    """Each embedded column becomes its m outputs then itself; the others pass through, in
    order."""
    net = _net(np.float64, [PERIODIC])
    assert net.dense_sizes[0] == 5 + 3 * 3
    params = perturbed_params(net)
    X = np.random.default_rng(0).standard_normal((4, 5))
    H = _numpy_block(net, params, X)
    # pass-through columns 1 and 4 sit at positions 4 and 13; x_0 right after its 3 outputs
    assert_array_equal(H[:, 4], X[:, 1])
    assert_array_equal(H[:, 13], X[:, 4])
    assert_array_equal(H[:, 3], X[:, 0])


# ---- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_gradients_match_central_differences(block, kernel, perturbed_params, segment_fd_errors):
    """Every parameter (block, dense weights and biases), float64, with the L2 term on the
    weights and block parameters and sample weights; two hidden layers so D_0 comes from a
    hidden layer's delta.  A block layer after another reads its input gradient, so the first
    layer's parameter gradients check the second layer's input gradient too."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 5))
    Y = rng.standard_normal((40, 2))
    sw = rng.random(40) + 0.5
    net = _net(np.float64, BLOCKS[block], hidden=(6, 4),
               wd_factors={"scale": 2.0, "periodic_first": 0.5})
    errors, _ = segment_fd_errors(net, perturbed_params(net), X, Y, sw, alpha=0.3)
    assert {k for k, _ in errors} >= {"weights", "biases"}
    assert max(errors.values()) < 1e-6, errors


def test_gradients_softmax_output_and_relu(kernel, perturbed_params, segment_fd_errors):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((33, 5))
    Y = np.eye(3)[rng.integers(0, 3, 33)]
    net = Network([5, 6, 3], "gelu", "softmax", np.float64, input_block=[PERIODIC, "scale"])
    errors, _ = segment_fd_errors(net, perturbed_params(net), X, Y, None, alpha=0.0)
    assert max(errors.values()) < 1e-6, errors


def test_float32_gradient_matches_float64(perturbed_params):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 5))
    Y = rng.standard_normal((50, 2))
    g = []
    for dtype in DTYPES:
        net = _net(dtype, [PERIODIC, "scale"])
        p = perturbed_params(net).astype(dtype)
        g.append(net.loss_grad(p, X.astype(dtype), Y.astype(dtype), None, 0.1)[1])
    assert np.linalg.norm(g[0] - g[1]) / np.linalg.norm(g[1]) < 1e-5


# ---- threads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_across_thread_counts(dtype, kernel, block_thread_runs):
    """Loss, gradient, prediction and an epoch of Adam (several batches) at 1, 2 and 3 threads:
    the block's forward and backward loops are seen running with 2 and 3 threads, and every
    result is bitwise the one-thread result."""
    rng = np.random.default_rng(11)
    n, F = 600, 30
    X = rng.standard_normal((n, F)).astype(dtype)
    Y = rng.standard_normal((n, 3)).astype(dtype)
    block = [{"kind": "periodic", "n_frequencies": 8, "n_outputs": 3,
              "features": list(range(0, F, 2)) + [1]}, "scale"]
    order = np.random.RandomState(1).permutation(n)
    teams, results = block_thread_runs(
        lambda nt: Network([F, 128, 3], "relu", "identity", dtype, n_threads=nt,
                           input_block=block,
                        lr_factors={"scale": 6.0, "periodic_first": 0.1,
                                    "periodic_second": 0.1},
                        parametrization="ntk"),
        X, Y, order, dtype)
    assert teams == [((0, 0), 0), ((2, 2), 2), ((3, 3), 3)]
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert_array_equal(a, b)


def test_fit_epochs_trains_the_block_like_train_epoch(perturbed_params):
    """The compiled fit loop (fit_epochs) updates the block's segments with their factors as
    train_epoch does: two epochs with the same shuffles, bit for bit."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((130, 5))
    Y = rng.standard_normal((130, 2))
    net = _net(np.float64, [PERIODIC, "scale"], lr_factors={"scale": 6.0, "biases": 0.1})
    params = perturbed_params(net)
    p2 = params.copy()
    st = OptimizerState("adam", net.n_params, net.dtype)
    n_ep = 2
    args = dict(t=0.0, schedule=0, learning_rate=1e-2, learning_rate_init=1e-2, power_t=0.5,
                warmup_iter=0, max_iter=n_ep, epoch0=0, n_seen=0, tol=1e-4,
                n_iter_no_change=10, no_improvement=0, best_loss=np.inf, poll_flops=1e9,
                out_loss=np.empty(n_ep), out_lr=np.empty(n_ep), out_time=np.empty(n_ep),
                out_rows=np.empty(n_ep, dtype=np.intp), momentum=0.9, nesterov=True,
                beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0, clip_grad_norm=0.0,
                clip_grad_value=0.0)
    idx = np.arange(130, dtype=np.intp)
    cprop._train.fit_epochs(params, np.empty_like(params), st.s1, st.s2, X, None, None, None, 5,
                            Y, idx, np.random.RandomState(0)._bit_generator, 40,
                            net._checked_plan(40), 1e-4, "adam", **args)
    st2 = OptimizerState("adam", net.n_params, net.dtype, learning_rate=1e-2)
    rs = np.random.RandomState(0)
    order = np.arange(130)
    for _ in range(n_ep):
        perm = np.arange(130)
        rs.shuffle(perm)
        order = order[perm]
        net.train_epoch(p2, st2, X, Y, None, order, 40, 1e-4)
    assert_array_equal(params, p2)
    assert not np.array_equal(params, perturbed_params(net))


# ---- parameter groups ------------------------------------------------------------------------------
FACTORS = dict(lr_factors={"weights": [0.5, 2.0], "biases": 0.1, "scale": 6.0,
                           "periodic_first": 0.1, "periodic_second": 0.3},
               wd_factors={"weights": 1.5, "biases": 0.5, "scale": 3.0, "periodic_first": 0.0,
                           "periodic_second": 0.2})


@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw"])
def test_group_factors_match_numpy_update(solver, kernel, perturbed_params):
    """One full-batch step of train_epoch against the optimizer written in numpy from the
    gradient of loss_grad without the L2 term, each segment with its group's lr and wd factors
    (L2 term alpha * wd factor; AdamW's decay lr * lr factor * weight_decay * wd factor)."""
    rng = np.random.default_rng(8)
    n = 40
    X = rng.standard_normal((n, 5))
    Y = rng.standard_normal((n, 2))
    net = _net(np.float64, [PERIODIC, "scale"], **FACTORS)
    p0 = perturbed_params(net)
    alpha, lr, wdecay, b1, b2, eps, mu = 0.2, 0.01, 0.3, 0.9, 0.999, 1e-8, 0.9
    _, g = net.loss_grad(p0, X, Y, None, alpha=0.0)
    st = OptimizerState(solver, net.n_params, net.dtype, learning_rate=lr, beta_1=b1,
                        beta_2=b2, epsilon=eps, momentum=mu, nesterov=True,
                        weight_decay=wdecay if solver == "adamw" else 0.0)
    p1 = p0.copy()
    net.train_epoch(p1, st, X, Y, None, None, n, alpha)
    expected = np.empty_like(p0)
    segs = net.segments()
    assert {k for k, *_ in segs} == {"weights", "biases", "scale", "periodic_first",
                                     "periodic_second"}
    for kind, sl, lrf, wdf in segs:
        w = p0[sl]
        gi = g[sl] + alpha / n * wdf * w
        if solver == "sgd":
            v = -lr * lrf * gi
            expected[sl] = w + (mu * v - lr * lrf * gi)
        else:
            m, v = (1 - b1) * gi, (1 - b2) * gi * gi
            lr_t = lr * np.sqrt(1 - b2) / (1 - b1) * lrf
            decay = lr * lrf * wdecay * wdf if solver == "adamw" else 0.0
            expected[sl] = w * (1 - decay) - lr_t * m / (np.sqrt(v) + eps)
    assert_allclose(p1, expected, rtol=1e-12, atol=1e-14)
    # the factors make a difference: the step without them is another one
    plain = _net(np.float64, [PERIODIC, "scale"])
    p_plain = p0.copy()
    plain.train_epoch(p_plain, OptimizerState(solver, net.n_params, net.dtype, learning_rate=lr,
                                              weight_decay=wdecay if solver == "adamw" else 0.0),
                      X, Y, None, None, n, alpha)
    for kind, sl, *_ in segs:
        assert not np.array_equal(p_plain[sl], p1[sl]), kind


@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw"])
def test_factor_one_is_the_ungrouped_update_bitwise(solver):
    """Factors given as 1 (and 0 for the biases' weight decay: the default) train to the same
    bits as a network built without factors, whose results tests/estimator/test_compare_sklearn.py holds
    to scikit-learn's bits; clipping by norm and value goes through the segment loop too."""
    rng = np.random.default_rng(9)
    X = rng.standard_normal((300, 12))
    Y = np.eye(3)[rng.integers(0, 3, 300)]
    out = []
    for kw in ({}, dict(lr_factors={"weights": [1.0, 1.0, 1.0], "biases": 1.0},
                        wd_factors={"weights": 1.0, "biases": 0.0})):
        for clip in (None, 0.5):
            net = Network([12, 20, 10, 3], "relu", "softmax", np.float64, **kw)
            p = net.init_params(np.random.RandomState(0))
            st = OptimizerState(solver, net.n_params, net.dtype, learning_rate=1e-2,
                                weight_decay=0.1 if solver == "adamw" else 0.0,
                                clip_grad_norm=clip, clip_grad_value=clip)
            ep = net.train_epoch(p, st, X, Y, None, np.random.RandomState(2).permutation(300),
                                 64, 1e-3)
            out.append((ep, p, net.loss_grad(p, X, Y, None, 1e-3)[0]))
    for a, b in zip(out[:2], out[2:]):
        assert a[0] == b[0] and a[2] == b[2]
        assert_array_equal(a[1], b[1])


def test_biases_weight_decay_factor_applies():
    """The biases' weight-decay factor defaults to 0 (biases spared, as before); set to 1,
    AdamW shrinks them too."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 4))
    Y = rng.standard_normal((30, 1))
    res = []
    for wd in (None, {"biases": 1.0}):
        net = Network([4, 5, 1], "relu", "identity", np.float64, wd_factors=wd)
        p = net.init_params(np.random.RandomState(0))
        net.train_epoch(p, OptimizerState("adamw", net.n_params, net.dtype, learning_rate=0.1,
                                          weight_decay=0.5), X, Y, None, None, 30, 0.0)
        res.append(p)
    net = Network([4, 5, 1], "relu", "identity", np.float64)
    for W0, W1 in zip(net.coefs(res[0]), net.coefs(res[1])):
        assert_array_equal(W0, W1)
    for b0, b1 in zip(net.intercepts(res[0]), net.intercepts(res[1])):
        assert not np.array_equal(b0, b1)


def test_ntk_parametrisation():
    """NTK: lr factor 1/sqrt(fan_in) and wd factor sqrt(fan_in) on each layer's weights, W
    drawn from N(0, 1/fan_in), zero biases."""
    net = Network([40, 300, 200, 2], "relu", "identity", np.float64, parametrization="ntk",
                  lr_factors={"weights": 2.0})
    segs = [s for s in net.segments() if s[0] == "weights"]
    fan_in = [40, 300, 200]
    assert_allclose([s[2] for s in segs], [2.0 / np.sqrt(d) for d in fan_in], rtol=1e-15)
    assert_allclose([s[3] for s in segs], [np.sqrt(d) for d in fan_in], rtol=1e-15)
    p = net.init_params(np.random.RandomState(0))
    for W, d in zip(net.coefs(p)[:2], fan_in):
        assert abs(W.std() * np.sqrt(d) - 1) < 0.02 and abs(W.mean()) * np.sqrt(d) < 0.02
    for b in net.intercepts(p):
        assert not b.any()


# ---- initialisation and views ---------------------------------------------------------------------
def test_block_init_and_views():
    net = _net(np.float64, [{"kind": "periodic", "n_frequencies": 16, "n_outputs": 4,
                             "features": None, "sigma": 0.1}, "scale"], n_features=60)
    p = net.init_params(np.random.RandomState(0))
    # the dense draw is the one without a block, then the block's, from the same stream
    W_only = Network(net.dense_sizes, "tanh", "identity", np.float64).init_params(
        np.random.RandomState(0))
    assert_array_equal(p[:W_only.size], W_only)
    per, sc = net.block_params(p)
    assert per["w1"].shape == (60, 16) and per["W2"].shape == (60, 16, 4)
    assert abs(per["w1"].std() - 0.1) < 0.01
    assert np.abs(per["b1"]).max() <= np.pi and per["b1"].std() > 1.5
    assert np.abs(per["W2"]).max() <= 0.25 and np.abs(per["b2"]).max() <= 0.25
    assert_array_equal(sc["scale"], np.ones(net.dense_sizes[0]))
    # the views write into the flat vector
    sc["scale"][0] = 7.0
    assert 7.0 in p
    assert net.n_params == W_only.size + 60 * 16 * 2 + 60 * 16 * 4 + 60 * 4 + net.dense_sizes[0]


# ---- bad input ------------------------------------------------------------------------------------
def test_csr_input_with_a_block_is_refused():
    net = _net(np.float64, ["scale"])
    p = net.init_params(np.random.RandomState(0))
    X = sp.random(10, 5, density=0.5, format="csr", random_state=0)
    Y = np.zeros((10, 2))
    with pytest.raises(ValueError, match="input block.*dense input only"):
        net.predict(p, X)
    with pytest.raises(ValueError, match="input block.*dense input only"):
        net.loss_grad(p, X, Y)
    before = p.copy()
    with pytest.raises(ValueError, match="input block.*dense input only"):
        net.train_epoch(p, OptimizerState("adam", net.n_params, net.dtype), X, Y)
    assert_array_equal(p, before)


@pytest.mark.parametrize("block, match", [
    ([{"kind": "embed"}], "not one of"),
    ([{"kind": "periodic", "features": [0, 9]}], "distinct column indices"),
    ([{"kind": "periodic", "features": [1, 1]}], "distinct column indices"),
    ([{"kind": "periodic", "n_frequencies": 0}], "ints >= 1"),
    ([{"kind": "periodic", "sigma": -1.0}], "sigma"),
    ([{"kind": "scale", "size": 3}], "unknown keys"),
])
def test_bad_block_descriptions(block, match):
    with pytest.raises(ValueError, match=match):
        _net(np.float64, block)


@pytest.mark.parametrize("kw, match", [
    (dict(lr_factors={"bias": 1.0}), "unknown groups"),
    (dict(lr_factors={"weights": [1.0]}), "one factor per dense layer"),
    (dict(wd_factors={"scale": -1.0}), "finite and >= 0"),
    (dict(parametrization="mup"), "parametrization"),
])
def test_bad_factors(kw, match):
    with pytest.raises(ValueError, match=match):
        _net(np.float64, ["scale"], **kw)


# ---- gradient check of a Network --------------------------------------------------------------------
def test_check_network_gradients_covers_every_segment(monkeypatch, perturbed_params):
    """check_network_gradients reports one error per segment (block layers included), small
    for the engine's gradient, and near 1 on exactly the segment whose gradient is made wrong."""
    from cprop._gradcheck import check_network_gradients

    rng = np.random.default_rng(12)
    X = rng.standard_normal((25, 5))
    Y = rng.standard_normal((25, 2))
    net = _net(np.float64, [PERIODIC, "scale"])
    params = perturbed_params(net)
    errors = check_network_gradients(net, params, X, Y, alpha=0.1)
    assert [k for k, _ in errors] == list(net.seg_kind)
    assert max(e for _, e in errors) < 1e-6
    # a wrong scale gradient (the gradient to x times s where x alone belongs) is caught there only
    sl = [s for k, s, _, _ in net.segments() if k == "scale"][0]
    true_loss_grad = net.loss_grad

    def wrong(p, *a, **kw):
        loss, g = true_loss_grad(p, *a, **kw)
        g[sl] *= 1.5
        return loss, g

    monkeypatch.setattr(net, "loss_grad", wrong)
    bad = dict(enumerate(e for _, e in check_network_gradients(net, params, X, Y, alpha=0.1)))
    i = net.seg_kind.index("scale")
    assert bad[i] > 0.2 and all(e < 1e-6 for j, e in bad.items() if j != i)


def test_periodic_sincos_against_libm():
    """The periodic layer's branch-free cos/sin (Cody-Waite reduction, polynomials) against
    numpy's, on a dense grid, random angles up to 1e5 and the libm fallback beyond."""
    from cprop._backprop import _sincos

    rng = np.random.default_rng(0)
    z = np.concatenate([np.linspace(-50, 50, 200001), rng.uniform(-1e5, 1e5, 100000),
                        np.arange(-8, 9) * np.pi / 4, [0.0, -0.0, 3e5, -1e7, 4e12]])
    c, s = _sincos(z)
    assert np.abs(c - np.cos(z)).max() <= 2.3e-16
    assert np.abs(s - np.sin(z)).max() <= 2.3e-16
    c, s = _sincos(np.array([np.nan, np.inf]))
    assert np.isnan(c).all() and np.isnan(s).all()
