"""cprop models outside cprop: scikit-learn's own estimators, safe persistence, documentation links.

Design
1. ``to_sklearn`` builds scikit-learn's ``MLPClassifier``/``MLPRegressor`` with the same
   hyperparameters and copies of the fitted state: weights (scikit-learn's per-layer lists, not
   views of cprop's flat vector), labels, loss history and the optimizer state, split from
   cprop's flat vectors into scikit-learn's per-layer order (all W, then all b), so that the
   scikit-learn model predicts the same and continues training (``partial_fit``) as cprop's would.
   ``n_threads`` has no counterpart and is dropped (scikit-learn's MLP threads through BLAS).
   Any other cprop-only parameter at a non-default value, or a value scikit-learn's parameter
   validation rejects, is an error naming it: such a model cannot be expressed.
2. Persistence (pickle, joblib, ``skops.io``) stores the optimizer state as a plain dict of numpy
   arrays and builtins (``optimizer_to_builtins``), so ``skops.io.get_untrusted_types`` reports
   only cprop's public estimator classes; loading turns the dict back into the engine's
   ``OptimizerState`` (``optimizer_from_builtins``). Every attribute of the state travels, so a
   new optimizer field needs no change here.
3. The estimators' HTML repr links to their documentation (scikit-learn's ``_doc_link_*``
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
['__cprop_optimizer_state__', 'beta_1', 'beta_2', 'clip_grad_norm']
>>> type(pickle.loads(pickle.dumps(clf))._optimizer).__name__
'OptimizerState'
>>> clf._get_doc_link()
'https://github.com/cprop/cprop/blob/main/README.md#drop-in-for-scikit-learn'
"""
import copy
import inspect

import numpy as np

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
    state.__dict__.update({k: v for k, v in data.items() if k != _OPTIMIZER_KEY})
    return state


# -- scikit-learn's own estimators ----------------------------------------------------------------
# cprop parameters scikit-learn's MLPs do not have, but whose every value it can still express
# (they change how the arithmetic is scheduled, not what is computed).
_DROPPED_PARAMS = ("n_threads",)


def _sklearn_class(estimator):
    from sklearn.base import is_classifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    return MLPClassifier if is_classifier(estimator) else MLPRegressor


def _check_expressible(estimator, sk_class):
    """Raise ValueError for a configuration scikit-learn's MLP cannot express."""
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
                f"this model uses {name}={value!r} (the default is {default!r}), which changes "
                "what it computes. Only models whose cprop-only parameters are at their "
                "defaults (n_threads excepted) can be converted."
            )
    sk = sk_class(**{k: v for k, v in params.items() if k in sk_names})
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
    if state.solver == "adam":
        opt = AdamOptimizer(params, estimator.learning_rate_init, estimator.beta_1,
                            estimator.beta_2, estimator.epsilon)
        opt.t = int(state.t)
        opt.ms = _split_flat(estimator, state.s1)
        opt.vs = _split_flat(estimator, state.s2)
    else:
        opt = SGDOptimizer(params, estimator.learning_rate_init, estimator.learning_rate,
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
    # Public fitted attributes (trailing underscore) as independent copies; the weights as
    # scikit-learn's separate per-layer arrays rather than views of cprop's flat vector.
    for key, value in state.items():
        if key.endswith("_") and not key.startswith("_"):
            setattr(sk, key, copy.deepcopy(value))
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
