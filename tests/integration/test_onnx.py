"""ONNX export (``cprop.onnx``): onnxruntime reproduces predict / predict_proba.

The reference is the estimator itself: onnxruntime runs the exported graph on the same rows and
its labels must equal ``predict`` and its probabilities / values ``predict_proba`` / ``predict``
to the rounding of the dtype (float64: 1e-12, float32: 1e-6).
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

ONNX_MISSING = "needs the 'onnx' extra: pip install 'cprop[onnx]'"
pytest.importorskip("skl2onnx", reason=ONNX_MISSING)
ort = pytest.importorskip("onnxruntime", reason=ONNX_MISSING)

from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402

import cprop.onnx  # noqa: E402
from cprop import MLPClassifier, MLPRegressor  # noqa: E402
from cprop._engine import HIDDEN_ACTIVATIONS, OUTPUT_LOSS  # noqa: E402

TOL = {np.float64: 1e-12, np.float32: 1e-6}
HIDDEN = HIDDEN_ACTIVATIONS


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning from short fits
        return est.fit(X, y)


def _run(onx, X):
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X}), [o.name for o in sess.get_outputs()]


def _data(dtype, n_classes=3, n_samples=120):
    X, y = make_classification(n_samples=n_samples, n_features=7, n_informative=5,
                               n_classes=n_classes, random_state=0)
    return X.astype(dtype), y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", HIDDEN)
def test_classifier_every_hidden_activation(dtype, activation):
    X, y = _data(dtype)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(9, 6), activation=activation, max_iter=40,
                             random_state=0), X, y)
    assert clf.coefs_[0].dtype == dtype
    (label, proba), names = _run(to_onnx(clf, X[:1], options={"zipmap": False}), X)
    assert names == ["label", "probabilities"]
    assert proba.dtype == dtype
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target", ["binary", "strings", "multilabel", "integral_floats"])
def test_classifier_targets(dtype, target):
    X, y = _data(dtype, n_classes=3)
    if target == "binary":
        y = np.where(y == 1, 7, -2)  # logistic output, both probability columns
    elif target == "strings":
        y = np.array(["cat", "dog", "eel"])[y]
    elif target == "multilabel":
        y = np.c_[y == 1, y == 2, y != 0].astype(int)
    else:
        y = y.astype(float) * 2.0
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=40, random_state=0), X, y)
    (label, proba), _ = _run(to_onnx(clf, X[:1], options={"zipmap": False}), X)
    expected = clf.predict(X)
    assert label.shape == expected.shape
    if target == "strings":
        assert list(label) == list(expected)
    else:
        np.testing.assert_array_equal(label, expected)
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss, n_targets", [("squared_error", 1), ("squared_error", 3),
                                             ("poisson", 1)])
def test_regressor(dtype, loss, n_targets):
    X, y = make_regression(n_samples=100, n_features=6, n_targets=n_targets, random_state=0)
    X = X.astype(dtype)
    if loss == "poisson":
        y = np.abs(y) / 50
    reg = _fit(MLPRegressor(loss=loss, hidden_layer_sizes=(10,), activation="tanh", max_iter=40,
                            random_state=0), X, y)
    (pred,), names = _run(to_onnx(reg, X[:1]), X)
    assert names == ["variable"] and pred.shape == (len(X), n_targets) and pred.dtype == dtype
    scale = max(1.0, np.abs(reg.predict(X)).max())
    np.testing.assert_allclose(pred, reg.predict(X).reshape(len(X), -1), rtol=0,
                               atol=TOL[dtype] * scale)


def test_the_table_has_every_activation_of_the_engine():
    """A new engine activation (hidden or output) fails here until it has its ONNX entry."""
    assert set(cprop.onnx.ACTIVATIONS) == set(HIDDEN_ACTIVATIONS) | set(OUTPUT_LOSS)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", HIDDEN)
def test_every_hidden_activation_over_a_wide_range_of_inputs(dtype, activation):
    """Pre-activations spread over about [-45, 45]: every branch of every formula (tails of
    erfc, softplus and the sigmoids; mish beyond 20; the negative pieces of elu/selu/leaky_relu)
    against the engine's predict."""
    rng = np.random.RandomState(1)
    X = rng.uniform(-1, 1, size=(400, 4)).astype(dtype)
    y = rng.standard_normal(400)
    reg = _fit(MLPRegressor(hidden_layer_sizes=(16,), activation=activation, max_iter=2,
                            random_state=0), X, y)
    reg.coefs_ = [(12 * rng.standard_normal((4, 16))).astype(dtype),
                  rng.standard_normal((16, 1)).astype(dtype)]
    reg.intercepts_ = [(3 * rng.standard_normal(16)).astype(dtype),
                       np.zeros(1, dtype=dtype)]
    z = X.astype(np.float64) @ reg.coefs_[0] + reg.intercepts_[0]
    assert z.min() < -25 and z.max() > 25            # the tails are reached
    expected = reg.predict(X).reshape(-1, 1)
    (pred,), _ = _run(to_onnx(reg, X[:1]), X)
    assert pred.dtype == dtype
    scale = max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(pred, expected, rtol=0, atol=TOL[dtype] * scale)


def test_float64_model_float32_input_computes_in_float32():
    X, y = _data(np.float64)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=40, random_state=0), X, y)
    X32 = X.astype(np.float32)
    (label, proba), _ = _run(to_onnx(clf, X32[:1], options={"zipmap": False}), X32)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, clf.predict_proba(X32), rtol=0, atol=1e-6)


def test_pipeline_and_zipmap_options():
    X, y = _data(np.float64)
    y = np.array(["a", "b", "c"])[y]
    pipe = _fit(make_pipeline(StandardScaler(),
                              MLPClassifier(hidden_layer_sizes=(8,), max_iter=40, random_state=0)),
                X, y)
    # ONNX's ZipMap takes float tensors only (in onnxruntime), so these graphs get float32 rows.
    X = X.astype(np.float32)
    expected = pipe.predict_proba(X)
    # default zipmap=True: a list of {class: probability}
    (label, zipped), names = _run(to_onnx(pipe, X[:1]), X)
    assert names == ["output_label", "output_probability"]
    assert list(label) == list(pipe.predict(X))
    assert [sorted(d) for d in zipped[:2]] == [["a", "b", "c"]] * 2
    np.testing.assert_allclose([[d[c] for c in "abc"] for d in zipped], expected, atol=1e-6)
    # zipmap='columns': one output per class
    outs, names = _run(to_onnx(pipe, X[:1], options={"zipmap": "columns"}), X)
    assert names[-3:] == ["sa", "sb", "sc"]  # skl2onnx names string-class columns "s" + label
    np.testing.assert_allclose(np.c_[tuple(outs[-3:])], expected, atol=1e-6)
    # zipmap=False + output_class_labels: the classes as a third output
    mlp = pipe[-1]
    outs, names = _run(to_onnx(pipe, X[:1], options={id(mlp): {"zipmap": False,
                                                                "output_class_labels": True}}), X)
    assert len(outs) == 3 and list(outs[2]) == list(mlp.classes_)
    # nocl: class indices instead of the labels, in the label output and the ZipMap keys
    (label, zipped), _ = _run(to_onnx(pipe, X[:1], options={id(mlp): {"nocl": True}}), X)
    np.testing.assert_array_equal(label, np.searchsorted(mlp.classes_, pipe.predict(X)))
    assert sorted(zipped[0]) == [0, 1, 2]


def test_unknown_activation_is_a_clear_error():
    X, y = _data(np.float64)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y)
    clf.activation = "swish"  # as a future engine activation would appear
    with pytest.raises(ValueError, match=r"hidden activation 'swish' has no ONNX converter"):
        to_onnx(clf, X[:1])
    # one table entry is all a new activation needs
    cprop.onnx.ACTIVATIONS["swish"] = cprop.onnx.ACTIVATIONS["relu"]
    try:
        clf.activation = "relu"
        expected = clf.predict_proba(X)
        clf.activation = "swish"
        (label, proba), _ = _run(to_onnx(clf, X[:1], options={"zipmap": False}), X)
        np.testing.assert_allclose(proba, expected, atol=1e-12)
    finally:
        del cprop.onnx.ACTIVATIONS["swish"]


BLOCK_SKL2ONNX = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "skl2onnx" or name.startswith("skl2onnx."):
            raise ImportError("No module named 'skl2onnx' (blocked by the test)")
sys.meta_path.insert(0, Block())
import cprop.onnx
"""


def test_missing_extra_says_what_to_install(tmp_path, cprop_env):
    # cwd outside the source tree: `-c` puts the cwd first on sys.path
    res = subprocess.run([sys.executable, "-c", BLOCK_SKL2ONNX], capture_output=True, text=True,
                         env=cprop_env(), timeout=120, cwd=tmp_path)
    assert res.returncode != 0
    assert "pip install 'cprop[onnx]'" in res.stderr


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erfc_graph_against_mpmath(dtype):
    """The erfc the exact-gelu entry uses (Cody's approximations), over every interval and the
    tails, against mpmath's (scipy's erfc is itself off by ~250 eps near 20): relative error
    within a few eps (README: about 1e-15 in double)."""
    import mpmath    # a [test] requirement: the reference erfc
    from onnx import TensorProto, helper

    class Scope:
        n = 0

        def get_unique_variable_name(self, prefix):
            Scope.n += 1
            return f"{prefix}_{Scope.n}"

        get_unique_operator_name = get_unique_variable_name

    class Container:
        def __init__(self):
            self.nodes, self.inits = [], []

        def add_node(self, op, inputs, outputs, name=None, **attrs):
            self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))

        def add_initializer(self, name, proto, shape, values):
            self.inits.append(helper.make_tensor(name, proto, shape, values))

    proto = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    c = Container()
    out = cprop.onnx._erfc(cprop.onnx._Nodes(Scope(), c, proto), "x")
    graph = helper.make_graph(c.nodes, "erfc", [helper.make_tensor_value_info("x", proto, [None])],
                              [helper.make_tensor_value_info(out, proto, [None])],
                              initializer=c.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.RandomState(0)
    x = np.r_[np.linspace(-8, 30, 1001), rng.uniform(-8, 30, 2000), 0.46875, 4.0, -0.46875,
              -4.0, np.inf, -np.inf].astype(dtype)
    got = sess.run(None, {"x": x})[0].astype(np.float64)
    ref = np.array([float(mpmath.erfc(mpmath.mpf(float(v)))) for v in x])
    normal = ref > np.finfo(dtype).tiny * 2 ** 30       # away from the type's underflow
    rel = np.abs(got - ref)[normal] / ref[normal]
    assert rel.max() < 8 * np.finfo(dtype).eps, rel.max()
    assert np.abs(got - ref)[~normal].max() <= np.finfo(dtype).tiny * 2 ** 30
    assert got[-2] == 0 and got[-1] == 2                  # erfc(inf), erfc(-inf)
