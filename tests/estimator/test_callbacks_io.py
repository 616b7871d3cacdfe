"""What the callbacks and the progress bar do to files and streams (issue 17, findings 1-3).

Every file a probe touches lives under pytest's ``tmp_path``: the links, FIFOs and victims
below are made there, never pointed at /dev.  References are independent: the bytes a file
held before, ``json.loads`` with Infinity/NaN rejected, the process's own write count
(/proc/self/io) and fits made without the callback or the bar.
"""
import json
import os
import pickle
import stat
import sys

import numpy as np
import pytest

from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler

from cprop import MLPClassifier
from cprop.callbacks import EpochRecord, HistoryLogger, ModelCheckpoint

X, y = load_digits(n_class=3, return_X_y=True)
X = MinMaxScaler().fit_transform(X[:150])
y = y[:150]


pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _fit(callbacks, **params):
    kw = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=0, callbacks=callbacks)
    kw.update(params)
    return MLPClassifier(**kw).fit(X, y)


def _strict_json(text):
    def reject(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=reject)


# ---- 1. ModelCheckpoint writes only its own regular file -----------------------------------------
def test_checkpoint_writes_only_the_path_given(tmp_path, assert_same_weights):
    path = tmp_path / "best.pkl"
    ckpt = ModelCheckpoint(monitor="loss", path=path)
    clf = _fit([ckpt])
    assert sorted(os.listdir(tmp_path)) == ["best.pkl"]           # no temporary file beside it
    with open(path, "rb") as f:
        saved = pickle.load(f)
    assert saved.n_iter_ == ckpt.best_epoch_
    assert_same_weights(ckpt.restore(clf), saved)
    # a later fit replaces the checkpoint's own regular file
    _fit([ModelCheckpoint(monitor="loss", path=path)], max_iter=2)
    with open(path, "rb") as f:
        assert pickle.load(f).n_iter_ <= 2


def test_checkpoint_refuses_a_symlink_and_leaves_it_and_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    link = tmp_path / "best.pkl"
    link.symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        _fit([ModelCheckpoint(monitor="loss", path=link)])
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert victim.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["best.pkl", "victim.txt"]


def test_checkpoint_refuses_a_fifo_without_blocking_or_replacing_it(tmp_path):
    fifo = tmp_path / "best.pkl"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        _fit([ModelCheckpoint(monitor="loss", path=fifo)])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["best.pkl"]


def test_checkpoint_refuses_a_directory(tmp_path):
    (tmp_path / "best.pkl").mkdir()
    with pytest.raises(ValueError, match="directory"):
        _fit([ModelCheckpoint(monitor="loss", path=tmp_path / "best.pkl")])


class SwapIn:
    """After epoch 1, replaces the file at ``path`` by a link to ``victim``."""

    def __init__(self, path, victim):
        self.path, self.victim = path, victim

    def __call__(self, estimator, record):
        if record.epoch == 1:
            self.path.unlink()
            self.path.symlink_to(self.victim)


def test_checkpoint_entry_swapped_after_the_start_is_refused_at_the_write(tmp_path):
    """A link put at the path during training (after the start's check) is not followed."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    path = tmp_path / "best.pkl"
    with pytest.raises(ValueError, match="symbolic link"):
        _fit([ModelCheckpoint(monitor="loss", path=path), SwapIn(path, victim),
              ModelCheckpoint(monitor="loss", path=path)])
    assert victim.read_bytes() == b"precious" and path.is_symlink()


class Unpicklable:
    """A callback that cannot be pickled (holds a lambda), so the checkpoint's save fails."""

    def __init__(self):
        self.f = lambda: None

    def __call__(self, estimator, record):
        return False


def test_a_failed_save_leaves_no_temporary_file_and_the_old_checkpoint(tmp_path):
    path = tmp_path / "best.pkl"
    path.write_bytes(b"the previous checkpoint")
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        _fit([ModelCheckpoint(monitor="loss", path=path), Unpicklable()])
    assert os.listdir(tmp_path) == ["best.pkl"]
    assert path.read_bytes() == b"the previous checkpoint"


def test_checkpoint_in_a_missing_directory_fails_before_training(tmp_path):
    path = tmp_path / "no" / "best.pkl"
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0,
                        callbacks=[ModelCheckpoint(monitor="loss", path=path)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_") and os.listdir(tmp_path) == []


# ---- 2. HistoryLogger ---------------------------------------------------------------------------
def _record(epoch, loss, **kw):
    return EpochRecord(epoch=epoch, loss=loss, learning_rate=0.001, time=0.01, n_samples=10, **kw)


def test_history_json_is_valid_json_with_non_finite_values(tmp_path):
    path = tmp_path / "h.json"
    log = HistoryLogger(path)
    log.on_train_begin(None)
    log(None, _record(1, 0.5, validation_loss=float("nan")))
    log(None, _record(2, float("inf"), validation_score=float("-inf")))
    rows = _strict_json(path.read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == 0.5 and rows[0]["validation_loss"] is None
    assert rows[1]["loss"] is None and rows[1]["validation_score"] is None


def _bytes_written():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_history_writes_each_epoch_once_not_the_whole_log(tmp_path, fmt):
    """Logging n epochs writes about the file's size in all (linear), not n/2 times it."""
    if not os.path.exists("/proc/self/io"):
        pytest.skip("needs Linux's /proc/self/io to count the bytes written")
    path = tmp_path / f"h.{fmt}"
    log = HistoryLogger(path)
    log.on_train_begin(None)
    before = _bytes_written()
    for epoch in range(1, 301):
        log(None, _record(epoch, 1.0 / epoch))
    written = _bytes_written() - before
    size = path.stat().st_size
    assert size <= written < 2 * size + 4096       # rewriting the whole log: ~150 * size
    rows = _strict_json(path.read_text()) if fmt == "json" else path.read_text().splitlines()[1:]
    assert len(rows) == 300


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_history_survives_a_fit_that_fails_before_training(tmp_path, fmt):
    path = tmp_path / f"h.{fmt}"
    log = HistoryLogger(path)
    clf = _fit([log])
    old = path.read_bytes()
    assert len(clf.loss_curve_) == 4
    bad = X.copy()
    bad[3, 2] = np.nan                          # rejected by fit's data validation
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, y)
    assert path.read_bytes() == old
    clf.fit(X[:60], y[:60])                     # a fit that trains starts a new log
    rows = (_strict_json(path.read_text()) if fmt == "json"
            else path.read_text().splitlines()[1:])
    assert len(rows) == len(clf.loss_curve_) == 4


def test_history_refuses_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (tmp_path / "h.csv").symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        _fit([HistoryLogger(tmp_path / "h.csv")])
    assert victim.read_bytes() == b"precious"


# ---- 3. the progress bar never stops training ----------------------------------------------------
class BrokenStream:
    def write(self, text):
        raise OSError(5, "Input/output error")

    def flush(self):
        raise OSError(5, "Input/output error")


@pytest.mark.parametrize("stderr", [None, BrokenStream()], ids=["no stderr", "broken stderr"])
def test_progress_bar_without_a_working_stderr_trains_anyway(monkeypatch, capsys, stderr,
                                                             assert_same_weights):
    monkeypatch.setitem(sys.modules, "tqdm", None)          # the plain bar (tqdm is optional)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    ref = _fit(None, max_iter=3)
    monkeypatch.setattr(sys, "stderr", stderr)
    clf = _fit(None, max_iter=3, verbose=2)
    monkeypatch.undo()
    assert_same_weights(clf, ref)
    assert clf.n_iter_ == 3 and clf.loss_curve_ == ref.loss_curve_
    assert "Iteration 3" in capsys.readouterr().out          # verbose's lines still printed


@pytest.mark.parametrize("stderr", [None, BrokenStream()], ids=["no stderr", "broken stderr"])
def test_progress_bar_with_tqdm_without_a_working_stderr_trains_anyway(monkeypatch, stderr,
                                                                       assert_same_weights):
    pytest.importorskip("tqdm", reason="tqdm (optional) is not installed")
    ref = _fit(None, max_iter=3)
    monkeypatch.setattr(sys, "stderr", stderr)
    clf = _fit(None, max_iter=3, verbose=2)
    monkeypatch.undo()
    assert_same_weights(clf, ref)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_history_starts_a_new_log_when_the_file_went_away(tmp_path, fmt):
    """A model trained further after its log was removed (e.g. loaded on another machine)
    writes a complete log again, not a headless or unterminated one."""
    path = tmp_path / f"h.{fmt}"
    clf = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, callbacks=[HistoryLogger(path)])
    clf.partial_fit(X, y, classes=np.unique(y))
    clf = pickle.loads(pickle.dumps(clf))
    path.unlink()
    clf.partial_fit(X, y)
    clf.partial_fit(X, y)
    if fmt == "json":
        assert [r["epoch"] for r in _strict_json(path.read_text())] == [2, 3]
    else:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("epoch,loss") and len(lines) == 3
