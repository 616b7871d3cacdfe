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


# ---- activations beyond scikit-learn (issue 11) ----------------------------------------------------
from scipy.special import ndtr  # noqa: E402

from cprop._activations import NEEDS_Z  # noqa: E402

_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772


def _softplus(z):
    return np.logaddexp(0.0, z)


NEW_FORWARD = {
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "selu": lambda z: _SELU_L * np.where(z > 0, z, _SELU_A * np.expm1(np.minimum(z, 0))),
    "softplus": _softplus,
    "gelu": lambda z: z * ndtr(z),
    # (1 + tanh u) / 2 written as expit(2u), exact in the left tail
    "gelu_tanh": lambda z: z * expit(2 * np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)),
    "silu": lambda z: z * expit(z),
    "mish": lambda z: z * np.tanh(_softplus(z)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(NEW_FORWARD))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_new_forward_matches_numpy(name, dtype, n_threads):
    z = _z(dtype, np.random.default_rng(2))
    out = z.copy()
    forward(name, out, n_threads)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = NEW_FORWARD[name](z.astype(np.float64))
    # gelu_tanh's cubic overflows numpy's reference at |z| = 1e3 in float64 too; its limit is
    # max(z, 0) there
    ref = np.where(np.isfinite(ref), ref, np.maximum(z.astype(np.float64), 0))
    rtol = 4e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=10 * np.finfo(dtype).tiny)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", list(NEW_FORWARD))
def test_new_backward_matches_central_differences(name):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 9)) * 3
    z[np.abs(z) < 1e-3] = 0.5  # leaky_relu/elu/selu have a kink (or a kink in f'') at 0
    h = 1e-6
    zp, zm = z + h, z - h
    forward(name, zp)
    forward(name, zm)
    fd = (zp - zm) / (2 * h)
    a = z.copy()
    forward(name, a)
    d = np.ones_like(z)
    backward(name, z if name in NEEDS_Z else a, d)
    np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-8)


def test_needs_z_is_exactly_the_non_monotonic_ones():
    """Only the activations whose derivative is not a function of the output read z."""
    assert NEEDS_Z == {"gelu", "gelu_tanh", "silu", "mish"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(NEW_FORWARD))
def test_new_extremes_finite_with_their_limits(name, dtype):
    z = np.array([[-1e30, -1e3, 0.0, 1e3, 1e30]], dtype=dtype)
    out = z.copy()
    forward(name, out)
    assert np.all(np.isfinite(out))
    # right tail: f(z) -> z (selu: lambda z); left tail: the negative saturation value
    top = _SELU_L * z[0, 3:] if name == "selu" else z[0, 3:]
    np.testing.assert_allclose(out[0, 3:], top, rtol=1e-6)
    left = {"leaky_relu": 0.01 * z[0, :2], "elu": [-1.0, -1.0],
            "selu": [-_SELU_L * _SELU_A] * 2}.get(name, [0.0, 0.0])
    np.testing.assert_allclose(out[0, :2], np.asarray(left, dtype=np.float64), rtol=1e-6, atol=0)
    assert abs(out[0, 2] - (np.log(2) if name == "softplus" else 0)) < 1e-7
    d = np.ones_like(out)
    backward(name, z if name in NEEDS_Z else out, d)
    assert np.all(np.isfinite(d)), d
    np.testing.assert_allclose(d[0, 3:], [_SELU_L if name == "selu" else 1.0] * 2, rtol=1e-6)
