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


# ---- the one list of activations (cprop/_activation_list.py, issue 17) --------------------------
import cprop._activations as _act_module  # noqa: E402
from cprop import _activation_list  # noqa: E402
from cprop._activations import ACTIVATION_CODES  # noqa: E402
from cprop._engine import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS, OUTPUT_LOSS  # noqa: E402

LIST = _activation_list.ACTIVATIONS
NAMES = [a["name"] for a in LIST]


def test_the_list_names_each_activation_once_with_its_own_code():
    assert len(set(NAMES)) == len(NAMES)
    assert list(ACTIVATION_CODES) == NAMES
    assert len(set(ACTIVATION_CODES.values())) == len(NAMES)


def test_python_names_come_from_the_list():
    assert HIDDEN_ACTIVATIONS == tuple(a["name"] for a in LIST if a["hidden"])
    assert OUTPUT_ACTIVATIONS == tuple(a["name"] for a in LIST if a["output"])
    # every output activation pairs with a loss, and every loss's activation is in the list
    assert set(OUTPUT_LOSS) == set(OUTPUT_ACTIVATIONS)
    assert NEEDS_Z == {a["name"] for a in LIST if a["needs_z"]}


def test_every_activation_of_the_list_has_a_numpy_reference_here():
    """A new list entry fails here until the tests above check it against numpy and central
    differences (softmax has its own test)."""
    referenced = set(NUMPY_FORWARD) | set(NEW_FORWARD) | {"softmax"}
    assert set(NAMES) == referenced


def test_every_activation_of_the_list_has_an_onnx_formula():
    pytest.importorskip("skl2onnx", reason="ONNX export is an optional extra (skl2onnx)")
    import cprop.onnx
    assert set(cprop.onnx.ACTIVATIONS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_code_runs_its_own_activation(kernel, name):
    """Through the epilogue of one GEMM (each kernel path's build of the rendered dispatch), each
    code applies the activation of its name and its derivative: the codes and the switches agree
    with the list.  (The paths with FMA may round a product-sum once where ``forward``/``backward``
    round twice: a few units in the last place, hence rtol 1e-14 against them.)"""
    from cprop._backprop import epilogue_product
    entry = LIST[NAMES.index(name)]
    # moderate z: near saturation 1 - a^2 (tanh') cancels, and one rounding less (FMA) is then a
    # large relative change; the extremes are tested against numpy above
    z = np.random.default_rng(4).standard_normal((7, 7)) / 2
    ref = z.copy()
    forward(name, ref)
    if entry["row"]:
        with pytest.raises(ValueError, match="element-wise"):
            epilogue_product(False, False, z, np.eye(7), np.empty((7, 7)),
                             act=ACTIVATION_CODES[name])
        return
    C = np.empty((7, 7))
    epilogue_product(False, False, z, np.eye(7), C, act=ACTIVATION_CODES[name])
    ref_np = {**NUMPY_FORWARD, **NEW_FORWARD}[name](z)
    np.testing.assert_allclose(C, ref_np, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(C, ref, rtol=1e-14, atol=0)
    # the derivative epilogue: delta := (I delta) * f'(.) read from a (or z, as the list says)
    d = np.random.default_rng(5).standard_normal((7, 7))
    expect = d.copy()
    backward(name, z if entry["needs_z"] else ref, expect)
    got = np.empty((7, 7))
    epilogue_product(False, False, d, np.eye(7), got, act=ACTIVATION_CODES[name],
                     aux=z if entry["needs_z"] else ref)
    np.testing.assert_allclose(got, expect, rtol=1e-14, atol=0)


@pytest.mark.parametrize("act", [-2, 10**6, ACTIVATION_CODES["softmax"]])
def test_epilogue_product_refuses_codes_that_are_not_elementwise(act):
    """No test on a code's order: an unknown code (below or above every known one) is refused
    like softmax, which is row-wise."""
    from cprop._backprop import epilogue_product
    with pytest.raises(ValueError, match="element-wise"):
        epilogue_product(False, False, np.ones((2, 2)), np.ones((2, 2)), np.empty((2, 2)),
                         act=act)


def test_a_build_from_another_list_is_refused(monkeypatch):
    """The compiled enum and flags are checked against the list at import: a list changed without
    a rebuild (here: two entries swapped) is an ImportError, not activations run under the wrong
    codes."""
    swapped = list(LIST)
    i, j = NAMES.index("tanh"), NAMES.index("gelu")
    swapped[i], swapped[j] = swapped[j], swapped[i]
    monkeypatch.setattr(_act_module, "_LIST", tuple(swapped))
    monkeypatch.setattr(_act_module, "ACTIVATION_CODES",
                        {a["name"]: code for code, a in enumerate(swapped)})
    with pytest.raises(ImportError, match=r"rebuild.*") as info:
        _act_module._check_rendered()
    assert "tanh" in str(info.value) and "gelu" in str(info.value)
    monkeypatch.undo()
    _act_module._check_rendered()
