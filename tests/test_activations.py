"""Activations vs numpy, derivatives vs central differences, extreme inputs."""
import numpy as np
import pytest
from scipy.special import expit

from cprop._activations import backward, forward

NUMPY_FORWARD = {
    "identity": lambda z: z,
    "logistic": expit,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "exp": np.exp,
}
EXTREMES = np.array([-1e3, -50.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 50.0, 1e3])


def _z(dtype, rng):
    z = np.concatenate([rng.standard_normal(40) * 4, EXTREMES]).astype(dtype)
    return z.reshape(7, 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(NUMPY_FORWARD))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_forward_matches_numpy(name, dtype, n_threads):
    z = _z(dtype, np.random.default_rng(0))
    if name == "exp":
        z = np.clip(z, -80, 80)  # keep numpy's reference finite
    out = z.copy()
    forward(name, out, n_threads)
    ref = NUMPY_FORWARD[name](z.astype(np.float64))
    rtol = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=np.finfo(dtype).tiny)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", ["logistic", "tanh", "relu", "identity", "exp"])
def test_backward_matches_central_differences(name):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 9)) * 3
    if name == "relu":
        z[np.abs(z) < 1e-3] = 0.5  # central differences are undefined at the kink
    h = 1e-6
    zp, zm = z + h, z - h
    forward(name, zp)
    forward(name, zm)
    fd = (zp - zm) / (2 * h)
    a = z.copy()
    forward(name, a)
    d = np.ones_like(z)
    backward(name, a, d)
    np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_stay_finite_and_saturate(dtype):
    z = np.array([[-1e3, 0.0, 1e3]], dtype=dtype)
    for name, expected in [("logistic", [0.0, 0.5, 1.0]), ("tanh", [-1.0, 0.0, 1.0]),
                           ("relu", [0.0, 0.0, 1e3])]:
        out = z.copy()
        forward(name, out)
        np.testing.assert_array_equal(out, np.array([expected], dtype=dtype))
        d = np.ones_like(out)
        backward(name, out, d)
        assert np.all(np.isfinite(d))
    # saturated units pass (almost) no gradient; relu's gradient at 0 is 0 as in scikit-learn
    d = np.ones_like(z)
    a = z.copy()
    forward("relu", a)
    backward("relu", a, d)
    np.testing.assert_array_equal(d, np.array([[0, 0, 1]], dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_max_shifted_and_normalised(dtype):
    z = np.array([[1e3, 1e3 - 1, -1e3], [0.0, 0.0, 0.0], [-1e3, -1e3, -1e3 + 2]], dtype=dtype)
    out = z.copy()
    forward("softmax", out)
    zz = z.astype(np.float64)
    e = np.exp(zz - zz.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, ref, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-30)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)


def test_nan_propagates_through_relu():
    z = np.array([[np.nan, -1.0, 1.0]])
    forward("relu", z)
    assert np.isnan(z[0, 0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown activation"):
        forward("swish", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="softmax"):
        backward("softmax", np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="must match"):
        backward("relu", np.zeros((2, 2)), np.zeros((2, 3)))
