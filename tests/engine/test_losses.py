"""Losses vs numpy/scipy references; their gradients vs central differences through the output layer."""
import numpy as np
import pytest
from scipy.special import expit, softmax, xlogy

from cprop._losses import loss_and_delta


def _ref_loss(name, Y, P):
    """Independent numpy reference, per sample (before sample weights)."""
    eps = np.finfo(P.dtype).eps
    Y = Y.astype(np.float64)
    if name == "squared_error":
        return 0.5 * ((Y - P) ** 2).sum(axis=1)
    if name == "log_loss":
        return -xlogy(Y, np.clip(P, eps, 1 - eps)).sum(axis=1)
    if name == "binary_log_loss":
        Pc = np.clip(P, eps, 1 - eps).astype(np.float64)
        return -(xlogy(Y, Pc) + xlogy(1 - Y, 1 - Pc)).sum(axis=1)
    if name == "poisson":
        return (xlogy(Y, Y / P) - Y + P).sum(axis=1)
    raise AssertionError(name)


OUT_ACT = {"squared_error": lambda z: z, "log_loss": lambda z: softmax(z, axis=1),
           "binary_log_loss": expit, "poisson": np.exp}


def _targets(name, rng, n, k):
    if name == "log_loss":
        return np.eye(k)[rng.integers(0, k, n)]
    if name == "binary_log_loss":
        return (rng.random((n, k)) > 0.5).astype(float)
    if name == "poisson":
        return rng.poisson(2.0, (n, k)).astype(float)
    return rng.standard_normal((n, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OUT_ACT))
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_delta_match_reference(name, dtype, weighted):
    rng = np.random.default_rng(0)
    n, k = 37, 4
    Y = _targets(name, rng, n, k).astype(dtype)
    P = OUT_ACT[name](rng.standard_normal((n, k))).astype(dtype)
    sw = (rng.random(n) + 0.5).astype(dtype) if weighted else None
    D = np.full_like(P, np.nan)
    total = loss_and_delta(name, Y, P, D, sw, 0.25)
    w = np.ones(n) if sw is None else sw.astype(np.float64)
    ref = np.sum(w * _ref_loss(name, Y, P.astype(np.float64)))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(ref, rel=rtol)
    np.testing.assert_allclose(D, (P.astype(np.float64) - Y) * (0.25 * w)[:, None], rtol=rtol,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("name", list(OUT_ACT))
def test_delta_is_gradient_wrt_preactivation(name):
    """d/dz sum_i sw_i l(y_i, f(z_i)) == sw * (f(z) - y): the canonical-link pairing, checked by FD."""
    rng = np.random.default_rng(3)
    n, k = 5, 3
    Y = _targets(name, rng, n, k)
    Z = rng.standard_normal((n, k))
    sw = rng.random(n) + 0.5
    f = OUT_ACT[name]

    def total(Zv):
        P = f(Zv)
        return loss_and_delta(name, Y, P, np.empty_like(P), sw, 1.0)

    D = np.empty_like(Z)
    loss_and_delta(name, Y, f(Z), D, sw, 1.0)
    h = 1e-6
    fd = np.empty_like(Z)
    for idx in np.ndindex(*Z.shape):
        Zp, Zm = Z.copy(), Z.copy()
        Zp[idx] += h
        Zm[idx] -= h
        fd[idx] = (total(Zp) - total(Zm)) / (2 * h)
    np.testing.assert_allclose(D, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_losses_clip_probabilities(dtype):
    Y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    P = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)  # confidently wrong: log(0) without clipping
    D = np.empty_like(P)
    for name in ("log_loss", "binary_log_loss"):
        total = loss_and_delta(name, Y, P, D)
        assert np.isfinite(total)
        assert total == pytest.approx(np.sum(_ref_loss(name, Y, P)), rel=1e-6)


def test_bad_arguments():
    Y = np.zeros((3, 2))
    with pytest.raises(ValueError, match="Unknown loss"):
        loss_and_delta("hinge", Y, Y, Y.copy())
    with pytest.raises(ValueError, match="same shape"):
        loss_and_delta("squared_error", Y, np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="one value per row"):
        loss_and_delta("squared_error", Y, Y, Y.copy(), np.ones(2))


# ---- robust regression losses (issue 11) ------------------------------------------------------------
def _huber_ref(R, delta):
    A = np.abs(R)
    return np.where(A <= delta, 0.5 * A**2, delta * (A - 0.5 * delta))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["absolute_error", "huber"])
def test_robust_losses_match_numpy(name, dtype):
    rng = np.random.default_rng(11)
    n, k, delta = 37, 3, 0.7
    Y = rng.standard_normal((n, k)).astype(dtype)
    P = (Y + rng.standard_normal((n, k)) * 1.5).astype(dtype)
    P[0, 0] = Y[0, 0]                       # a zero residual: subgradient 0
    sw = (rng.random(n) + 0.5).astype(dtype)
    D = np.empty_like(P)
    total = loss_and_delta(name, Y, P, D, sw, scale=0.25,
                           loss_param=delta if name == "huber" else None)
    R = P.astype(np.float64) - Y.astype(np.float64)
    per = np.abs(R).sum(1) if name == "absolute_error" else _huber_ref(R, delta).sum(1)
    grad = np.sign(R) if name == "absolute_error" else np.clip(R, -delta, delta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(float((sw * per).sum()), rel=tol)
    np.testing.assert_allclose(D, sw[:, None] * 0.25 * grad, rtol=tol, atol=tol)
    assert D[0, 0] == 0


@pytest.mark.parametrize("name", ["absolute_error", "huber"])
def test_robust_loss_gradients_central_differences(name):
    rng = np.random.default_rng(12)
    Y = rng.standard_normal((9, 2))
    P = Y + rng.choice([-1, 1], Y.shape) * (0.05 + rng.random(Y.shape) * 2)  # away from kinks
    D = np.empty_like(P)
    param = 0.8 if name == "huber" else None
    loss_and_delta(name, Y, P, D, loss_param=param)
    h = 1e-6
    fd = np.empty_like(P)
    for idx in np.ndindex(P.shape):
        Pp, Pm = P.copy(), P.copy()
        Pp[idx] += h
        Pm[idx] -= h
        fd[idx] = (loss_and_delta(name, Y, Pp, np.empty_like(P), loss_param=param)
                   - loss_and_delta(name, Y, Pm, np.empty_like(P), loss_param=param)) / (2 * h)
    np.testing.assert_allclose(D, fd, rtol=1e-7, atol=1e-8)


def test_huber_delta_must_be_positive():
    Y = np.zeros((2, 1))
    with pytest.raises(ValueError, match="huber_delta must be > 0"):
        loss_and_delta("huber", Y, Y, np.empty_like(Y), loss_param=0.0)
