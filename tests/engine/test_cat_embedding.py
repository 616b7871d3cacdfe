"""The input block's categorical ``embedding`` layer (RealMLP's embedding of columns with more than
8 categories): each category-code column j (codes 0..K_j-1, K_j for missing/unknown) becomes the
d values of row x_j of a learnable table T_j.

References: a numpy table lookup (and the numpy forward of the other block layers and the dense
layers); central differences of the engine's own loss for every parameter (float64, every kernel
path); RandomState draws written out in numpy for the init; a numpy SGD step for the group's lr
and wd factors; the one-thread results, bit for bit, at 2 and 3 threads with the block's threaded
loops seen running (``_backprop._block_teams``).
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cprop._engine import Network, OptimizerState

DTYPES = [np.float32, np.float64]
# X of F columns; columns 3 and 1 hold codes of 6 and 4 known categories
EMB = {"kind": "embedding", "features": [3, 1], "cardinalities": [6, 4], "dim": 3}
F = 5
# after EMB (dim 3), columns 0, 1-3 (column 1's table row), 4, 5-7 (column 3's), 8 (column 4)
PERIODIC = {"kind": "periodic", "n_frequencies": 4, "n_outputs": 2, "features": [0, 2, 8]}
BLOCKS = {
    "embedding": [EMB],
    "embedding_then_scale": [EMB, "scale"],
    "embedding_periodic_scale": [EMB, PERIODIC, "scale"],
    "embedding_dim8_all_columns": [{"kind": "embedding", "features": [0, 1, 2, 3, 4],
                                    "cardinalities": [9, 2, 1, 51, 3]}],
}


def _codes(rng, n, cards, F=F, features=(3, 1)):
    """Rows with standard-normal numeric columns and codes 0..K_j (the missing row included)."""
    X = rng.standard_normal((n, F))
    for j, k in zip(features, cards):
        X[:, j] = rng.integers(0, k + 1, n)
        X[:2, j] = [0, k]               # first and last (missing/unknown) rows always met
    return X


def _data(block, rng, n):
    emb = block[0]
    return _codes(rng, n, emb["cardinalities"], features=emb["features"])


def _net(dtype, block, hidden=(7,), out="identity", n_out=2, **kw):
    return Network([F, *hidden, n_out], "tanh", out, dtype, input_block=block, **kw)


def _numpy_block(net, params, X):
    """The block's forward from its definition, in float64 (tables by lookup)."""
    H = np.asarray(X, dtype=np.float64)
    tables = net.embedding_tables(params)
    for layer, view in zip(net.input_block, net.block_params(params)):
        if layer[0] == "scale":
            H = H * view["scale"].astype(np.float64)
            continue
        cols = []
        if layer[0] == "embedding":
            for j in range(H.shape[1]):
                if j in tables:
                    cols.append(tables[j].astype(np.float64)[H[:, j].astype(np.intp)])
                else:
                    cols.append(H[:, j:j + 1])
            H = np.hstack(cols)
            continue
        _, k, m, feats = layer
        where = {j: e for e, j in enumerate(feats)}
        for j in range(H.shape[1]):
            x = H[:, j:j + 1]
            if j in where:
                e = where[j]
                h = np.cos(2 * np.pi * x * view["w1"][e].astype(np.float64)
                           + view["b1"][e].astype(np.float64))
                cols.append(h @ view["W2"][e].astype(np.float64)
                            + view["b2"][e].astype(np.float64))
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


# ---- forward ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_forward_matches_numpy(block, dtype, kernel, perturbed_params):
    rng = np.random.default_rng(3)
    X = _data(BLOCKS[block], rng, 45).astype(dtype)     # 45: one full row chunk and a part
    net = _net(dtype, BLOCKS[block])
    params = perturbed_params(net)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert_allclose(net.predict(params, X), _numpy_forward(net, params, X), rtol=tol, atol=tol)


def test_output_layout_widths_and_tables(perturbed_params):
    """Each code column becomes its d table values in place; the others pass through, in
    order; the tables sit one after the other in the flat vector, in column order."""
    net = _net(np.float64, [EMB])
    assert net.dense_sizes[0] == F + 2 * (3 - 1)
    assert net.input_block[0] == ("embedding", 3, (1, 3), (4, 6))
    params = perturbed_params(net)
    tables = net.embedding_tables(params)
    assert tables[1].shape == (5, 3) and tables[3].shape == (7, 3)
    table = net.block_params(params)[0]["table"]
    assert_array_equal(np.vstack([tables[1], tables[3]]), table)
    assert net.n_params == 5 * 3 + 7 * 3 + 9 * 7 + 7 + 7 * 2 + 2
    X = np.array([[0.5, 2, -1.0, 6, 7.0], [1.5, 4, 2.0, 0, -7.0]])
    H = _numpy_block(net, params, X)
    assert_array_equal(H[:, [0, 4, 8]], X[:, [0, 2, 4]])
    assert_array_equal(H[0, 1:4], tables[1][2])
    assert_array_equal(H[1, 5:8], tables[3][0])
    assert_array_equal(H[1, 1:4], tables[1][4])        # code K_j: the missing/unknown row
    # the engine's first dense layer reads exactly that: its weights on H reproduce predict
    assert_allclose(net.predict(params, X), _numpy_forward(net, params, X), rtol=1e-12)


def test_init_draws_tables_last_from_standard_normal():
    """Dense layers and the periodic layer draw as without the embedding (same stream, same
    order), then every table ~ N(0, 1): written out in numpy from a RandomState."""
    block = [EMB, PERIODIC, "scale"]
    net = _net(np.float64, block)
    p = net.init_params(np.random.RandomState(0))
    rs = np.random.RandomState(0)
    s = net.dense_sizes
    for i in range(len(s) - 1):
        bound = np.sqrt(6.0 / (s[i] + s[i + 1]))
        assert_array_equal(net.coefs(p)[i], rs.uniform(-bound, bound, (s[i], s[i + 1])))
        assert_array_equal(net.intercepts(p)[i], rs.uniform(-bound, bound, s[i + 1]))
    emb, per, sc = net.block_params(p)
    r = 1.0 / np.sqrt(4)
    assert_array_equal(per["w1"], rs.normal(0.0, 0.1, (3, 4)))
    assert_array_equal(per["b1"], rs.uniform(-np.pi, np.pi, (3, 4)))
    assert_array_equal(per["W2"], rs.uniform(-r, r, (3, 4, 2)))
    assert_array_equal(per["b2"], rs.uniform(-r, r, (3, 2)))
    assert_array_equal(sc["scale"], np.ones(s[0]))
    assert_array_equal(emb["table"], rs.standard_normal((12, 3)))
    big = Network([60, 4, 1], "relu", "identity", np.float64, input_block=[
        {"kind": "embedding", "features": [0], "cardinalities": [4999]}])
    t = big.embedding_tables(big.init_params(np.random.RandomState(1)))[0]
    assert t.shape == (5000, 8)
    assert abs(t.mean()) < 0.02 and abs(t.std() - 1) < 0.02


# ---- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_gradients_match_central_differences(block, kernel, perturbed_params, segment_fd_errors):
    """Every parameter (tables, other block layers, dense weights and biases), float64, with
    the L2 term and sample weights; 70 rows: three row chunks, so the chunk partials of the
    table's scatter-add are combined."""
    rng = np.random.default_rng(5)
    X = _data(BLOCKS[block], rng, 70)
    Y = rng.standard_normal((70, 2))
    sw = rng.random(70) + 0.5
    net = _net(np.float64, BLOCKS[block], hidden=(6, 4),
               wd_factors={"embedding": 2.0, "scale": 0.5})
    errors, grad = segment_fd_errors(net, perturbed_params(net), X, Y, sw, alpha=0.3)
    assert {k for k, _ in errors} >= {"embedding", "weights", "biases"}
    assert max(errors.values()) < 1e-6, errors


def test_unused_rows_get_only_the_l2_term(perturbed_params):
    """A table row no sample's code selects has no loss gradient: alpha = 0 gives exact
    zeros there (and not elsewhere)."""
    rng = np.random.default_rng(1)
    X = _codes(rng, 30, (6, 4))
    X[:, 3] = np.where(X[:, 3] == 2, 0, X[:, 3])      # no row has code 2 in column 3
    net = _net(np.float64, [EMB])
    p = perturbed_params(net)
    _, g = net.loss_grad(p, X, rng.standard_normal((30, 2)))
    gt = net.embedding_tables(g)
    assert_array_equal(gt[3][2], 0.0)
    assert np.all(np.abs(gt[3][[0, 6]]).sum(axis=1) > 0)


def test_gradients_softmax_output(kernel, perturbed_params, segment_fd_errors):
    rng = np.random.default_rng(6)
    X = _codes(rng, 33, (6, 4))
    Y = np.eye(3)[rng.integers(0, 3, 33)]
    net = Network([F, 6, 3], "gelu", "softmax", np.float64, input_block=[EMB, PERIODIC])
    errors, _ = segment_fd_errors(net, perturbed_params(net), X, Y, None, alpha=0.0)
    assert max(errors.values()) < 1e-6, errors


def test_float32_gradient_matches_float64(perturbed_params):
    rng = np.random.default_rng(2)
    X = _codes(rng, 50, (6, 4))
    Y = rng.standard_normal((50, 2))
    g = []
    for dtype in DTYPES:
        net = _net(dtype, [EMB, PERIODIC, "scale"])
        p = perturbed_params(net).astype(dtype)
        g.append(net.loss_grad(p, X.astype(dtype), Y.astype(dtype), None, 0.1)[1])
    assert np.linalg.norm(g[0] - g[1]) / np.linalg.norm(g[1]) < 1e-5


# ---- parameter group ------------------------------------------------------------------------------
def test_group_factors_match_numpy_sgd_step(kernel, perturbed_params):
    """One full-batch SGD step (no momentum): the tables move by lr * lr factor * (gradient +
    alpha / n * wd factor * table), the other segments by their own factors."""
    rng = np.random.default_rng(8)
    n = 40
    X = _codes(rng, n, (6, 4))
    Y = rng.standard_normal((n, 2))
    net = _net(np.float64, [EMB, "scale"], lr_factors={"embedding": 3.0, "scale": 0.5},
               wd_factors={"embedding": 0.25})
    assert [(k, lr, wd) for k, _, lr, wd in net.segments()][:2] == [("embedding", 3.0, 0.25),
                                                                     ("scale", 0.5, 1.0)]
    p0 = perturbed_params(net)
    alpha, lr = 0.2, 0.01
    _, g = net.loss_grad(p0, X, Y, None, alpha=0.0)
    p1 = p0.copy()
    net.train_epoch(p1, OptimizerState("sgd", net.n_params, net.dtype, learning_rate=lr,
                                       momentum=0.0), X, Y, None, None, n, alpha)
    expected = np.empty_like(p0)
    for kind, sl, lrf, wdf in net.segments():
        expected[sl] = p0[sl] - lr * lrf * (g[sl] + alpha / n * wdf * p0[sl])
    assert_allclose(p1, expected, rtol=1e-12, atol=1e-14)


# ---- threads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_others", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_across_thread_counts(dtype, with_others, kernel, block_thread_runs):
    """Loss, gradient, prediction and an epoch of Adam (two batches) at 1, 2 and 3 threads:
    the block's forward and backward loops are seen running with 2 and 3 threads (the
    embedding alone, and with periodic and scale layers), and every result is bitwise the
    one-thread result."""
    rng = np.random.default_rng(11)
    n, F_ = 600, 30
    feats, cards = [4, 0, 17], [51, 3, 10]
    X = _codes(rng, n, cards, F=F_, features=feats).astype(dtype)
    Y = rng.standard_normal((n, 3)).astype(dtype)
    block = [{"kind": "embedding", "features": feats, "cardinalities": cards, "dim": 16}]
    if with_others:
        block += [{"kind": "periodic", "n_frequencies": 8, "n_outputs": 3,
                   "features": list(range(20, 60, 2))}, "scale"]
    order = np.random.RandomState(1).permutation(n)
    teams, results = block_thread_runs(
        lambda nt: Network([F_, 128, 3], "relu", "identity", dtype, n_threads=nt,
                           input_block=block,
                        lr_factors={"embedding": 0.5}, parametrization="ntk"),
        X, Y, order, dtype)
    assert teams == [((0, 0), 0), ((2, 2), 2), ((3, 3), 3)]
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert_array_equal(a, b)


# ---- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1.0, 7.0, 2.5, np.nan, np.inf, -0.5])
def test_bad_codes_raise_and_leave_the_model_unchanged(bad, perturbed_params):
    """Codes outside 0..K_j, non-integers, NaN and inf are refused by predict, serve,
    loss_grad and train_epoch, naming the column and row; a failed epoch changes nothing."""
    rng = np.random.default_rng(0)
    X = _codes(rng, 20, (6, 4))
    Y = rng.standard_normal((20, 2))
    net = _net(np.float64, [EMB, "scale"])
    p = perturbed_params(net)
    net.predict(p, X)                               # the valid codes, K_j included, pass
    X[13, 3] = bad
    match = r"column 3 .* integer in 0\.\.6 .*row 13"
    with pytest.raises(ValueError, match=match):
        net.predict(p, X)
    with pytest.raises(ValueError, match=match):
        net.serve(p, X)
    with pytest.raises(ValueError, match=match):
        net.loss_grad(p, X, Y)
    before = p.copy()
    st = OptimizerState("adam", net.n_params, net.dtype)
    with pytest.raises(ValueError, match=match):
        net.train_epoch(p, st, X, Y)
    assert_array_equal(p, before)
    assert st.t == 0


def test_bad_codes_in_float32_are_refused(perturbed_params):
    net = _net(np.float32, [EMB])
    p = perturbed_params(net)
    X = _codes(np.random.default_rng(0), 5, (6, 4)).astype(np.float32)
    X[4, 1] = 5
    with pytest.raises(ValueError, match=r"column 1 .* integer in 0\.\.4 .*row 4"):
        net.predict(p, X)


@pytest.mark.parametrize("block, match", [
    (["scale", EMB], "must be the block's first layer"),
    ([{"kind": "embedding", "features": [3]}], "cardinalities"),
    ([{"kind": "embedding", "features": [3], "cardinalities": [0]}], "cardinalities"),
    ([{"kind": "embedding", "features": [3, 1], "cardinalities": [4]}], "cardinalities"),
    ([{"kind": "embedding", "features": [3], "cardinalities": [2.5]}], "cardinalities"),
    ([{"kind": "embedding", "features": [5], "cardinalities": [3]}], "distinct column"),
    ([{"kind": "embedding", "features": [1, 1], "cardinalities": [3, 3]}], "distinct column"),
    ([{"kind": "embedding", "features": [], "cardinalities": []}], "distinct column"),
    ([{"kind": "embedding", "cardinalities": [3]}], "distinct column"),
    ([{"kind": "embedding", "features": [1], "cardinalities": [3], "dim": 0}], "dim"),
    ([{"kind": "embedding", "features": [1], "cardinalities": [3], "sigma": 1}],
     "unknown keys"),
])
def test_bad_embedding_descriptions(block, match):
    with pytest.raises(ValueError, match=match):
        _net(np.float64, block)
