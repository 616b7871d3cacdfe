"""Initialisers: each named one matches its formula in distribution (mean and variance within
sampling error); 'auto' is scikit-learn's draw (see also test_compare_sklearn.py)."""
import warnings

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.utils._param_validation import InvalidParameterError

from cprop import MLPClassifier, MLPRegressor
from cprop._init import INITS, draw_layers

FI, FO = 300, 200
N = FI * FO
# (distribution, variance) of each named initialiser's weights for a FI x FO layer
EXPECTED = {
    "glorot_uniform": ("uniform", 6.0 / (FI + FO) / 3),
    "he_uniform": ("uniform", 6.0 / FI / 3),
    "glorot_normal": ("normal", 2.0 / (FI + FO)),
    "he_normal": ("normal", 2.0 / FI),
    "lecun_normal": ("normal", 1.0 / FI),
}


@pytest.mark.parametrize("init", list(EXPECTED))
def test_named_initialiser_moments(init):
    kind, var = EXPECTED[init]
    (W, _), (b, _) = draw_layers(init, [FI, FO, 3], ["relu"], np.random.RandomState(0))
    assert W.shape == (FI, FO)
    assert np.all(b == 0)
    # mean within 4 standard errors; variance within 4 standard errors of the sample variance
    assert abs(W.mean()) < 4 * np.sqrt(var / N)
    mu4 = 3 * var**2 if kind == "normal" else 9 * var**2 / 5   # uniform: b^4/5 with b^2 = 3 var
    se_var = np.sqrt((mu4 - var**2) / N)
    assert abs(W.var() - var) < 4 * se_var, (W.var(), var)
    if kind == "uniform":
        bound = np.sqrt(3 * var)
        assert W.max() <= bound and W.min() >= -bound and W.max() > 0.99 * bound
    else:   # normal: the fraction within one sigma
        assert abs(np.mean(np.abs(W) < np.sqrt(var)) - 0.6827) < 4 * np.sqrt(0.6827 * 0.3173 / N)


@pytest.mark.parametrize("shape", [(FI, FO), (FO, FI), (50, 50)])
def test_orthogonal(shape):
    (W, _), _ = draw_layers("orthogonal", [shape[0], shape[1], 2], ["tanh"], np.random.RandomState(1))
    k = min(shape)
    G = W.T @ W if shape[0] >= shape[1] else W @ W.T
    np.testing.assert_allclose(G, np.eye(k), atol=1e-12)
    # entries of a Haar-random orthonormal frame: mean 0, variance 1 / max(shape)
    var = 1.0 / max(shape)
    assert abs(W.mean()) < 4 * np.sqrt(var / W.size)
    assert abs(W.var() - var) < 4 * np.sqrt(2 * var**2 / W.size)


def test_draws_are_reproducible_and_differ_by_seed():
    a = draw_layers("he_normal", [5, 4, 2], ["relu"], np.random.RandomState(0))
    b = draw_layers("he_normal", [5, 4, 2], ["relu"], np.random.RandomState(0))
    c = draw_layers("he_normal", [5, 4, 2], ["relu"], np.random.RandomState(1))
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
    assert not np.array_equal(a[0][0], c[0][0])


@pytest.mark.parametrize("activation", ["logistic", "relu"])
@pytest.mark.parametrize("hidden", [(), (7,), (6, 5)])
def test_auto_is_scikit_learns_draw(activation, hidden):
    """With a vanishing learning rate one SGD epoch leaves the initial weights (to 1e-250)."""
    X = np.random.RandomState(0).randn(30, 4)
    y = np.arange(30) % 3
    kw = dict(hidden_layer_sizes=hidden, activation=activation, solver="sgd", momentum=0.0,
              learning_rate_init=1e-300, max_iter=1, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPClassifier(**kw).fit(X, y)
        ref = SkMLPClassifier(**kw).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("init", [i for i in INITS if i != "auto"])
def test_estimator_uses_init(init):
    X = np.random.RandomState(0).randn(40, 30)
    y = np.random.RandomState(1).randn(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = MLPRegressor(hidden_layer_sizes=(20,), init=init, solver="sgd", momentum=0.0,
                           learning_rate_init=1e-300, max_iter=1, random_state=0).fit(X, y)
    W, b = draw_layers(init, [30, 20, 1], "relu", np.random.RandomState(0))
    for got, want in zip(reg.coefs_ + reg.intercepts_, W + b):   # the step moved them by 1e-300
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-290)


def test_init_validated():
    with pytest.raises(InvalidParameterError, match="init"):
        MLPRegressor(init="xavier").fit(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="not an initialiser"):
        draw_layers("xavier", [2, 1], "relu", np.random.RandomState(0))
