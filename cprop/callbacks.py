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
5. Files: a callback writes only the file at the path it was given, and only if that is absent
   or a regular file (checked when training starts, and again, without following links or
   blocking on a FIFO, at every write).  No temporary file is made beside it.  ``HistoryLogger``
   truncates its file at the first epoch of a fit, not at its start, so a fit rejected before
   training keeps the old log.
6. Estimators store the shipped callbacks as dicts of builtins and arrays
   (``callbacks_to_builtins``), so that ``skops.io.get_untrusted_types`` lists only the
   estimator class for a model that has them; a path-like ``path`` comes back as a str.
"""
import csv
import io
import json
import math
import os
import pickle
import stat
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
        Only this file is written (no temporary file beside it), and only when it is absent or
        a regular file: a symbolic link, a directory, a FIFO or a device at ``path`` is an
        error raised when training starts. The estimator is pickled in memory first, so one
        that cannot be pickled leaves the previous checkpoint intact.
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
        if self.path is not None:
            _check_target(self.path, "ModelCheckpoint")     # before any training (design 5)
        self._reset()

    def _save(self, estimator):
        # Pickled in memory first: an estimator that cannot be pickled leaves the file as it was.
        data = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
        _write_own_file(self.path, data, "ModelCheckpoint")

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
                self._save(estimator)
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
        Output file, rewritten by each fit when its first epoch ends (a fit that fails before
        that, e.g. on invalid parameters or data, leaves the previous log as it was). It must
        be absent or a regular file: a symbolic link, a directory, a FIFO or a device at
        ``path`` is an error raised when training starts.
    format : {'auto', 'csv', 'json'}, default='auto'
        'auto' picks JSON for a ``.json`` suffix, CSV otherwise. CSV gets one row per epoch;
        JSON a list of records, one per line. Each epoch appends to the file (JSON: its
        closing bracket is moved), so the file is always complete and an epoch costs the same
        whatever the length of the log. JSON has no Infinity or NaN: a non-finite value (a
        diverged loss) is written as ``null``; CSV writes ``inf`` / ``nan``.

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
    >>> with open(path) as f:
    ...     f.readline().split(",")[:2]
    ['epoch', 'loss']
    >>> import shutil; shutil.rmtree(os.path.dirname(path))
    """

    _JSON_END = b"\n]\n"

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
        self._format()
        _check_target(self.path, "HistoryLogger")
        self._n_written = 0      # records this fit wrote; the file is rewritten at the first

    def __call__(self, estimator, record):
        # a new log at a fit's first epoch, or when the file went away meanwhile (a loaded model
        # trained further elsewhere): appending needs the file this logger left
        first = getattr(self, "_n_written", 0) == 0 or not os.path.lexists(self.path)
        row = record.as_dict()
        if self._format() == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            if first:
                writer.writerow(list(row))
            writer.writerow(["" if v is None else v for v in row.values()])
            with _open_own_file(self.path, "w" if first else "a", "HistoryLogger") as f:
                f.write(buf.getvalue().encode("utf-8"))
        else:
            line = json.dumps(_json_safe(row), allow_nan=False).encode("utf-8")
            if first:
                with _open_own_file(self.path, "w", "HistoryLogger") as f:
                    f.write(b"[\n" + line + self._JSON_END)
            else:
                with _open_own_file(self.path, "r+", "HistoryLogger") as f:
                    # replace the closing bracket: one epoch's bytes, not the whole log
                    end = len(self._JSON_END)
                    f.seek(-end, os.SEEK_END)
                    if f.read(end) != self._JSON_END:
                        raise ValueError(
                            f"HistoryLogger: {os.fspath(self.path)!r} no longer ends as this "
                            "logger left it (something else wrote to it during training); "
                            "log to a file nothing else writes.")
                    f.seek(-end, os.SEEK_END)
                    f.write(b",\n" + line + self._JSON_END)
        self._n_written = getattr(self, "_n_written", 0) + 1
        return False

    def __repr__(self):
        return f"HistoryLogger(path={self.path!r}, format={self.format!r})"


def _json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON has no Infinity or NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---- persistence as builtins (design 6) ------------------------------------------------------
_CALLBACK_KEY = "__cprop_callback__"
_RECORD_KEY = "__cprop_epoch_record__"


def _shipped():
    return {cls.__name__: cls for cls in (ModelCheckpoint, HistoryLogger)}


def callbacks_to_builtins(callbacks):
    """``callbacks`` with each shipped callback (exactly ``ModelCheckpoint`` or
    ``HistoryLogger``, not a subclass) as a dict of builtins and arrays; others unchanged."""
    if not isinstance(callbacks, list):
        return callbacks
    out = []
    for cb in callbacks:
        if type(cb) in _shipped().values():
            data = {}
            for key, value in vars(cb).items():
                if isinstance(value, EpochRecord):
                    value = {_RECORD_KEY: value.as_dict()}
                elif key == "path" and value is not None:
                    value = os.fspath(value)
                data[key] = value
            cb = {_CALLBACK_KEY: type(cb).__name__, "attributes": data}
        out.append(cb)
    return out


def callbacks_from_builtins(callbacks):
    """Inverse of ``callbacks_to_builtins``: only the shipped classes are ever made."""
    if not isinstance(callbacks, list):
        return callbacks
    out = []
    for cb in callbacks:
        if isinstance(cb, dict) and _CALLBACK_KEY in cb:
            cls = _shipped().get(cb[_CALLBACK_KEY])
            if cls is None or not isinstance(cb.get("attributes"), dict):
                raise ValueError(f"Cannot load a callback stored as {cb[_CALLBACK_KEY]!r}: cprop "
                                 f"stores only {sorted(_shipped())} this way.")
            obj = cls.__new__(cls)
            for key, value in cb["attributes"].items():
                if isinstance(value, dict) and _RECORD_KEY in value:
                    value = EpochRecord(**value[_RECORD_KEY])
                setattr(obj, key, value)
            cb = obj
        out.append(cb)
    return out


# ---- the files callbacks write (design 5) -----------------------------------------------------
def _describe(mode):
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _refuse(path, mode, who):
    kind = _describe(mode)
    raise ValueError(
        f"{who}(path={path!r}): {path!r} is a {kind}, not a regular file. {who} writes only "
        f"to a regular file at the path given (it never writes through or replaces a {kind}); "
        "give the path of a new or regular file.")


def _check_target(path, who):
    """Raise unless ``path`` names no entry or a regular file (not a link), in an existing
    directory."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path) or os.curdir
        if not os.path.isdir(parent):
            raise FileNotFoundError(
                f"{who}(path={path!r}): the directory {parent!r} does not exist; create it "
                "first.") from None
        return
    if not stat.S_ISREG(st.st_mode):
        _refuse(path, st.st_mode, who)


def _open_own_file(path, mode, who):
    """``path`` opened in binary ``mode`` ('w': created or truncated, 'a': appended, 'r+'),
    after checking that it is a regular file: never a link followed, a FIFO blocked on or a
    device written."""
    path = os.fspath(path)
    _check_target(path, who)
    flags = {"w": os.O_WRONLY | os.O_CREAT, "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
             "r+": os.O_RDWR}[mode]
    # O_NOFOLLOW and O_NONBLOCK (a FIFO opens at once or fails) for an entry swapped in between
    # the check and the open; the fstat below then refuses it.
    for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_BINARY"):     # where the platform has them
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise OSError(exc.errno, f"{who}(path={path!r}) could not open it: {exc.strerror}",
                      path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _refuse(path, st.st_mode, who)
        if mode == "w":
            os.ftruncate(fd, 0)
        return os.fdopen(fd, {"w": "wb", "a": "ab", "r+": "r+b"}[mode])
    except BaseException:
        os.close(fd)
        raise


def _write_own_file(path, data, who):
    """Replace the contents of the regular file ``path`` (created if absent) by ``data``."""
    with _open_own_file(path, "w", who) as f:
        f.write(data)
