"""ONNX export: ``import cprop.onnx`` registers cprop's estimators with skl2onnx.

After the import, ``skl2onnx.to_onnx(model, X[:1])`` converts a fitted ``cprop.MLPClassifier`` or
``cprop.MLPRegressor``, alone or inside a Pipeline, and onnxruntime reproduces ``predict`` and
``predict_proba``. Needs the ``onnx`` extra: ``pip install "cprop[onnx]"`` (skl2onnx, onnx,
onnxruntime).

Design
1. The graph is the forward pass written out: per layer ``MatMul`` by W_l, ``Add`` b_l, then the
   layer's activation. The ONNX element type is the input's (double for float64 inputs, float
   otherwise); the weights are stored in that type. A float32 model fed float32 rows computes in
   float32, as cprop does.
2. Activations are one table, ``ACTIVATIONS``: name -> the engine's formula written in ONNX
   operators, for every hidden and output activation the engine has. A new engine activation is
   one entry there (a test fails until it has one); a model using a name the table lacks raises
   ``ValueError`` naming it (never a silently wrong graph). Formulas use only operators that
   onnxruntime runs in float and double, with the engine's constants rounded to the graph's
   type as the engine rounds them: exact gelu uses Cody's erfc, since onnxruntime has no double
   Erf.
3. Classifier outputs follow skl2onnx's own MLP converter: ``label`` and ``probabilities`` (both
   columns for a binary model; 0/1 indicators for multilabel targets, thresholded at 0.5 as
   ``predict`` does), with the options it offers (``zipmap`` True/False/'columns',
   ``output_class_labels``, ``nocl``: labels are class indices). Labels are int64 (integer,
   boolean or integral float classes) or strings. ONNX's ZipMap (``zipmap=True``, the default) takes float tensors only:
   with float64 inputs pass ``options={"zipmap": False}``.
   Regressors output ``variable`` of shape (n_samples, n_outputs).

Examples
--------
>>> import numpy as np
>>> import onnxruntime as ort
>>> from skl2onnx import to_onnx
>>> from sklearn.datasets import load_iris
>>> import cprop.onnx
>>> from cprop import MLPClassifier
>>> X, y = load_iris(return_X_y=True)
>>> clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0).fit(X, y)
>>> onx = to_onnx(clf, X[:1], options={"zipmap": False})
>>> sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
>>> label, proba = sess.run(None, {"X": X})
>>> bool((label == clf.predict(X)).all()), bool(np.allclose(proba, clf.predict_proba(X)))
(True, True)
"""
import numpy as np

try:
    from skl2onnx import update_registered_converter
    from skl2onnx.common._apply_operation import (
        apply_add,
        apply_cast,
        apply_concat,
        apply_identity,
        apply_reshape,
        apply_sub,
    )
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        guess_proto_type,
    )
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from skl2onnx.common.utils import check_input_and_output_numbers
    from skl2onnx.common.utils_classifier import get_label_classes
    from skl2onnx.proto import onnx_proto
except ImportError as exc:  # pragma: no cover - exercised by test_onnx's "absent extra" check
    raise ImportError(
        f"cprop.onnx needs skl2onnx, onnx and onnxruntime ({exc}). Install them with: "
        "pip install 'cprop[onnx]'"
    ) from exc

from ._mlp import MLPClassifier, MLPRegressor

__all__ = ["ACTIVATIONS"]


class _Nodes:
    """Adds nodes and constants of one element type to the graph being built: the vocabulary
    of the ``ACTIVATIONS`` formulas (``g.op("Mul", a, b)`` returns the output's name)."""

    def __init__(self, scope, container, proto):
        self.scope, self.container, self.proto = scope, container, proto
        self.dtype = np.float64 if proto == onnx_proto.TensorProto.DOUBLE else np.float32
        self._consts = {}

    def op(self, op_type, *inputs, **attrs):
        out = self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(op_type, list(inputs), [out],
                                name=self.scope.get_unique_operator_name(op_type), **attrs)
        return out

    def const(self, value):
        """A scalar of the graph's element type (rounded to it as the engine rounds its
        ``<floating>`` constants)."""
        key = float(value)
        if key not in self._consts:
            name = self.scope.get_unique_variable_name("c")
            self.container.add_initializer(name, self.proto, [], [self.dtype(key)])
            self._consts[key] = name
        return self._consts[key]

    def where(self, cond, a, b):
        return self.op("Where", cond, a, b)

    def poly(self, coefs, x):
        """coefs[0] + coefs[1] x + ... by Horner's rule."""
        acc = self.const(coefs[-1])
        for c in reversed(coefs[:-1]):
            acc = self.op("Add", self.op("Mul", acc, x), self.const(c))
        return acc


# The engine's constants (src/cprop/_activations.pxd, design note 3).
LEAKY_SLOPE = 0.01
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
SQRT1_2 = 0.70710678118654752440084436210485
SQRT_2_PI = 0.79788456080286535587989211986876
GELU_C = 0.044715

# erfc by W. J. Cody's rational approximations (Math. Comp. 23, 1969; netlib specfun CALERF;
# coefficients here in ascending powers), a few units of rounding in either type (tested against
# mpmath): onnxruntime has no double kernel for Erf, and 1 + erf(x) would cancel in the left
# tail, where the engine uses erfc.
_ERF_A = (3.20937758913846947e03, 3.77485237685302021e02, 1.13864154151050156e02,
          3.16112374387056560e00, 1.85777706184603153e-1)          # erf, |x| <= 0.46875
_ERF_B = (2.84423683343917062e03, 1.28261652607737228e03, 2.44024637934444173e02,
          2.36012909523441209e01, 1.0)
_ERF_C = (1.23033935479799725e03, 2.05107837782607147e03, 1.71204761263407058e03,
          8.81952221241769090e02, 2.98635138197400131e02, 6.61191906371416295e01,
          8.88314979438837594e00, 5.64188496988670089e-1, 2.15311535474403846e-8)  # to 4
_ERF_D = (1.23033935480374942e03, 3.43936767414372164e03, 4.36261909014324716e03,
          3.29079923573345963e03, 1.62138957456669019e03, 5.37181101862009858e02,
          1.17693950891312499e02, 1.57449261107098347e01, 1.0)
_ERF_P = (6.58749161529837803e-4, 1.60837851487422766e-2, 1.25781726111229246e-1,
          3.60344899949804439e-1, 3.05326634961232344e-1, 1.63153871373020978e-2)  # beyond 4
_ERF_Q = (2.33520497626869185e-3, 6.05183413124413191e-2, 5.27905102951428412e-1,
          1.87295284992346047e00, 2.56852019228982242e00, 1.0)                     # in 1/x^2
_RSQRT_PI = 0.56418958354775628694807945156077


def _erfc(g, x):
    """erfc(x), each of Cody's three intervals evaluated and the right one selected."""
    y = g.op("Abs", x)
    ysq = g.op("Mul", y, y)
    erf_small = g.op("Div", g.op("Mul", y, g.poly(_ERF_A, ysq)), g.poly(_ERF_B, ysq))
    small = g.op("Sub", g.const(1), erf_small)                        # erfc(|x|), |x| <= 0.47
    # e^{-y^2} as e^{-h^2} e^{-(y-h)(y+h)}, h = floor(16 y) / 16 (Cody): h^2 is exact, so the
    # rounding of y^2 (up to 700 eps in the exponent near the underflow) never reaches it.
    # y is capped at 40, where e^{-y^2} is 0 in double already, so that y = inf gives 0, not NaN.
    yc = g.op("Min", y, g.const(40))
    h = g.op("Div", g.op("Floor", g.op("Mul", yc, g.const(16))), g.const(16))
    gauss = g.op("Mul", g.op("Exp", g.op("Neg", g.op("Mul", h, h))),
                 g.op("Exp", g.op("Neg", g.op("Mul", g.op("Sub", yc, h), g.op("Add", yc, h)))))
    mid = g.op("Div", g.op("Mul", gauss, g.poly(_ERF_C, y)), g.poly(_ERF_D, y))
    r = g.op("Reciprocal", ysq)
    tail = g.op("Div", g.op("Mul", r, g.poly(_ERF_P, r)), g.poly(_ERF_Q, r))
    large = g.op("Div", g.op("Mul", gauss, g.op("Sub", g.const(_RSQRT_PI), tail)), y)
    pos = g.where(g.op("LessOrEqual", y, g.const(0.46875)), small,
                  g.where(g.op("LessOrEqual", y, g.const(4.0)), mid, large))
    return g.where(g.op("Less", x, g.const(0)), g.op("Sub", g.const(2), pos), pos)


def _softplus(g, z):
    # max(z, 0) + log(1 + e^{-|z|}), as the engine: never overflows.
    return g.op("Add", g.op("Relu", z),
                g.op("Log", g.op("Add", g.const(1), g.op("Exp", g.op("Neg", g.op("Abs", z))))))


def _expm1_neg_part(g, z):
    """e^{min(z, 0)} - 1: the negative branch of elu/selu (0 for z >= 0)."""
    return g.op("Sub", g.op("Exp", g.op("Min", z, g.const(0))), g.const(1))


# Name -> formula(g, z) returning the name of f(z), for every activation of the engine: the hidden
# ones (cprop._engine.HIDDEN_ACTIVATIONS) and the output ones (identity, logistic, softmax, exp).
# Each is the engine's formula (src/cprop/_activations.pxd) in operators onnxruntime runs in
# float and double.  A new activation is one entry here (tests/integration/test_onnx.py checks that
# every engine activation has one and that onnxruntime reproduces predict with it).
ACTIVATIONS = {
    "identity": lambda g, z: z,
    "logistic": lambda g, z: g.op("Sigmoid", z),
    "tanh": lambda g, z: g.op("Tanh", z),
    "relu": lambda g, z: g.op("Relu", z),
    "leaky_relu": lambda g, z: g.op("Max", z, g.op("Mul", g.const(LEAKY_SLOPE), z)),
    "elu": lambda g, z: g.op("Add", g.op("Relu", z), _expm1_neg_part(g, z)),
    "selu": lambda g, z: g.op("Add", g.op("Mul", g.const(SELU_LAMBDA), g.op("Relu", z)),
                              g.op("Mul", g.const(SELU_LAMBDA * SELU_ALPHA),
                                   _expm1_neg_part(g, z))),
    "softplus": _softplus,
    # z Phi(z), Phi(z) = erfc(-z / sqrt 2) / 2
    "gelu": lambda g, z: g.op("Mul", z, g.op("Mul", g.const(0.5), _erfc(
        g, g.op("Mul", g.const(-SQRT1_2), z)))),
    # z sigmoid(2u), u = sqrt(2/pi) (z + 0.044715 z^3)
    "gelu_tanh": lambda g, z: g.op("Mul", z, g.op("Sigmoid", g.op("Mul", g.const(2), g.op(
        "Mul", g.const(SQRT_2_PI), g.op("Add", z, g.op(
            "Mul", g.const(GELU_C), g.op("Mul", g.op("Mul", z, z), z))))))),
    "silu": lambda g, z: g.op("Mul", z, g.op("Sigmoid", z)),
    "mish": lambda g, z: g.op("Mul", z, g.op("Tanh", _softplus(g, z))),
    # output layers; softmax over axis 1, the class axis of a (n_samples, n_classes) tensor
    "softmax": lambda g, z: g.op("Softmax", z, axis=1),
    "exp": lambda g, z: g.op("Exp", z),
}


def _activation(name, where):
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"cprop.onnx: the {where} activation {name!r} has no ONNX converter (known: "
            f"{sorted(ACTIVATIONS)}). This model cannot be exported until cprop.onnx.ACTIVATIONS "
            "has an entry for it."
        ) from None


def _hidden_activations(model):
    n_hidden = len(model.coefs_) - 1
    act = model.activation
    if isinstance(act, str):
        return [act] * n_hidden
    act = list(act)
    if len(act) != n_hidden:
        raise ValueError(f"cprop.onnx: {len(act)} hidden activations for {n_hidden} hidden layers.")
    return act


def _proto_dtype(operator):
    proto = guess_proto_type(operator.inputs[0].type)
    return proto if proto == onnx_proto.TensorProto.DOUBLE else onnx_proto.TensorProto.FLOAT


def _forward(scope, operator, container, proto):
    """Nodes of the forward pass; returns the name of the output activations (n, n_outputs)."""
    model = operator.raw_operator
    if model._has_block():
        raise ValueError(
            "cprop.onnx: this model's network starts with an input block (per-feature scale / "
            "periodic embedding layers, as the tabular estimators' inner networks have), which "
            "has no ONNX converter: only dense layers are exported. Fit without the block "
            "(numeric_embedding='none', scale_layer=False) to export the network.")
    dtype = np.float64 if proto == onnx_proto.TensorProto.DOUBLE else np.float32
    acts = [_activation(a, "hidden") for a in _hidden_activations(model)]
    acts.append(_activation(model.out_activation_, "output"))

    g = _Nodes(scope, container, proto)
    x = scope.get_unique_variable_name("cast_input")
    apply_cast(scope, operator.inputs[0].full_name, x, container, to=proto)
    for i, (W, b, act) in enumerate(zip(model.coefs_, model.intercepts_, acts)):
        W = np.asarray(W, dtype=dtype)
        b = np.asarray(b, dtype=dtype)
        w_name = scope.get_unique_variable_name(f"coefficient{i}")
        b_name = scope.get_unique_variable_name(f"intercepts{i}")
        container.add_initializer(w_name, proto, W.shape, W.ravel())
        container.add_initializer(b_name, proto, [1, b.shape[0]], b)
        z_mul = scope.get_unique_variable_name(f"mul_result{i}")
        z = scope.get_unique_variable_name(f"add_result{i}")
        container.add_node("MatMul", [x, w_name], z_mul,
                           name=scope.get_unique_operator_name("MatMul"))
        apply_add(scope, [z_mul, b_name], z, container, broadcast=1)
        x = act(g, z)
    return x


def _class_labels(scope, model):
    """(labels array for the graph, ONNX tensor element type); with ``nocl=True`` the labels are
    the class indices 0..k-1 (skl2onnx's ``get_label_classes``)."""
    classes = np.asarray(get_label_classes(scope, model))
    # Float labels are integral (fit rejects continuous targets), so int64 holds them exactly.
    if classes.dtype.kind in "iubf":
        return classes.astype(np.int64), onnx_proto.TensorProto.INT64
    return np.array([str(c).encode("utf-8") for c in classes]), onnx_proto.TensorProto.STRING


def _multilabel(model):
    return getattr(model._label_binarizer, "y_type_", None) == "multilabel-indicator"


def shape_classifier(operator):
    """Output types: skl2onnx's linear-classifier rule, with (n, n_labels) labels for multilabel
    targets."""
    calculate_linear_classifier_output_shapes(operator)
    model = operator.raw_operator
    if _multilabel(model):
        n = operator.inputs[0].get_first_dimension()
        operator.outputs[0].set_type(Int64TensorType(shape=[n, len(model.classes_)]))


def shape_regressor(operator):
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    inp = operator.inputs[0].type
    cls = inp.__class__ if isinstance(inp, (FloatTensorType, DoubleTensorType)) else FloatTensorType
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].set_type(cls([n, operator.raw_operator.n_outputs_]))


def convert_classifier(scope, operator, container):
    """Label and probabilities, as ``predict`` and ``predict_proba``."""
    model = operator.raw_operator
    proto = _proto_dtype(operator)
    classes, label_type = _class_labels(scope, model)
    out = _forward(scope, operator, container, proto)
    label_name, proba_name = operator.outputs[0].full_name, operator.outputs[1].full_name

    if _multilabel(model):
        apply_identity(scope, out, proba_name, container)
        half = scope.get_unique_variable_name("threshold")
        container.add_initializer(half, proto, [], [0.5])
        ind = scope.get_unique_variable_name("indicators")
        # predict: the label binarizer's threshold (out > 0.5 -> 1); Greater, not ai.onnx.ml's
        # Binarizer, which onnxruntime implements for float only.
        container.add_node("Greater", [out, half], ind,
                           name=scope.get_unique_operator_name("Greater"))
        apply_cast(scope, ind, label_name, container, to=onnx_proto.TensorProto.INT64)
        return

    if model.n_outputs_ == 1:  # binary: P(class 1) = out, P(class 0) = 1 - out
        one = scope.get_unique_variable_name("one")
        container.add_initializer(one, proto, [], [1])
        neg = scope.get_unique_variable_name("negative_class_proba")
        apply_sub(scope, [one, out], neg, container, broadcast=1)
        apply_concat(scope, [neg, out], proba_name, container, axis=1)
    else:
        apply_identity(scope, out, proba_name, container)

    # predict: the class of the largest probability (the first on ties, as numpy's argmax; for
    # a binary model p > 1 - p exactly when p > 0.5, the binarizer's rule).
    classes_name = scope.get_unique_variable_name("classes")
    container.add_initializer(classes_name, label_type, classes.shape, classes.tolist())
    idx = scope.get_unique_variable_name("argmax_output")
    container.add_node("ArgMax", proba_name, idx, axis=1,
                       name=scope.get_unique_operator_name("ArgMax"))
    picked = scope.get_unique_variable_name("array_feature_extractor_result")
    container.add_node("ArrayFeatureExtractor", [classes_name, idx], picked,
                       op_domain="ai.onnx.ml",
                       name=scope.get_unique_operator_name("ArrayFeatureExtractor"))
    apply_reshape(scope, picked, label_name, container, desired_shape=(-1,))


def convert_regressor(scope, operator, container):
    """Predictions of shape (n_samples, n_outputs), as ``predict`` (2-D even for one output)."""
    proto = _proto_dtype(operator)
    out = _forward(scope, operator, container, proto)
    apply_identity(scope, out, operator.outputs[0].full_name, container)


def register():
    """Register both estimators with skl2onnx (done on ``import cprop.onnx``; idempotent).

    Examples
    --------
    >>> from skl2onnx import supported_converters
    >>> import cprop.onnx
    >>> cprop.onnx.register()
    >>> "CpropMLPClassifier" in supported_converters(from_sklearn=False)
    True
    """
    update_registered_converter(
        MLPClassifier, "CpropMLPClassifier", shape_classifier, convert_classifier,
        options={"zipmap": [True, False, "columns"], "output_class_labels": [False, True],
                 "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "CpropMLPRegressor", shape_regressor,
                                convert_regressor)
    # the tabular estimators' inner networks (``mlp_``): exported when they have no input block
    from ._tabular import _TabularInnerClassifier, _TabularInnerRegressor
    update_registered_converter(
        _TabularInnerClassifier, "CpropTabularInnerClassifier", shape_classifier,
        convert_classifier,
        options={"zipmap": [True, False, "columns"], "output_class_labels": [False, True],
                 "nocl": [True, False]})
    update_registered_converter(_TabularInnerRegressor, "CpropTabularInnerRegressor",
                                shape_regressor, convert_regressor)


register()
