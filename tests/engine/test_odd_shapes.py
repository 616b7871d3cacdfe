"""Odd shapes through the public API: 1 row, 1 feature, widths on both sides of the kernel block
sizes (MR = 6, NR = 8/16, MC = 72/144, KC = 256), dense and sparse input, float32 and float64.

Each case fits a few epochs (adam and lbfgs) and checks the prediction against a numpy forward pass
from the fitted ``coefs_``/``intercepts_``.  The same sweep runs under AddressSanitizer in
``.ci/asan.sh``, where it is the part that reaches the raw-pointer code (packing, edges, the row
gather, sparse rows) with the shapes most likely to step outside a buffer.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn.exceptions import ConvergenceWarning

from cprop import MLPClassifier, MLPRegressor

# (rows, features, hidden widths, outputs)
SHAPES = [
    (1, 1, (1,), 1),
    (1, 5, (7,), 2),
    (2, 1, (6, 5), 1),
    (7, 17, (16, 17), 3),
    (13, 257, (15,), 1),
    (145, 3, (73, 145), 2),
    (200, 255, (144, 8), 1),
    (61, 64, (9, 1, 9), 4),
    (300, 7, (257,), 1),
]


def _forward(model, X):
    A = X.toarray() if sp.issparse(X) else X
    A = A.astype(np.float64)
    for i, (W, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        A = A @ W.astype(np.float64) + b.astype(np.float64)
        if i < len(model.coefs_) - 1:
            A = np.maximum(A, 0)
    return A


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:2])) + f"-{s[2]}")
def test_regressor_odd_shapes(shape, sparse, dtype):
    n, f, hidden, n_out = shape
    rng = np.random.RandomState(n * 1000 + f)
    X = rng.standard_normal((n, f)).astype(dtype)
    if sparse:
        X = sp.csr_matrix(X * (rng.rand(n, f) < 0.3))
    y = rng.standard_normal((n, n_out)) if n_out > 1 else rng.standard_normal(n)
    for solver, threads in [("adam", 1), ("lbfgs", 2)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reg = MLPRegressor(hidden_layer_sizes=hidden, solver=solver, max_iter=3,
                               batch_size=min(5, n), random_state=0, n_threads=threads)
            reg.fit(X, y)
        assert reg.coefs_[0].dtype == dtype
        P = reg.predict(X)
        ref = _forward(reg, X)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(P.reshape(n, -1), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("sparse", [False, True])
def test_classifier_odd_shapes(sparse):
    rng = np.random.RandomState(5)
    for n, f, hidden, n_classes in [(3, 1, (1,), 3), (17, 145, (6, 7), 2), (150, 9, (17,), 5)]:
        X = rng.standard_normal((n, f))
        if sparse:
            X = sp.csr_matrix(X * (rng.rand(n, f) < 0.5))
        y = np.arange(n) % n_classes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=3, random_state=0,
                                batch_size=min(4, n), n_threads=2).fit(X, y)
        Z = _forward(clf, X)
        if n_classes == 2:
            ref = 1 / (1 + np.exp(-Z[:, 0]))
            np.testing.assert_allclose(clf.predict_proba(X)[:, 1], ref, rtol=1e-10)
        else:
            E = np.exp(Z - Z.max(axis=1, keepdims=True))
            np.testing.assert_allclose(clf.predict_proba(X), E / E.sum(axis=1, keepdims=True),
                                       rtol=1e-10, atol=1e-12)
