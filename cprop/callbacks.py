"""Callbacks for the stochastic solvers: called once per epoch with the estimator and a record.

Design
1. A callback is any callable ``callback(estimator, record)``; it runs after each epoch of
   ``fit``/``partial_fit`` ('sgd' and 'adam'), once the epoch's bookkeeping (``loss_curve_``,
   validation scores, ``n_iter_``) is done.  Returning True stops training cleanly, as early
   stopping does (with early stopping, the best epoch's weights are then restored).
2. ``record`` is an ``EpochRecord``: frozen (read-only), picklable, with ``as_dict()``.
3. An optional ``on_train_begin(estimator)`` method is called at the start of each ``fit`` (and of
   the first ``partial_fit``), so a callback reused across fits (``clone`` deep-copies it, pickling
   keeps it) starts afresh.
4. The shipped callbacks are plain classes with picklable state, so estimators holding them
   survive ``clone``, ``pickle`` and ``joblib``.  A lambda works as a callback but cannot be
   pickled.
"""
import csv
import json
import math
import os
import pickle
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["EpochRecord", "ModelCheckpoint", "HistoryLogger"]


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: the read-only record handed to callbacks and kept in ``history_``.

    Attributes
    ----------
    epoch : int
        1-based epoch number across the estimator's training (``len(loss_curve_)``).
    loss : float
        The epoch's training loss (the value appended to ``loss_curve_``).
    validation_loss : float or None
        Loss on the validation data (``validation_loss_curve_``), None without validation data.
    validation_score : float or None
        Validation score used for early stopping (``validation_scores_``), None without
        validation data.
    learning_rate : float
        Learning rate used during the epoch (Adam: before its bias correction).
    time : float
        Wall-clock seconds of the epoch, validation included.
    n_samples : int
        Training rows seen in the epoch (fewer than the data when it was interrupted).
    partial : bool
        True when Ctrl-C ended the epoch early; the rows it did are kept and counted.
    restart : int
        Index of the restart (``n_init``) this epoch belongs to.
    scores : dict or None
        With several validation metrics (``scoring`` as a list or dict): each one's score by
        name (greater is better); ``validation_score`` is the first. None otherwise.

    Examples
    --------
    >>> from cprop.callbacks import EpochRecord
    >>> r = EpochRecord(epoch=1, loss=0.5, validation_loss=None, validation_score=None,
    ...                 learning_rate=0.001, time=0.01, n_samples=100)
    >>> r.as_dict()["loss"]
    0.5
    """

    epoch: int
    loss: float
    validation_loss: float = None
    validation_score: float = None
    learning_rate: float = None
    time: float = None
    n_samples: int = None
    partial: bool = False
    restart: int = 0
    scores: dict = None

    def as_dict(self):
        """The record as a plain dict."""
        return asdict(self)


_MONITORS = ("loss", "validation_loss", "validation_score")


class ModelCheckpoint:
    """Keep the weights of the best epoch by a metric (and optionally save the estimator).

    Parameters
    ----------
    monitor : {'validation_loss', 'loss', 'validation_score'}, default='validation_loss'
        The record field to watch. Losses are minimised, scores maximised.
    path : str or path-like, default=None
        When given, the whole estimator is pickled to this file each time the metric improves.
    min_delta : float, default=0.0
        An epoch counts as better only if it improves the metric by more than ``min_delta``.

    Attributes
    ----------
    best_epoch_ : int or None
        Epoch (``EpochRecord.epoch``) with the best metric so far.
    best_value_ : float or None
        The metric at that epoch.
    best_coefs_, best_intercepts_ : list of ndarray or None
        Copies of the estimator's ``coefs_`` and ``intercepts_`` at that epoch.
    best_record_ : EpochRecord or None
        The record of that epoch.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from cprop import MLPClassifier
    >>> from cprop.callbacks import ModelCheckpoint
    >>> X, y = load_iris(return_X_y=True)
    >>> ckpt = ModelCheckpoint(monitor="loss")
    >>> clf = MLPClassifier(max_iter=30, random_state=0, callbacks=[ckpt])
    >>> clf = clf.fit(X, y)
    >>> ckpt.best_epoch_ <= clf.n_iter_
    True
    >>> clf = ckpt.restore(clf)  # the model of the best epoch
    """

    def __init__(self, monitor="validation_loss", path=None, min_delta=0.0):
        self.monitor = monitor
        self.path = path
        self.min_delta = min_delta
        self._reset()

    def _reset(self):
        self.best_epoch_ = None
        self.best_value_ = None
        self.best_coefs_ = None
        self.best_intercepts_ = None
        self.best_record_ = None

    def on_train_begin(self, estimator):
        if self.monitor not in _MONITORS:
            raise ValueError(f"ModelCheckpoint(monitor={self.monitor!r}): monitor must be one of "
                             f"{_MONITORS}.")
        self._reset()

    def __call__(self, estimator, record):
        value = getattr(record, self.monitor)
        if value is None:
            raise ValueError(
                f"ModelCheckpoint(monitor={self.monitor!r}) found no {self.monitor} in the epoch "
                "record: the estimator has no validation data. Pass X_val/y_val to fit, set "
                "early_stopping=True, or monitor 'loss'.")
        value = float(value)
        if not math.isfinite(value):
            return False
        sign = 1.0 if self.monitor == "validation_score" else -1.0
        if self.best_value_ is None or sign * (value - self.best_value_) > self.min_delta:
            self.best_epoch_ = record.epoch
            self.best_value_ = value
            self.best_record_ = record
            self.best_coefs_ = [np.array(W, copy=True) for W in estimator.coefs_]
            self.best_intercepts_ = [np.array(b, copy=True) for b in estimator.intercepts_]
            if self.path is not None:
                tmp = os.fspath(self.path) + ".tmp"
                with open(tmp, "wb") as f:
                    pickle.dump(estimator, f)
                os.replace(tmp, self.path)
        return False

    def restore(self, estimator):
        """Set ``estimator``'s weights to the best epoch's; returns the estimator."""
        if self.best_coefs_ is None:
            raise ValueError("ModelCheckpoint has recorded no epoch yet; fit an estimator that "
                             "has it in its callbacks first.")
        estimator.coefs_ = [W.copy() for W in self.best_coefs_]
        estimator.intercepts_ = [b.copy() for b in self.best_intercepts_]
        return estimator

    def __repr__(self):
        return (f"ModelCheckpoint(monitor={self.monitor!r}, path={self.path!r}, "
                f"min_delta={self.min_delta!r})")


class HistoryLogger:
    """Write each epoch's record to a CSV or JSON file as training goes.

    Parameters
    ----------
    path : str or path-like
        Output file. It is rewritten at the start of each fit.
    format : {'auto', 'csv', 'json'}, default='auto'
        'auto' picks JSON for a ``.json`` suffix, CSV otherwise. CSV gets one row per epoch
        (appended and flushed each epoch); JSON a list of records, rewritten each epoch so the
        file is always complete.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_iris
    >>> from cprop import MLPClassifier
    >>> from cprop.callbacks import HistoryLogger
    >>> X, y = load_iris(return_X_y=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
    >>> clf = MLPClassifier(max_iter=5, random_state=0, callbacks=[HistoryLogger(path)])
    >>> clf = clf.fit(X, y)
    >>> open(path).readline().split(",")[:2]
    ['epoch', 'loss']
    """

    def __init__(self, path, format="auto"):
        self.path = path
        self.format = format

    def _format(self):
        if self.format not in ("auto", "csv", "json"):
            raise ValueError(f"HistoryLogger(format={self.format!r}): format must be 'auto', "
                             "'csv' or 'json'.")
        if self.format != "auto":
            return self.format
        return "json" if os.fspath(self.path).lower().endswith(".json") else "csv"

    def on_train_begin(self, estimator):
        self._records = []
        fields = list(EpochRecord.__dataclass_fields__)
        if self._format() == "csv":
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(fields)
        else:
            with open(self.path, "w") as f:
                json.dump([], f)

    def __call__(self, estimator, record):
        if not hasattr(self, "_records"):
            self.on_train_begin(estimator)
        row = record.as_dict()
        if self._format() == "csv":
            with open(self.path, "a", newline="") as f:
                csv.writer(f).writerow(["" if v is None else v for v in row.values()])
        else:
            self._records.append(row)
            with open(self.path, "w") as f:
                json.dump(self._records, f, indent=1)
        return False

    def __repr__(self):
        return f"HistoryLogger(path={self.path!r}, format={self.format!r})"
