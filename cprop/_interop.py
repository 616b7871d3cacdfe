"""cprop models outside cprop: scikit-learn's own estimators, safe persistence, documentation links.

Design
1. ``to_sklearn`` builds scikit-learn's ``MLPClassifier``/``MLPRegressor`` with the same
   hyperparameters and copies of the fitted state: weights (scikit-learn's per-layer lists, not
   views of cprop's flat vector), labels, loss history and the optimizer state, split from
   cprop's flat vectors into scikit-learn's per-layer order (all W, then all b), so that the
   scikit-learn model predicts the same and continues training (``partial_fit``) as cprop's would.
   cprop's training-only options (``_DROPPED_PARAMS``: n_threads, class_weight, init, n_init,
   callbacks, scoring, dropout, clipping, monitoring, warm-up, weight decay, the weight-decay and
   dropout schedules, and the loss parameters of cprop/_loss_list.py: huber_delta,
   label_smoothing) are dropped and training-only values scikit-learn lacks are mapped
   (``_SKLEARN_VALUES``: adamw -> adam, cosine and coslog4 -> constant, and each loss to the
   list's ``sklearn`` loss of the same output activation:
   absolute_error/huber -> squared_error): the network, and so every
   prediction, is the same; scikit-learn's ``partial_fit`` then continues without them.  What
   scikit-learn cannot run is a ValueError saying why: a hidden activation it lacks, different
   activations per layer, a cprop-only parameter not known to be training-only (at a
   non-default value).
2. Persistence (pickle, joblib, ``skops.io``) stores the optimizer state as a plain dict of numpy
   arrays and builtins (``optimizer_to_builtins``), so ``skops.io.get_untrusted_types`` reports
   only cprop's public estimator classes; loading turns the dict back into the engine's
   ``OptimizerState`` (``optimizer_from_builtins``). Every attribute of the state travels, so a
   new optimizer field needs no change here.
3. Loading checks meaning, not only shape (``check_loaded_state``, from ``__setstate__``): a
   fitted model's hyperparameters must satisfy ``_parameter_constraints``, its activations be
   known, ``out_activation_`` be the one its type and loss give, its weights real floating
   point (float32 or float64), finite and shaped as ``n_features_in_``, ``n_outputs_``,
   ``classes_`` and ``n_layers_`` say, and its optimizer state likewise.  Anything else is a
   ``ValueError`` naming the attribute, raised by ``pickle.load`` / ``skops.io.load``: a
   tampered or corrupted file never loads into a model that predicts garbage.  Unfitted models
   are not checked (``fit`` validates them, as scikit-learn's do).
4. The shipped callbacks (``ModelCheckpoint``, ``HistoryLogger``) are stored as builtins too
   (their parameters and state), so a model that has them still lists only its estimator class
   in ``skops.io.get_untrusted_types``.  A user's own callback class is stored as itself: it is
   code that loading would create, so skops rightly lists it.
5. The estimators' HTML repr links to their documentation (scikit-learn's ``_doc_link_*``
   hooks): the README section that documents them, on the project's repository.

Examples
--------
>>> import pickle
>>> from sklearn.datasets import load_iris
>>> from cprop import MLPClassifier
>>> X, y = load_iris(return_X_y=True)
>>> clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
>>> clf = clf.partial_fit(X, y, classes=[0, 1, 2])
>>> sorted(clf.__getstate__()["_optimizer"])[:4]
['__cprop_optimizer_state__', 'batch_schedule', 'beta_1', 'beta_2']
>>> type(pickle.loads(pickle.dumps(clf))._optimizer).__name__
'OptimizerState'
>>> clf._get_doc_link()
'https://github.com/cprop/cprop/blob/main/README.md#drop-in-for-scikit-learn'
"""
import copy
import inspect
from numbers import Integral, Real

import numpy as np

from . import _loss_list

# Where the estimators are documented.  One place: the HTML repr's "?" link and the docstrings
# derive from it.  (The repository's public URL; update it here if the project moves.)
REPOSITORY_URL = "https://github.com/cprop/cprop"
DOC_LINK_TEMPLATE = REPOSITORY_URL + "/blob/main/README.md#{anchor}"
# README section (GitHub's heading anchor) documenting each public estimator.
DOC_ANCHORS = {"MLPClassifier": "drop-in-for-scikit-learn",
               "MLPRegressor": "drop-in-for-scikit-learn"}

# Marks a persisted optimizer state (a dict) so that loading can tell it from other dicts.
_OPTIMIZER_KEY = "__cprop_optimizer_state__"


def doc_link_params(estimator):
    """Fields of ``DOC_LINK_TEMPLATE`` for ``estimator`` (scikit-learn's
    ``_doc_link_url_param_generator`` hook)."""
    name = type(estimator).__name__
    return {"anchor": DOC_ANCHORS.get(name, "drop-in-for-scikit-learn"), "estimator_name": name}


# -- persistence ----------------------------------------------------------------------------------
def optimizer_to_builtins(state):
    """The engine's ``OptimizerState`` as a dict of numpy arrays and Python builtins."""
    out = {_OPTIMIZER_KEY: 1}
    for key, value in vars(state).items():
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def optimizer_from_builtins(data):
    """Inverse of ``optimizer_to_builtins`` (anything else is returned unchanged)."""
    if not (isinstance(data, dict) and data.get(_OPTIMIZER_KEY) == 1):
        return data
    from ._engine import OptimizerState

    state = OptimizerState.__new__(OptimizerState)
    # __setstate__ gives fields added since the file was written their defaults
    state.__setstate__({k: v for k, v in data.items() if k != _OPTIMIZER_KEY})
    return state


# -- loading: check meaning as well as shape -----------------------------------------------------
_REAL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _bad(est, attr, problem):
    raise ValueError(
        f"Cannot load this {type(est).__name__}: {attr} {problem}. A model cprop saved never "
        "has this; the file was altered or is not a cprop model.")


def _check_count(est, attr, value, low=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < low:
        _bad(est, attr, f"is {value!r}, not an integer >= {low}")


def _check_weights(est, attr, arrays, shapes, dtype):
    if not isinstance(arrays, (list, tuple)) or len(arrays) != len(shapes):
        _bad(est, attr, f"must be a list of n_layers_ - 1 = {len(shapes)} arrays")
    for i, (a, shape) in enumerate(zip(arrays, shapes)):
        where = f"{attr}[{i}]"
        if not isinstance(a, np.ndarray):
            _bad(est, where, f"is a {type(a).__name__}, not a numpy array")
        if a.dtype != dtype:
            _bad(est, where, f"has dtype {a.dtype}; the weights must all be {dtype} "
                             "(float32 or float64, as fit makes them)")
        if a.shape != shape:
            _bad(est, where, f"has shape {a.shape}; n_features_in_, n_outputs_ and the layer "
                             f"sizes give {shape}")
        if not np.isfinite(a).all():
            _bad(est, where, "holds NaN or infinite values")


def _expected_out_activation(est):
    from sklearn.base import is_classifier

    if not is_classifier(est):
        return _loss_list.BY_NAME[est.loss]["output"]
    y_type = getattr(getattr(est, "_label_binarizer", None), "y_type_", None)
    return "softmax" if y_type == "multiclass" else "logistic"


def _check_optimizer(est, n_params, dtype):
    state = est.__dict__.get("_optimizer")
    if state is None:
        return
    from ._engine import OptimizerState

    if not isinstance(state, OptimizerState):
        _bad(est, "_optimizer", f"is a {type(state).__name__}, not the engine's optimizer state")
    for key, value in vars(state).items():
        attr = f"_optimizer.{key}"
        if isinstance(value, np.ndarray):
            if value.dtype not in _REAL_FLOATS:
                _bad(est, attr, f"has dtype {value.dtype}, not float32 or float64")
            if key in ("s1", "s2") and value.shape != (n_params,):
                _bad(est, attr, f"has shape {value.shape}; the model has {n_params} parameters")
            if not np.isfinite(value).all():
                _bad(est, attr, "holds NaN or infinite values")
        elif isinstance(value, Real) and not isinstance(value, (bool, np.bool_)):
            if not np.isfinite(value):
                _bad(est, attr, f"is {value!r}, not finite")
    for key, low, high in (("learning_rate", 0.0, None), ("beta_1", 0.0, 1.0),
                           ("beta_2", 0.0, 1.0), ("momentum", 0.0, 1.0), ("epsilon", 0.0, None),
                           ("t", 0, None)):
        value = getattr(state, key, None)
        if value is None:
            continue
        ok = (isinstance(value, Real) and value >= low and (high is None or value <= high)
              and (key not in ("learning_rate", "epsilon") or value > 0))
        if not ok:
            _bad(est, f"_optimizer.{key}", f"is {value!r}, out of its range")


def check_loaded_state(est):
    """Raise ValueError, naming the attribute, unless a loaded fitted model makes sense
    (design 3); an unfitted one is left to ``fit``."""
    if "coefs_" not in est.__dict__:
        return
    from sklearn.base import is_classifier
    from sklearn.utils._param_validation import (
        InvalidParameterError, validate_parameter_constraints)

    from ._engine import HIDDEN_ACTIVATIONS

    name = type(est).__name__
    params = {k: est.__dict__[k] for k in est._get_param_names() if k in est.__dict__}
    try:
        validate_parameter_constraints(est._parameter_constraints, params, caller_name=name)
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            f"Cannot load this {name}: {exc} A model cprop saved never has this; the file was "
            "altered or is not a cprop model.") from None

    d = est.__dict__
    for attr in ("n_features_in_", "n_outputs_"):
        _check_count(est, attr, d.get(attr))
    _check_count(est, "n_layers_", d.get("n_layers_"), low=2)
    n_hidden = d["n_layers_"] - 2
    act = d.get("activation")
    acts = [act] * n_hidden if isinstance(act, str) else list(act)
    unknown = [a for a in acts if not isinstance(a, str) or a not in HIDDEN_ACTIVATIONS]
    if unknown or len(acts) != n_hidden:
        _bad(est, "activation", f"is {act!r}; a model with {n_hidden} hidden layers needs "
                                f"that many names from {sorted(HIDDEN_ACTIVATIONS)}")
    expected = _expected_out_activation(est)
    if d.get("out_activation_") != expected:
        kind = "classifier" if is_classifier(est) else f"regressor with loss={d.get('loss')!r}"
        _bad(est, "out_activation_", f"is {d.get('out_activation_')!r}; this {kind} "
                                     f"computes its outputs with {expected!r}")
    if is_classifier(est):
        classes = d.get("classes_")
        binarizer = d.get("_label_binarizer")
        y_type = getattr(binarizer, "y_type_", None)
        n_classes = len(classes) if hasattr(classes, "__len__") else -1
        if y_type not in ("binary", "multiclass", "multilabel-indicator"):
            _bad(est, "_label_binarizer", "is not fitted to classification targets")
        want = 1 if y_type == "binary" else n_classes
        if (y_type == "binary" and n_classes != 2) or n_classes < 2 or d["n_outputs_"] != want:
            _bad(est, "classes_", f"has {n_classes} classes for {d['n_outputs_']} outputs "
                                  f"({y_type} targets)")
        if not np.array_equal(np.asarray(binarizer.classes_), np.asarray(classes)):
            _bad(est, "classes_", "differs from the label binarizer's classes")

    coefs, n_weights = d.get("coefs_"), d["n_layers_"] - 1
    if not isinstance(coefs, (list, tuple)) or len(coefs) != n_weights:
        _bad(est, "coefs_", f"must be a list of n_layers_ - 1 = {n_weights} arrays")
    dtype = getattr(coefs[0], "dtype", None)
    if dtype not in _REAL_FLOATS:
        _bad(est, "coefs_[0]", f"has dtype {dtype}; the weights must be float32 or float64")
    # layer sizes: the inputs and outputs the model declares, the hidden ones its weights have
    units = ([d["n_features_in_"]] + [c.shape[1] if getattr(c, "ndim", 0) == 2 else -1
                                      for c in coefs[:-1]] + [d["n_outputs_"]])
    n_block, block_views = 0, None
    if est._has_block():
        # an input block (the tabular estimators' inner networks): dense layer 0 reads its output
        try:
            net = est._network(units, dtype)
        except (ValueError, TypeError) as exc:
            _bad(est, "input block", f"does not describe a network ({exc})")
        units[0] = net.dense_sizes[0]
        block_views = net.block_params(np.zeros(net.n_params, dtype=dtype))
        n_block = sum(v.size for layer in block_views for v in layer.values())
    _check_weights(est, "coefs_", coefs,
                   [(units[i], units[i + 1]) for i in range(n_weights)], dtype)
    _check_weights(est, "intercepts_", d.get("intercepts_"),
                   [(units[i + 1],) for i in range(n_weights)], dtype)
    if block_views is not None:
        given = d.get("input_block_params_")
        if not isinstance(given, list) or len(given) != len(block_views):
            _bad(est, "input_block_params_", f"must be a list of {len(block_views)} dicts")
        for i, (g, v) in enumerate(zip(given, block_views)):
            if not isinstance(g, dict) or set(g) != set(v):
                _bad(est, f"input_block_params_[{i}]", f"must have the keys {sorted(v)}")
            for key, view in v.items():
                _check_weights(est, f"input_block_params_[{i}][{key!r}]", [g[key]],
                               [view.shape], dtype)
    n_params = sum(units[i] * units[i + 1] + units[i + 1] for i in range(n_weights)) + n_block
    best = d.get("_best_params")
    if best is not None and (not isinstance(best, np.ndarray) or best.dtype not in _REAL_FLOATS
                             or best.shape != (n_params,)):
        _bad(est, "_best_params", f"is not a float vector of the model's {n_params} parameters")
    _check_optimizer(est, n_params, dtype)


# -- scikit-learn's own estimators ----------------------------------------------------------------
# cprop parameters scikit-learn's MLPs do not have, all training-time options: the fitted
# network runs the same without them (dropout is inverted: predict never uses it).  Converting
# drops them; scikit-learn's partial_fit then continues without them.
_DROPPED_PARAMS = ("n_threads", "class_weight", "init", "n_init", "callbacks", "scoring",
                   "dropout", "clip_grad_norm", "clip_grad_value", "monitor_gradients",
                   "warmup_iter", "weight_decay", "weight_decay_schedule",
                   "dropout_schedule") + tuple(_loss_list.PARAMS)
# Values of shared parameters that scikit-learn lacks, all training-time too, and the value the
# converted estimator gets: adamw continues as Adam (its moments carried, no weight decay), the
# cosine and coslog4 schedules as 'constant' at the learning rate reached (sgd; Adam uses
# learning_rate_init), a loss scikit-learn lacks as the list's ``sklearn`` loss of the same output
# activation (absolute-error and Huber regressors as squared error).
_SKLEARN_VALUES = {("solver", "adamw"): "adam", ("learning_rate", "cosine"): "constant",
                   ("learning_rate", "coslog4"): "constant",
                   **{("loss", name): sk for name, sk in _loss_list.SKLEARN_LOSS.items()
                      if sk != name}}
# Fitted attributes of scikit-learn's MLPs (cprop's other ones, e.g. history_, stay behind).
_SKLEARN_FITTED = ("n_features_in_", "feature_names_in_", "classes_", "n_outputs_", "n_layers_",
                   "out_activation_", "n_iter_", "t_", "loss_", "loss_curve_", "best_loss_",
                   "validation_scores_", "best_validation_score_")


def _sklearn_class(estimator):
    from sklearn.base import is_classifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    return MLPClassifier if is_classifier(estimator) else MLPRegressor


def _sklearn_activation(estimator, sk_class):
    """The one hidden activation scikit-learn will run, or ValueError saying why not."""
    from sklearn.neural_network._base import ACTIVATIONS

    act = estimator.activation
    names = [act] if isinstance(act, str) else list(act)
    if len(set(names)) > 1:
        raise ValueError(
            f"to_sklearn: this model has one activation per hidden layer ({act!r}); "
            f"scikit-learn's {sk_class.__name__} runs a single activation in every hidden layer.")
    name = names[0] if names else "relu"    # no hidden layer: any name (it is never applied)
    hidden = sorted(set(ACTIVATIONS) - {"softmax"})
    if name not in hidden:
        raise ValueError(
            f"to_sklearn: scikit-learn's {sk_class.__name__} has no {name!r} activation (it has "
            f"{hidden}), so it cannot run this model. Export it with cprop.onnx instead.")
    return name


def _check_expressible(estimator, sk_class):
    """scikit-learn's estimator with the hyperparameters it can take (design 1), or ValueError
    naming what it cannot express."""
    from sklearn.utils._param_validation import InvalidParameterError

    params = estimator.get_params(deep=False)
    sk_names = set(inspect.signature(sk_class.__init__).parameters) - {"self"}
    defaults = {name: p.default
                for name, p in inspect.signature(type(estimator).__init__).parameters.items()}
    for name in sorted(set(params) - sk_names - set(_DROPPED_PARAMS)):
        value = params[name]
        default = defaults.get(name, inspect.Parameter.empty)
        same = value is default
        if not same:
            try:
                same = bool(np.all(value == default))
            except Exception:  # noqa: BLE001 (uncomparable values are different values)
                same = False
        if not same:
            raise ValueError(
                f"to_sklearn: scikit-learn's {sk_class.__name__} has no parameter {name!r}, and "
                f"this model uses {name}={value!r} (the default is {default!r}), which cprop "
                "does not know to be training-only. Set it to its default to convert."
            )
    kept = {k: v for k, v in params.items() if k in sk_names}
    for key, value in kept.items():
        if isinstance(value, str) and (key, value) in _SKLEARN_VALUES:
            kept[key] = _SKLEARN_VALUES[key, value]
    kept["activation"] = _sklearn_activation(estimator, sk_class)
    sk = sk_class(**kept)
    try:
        sk._validate_params()
    except InvalidParameterError as exc:
        raise ValueError(
            f"to_sklearn: scikit-learn's {sk_class.__name__} cannot express this model: {exc}"
        ) from None
    return sk


def _split_flat(estimator, flat):
    """A flat engine vector as scikit-learn's per-layer list ``coefs + intercepts`` (copies)."""
    net = estimator._network(estimator._layer_units(), flat.dtype)
    return ([np.array(w) for w in net.coefs(flat)]
            + [np.array(b) for b in net.intercepts(flat)])


def _sklearn_optimizer(estimator, sk, params):
    """scikit-learn's SGD/Adam optimizer object holding the cprop optimizer's state."""
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

    state = estimator._optimizer
    if state.solver in ("adam", "adamw"):
        opt = AdamOptimizer(params, estimator.learning_rate_init, estimator.beta_1,
                            estimator.beta_2, estimator.epsilon)
        opt.t = int(state.t)
        opt.ms = _split_flat(estimator, state.s1)
        opt.vs = _split_flat(estimator, state.s2)
    else:
        opt = SGDOptimizer(params, estimator.learning_rate_init, sk.learning_rate,
                           estimator.momentum, estimator.nesterovs_momentum, estimator.power_t)
        opt.learning_rate = float(state.learning_rate)
        opt.velocities = _split_flat(estimator, state.s1)
    return opt


def to_sklearn(estimator):
    """scikit-learn's own MLP estimator equal to a fitted cprop one (see ``BaseMLP.to_sklearn``)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    sk_class = _sklearn_class(estimator)
    sk = _check_expressible(estimator, sk_class)
    if estimator.out_activation_ not in _sklearn_output_activations():
        raise ValueError(
            f"to_sklearn: output activation {estimator.out_activation_!r} has no counterpart in "
            f"scikit-learn's MLP (it has {sorted(_sklearn_output_activations())})."
        )

    state = estimator.__dict__
    # scikit-learn's fitted attributes as independent copies; the weights as scikit-learn's
    # separate per-layer arrays rather than views of cprop's flat vector.
    for key in _SKLEARN_FITTED:
        if key in state:
            setattr(sk, key, copy.deepcopy(state[key]))
    sk.coefs_ = [np.array(w) for w in estimator.coefs_]
    sk.intercepts_ = [np.array(b) for b in estimator.intercepts_]
    for key in ("_label_binarizer", "_no_improvement_count"):
        if key in state:
            setattr(sk, key, copy.deepcopy(state[key]))
    best = state.get("_best_params")
    if best is not None and best.shape == (sum(w.size + b.size for w, b in
                                               zip(sk.coefs_, sk.intercepts_)),):
        split = _split_flat(estimator, best)
        n = len(sk.coefs_)
        sk._best_coefs, sk._best_intercepts = split[:n], split[n:]
    if state.get("_optimizer") is not None:
        sk._optimizer = _sklearn_optimizer(estimator, sk, sk.coefs_ + sk.intercepts_)
    return sk


def _sklearn_output_activations():
    from sklearn.neural_network._base import ACTIVATIONS

    return set(ACTIVATIONS)
