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
2. Activations are one table, ``ACTIVATIONS``: name -> function adding the nodes for it. A new
   engine activation is one entry there; a model using a name the table lacks raises
   ``ValueError`` naming it (never a silently wrong graph).
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


def _unary(op_type):
    """An activation that is one ONNX operator."""
    def add(scope, container, x, y):
        container.add_node(op_type, [x], [y], name=scope.get_unique_operator_name(op_type))
    add.op_type = op_type
    return add


def _softmax(scope, container, x, y):
    # axis=1 (the class axis) is what every opset means for a 2-D (n_samples, n_classes) tensor.
    container.add_node("Softmax", [x], [y], name=scope.get_unique_operator_name("Softmax"),
                       axis=1)


# Name -> function(scope, container, input_name, output_name) adding the activation's nodes.
# Hidden activations (identity, logistic, tanh, relu) and output ones (identity, logistic,
# softmax, exp) of the engine.  A new activation is one entry here.
ACTIVATIONS = {
    "identity": _unary("Identity"),
    "logistic": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "relu": _unary("Relu"),
    "softmax": _softmax,
    "exp": _unary("Exp"),
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
    dtype = np.float64 if proto == onnx_proto.TensorProto.DOUBLE else np.float32
    acts = [_activation(a, "hidden") for a in _hidden_activations(model)]
    acts.append(_activation(model.out_activation_, "output"))

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
        a = scope.get_unique_variable_name(f"activations{i}")
        container.add_node("MatMul", [x, w_name], z_mul,
                           name=scope.get_unique_operator_name("MatMul"))
        apply_add(scope, [z_mul, b_name], z, container, broadcast=1)
        act(scope, container, z, a)
        x = a
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


register()
