"""TabularPreprocessor's ``categorical_encoding='embedding'``: a categorical column with more than
8 training levels becomes one column of category codes (0..K-1 by sorted level, K for missing
and unseen), unscaled and unclipped, for the engine's embedding layer; the others as under
'onehot'.  References: the codes written out from the sorted levels in numpy; the 'onehot'
transform of the same table for every other column; the engine's table lookup."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from cprop._engine import Network
from cprop._tabular_prep import TabularPreprocessor


def _table(n=200, seed=0):
    """Columns: numeric, 12-level categorical (strings, some missing), 5-level categorical,
    numeric, 2-level categorical, 30-level categorical (ints)."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 6), dtype=object)
    X[:, 0] = rng.standard_normal(n)
    X[:, 1] = [f"s{k:02d}" for k in rng.integers(0, 12, n)]
    X[rng.random(n) < 0.1, 1] = None
    X[:, 2] = rng.integers(0, 5, n)
    X[:, 3] = rng.exponential(size=n)
    X[:, 4] = rng.choice(["a", "b"], n)
    X[:, 5] = rng.integers(0, 30, n)
    return X


CATS = [1, 2, 4, 5]


def _prep(encoding, X):
    return TabularPreprocessor(CATS, np.float64, categorical_encoding=encoding).fit(X)


def test_codes_replace_only_the_columns_of_more_than_8_levels():
    X = _table()
    onehot, emb = _prep("onehot", X), _prep("embedding", X)
    A, B = onehot.transform(X), emb.transform(X)
    # onehot layout: 0 | 1: 12 levels | 2: 5 | 3 | 4: one +-1 | 5: 30 levels
    oh_blocks = [[0], list(range(1, 13)), list(range(13, 18)), [18], [19],
                 list(range(20, 50))]
    em_blocks = [[0], [1], [2, 3, 4, 5, 6], [7], [8], [9]]
    assert A.shape[1] == 50 and B.shape[1] == 10
    for j in (0, 2, 3, 4):
        assert_array_equal(B[:, em_blocks[j]], A[:, oh_blocks[j]])
    assert_array_equal(emb.code_columns_, [1, 9])
    assert_array_equal(emb.code_cardinalities_, [12, 30])
    assert onehot.code_columns_.size == 0 and onehot.embedding_block() is None
    # the codes: index among the sorted training levels, 12 for missing
    levels = sorted({v for v in X[:, 1] if v is not None})
    expected = np.array([12 if v is None else levels.index(v) for v in X[:, 1]], float)
    assert_array_equal(B[:, 1], expected)
    assert_array_equal(B[:, 9], X[:, 5].astype(float))     # levels 0..29, all seen
    assert emb.center_[1] == 0 and emb.scale_[1] == 1
    names = emb.get_feature_names_out()
    assert names[1] == "x1" and names[9] == "x5" and names[2] == "x2=0"


def test_unseen_levels_and_missing_get_code_k():
    X = _table()
    emb = _prep("embedding", X)
    Xt = X[:4].copy()
    Xt[0, 1], Xt[1, 1], Xt[2, 5], Xt[3, 5] = "new", None, 99, np.nan
    B = emb.transform(Xt)
    assert_array_equal(B[[0, 1], 1], [12, 12])
    assert_array_equal(B[[2, 3], 9], [30, 30])


def test_float32_output_keeps_exact_codes():
    X = _table()
    B = TabularPreprocessor(CATS, np.float32, categorical_encoding="embedding").fit(X) \
        .transform(X)
    assert B.dtype == np.float32
    assert_array_equal(B[:, 9], X[:, 5].astype(np.float32))


def test_embedding_block_feeds_the_engine():
    """The block entry builds a Network that takes the transformed table (codes in range,
    unseen levels included), and its first-layer input is the table lookup."""
    X = _table()
    emb = _prep("embedding", X)
    block = emb.embedding_block(dim=4)
    assert block == {"kind": "embedding", "features": [1, 9], "cardinalities": [12, 30],
                     "dim": 4}
    B = emb.transform(X)
    net = Network([B.shape[1], 1], [], "identity", np.float64, input_block=[block])
    p = net.init_params(np.random.RandomState(0))
    tables = net.embedding_tables(p)
    W, b = net.coefs(p)[0], net.intercepts(p)[0]
    H = np.hstack([B[:, :1], tables[1][B[:, 1].astype(int)], B[:, 2:9],
                   tables[9][B[:, 9].astype(int)]])
    assert H.shape[1] == net.dense_sizes[0]
    np.testing.assert_allclose(net.predict(p, B), H @ W + b, rtol=1e-12)
    # the columns after the embedding: column c moves by 3 per code column before it
    assert_array_equal(emb.columns_after_embedding([0, 2, 8], dim=4), [0, 5, 11])
    with pytest.raises(ValueError, match="code column"):
        emb.columns_after_embedding([1])


def test_bad_categorical_encoding():
    with pytest.raises(ValueError, match="categorical_encoding='ordinal'"):
        TabularPreprocessor(CATS, categorical_encoding="ordinal").fit(_table())
