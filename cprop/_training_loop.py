"""The stochastic training loop as one object, and the parts of fitting scikit-learn's MLP lacks.

``TrainingLoop`` runs the epochs of one ``fit`` (or one ``partial_fit`` call) for
``BaseMLP._fit_stochastic``: it owns the validation data and scorers, the per-epoch history, the
progress bar, the callbacks, the stopping rule and the record of an interrupt, so that
``_fit_stochastic`` reads as the algorithm (draw the batch order, train one epoch, repeat).
Besides it: the option rule (``check_options``), class weights, the caller's validation data and
``n_init`` restarts.

Design
1. None of it runs unless asked for: with the default parameters the loop draws the same random
   numbers and does the same arithmetic as scikit-learn's; it only records each epoch's time and
   learning rate (a few microseconds per epoch).
2. The validation loss is the data loss of the training objective (no L2 term) computed by the
   same compiled loss as training (``cprop._losses.loss_and_delta``), as a weighted mean over the
   validation samples, from the one forward pass that also gives the validation score.
3. A validation score that is not a number (NaN: R^2 of one sample, a scorer returning NaN,
   overflowing outputs) never counts as the best: the epoch counts as no improvement, and the
   first one in a fit warns.  Early stopping restores the best scored epoch's weights, and keeps
   the last weights when no epoch was scored.
4. cprop's own options that do not apply to the chosen solver or loss raise
   ``InvalidParameterError`` before anything changes: one table, ``_OPTIONS``, checked by one
   function, ``check_options``.  scikit-learn's own parameters keep its behaviour (ignored where
   they do not apply, e.g. ``momentum`` with 'adam').
5. Ctrl-C while the loop runs (main thread, default handler) is recorded by a signal handler and
   acted on at the next poll inside the compiled epoch or at the end of the epoch, so it never
   lands between an epoch's last update and its bookkeeping.
6. Restarts (``n_init > 1``) fit clones of the estimator, each seeded from ``random_state`` (one
   seed drawn per restart, as it starts), with the same callback objects, and copy the winner's
   fitted state into the estimator.
"""
import contextlib
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from sklearn.base import clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.utils import check_array, check_random_state, column_or_1d
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _check_sample_weight, check_consistent_length, validate_data

from . import _loss_list
from ._engine import as_engine_input
from ._losses import loss_and_delta
from ._optimizers import CPROP_SCHEDULES, SOLVERS, STOCHASTIC_SOLVERS, cosine_rate  # noqa: F401
from .callbacks import EpochRecord


# ---- the option rule (design note 4) ------------------------------------------------------------
def _no_dropout(value):
    rates = [value] if isinstance(value, Real) else list(value)
    return all(isinstance(r, Real) and r == 0 for r in rates)


def _stochastic(est):
    return est.solver in STOCHASTIC_SOLVERS


_STOCHASTIC_NEEDS = "a stochastic solver (solver='sgd', 'adam' or 'adamw')"

# (parameter, its value is inert, the option applies to the estimator, what it needs)
_OPTIONS = (
    ("weight_decay", lambda v: v == 0.01,
     lambda e: SOLVERS[e.solver].decoupled_weight_decay, "solver='adamw'"),
    ("clip_grad_norm", lambda v: v is None, _stochastic, _STOCHASTIC_NEEDS),
    ("clip_grad_value", lambda v: v is None, _stochastic, _STOCHASTIC_NEEDS),
    ("monitor_gradients", lambda v: not v, _stochastic, _STOCHASTIC_NEEDS),
    ("dropout", _no_dropout, _stochastic, _STOCHASTIC_NEEDS),
    ("callbacks", lambda v: not v, _stochastic, _STOCHASTIC_NEEDS),
    ("learning_rate", lambda v: v not in CPROP_SCHEDULES,
     lambda e: e.learning_rate in SOLVERS[e.solver].schedules, _STOCHASTIC_NEEDS),
    ("warmup_iter", lambda v: v == 0, lambda e: e.learning_rate == "cosine",
     "learning_rate='cosine'"),
    ("weight_decay_schedule", lambda v: v == "constant",
     lambda e: SOLVERS[e.solver].decoupled_weight_decay, "solver='adamw'"),
    ("dropout_schedule", lambda v: v == "constant",
     lambda e: _stochastic(e) and not _no_dropout(e.dropout),
     "dropout > 0 and a stochastic solver"),
    # each loss parameter (cprop/_loss_list.py) applies with the losses that have it
    *((name, lambda v, p=p: v == p["default"],
       lambda e, p=p: _loss_list.BY_NAME[e.loss]["param"] is p,
       "loss=" + " or ".join(repr(e["name"]) for e in _loss_list.LOSSES if e["param"] is p))
      for name, p in _loss_list.PARAMS.items()),
)


def check_options(est, X_val_given=False):
    """Raise InvalidParameterError for a cprop option (or ``X_val``) set where it does not apply
    (design note 4), before ``fit``/``partial_fit`` changes anything."""
    params = est.get_params(deep=False)
    for name, inert, applies, needs in _OPTIONS:
        if name in params and not inert(params[name]) and not applies(est):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(est).__name__} applies only with {needs}; got "
                f"{name}={params[name]!r} with solver={est.solver!r}"
                + (f", loss={est.loss!r}" if name in _loss_list.PARAMS else "")
                + f". Leave {name} at its default or choose a setting it applies to.")
    if X_val_given and not _stochastic(est) and est.n_init == 1:
        raise InvalidParameterError(
            f"X_val is used by solver={est.solver!r} only to rank n_init > 1 restarts; with "
            "n_init=1 it would be ignored. Use a stochastic solver ('sgd', 'adam', 'adamw') to "
            "validate every epoch, set n_init > 1, or score the fitted model on X_val yourself.")


def check_loop_params(est, incremental=False, X_val_given=False):
    """The checks ``_parameter_constraints`` cannot express (InvalidParameterErrors), made
    before ``fit``/``partial_fit`` changes anything."""
    if est.callbacks is not None:
        for i, cb in enumerate(est.callbacks):
            if not callable(cb):
                raise InvalidParameterError(
                    f"The 'callbacks' parameter of {type(est).__name__} must be None or a list "
                    f"of callables cb(estimator, record). Got {cb!r} at position {i} instead.")
    if est.warmup_iter and est.learning_rate != "cosine":
        raise InvalidParameterError(
            f"The 'warmup_iter' parameter of {type(est).__name__} is used only with "
            f"learning_rate='cosine'. Got warmup_iter={est.warmup_iter!r} with "
            f"learning_rate={est.learning_rate!r}; set learning_rate='cosine' or warmup_iter=0.")
    _check_scoring_param(est)
    check_options(est, X_val_given)
    cw = getattr(est, "class_weight", None)
    if isinstance(cw, list) and not all(isinstance(d, dict) for d in cw):
        raise InvalidParameterError(
            f"The 'class_weight' parameter of {type(est).__name__} must be None, 'balanced', a "
            "dict {class: weight} or (multilabel) a list of one dict {0: w0, 1: w1} per label "
            f"column. Got {cw!r} instead.")
    if incremental and isinstance(cw, str):
        raise ValueError(
            "class_weight='balanced' is not supported by partial_fit: the class frequencies "
            "of all the data are unknown. Compute them once, e.g. with "
            "sklearn.utils.class_weight.compute_class_weight('balanced', classes=classes, "
            "y=y_all), and pass class_weight=dict(zip(classes, weights)).")


def callbacks_begin(est):
    """Call ``on_train_begin(est)`` of the callbacks that have it (start of a fit)."""
    for cb in est.callbacks or ():
        begin = getattr(cb, "on_train_begin", None)
        if begin is not None:
            begin(est)


def callbacks_end(est):
    """Call ``on_train_end(est)`` of the callbacks that have it (end of a fit's epochs)."""
    for cb in est.callbacks or ():
        end = getattr(cb, "on_train_end", None)
        if end is not None:
            end(est)


# ---- re-entrance --------------------------------------------------------------------------------
_RUNNING = set()      # ids of estimators whose fit/partial_fit is running


@contextlib.contextmanager
def running(est):
    """Mark ``est`` as fitting; ``fit``/``partial_fit`` on it meanwhile (from a callback) raise
    RuntimeError before changing anything, so the running fit stays consistent."""
    if id(est) in _RUNNING:
        raise RuntimeError(
            f"{type(est).__name__}.fit/partial_fit was called while this estimator is being "
            "fitted (from a callback?). A callback may read the estimator, assign its coefs_/"
            "intercepts_ or return True to stop; to fit another model inside a callback, "
            "use a clone (sklearn.base.clone).")
    _RUNNING.add(id(est))
    try:
        yield
    finally:
        _RUNNING.discard(id(est))


# ---- class weights ------------------------------------------------------------------------------
def class_weight_table(est, Y):
    """The weight of each class, from ``classes_`` (never from the labels of one batch): one array
    over ``classes_`` (binary, multiclass) or, for multilabel targets, one [w0, w1] per column.
    'balanced' is computed from ``Y``, the training targets of ``fit``."""
    cw = est.class_weight
    if est._label_binarizer.y_type_.startswith("multilabel"):
        n_cols = Y.shape[1]
        if isinstance(cw, dict):
            raise ValueError(
                "class_weight as one dict is ambiguous for multilabel targets. Pass 'balanced' or "
                f"a list of {n_cols} dicts, one per label column, mapping 0/1 to a weight, "
                "e.g. [{0: 1, 1: 5}, ...].")
        if isinstance(cw, list) and len(cw) != n_cols:
            raise ValueError(f"class_weight has {len(cw)} dicts; the multilabel target has "
                             f"{n_cols} columns. Pass one dict per column.")
        return [_weights_over(cw if isinstance(cw, str) else cw[j], np.array([0, 1]),
                              Y[:, j].astype(int)) for j in range(n_cols)]
    return _weights_over(cw, est.classes_, class_labels(est, Y))


def _weights_over(cw, classes, labels):
    if isinstance(cw, str):          # 'balanced', from the training labels (absent ones: 1)
        present = np.unique(labels)
        w = dict(zip(present.tolist(), compute_class_weight(cw, classes=present, y=labels)))
        return np.array([float(w.get(c, 1.0)) for c in classes.tolist()])
    unknown = [c for c in cw if c not in set(classes.tolist())]
    if unknown:
        raise ValueError(f"class_weight has classes {unknown} that are not in classes_ = "
                         f"{classes}. Give weights for training classes only.")
    return np.array([float(cw.get(c, 1.0)) for c in classes.tolist()])


def class_sample_weights(est, Y, table):
    """Each sample's class weight (multilabel: the product over its columns) from ``table``."""
    if isinstance(table, list):
        Yi = Y.astype(int)
        w = np.ones(Y.shape[0])
        for j, t in enumerate(table):
            w *= t[Yi[:, j]]
        return w
    index = np.searchsorted(est.classes_, class_labels(est, Y))
    return table[index]


def class_labels(est, Y):
    """Class labels of one-hot (multiclass) or single-column indicator (binary) targets."""
    if est._label_binarizer.y_type_ == "multiclass":
        return est.classes_[np.argmax(Y, axis=1)]
    if len(est.classes_) > 1:
        return est.classes_[Y[:, 0].astype(int)]
    return np.full(Y.shape[0], est.classes_[0])


# ---- validation data ----------------------------------------------------------------------------
@dataclass
class ValidationSet:
    X: object          # engine input (dense C-contiguous or CSR, model dtype)
    X_user: object     # as validated for scorers (None: use X)
    Y: np.ndarray      # targets as the network sees them (one-hot / indicator / values)
    y: np.ndarray      # targets as predict returns them (labels / values)
    sw: np.ndarray     # sample weights or None


def check_validation_args(X_val, y_val, sample_weight_val):
    """(X_val, y_val, sample_weight_val) or None; an error names what is missing."""
    if X_val is None and y_val is None and sample_weight_val is None:
        return None
    if X_val is None or y_val is None:
        given = [n for n, v in (("X_val", X_val), ("y_val", y_val),
                                ("sample_weight_val", sample_weight_val)) if v is not None]
        missing = [n for n, v in (("X_val", X_val), ("y_val", y_val)) if v is None]
        raise ValueError(
            f"X_val and y_val must be given together: got {' and '.join(given)} without "
            f"{' and '.join(missing)}. Pass X_val and y_val (and optionally sample_weight_val), "
            "or none of them to use validation_fraction.")
    return X_val, y_val, sample_weight_val


def _named(name, check, *args, **kwargs):
    """Run a check; its ValueError says which validation argument was wrong."""
    try:
        return check(*args, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def prepare_validation(est, net, X_val, y_val, sample_weight_val, class_weights=None):
    """Validate the caller's validation data against the fitted model (features, classes)."""
    X_v = _named("X_val", validate_data, est, X_val, accept_sparse=["csr", "csc"],
                 dtype=(np.float64, np.float32), reset=False)
    y_v = _named("y_val", check_array, y_val, ensure_2d=False, dtype=None,
                 ensure_all_finite=True)
    _named("X_val and y_val", check_consistent_length, X_v, y_v)
    if y_v.ndim == 2 and y_v.shape[1] == 1:
        y_v = column_or_1d(y_v, warn=True)
    if is_classifier(est):
        lb = est._label_binarizer
        if lb.y_type_.startswith("multilabel"):
            if y_v.ndim != 2 or y_v.shape[1] != len(est.classes_):
                raise ValueError(f"y_val must be a multilabel indicator matrix with "
                                 f"{len(est.classes_)} columns, like y.")
        else:
            unseen = np.setdiff1d(unique_labels(y_v), est.classes_)
            if len(unseen):
                raise ValueError(f"y_val has classes {unseen} that are not in y (classes_ = "
                                 f"{est.classes_}). Validation labels must be training classes.")
        Y = lb.transform(y_v).astype(bool)
    else:
        y_v = _named("y_val", check_array, y_v, ensure_2d=False, dtype="numeric")
        bad = _loss_list.bad_targets(est.loss, y_v, "y_val")
        if bad:
            raise ValueError(bad)
        Y = y_v
    Y = np.ascontiguousarray(Y.reshape(Y.shape[0], -1), dtype=net.dtype)
    if Y.shape[1] != net.layer_sizes[-1]:
        raise ValueError(f"y_val has {Y.shape[1]} outputs; the model has {net.layer_sizes[-1]}.")
    sw = None
    if sample_weight_val is not None:
        sw = _named("sample_weight_val", _check_sample_weight, sample_weight_val, X_v)
        if float(np.sum(sw, dtype=np.float64)) == 0:
            raise ValueError("sample_weight_val sums to 0: the validation loss is a weighted mean, "
                             "undefined then. Give some validation samples a non-zero weight.")
    if class_weights is not None:
        cw = class_sample_weights(est, Y, class_weights)
        sw = cw if sw is None else sw * cw
    if sw is not None:
        sw = np.ascontiguousarray(sw, dtype=net.dtype)
    return ValidationSet(as_engine_input(X_v, net.dtype), X_v, Y, y_v, sw)


# Validation data whose columns differ this much in scale from the training data's, on more than
# half of the columns, looks untransformed (a Pipeline passes fit parameters through as they are).
_SCALE_RATIO = 10.0
_SCALE_ROWS = 1000


def _column_scales(X):
    X = np.asarray(X[:: max(1, X.shape[0] // _SCALE_ROWS)], dtype=np.float64)
    q25, med, q75 = np.percentile(X, [25, 50, 75], axis=0)
    spread = q75 - q25
    rng = X.max(axis=0) - X.min(axis=0)
    return med, np.where(spread > 0, spread, rng)


def warn_if_untransformed(X, X_val):
    """Warn when X_val's columns look like another scale than X's (e.g. a Pipeline's
    ``mlp__X_val`` that skipped the pipeline's transformers).  Dense data only."""
    if hasattr(X, "toarray") or hasattr(X_val, "toarray") or X.shape[0] < 2 \
            or X_val.shape[0] < 2:
        return
    med, spread = _column_scales(X)
    med_v, spread_v = _column_scales(X_val)
    both = (spread > 0) & (spread_v > 0)
    if not both.any():
        return
    ratio = spread_v[both] / spread[both]
    shift = np.abs(med_v[both] - med[both]) / spread[both]
    off = (ratio > _SCALE_RATIO) | (ratio < 1 / _SCALE_RATIO) | (shift > _SCALE_RATIO)
    if off.sum() * 2 > both.sum():
        warnings.warn(
            f"X_val's column scales (median and interquartile range) differ from X's by more "
            f"than {_SCALE_RATIO:g}x on {int(off.sum())} of {int(both.sum())} columns: is X_val "
            "untransformed? pipe.fit(X, y, mlp__X_val=...) hands X_val to the MLP as it is, "
            "past the pipeline's transformers. Use Pipeline(..., transform_input=['X_val']) "
            "(scikit-learn >= 1.6, with metadata routing: sklearn.set_config("
            "enable_metadata_routing=True) and mlp.set_fit_request(X_val=True, y_val=True)), "
            "or transform X_val yourself.", UserWarning, stacklevel=4)


def validation_loss(net, P, Y, sw):
    """Weighted mean data loss of outputs P against targets Y by the network's compiled training
    loss (design note 2), in float64; NaN when it is not finite."""
    D = np.empty_like(P)
    total = loss_and_delta(net.loss, Y, P, D, sw, 1.0, 1, net.loss_param)
    weight = Y.shape[0] if sw is None else float(np.sum(sw, dtype=np.float64))
    value = total / weight
    return value if np.isfinite(value) else np.nan


# ---- scoring ------------------------------------------------------------------------------------
def _scoring_names(scoring):
    """``scoring`` as a list of (name, spec): None -> the estimator's score."""
    if scoring is None or isinstance(scoring, str) or callable(scoring):
        return [("score" if scoring is None else
                 scoring if isinstance(scoring, str) else "scorer", scoring)]
    if isinstance(scoring, dict):
        return list(scoring.items())
    return [(s if isinstance(s, str) else getattr(s, "__name__", f"scorer_{i}"), s)
            for i, s in enumerate(scoring)]


def _check_scoring_param(est):
    scoring = est.scoring
    if scoring is None or isinstance(scoring, str) or callable(scoring):
        return
    from sklearn.metrics import get_scorer_names

    names = set(get_scorer_names()) | {"loss"}
    items = list(scoring.items()) if isinstance(scoring, dict) else list(enumerate(scoring))
    ok = len(items) > 0 and all(
        (isinstance(s, str) and s in names) or callable(s) for _, s in items)
    if isinstance(scoring, dict):
        ok = ok and all(isinstance(k, str) for k in scoring)
    if not ok:
        raise InvalidParameterError(
            f"The 'scoring' parameter of {type(est).__name__} as a list or dict must hold scorer "
            f"names (sklearn.metrics.get_scorer_names(), or 'loss') or callables (a dict keyed "
            f"by str names); got {scoring!r}.")


def make_scorers(est, multiclass=False):
    """[(name, scorer)] for the validation scores; the first is the early-stopping score.
    A scorer is None for the estimator's ``score`` and 'loss' for minus the validation loss.
    ``multiclass``: the target has more than two classes (for the 'roc_auc' check)."""
    out = []
    for name, spec in _scoring_names(est.scoring):
        if spec is None or spec == "loss":
            out.append((name, spec))
            continue
        if spec == "roc_auc" and multiclass:
            raise ValueError(
                f"scoring='roc_auc' is for binary (or multilabel) targets; y has "
                f"{len(est.classes_)} classes. Use scoring='roc_auc_ovr' (one-vs-rest on "
                "predict_proba) or 'roc_auc_ovo'.")
        out.append((name, check_scoring(est, scoring=spec)))
    return out


def score_model(est, scorers, out, val, val_loss, score_outputs):
    """{name: score} of the model on the validation set (greater is better for every name);
    ``score_outputs(out, y, sample_weight)`` is the estimator's score from its outputs."""
    scores = {}
    for name, scorer in scorers:
        if scorer is None:
            scores[name] = float(score_outputs(out, val.y, val.sw))
        elif scorer == "loss":
            scores[name] = -val_loss
        else:
            X = val.X_user if val.X_user is not None else val.X
            kwargs = {} if val.sw is None else {"sample_weight": val.sw}
            with warnings.catch_warnings():
                # the validation_fraction split is a plain array even when X had feature names
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                scores[name] = float(scorer(est, X, val.y, **kwargs))
    return scores


# ---- interrupts (design note 5) -----------------------------------------------------------------
class InterruptGuard:
    """While entered (main thread, Python's default SIGINT handler): Ctrl-C sets ``pending``
    instead of raising wherever Python happens to be; ``poll`` (the compiled epoch's hook)
    raises KeyboardInterrupt inside the epoch, and the loop checks ``pending`` after it.  A
    second Ctrl-C before that raises at once (a slow scorer or callback stays interruptible)."""

    def __init__(self):
        self.pending = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.pending:             # a second Ctrl-C: stop now (e.g. inside a slow callback)
            raise KeyboardInterrupt
        self.pending = True

    def poll(self, rows_done=None):
        if self.pending:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


# ---- the loop -----------------------------------------------------------------------------------
@dataclass
class Stopping:
    """The stopping rule's state (scikit-learn's): the no-improvement counter, the best training
    loss or validation score and the best epoch's weights (early stopping)."""
    early_stopping: bool
    tol: float
    n_iter_no_change: float
    count: int = 0
    best_params: np.ndarray = None
    scored: bool = False                 # some epoch had a finite validation score
    warned_nan: bool = False
    messages: list = field(default_factory=list)


class TrainingLoop:
    """The epochs of one ``fit`` or ``partial_fit`` call (see the module's docstring).

    ``est`` is the estimator being trained: it is handed to callbacks and scorers, and its public
    fitted attributes (``loss_curve_``, ``validation_scores_``, ``history_``, ...) receive the
    record of each epoch.  The loop never reads the estimator's private state: the stopping
    state, the optimizer state, the schedule and the validation set are given to it.
    """

    def __init__(self, est, net, params, state, schedule, stopping, *, val, scorers, n_samples,
                 incremental, max_iter, verbose, callbacks, score_outputs, weights_of, expose,
                 restart=0):
        self.est, self.net, self.params, self.state = est, net, params, state
        # the estimator's own operations, handed in: its score from outputs, the flat vector
        # of its current coefs_/intercepts_ (params itself unless new arrays were assigned),
        # and making coefs_/intercepts_ views of a vector again
        self.score_outputs, self.weights_of, self.expose = score_outputs, weights_of, expose
        self.schedule, self.stopping = schedule, stopping
        self.val, self.scorers = val, scorers
        self.n_samples, self.incremental, self.max_iter = n_samples, incremental, max_iter
        self.verbose = verbose
        self.callbacks = list(callbacks or ())
        self.restart = restart
        self.interrupted = False
        self.guard = InterruptGuard()
        self.bar = None
        if verbose and verbose >= 2 and not incremental:
            from ._progress import ProgressBar
            self.bar = ProgressBar(n_samples, max_iter, epoch0=len(est.loss_curve_))
        self.say = self.bar.write if self.bar is not None else print
        self._views = None           # coefs_/intercepts_ as last seen to be views of params
        self._hook = self.hook()
        self._start_history(val is not None)

    # -- the record of the fit --------------------------------------------------------------------
    def _start_history(self, has_validation):
        """Start (fresh fit) or continue (warm_start, partial_fit) the per-epoch history."""
        est = self.est
        if not getattr(est, "history_", None) or not est.loss_curve_:
            est.history_ = []
            est.learning_rate_curve_ = []
            est.epoch_times_ = []
            est.validation_loss_curve_ = None
        if has_validation:
            if est.validation_loss_curve_ is None:
                est.validation_loss_curve_ = []
            if est.validation_scores_ is None:
                est.validation_scores_ = []
                est.best_validation_score_ = -np.inf

    def hook(self):
        """The compiled epoch's hook: Ctrl-C (design note 5) and the progress bar."""
        if self.bar is None:
            return self.guard.poll
        guard, bar = self.guard, self.bar

        def hook(rows_done):
            guard.poll()
            bar.update(rows_done)
        return hook

    def __enter__(self):
        self.guard.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.guard.__exit__()
        if self.bar is not None:
            self.bar.close()
        if exc_type is KeyboardInterrupt or (exc_type is None and self.guard.pending):
            self.interrupted = True
            warnings.warn("Training interrupted by user.")
        if exc_type is None or exc_type is KeyboardInterrupt:
            if self.stopping.early_stopping and self.stopping.scored:
                self.params[...] = self.stopping.best_params
            if not self.incremental:
                callbacks_end(self.est)
                self._take_assigned_weights()
        return exc_type is KeyboardInterrupt

    # -- one epoch --------------------------------------------------------------------------------
    def epoch(self, run_epoch, order):
        """Train one epoch in the given row order and record it; True to stop training.

        A Ctrl-C inside the compiled epoch keeps the batches it finished: they are counted and
        recorded like an epoch (validation included, callbacks not), then the interrupt goes on.
        """
        est, state = self.est, self.state
        t0 = time.perf_counter()
        self.schedule.before_epoch(state, len(est.loss_curve_) if self.incremental
                                   else est.n_iter_)
        lr = float(state.learning_rate)
        info, pending = {}, None
        try:
            loss, rows = run_epoch(order, self._hook, info), self.n_samples
        except BaseException as exc:
            if not info:       # before the compiled epoch changed anything
                raise
            pending, loss, rows = exc, info["loss"], info["rows"]
        est.loss_ = loss
        est.n_iter_ += 1
        est.t_ += rows
        est.loss_curve_.append(loss)
        if pending is None and self.verbose:
            self.say("Iteration %d, loss = %.8f" % (est.n_iter_, loss))
        val_loss, scores = self._validate()
        score = None if scores is None else next(iter(scores.values()))
        if pending is not None:
            self._record(lr, t0, rows, val_loss, score, scores, partial=True)
            raise pending
        self._update_no_improvement(score)
        self.schedule.after_epoch(state, est.t_)
        stop = self._record(lr, t0, rows, val_loss, score, scores)
        if self.callbacks:
            self._take_assigned_weights()
        s = self.stopping
        if s.count > s.n_iter_no_change:
            what = "Validation score" if s.early_stopping else "Training loss"
            msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                   % (what, s.tol, s.n_iter_no_change))
            if self._on_plateau(msg):
                return True
            s.count = 0
        if stop:
            if self.verbose:
                self.say("A callback asked to stop training. Stopping.")
            return True
        return self.guard.pending        # Ctrl-C after the epoch's last poll: the epoch is kept

    def _validate(self):
        """The validation loss and scores of the current weights (None, None without data)."""
        val = self.val
        if val is None:
            return None, None
        out = self.net.predict(self.params, val.X)
        val_loss = validation_loss(self.net, out, val.Y, val.sw)
        self.est.validation_loss_curve_.append(val_loss)
        scores = score_model(self.est, self.scorers, out, val, val_loss, self.score_outputs)
        self.est.validation_scores_.append(next(iter(scores.values())))
        if self.verbose:
            self.say("Validation score: %f" % self.est.validation_scores_[-1])
        return val_loss, scores

    def _update_no_improvement(self, score):
        """scikit-learn's counter; a NaN score is no improvement and never the best (note 3)."""
        est, s = self.est, self.stopping
        if score is not None and not np.isfinite(score):
            if not s.warned_nan:
                s.warned_nan = True
                warnings.warn(
                    f"The validation score is {score} at epoch {len(est.loss_curve_)}: it counts "
                    "as no improvement and never as the best epoch. Check the validation data "
                    "(a score such as R^2 needs at least 2 samples) and the scorer.",
                    RuntimeWarning, stacklevel=5)
        if s.early_stopping:
            if not np.isfinite(score) or score < est.best_validation_score_ + s.tol:
                s.count += 1
            else:
                s.count = 0
            if np.isfinite(score) and score > est.best_validation_score_:
                est.best_validation_score_ = score
                s.best_params = self.params.copy()
                s.scored = True
        else:
            if score is not None and np.isfinite(score) and score > est.best_validation_score_:
                est.best_validation_score_ = score
            if est.loss_curve_[-1] > est.best_loss_ - s.tol:
                s.count += 1
            else:
                s.count = 0
            if est.loss_curve_[-1] < est.best_loss_:
                est.best_loss_ = est.loss_curve_[-1]

    def _on_plateau(self, msg):
        """scikit-learn's rule: stop, unless the schedule can divide its rate by 5."""
        reduce = self.schedule.reduces_on_plateau
        stop = self.schedule.on_plateau(self.state)
        if self.verbose:
            if not reduce:
                self.say(msg + " Stopping.")
            elif stop:
                self.say(msg + " Learning rate too small. Stopping.")
            else:
                self.say(msg + " Setting learning rate to %f" % self.state.learning_rate)
        return stop

    def _record(self, lr, t0, rows, val_loss, score, scores, partial=False):
        """Append the epoch to the history, advance the bar, run the callbacks (not after an
        interrupted epoch); True when one asks to stop (returns a true value)."""
        est = self.est
        seconds = time.perf_counter() - t0
        rec = EpochRecord(epoch=len(est.loss_curve_), loss=float(est.loss_),
                          validation_loss=val_loss,
                          validation_score=None if score is None else float(score),
                          learning_rate=lr, time=seconds, n_samples=int(rows), partial=partial,
                          restart=self.restart,
                          scores=scores if scores is not None and len(scores) > 1 else None)
        est.history_.append(rec)
        est.learning_rate_curve_.append(lr)
        est.epoch_times_.append(seconds)
        if self.bar is not None:
            self.bar.end_epoch(rows, est.loss_, partial,
                               metrics={"val_loss": val_loss, "val_score": score})
        stop = False
        if not partial:
            for cb in self.callbacks:
                answer = cb(est, rec)
                if answer is not None and bool(answer):
                    stop = True
        return stop

    def _exposed(self):
        est = self.est
        return (est.__dict__.get("coefs_"), est.__dict__.get("intercepts_"),
                tuple(map(id, est.coefs_)), tuple(map(id, est.intercepts_)))

    def _take_assigned_weights(self):
        """Weights a callback assigned to ``coefs_``/``intercepts_`` are trained from here on
        (the same lists holding the same views: nothing was assigned, a cheap check)."""
        now = self._exposed()
        if self._views is not None and now[0] is self._views[0] \
                and now[1] is self._views[1] and now[2:] == self._views[2:]:
            return
        fresh = self.weights_of()
        if fresh is not self.params:
            self.params[...] = fresh
            self.expose(self.params)
        self._views = self._exposed()


# ---- restarts (design note 6) -------------------------------------------------------------------
def restart_value(est, validation, net_of):
    """The restart's merit, greater is better: its validation score when it has validation
    data, else minus its final training loss."""
    if est.solver in STOCHASTIC_SOLVERS and getattr(est, "validation_scores_", None):
        if est.early_stopping:
            return est.best_validation_score_
        last = est.validation_scores_[-1]
        return last if np.isfinite(last) else -np.inf
    if validation is not None:                      # lbfgs with X_val
        net = net_of(est)
        val = prepare_validation(est, net, *validation, class_weights=getattr(
            est, "_class_weights", None))
        out = net.predict(est._params, val.X)
        scores = score_model(est, make_scorers(est, est._is_multiclass()), out, val,
                             validation_loss(net, out, val.Y, val.sw), est._score_outputs)
        value = next(iter(scores.values()))
        return value if np.isfinite(value) else -np.inf
    return -float(est.loss_)


def fit_restarts(est, X, y, sample_weight, validation, net_of):
    """Fit ``n_init`` clones from seeds drawn from ``random_state``; keep the best (note 6)."""
    rs = check_random_state(est.random_state)
    params = est.get_params(deep=False)
    results, best, best_value, best_i = [], None, -np.inf, 0
    for i in range(est.n_init):
        seed = int(rs.randint(np.iinfo(np.int32).max))
        run = clone(est)
        run.set_params(random_state=seed, n_init=1)
        run.callbacks = est.callbacks               # the caller's objects, not copies
        run._restart_index = i
        with running(run):
            run._fit(X, y, sample_weight=sample_weight, incremental=False,
                     validation=validation)
        value = restart_value(run, validation, net_of)
        results.append({"seed": seed, "n_iter": int(run.n_iter_),
                        "loss": float(getattr(run, "loss_", np.nan)), "score": float(value),
                        "coefs": [W.copy() for W in run.coefs_],
                        "intercepts": [b.copy() for b in run.intercepts_]})
        if best is None or value > best_value:
            best, best_value, best_i = run, value, i
        if run.__dict__.get("_interrupted", False):
            break
    won = {k: v for k, v in vars(best).items() if k not in params and k != "_restart_index"}
    for key in [k for k in vars(est) if k.endswith("_") and not k.startswith("_")
                and k not in params and k not in won]:
        delattr(est, key)                         # a previous fit's records the winner lacks
    for key, value in won.items():
        setattr(est, key, value)
    est.restarts_ = results
    est.best_restart_ = best_i
    return est
