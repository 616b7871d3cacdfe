"""Keras-style early stopping as a callback: patience, ``min_delta``, restore the best weights.

Design
1. ``EarlyStopping`` is a callback (``callback(estimator, record)``, see ``cprop.callbacks``): it
   watches one quantity of the epoch record, counts the epochs since it last improved by more
   than ``min_delta``, and returns True (stop) when that count reaches ``patience``.  It is
   separate from the estimator's own rule (``tol``, ``n_iter_no_change``, ``early_stopping``),
   which stays scikit-learn's; set ``n_iter_no_change=np.inf`` to leave stopping to it alone.
2. With ``restore_best_weights=True`` the weights of the best epoch are restored when training
   ends (``on_train_end``), whatever ended it, as Keras 3 does: the estimator trains from (and
   keeps) weights assigned to ``coefs_``/``intercepts_``.
3. A value that is not a number (NaN) never counts as an improvement.  The state restarts at
   each ``fit`` (``on_train_begin``) and at each ``n_init`` restart (``record.restart``).
"""
import math

import numpy as np

_LOSSES = ("loss", "validation_loss")


class EarlyStopping:
    """Stop training when a monitored quantity has stopped improving (Keras' ``EarlyStopping``).

    Parameters
    ----------
    monitor : str, default='validation_loss'
        What to watch in each epoch's record: 'validation_loss', 'validation_score', 'loss', or
        the name of one of several ``scoring`` metrics (``record.scores``).
    patience : int, default=10
        Epochs without improvement after which training stops.
    min_delta : float, default=0.0
        An epoch improves only if it beats the best value by more than ``min_delta``.
    restore_best_weights : bool, default=True
        Restore the best epoch's weights when training ends.
    mode : {'auto', 'min', 'max'}, default='auto'
        Whether smaller ('min') or larger ('max') is better; 'auto': losses are minimised,
        scores (every scikit-learn scorer is greater-is-better) maximised.

    Attributes
    ----------
    best_value_ : float or None
        The best value seen in the current fit.
    best_epoch_ : int or None
        Its epoch (``record.epoch``).
    wait_ : int
        Epochs since the last improvement.
    stopped_epoch_ : int or None
        The epoch at which this callback stopped training (None: it did not).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from cprop import EarlyStopping, MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> stop = EarlyStopping(monitor="validation_loss", patience=3)
    >>> clf = MLPClassifier(max_iter=500, random_state=0, callbacks=[stop])
    >>> clf = clf.fit(X[::2], y[::2], X_val=X[1::2], y_val=y[1::2])
    >>> stop.stopped_epoch_ is None or stop.stopped_epoch_ - stop.best_epoch_ == 3
    True
    """

    def __init__(self, monitor="validation_loss", patience=10, min_delta=0.0,
                 restore_best_weights=True, mode="auto"):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best_weights = restore_best_weights
        self.mode = mode
        self._reset()

    def _reset(self, restart=0):
        self.best_value_ = None
        self.best_epoch_ = None
        self.wait_ = 0
        self.stopped_epoch_ = None
        self._best_weights = None
        self._restart = restart

    def _check(self):
        if self.mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping(mode={self.mode!r}): mode must be 'auto', 'min' or "
                             "'max'.")
        if not (isinstance(self.patience, (int, np.integer)) and self.patience >= 1):
            raise ValueError(f"EarlyStopping(patience={self.patience!r}): patience must be an "
                             "int >= 1.")
        if not (self.min_delta >= 0):
            raise ValueError(f"EarlyStopping(min_delta={self.min_delta!r}) must be >= 0.")

    def _value(self, record):
        if self.monitor in ("loss", "validation_loss", "validation_score"):
            value = getattr(record, self.monitor)
        else:
            scores = getattr(record, "scores", None) or {}
            if self.monitor not in scores:
                raise ValueError(
                    f"EarlyStopping(monitor={self.monitor!r}) found no such value in the epoch "
                    "record: monitor 'loss', 'validation_loss', 'validation_score' or the name "
                    f"of one of several scoring metrics (record.scores: {sorted(scores)}).")
            value = scores[self.monitor]
        if value is None:
            raise ValueError(
                f"EarlyStopping(monitor={self.monitor!r}) found no {self.monitor} in the epoch "
                "record: the estimator has no validation data. Pass X_val/y_val to fit, set "
                "early_stopping=True, or monitor 'loss'.")
        return float(value)

    def on_train_begin(self, estimator):
        self._check()
        self._reset()

    def __call__(self, estimator, record):
        if record.restart != self._restart:
            self._reset(record.restart)
        value = self._value(record)
        minimise = self.mode == "min" or (self.mode == "auto" and self.monitor in _LOSSES)
        sign = -1.0 if minimise else 1.0
        if math.isfinite(value) and (self.best_value_ is None
                                     or sign * (value - self.best_value_) > self.min_delta):
            self.best_value_, self.best_epoch_, self.wait_ = value, record.epoch, 0
            if self.restore_best_weights:
                block = getattr(estimator, "input_block_params_", None)
                self._best_weights = ([W.copy() for W in estimator.coefs_],
                                      [b.copy() for b in estimator.intercepts_],
                                      None if block is None else
                                      [{k: v.copy() for k, v in layer.items()} for layer in block])
            return False
        self.wait_ += 1
        if self.wait_ >= self.patience:
            self.stopped_epoch_ = record.epoch
            return True
        return False

    def on_train_end(self, estimator):
        if self.restore_best_weights and self._best_weights is not None:
            estimator.coefs_ = [W.copy() for W in self._best_weights[0]]
            estimator.intercepts_ = [b.copy() for b in self._best_weights[1]]
            if len(self._best_weights) > 2 and self._best_weights[2] is not None:
                # an input block's parameters (tabular inner networks) come back with the weights
                estimator.input_block_params_ = [{k: v.copy() for k, v in layer.items()}
                                                 for layer in self._best_weights[2]]

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience!r}, "
                f"min_delta={self.min_delta!r}, restore_best_weights="
                f"{self.restore_best_weights!r}, mode={self.mode!r})")
