"""The parts of the stochastic training loop that scikit-learn's MLP does not have.

Used by ``BaseMLP._fit_stochastic`` and ``fit``: the caller's own validation data, scoring for
early stopping, the per-epoch history and callbacks, the progress bar, the cosine schedule,
class weights and ``n_init`` restarts.

Design
1. None of it runs unless asked for: with the default parameters the loop draws the same random
   numbers and does the same arithmetic as scikit-learn's; it only records each epoch's time and
   learning rate (a few microseconds per epoch).
2. The validation loss is the data loss of the training objective (no L2 term), as a weighted
   mean over the validation samples; it is computed in numpy from the one forward pass that
   also gives the validation score.
3. Restarts (``n_init > 1``) fit clones of the estimator, each seeded from ``random_state``, with
   the same callback objects, and copy the winner's fitted state into the estimator.
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from sklearn.base import clone, is_classifier
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _check_sample_weight, validate_data

from ._engine import as_engine_input
from .callbacks import EpochRecord


# ---- parameters ---------------------------------------------------------------------------------
def check_loop_params(est, incremental=False):
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


# ---- the learning-rate schedule ----------------------------------------------------------------
def cosine_rate(lr0, epoch, max_iter, warmup_iter=0):
    """Learning rate of 0-based ``epoch`` under linear warm-up then cosine decay.

    lr = lr0 (e + 1) / warmup_iter for e < warmup_iter, then
    lr = lr0 / 2 (1 + cos(pi (e - warmup_iter) / (max_iter - warmup_iter))), e capped at
    max_iter - 1 (so later epochs, e.g. of a partial_fit loop, keep the last rate).
    """
    if epoch < warmup_iter:
        return lr0 * (epoch + 1) / warmup_iter
    span = max_iter - warmup_iter
    if span <= 0:
        return lr0
    e = min(epoch, max_iter - 1) - warmup_iter
    return 0.5 * lr0 * (1.0 + math.cos(math.pi * e / span))


# ---- class weights ------------------------------------------------------------------------------
def class_labels(est, Y):
    """Labels whose class weights apply: class labels (binary, multiclass) or, for multilabel
    targets, the 0/1 indicator matrix (one weight dict per column)."""
    y_type = est._label_binarizer.y_type_
    if y_type == "multiclass":
        return est.classes_[np.argmax(Y, axis=1)]
    if y_type == "binary":
        return est.classes_[Y[:, 0].astype(int)] if len(est.classes_) > 1 else \
            np.full(Y.shape[0], est.classes_[0])
    if isinstance(est.class_weight, dict):
        raise ValueError(
            "class_weight as one dict is ambiguous for multilabel targets. Pass 'balanced' or "
            f"a list of {Y.shape[1]} dicts, one per label column, mapping 0/1 to a weight, "
            "e.g. [{0: 1, 1: 5}, ...].")
    if isinstance(est.class_weight, list) and len(est.class_weight) != Y.shape[1]:
        raise ValueError(f"class_weight has {len(est.class_weight)} dicts; the multilabel target "
                         f"has {Y.shape[1]} columns. Pass one dict per column.")
    return Y.astype(int)


# ---- validation data ----------------------------------------------------------------------------
@dataclass
class ValidationSet:
    X: object          # engine input (dense C-contiguous or CSR, model dtype)
    X_user: object     # as validated for scorers (None: use X)
    Y: np.ndarray      # targets as the network sees them (one-hot / indicator / values)
    y: np.ndarray      # targets as predict returns them (labels / values)
    sw: np.ndarray     # sample weights or None


def check_validation_args(X_val, y_val, sample_weight_val):
    if X_val is None and y_val is None and sample_weight_val is None:
        return None
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val must be given together (got only "
                         f"{'X_val' if y_val is None else 'y_val'}). Pass both, or neither to "
                         "use validation_fraction.")
    return X_val, y_val, sample_weight_val


def prepare_validation(est, net, X_val, y_val, sample_weight_val):
    """Validate the caller's validation data against the fitted model (features, classes)."""
    X_v, y_v = validate_data(est, X_val, y_val, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=False)
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
        if getattr(est, "loss", None) == "poisson" and np.any(y_v < 0):
            raise ValueError("y_val has negative values, which loss='poisson' does not allow.")
        Y = y_v
    Y = np.ascontiguousarray(Y.reshape(Y.shape[0], -1), dtype=net.dtype)
    if Y.shape[1] != net.layer_sizes[-1]:
        raise ValueError(f"y_val has {Y.shape[1]} outputs; the model has {net.layer_sizes[-1]}.")
    sw = None
    if sample_weight_val is not None:
        sw = _check_sample_weight(sample_weight_val, X_v)
    if is_classifier(est) and est.class_weight is not None:
        cw = compute_sample_weight(est.class_weight, class_labels(est, Y))
        sw = cw if sw is None else sw * cw
    if sw is not None:
        sw = np.ascontiguousarray(sw, dtype=net.dtype)
    return ValidationSet(as_engine_input(X_v, net.dtype), X_v, Y, y_v, sw)


def validation_loss(out_activation, P, Y, sw):
    """Weighted mean data loss of outputs P against targets Y (design note 2), in float64."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    eps = np.finfo(np.float64).eps
    if out_activation == "identity":
        rows = 0.5 * ((Y - P) ** 2).sum(axis=1)
    elif out_activation == "softmax":
        rows = -xlogy(Y, np.clip(P, eps, 1 - eps)).sum(axis=1)
    elif out_activation == "logistic":
        Pc = np.clip(P, eps, 1 - eps)
        rows = -(xlogy(Y, Pc) + xlogy(1 - Y, 1 - Pc)).sum(axis=1)
    else:  # exp: half Poisson deviance
        rows = (xlogy(Y, Y / P) - Y + P).sum(axis=1)
    if not np.isfinite(rows).all():
        return np.nan
    return float(np.average(rows, weights=sw))


def validation_score(est, out, val, val_loss, scorer):
    """The early-stopping score: the estimator's score (scoring=None), -validation loss
    ('loss') or a scorer (greater is better in every case)."""
    if est.scoring is None:
        return est._score_outputs(out, val.y, val.sw)
    if est.scoring == "loss":
        return -val_loss
    X = val.X_user if val.X_user is not None else val.X
    kwargs = {} if val.sw is None else {"sample_weight": val.sw}
    with warnings.catch_warnings():
        # the validation_fraction split is a plain array even when X had feature names
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return float(scorer(est, X, val.y, **kwargs))


# ---- history, callbacks, progress -------------------------------------------------------------
def init_history(est, has_validation):
    """Start (fresh fit) or continue (warm_start, partial_fit) the per-epoch history."""
    fresh = not hasattr(est, "history_") or not est.loss_curve_
    if fresh:
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


def progress_bar(est, n_samples, incremental):
    if not est.verbose or est.verbose < 2 or incremental:
        return None
    from ._progress import ProgressBar
    return ProgressBar(n_samples, est.max_iter, epoch0=len(est.loss_curve_))


def record_epoch(est, lr, seconds, rows, val_loss, val_score, callbacks, bar, partial=False):
    """Append the epoch to the history, advance the bar, run the callbacks; True to stop."""
    rec = EpochRecord(epoch=len(est.loss_curve_), loss=float(est.loss_),
                      validation_loss=val_loss,
                      validation_score=None if val_score is None else float(val_score),
                      learning_rate=lr, time=seconds, n_samples=int(rows), partial=partial,
                      restart=getattr(est, "_restart_index", 0))
    est.history_.append(rec)
    est.learning_rate_curve_.append(lr)
    est.epoch_times_.append(seconds)
    if bar is not None:
        bar.end_epoch(rows, est.loss_, partial)
    stop = False
    for cb in callbacks:
        if cb(est, rec) is True:
            stop = True
    return stop


# ---- restarts -----------------------------------------------------------------------------------
def _restart_value(est, validation):
    """The restart's merit, greater is better: its validation score when it has validation
    data, else minus its final training loss."""
    if est.solver in ("sgd", "adam") and getattr(est, "validation_scores_", None):
        return est.best_validation_score_ if est.early_stopping else est.validation_scores_[-1]
    if validation is not None:                      # lbfgs with X_val
        X_val, y_val, sw_val = validation
        if est.scoring is None:
            return float(est.score(X_val, y_val, sample_weight=sw_val))
        from sklearn.metrics import check_scoring
        if est.scoring == "loss":
            raise ValueError("scoring='loss' needs solver='sgd' or 'adam' to rank n_init restarts "
                             "on validation data; use scoring=None or a scorer name.")
        kwargs = {} if sw_val is None else {"sample_weight": sw_val}
        return float(check_scoring(est, scoring=est.scoring)(est, X_val, y_val, **kwargs))
    return -float(est.loss_)


def fit_restarts(est, X, y, sample_weight, validation):
    """Fit ``n_init`` clones from seeds drawn from ``random_state``; keep the best (design 3)."""
    rs = check_random_state(est.random_state)
    seeds = rs.randint(np.iinfo(np.int32).max, size=est.n_init)
    params = est.get_params(deep=False)
    results, best, best_value = [], None, -np.inf
    for i, seed in enumerate(seeds):
        run = clone(est)
        run.set_params(random_state=int(seed), n_init=1)
        run.callbacks = est.callbacks               # the caller's objects, not copies
        run._restart_index = i
        run._fit(X, y, sample_weight=sample_weight, incremental=False, validation=validation)
        value = _restart_value(run, validation)
        results.append({"seed": int(seed), "n_iter": int(run.n_iter_),
                        "loss": float(getattr(run, "loss_", np.nan)), "score": float(value),
                        "coefs": [W.copy() for W in run.coefs_],
                        "intercepts": [b.copy() for b in run.intercepts_]})
        if best is None or value > best_value:
            best, best_value, best_i = run, value, i
        if getattr(run, "_interrupted", False):
            break
    for key, value in vars(best).items():
        if key not in params and key != "_restart_index":
            setattr(est, key, value)
    est.restarts_ = results
    est.best_restart_ = best_i
    return est
