"""The losses: one entry each, the only list of them.

``setup.py`` reads this file (without importing cprop, as it reads ``_activation_list.py``) and
renders ``src/cprop/_losses.pxi.tp`` from it into the engine's enum (``LOSS_<NAME>``), the names
and the per-row dispatch (loss value and delta) that ``src/cprop/_losses.pyx`` includes below its
hand-written loss functions.  At run time every Python table is derived here: ``cprop._losses``
(``LOSS_CODES``), ``cprop._engine`` (``OUTPUT_LOSS``, ``OTHER_LOSSES``), the estimators (the
regressor's ``loss`` options, the output activation a loss gives, each loss parameter's
constraint, default and documentation), ``cprop._training_loop`` (where a loss parameter applies,
target checks) and ``cprop._interop`` (the scikit-learn loss ``to_sklearn`` gives, the parameters
it drops, the output activation a loaded model must have).

Adding a loss: one entry here and its pair of row functions (value and gradient, side by side) in
``src/cprop/_losses.pyx``; then rebuild (``python setup.py build_ext --inplace``).  A new loss
parameter is the entry's ``param`` (the estimator whose ``loss`` offers it takes it as a
keyword argument, see ``cprop._mlp``).

Fields
------
name       the engine's name (``Network(loss=...)``, ``loss_and_delta``); the regressor's ``loss=``.
output     the output activation it pairs with (``cprop/_activation_list.py``).
canonical  the output activation's own loss (at most one per activation): the one an estimator
           uses unless its ``loss`` asks for another.
estimator  'regressor': offered by ``MLPRegressor(loss=...)``; 'classifier': chosen by
           ``MLPClassifier`` from its targets (``loss='log_loss'`` there for both).
sklearn    the scikit-learn loss ``to_sklearn`` gives (the same output activation, so the same
           predictions; scikit-learn's ``partial_fit`` then continues with its loss).
targets    'real', 'nonnegative' (y >= 0 is checked, for y and y_val) or 'labels'.
value      the C function row -> loss value:
           ``double f(const floating* y, const floating* p, intp_t n, double eps, double param)``.
grad       the C function row -> delta = f * dl/dz (z the output pre-activation):
           ``void g(const floating* y, const floating* p, floating* d, intp_t n, floating f,
           double param)``.
param      None, or the loss's one parameter (``_param``): its keyword ``name``, ``default``, range
           (``low``, ``high``, ``closed`` as scikit-learn's ``Interval``), ``doc``.  The engine
           receives its value as ``loss_param``.
doc        one sentence for the estimator's documentation.

The enum's values are the entries' positions (``codes()``), but nothing compares codes or depends
on their order: the dispatch tests each named ``LOSS_*`` (checked by reversing this list,
rebuilding and comparing fits bitwise).
"""


def _param(name, default, low, high, closed, doc):
    return {"name": name, "default": default, "low": low, "high": high, "closed": closed,
            "doc": doc}


def _loss(name, output, *, canonical, estimator, sklearn, value, grad, targets="real",
          param=None, doc=""):
    return {"name": name, "output": output, "canonical": canonical, "estimator": estimator,
            "sklearn": sklearn, "targets": targets, "value": value, "grad": grad, "param": param,
            "doc": doc}


LABEL_SMOOTHING = _param(
    "label_smoothing", 0.0, 0.0, 1.0, "left",
    "Label smoothing eps in [0, 1): the cross-entropy is taken against the targets "
    "``(1 - eps) * y + eps / K`` (K classes with a softmax output; K = 2 for each column of "
    "binary and multilabel targets), so its gradient is ``p - y'``. 0 (the default) is "
    "scikit-learn's loss, bit for bit. Predictions stay probabilities.")

HUBER_DELTA = _param(
    "huber_delta", 1.0, 0.0, None, "neither",
    "Threshold of the Huber loss, in the units of y (scale y or set it to the residual size "
    "beyond which points count as outliers). Used only with ``loss='huber'``.")

LOSSES = (
    _loss("squared_error", "identity", canonical=True, estimator="regressor",
          sklearn="squared_error", value="squared_loss", grad="residual_grad",
          doc="'squared_error': half the squared error, on an identity output."),
    _loss("log_loss", "softmax", canonical=True, estimator="classifier", sklearn="log_loss",
          targets="labels", value="log_loss", grad="log_loss_grad", param=LABEL_SMOOTHING,
          doc="'log_loss': cross-entropy of a softmax output (multiclass targets)."),
    _loss("binary_log_loss", "logistic", canonical=True, estimator="classifier",
          sklearn="log_loss", targets="labels", value="binary_log_loss",
          grad="binary_log_loss_grad", param=LABEL_SMOOTHING,
          doc="binary cross-entropy of a logistic output (binary and multilabel targets)."),
    _loss("poisson", "exp", canonical=True, estimator="regressor", sklearn="poisson",
          targets="nonnegative", value="poisson_loss", grad="residual_grad",
          doc="'poisson': half the Poisson deviance, on an exponential output (requires "
              "``y >= 0``)."),
    _loss("absolute_error", "identity", canonical=False, estimator="regressor",
          sklearn="squared_error", value="absolute_loss", grad="absolute_grad_row",
          doc="'absolute_error': ``|y - p|`` on an identity output, gradient ``sign(p - y)``."),
    _loss("huber", "identity", canonical=False, estimator="regressor", sklearn="squared_error",
          value="huber_loss", grad="huber_grad_row", param=HUBER_DELTA,
          doc="'huber': ``(y - p)^2 / 2`` where ``|y - p| <= huber_delta``, ``huber_delta * "
              "(|y - p| - huber_delta / 2)`` beyond, on an identity output; gradient ``p - y`` "
              "clipped to ``[-huber_delta, huber_delta]``."),
)

BY_NAME = {entry["name"]: entry for entry in LOSSES}


def codes():
    """Name -> the engine's ``LOSS_*`` code (the template renders the enum from this too)."""
    return {entry["name"]: code for code, entry in enumerate(LOSSES)}


# The output activation's own loss, and the others it may carry.
OUTPUT_LOSS = {e["output"]: e["name"] for e in LOSSES if e["canonical"]}
OTHER_LOSSES = {out: tuple(e["name"] for e in LOSSES if e["output"] == out and not e["canonical"])
                for out in dict.fromkeys(e["output"] for e in LOSSES if not e["canonical"])}
# MLPRegressor's ``loss`` options, in list order.
REGRESSOR_LOSSES = tuple(e["name"] for e in LOSSES if e["estimator"] == "regressor")
# Every loss parameter, once (two losses may share one: label smoothing).
PARAMS = {e["param"]["name"]: e["param"] for e in LOSSES if e["param"] is not None}
# The loss parameters each estimator takes as keyword arguments (those of the losses it may use).
ESTIMATOR_PARAMS = {
    kind: tuple(dict.fromkeys(e["param"]["name"] for e in LOSSES
                              if e["estimator"] == kind and e["param"] is not None))
    for kind in ("regressor", "classifier")}
# The loss scikit-learn's estimator gets from to_sklearn, per loss.
SKLEARN_LOSS = {e["name"]: e["sklearn"] for e in LOSSES}


def losses_of(output):
    """The losses an output activation may carry, its own first."""
    return (OUTPUT_LOSS[output],) + OTHER_LOSSES.get(output, ())


def param_range(param):
    """The range of a loss parameter in words: '> 0', 'in [0, 1)'."""
    low, high, closed = param["low"], param["high"], param["closed"]
    if high is None:
        return (">= " if closed in ("left", "both") else "> ") + f"{low:g}"
    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    return f"in {left}{low:g}, {high:g}{right}"


def in_range(param, value):
    """Whether ``value`` lies in the parameter's range."""
    low, high, closed = param["low"], param["high"], param["closed"]
    above = value >= low if closed in ("left", "both") else value > low
    below = high is None or (value <= high if closed in ("right", "both") else value < high)
    return bool(above and below)


def check_param(loss, value):
    """The loss parameter the engine uses: ``value`` checked against the range of ``loss``'s
    parameter (None: its default), as a float; None for a loss without one (then ``value`` must
    be None).  ValueError otherwise."""
    param = BY_NAME[loss]["param"]
    if param is None:
        if value is not None:
            raise ValueError(f"loss {loss!r} has no parameter; got loss_param={value!r}.")
        return None
    value = float(param["default"] if value is None else value)
    if not in_range(param, value):
        raise ValueError(f"{param['name']} must be {param_range(param)} (the parameter of loss "
                         f"{loss!r}); got {value!r}.")
    return value


def bad_targets(loss, y, what="y"):
    """A sentence saying why targets ``y`` (named ``what``) do not suit ``loss``, or None."""
    import numpy as np
    if BY_NAME[loss]["targets"] == "nonnegative" and np.any(np.asarray(y) < 0):
        return (f"Some value(s) of {what} are negative, which is not allowed with loss={loss!r} "
                f"(it needs {what} >= 0).")
    return None
