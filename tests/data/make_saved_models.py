"""Writes the saved models that tests/integration/test_interop.py loads: models saved by an earlier
cprop must still load.  Run from the root of the cprop version to save with (``python
tests/data/make_saved_models.py OUT_DIR``); the files in tests/data/saved-3ce44f8/ were made by
commit 3ce44f8 (before issue 17's load checks)."""
import os
import pickle
import sys
import tempfile
import warnings

import numpy as np
from sklearn.datasets import make_classification, make_regression

from cprop import MLPClassifier, MLPRegressor
from cprop.callbacks import HistoryLogger, ModelCheckpoint


def models():
    X, y = make_classification(n_samples=60, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    Xr, yr = make_regression(n_samples=60, n_features=5, random_state=0)
    yield "multiclass_adam", MLPClassifier((6,), max_iter=5, random_state=0), X, y
    yield ("binary_sgd_float32_strings", MLPClassifier((4, 3), solver="sgd", max_iter=5,
                                                       random_state=0),
           X.astype(np.float32), np.array(["no", "yes"])[(y == 1).astype(int)])
    yield ("multilabel_lbfgs", MLPClassifier((5,), solver="lbfgs", max_iter=20, random_state=0),
           X, np.c_[y == 1, y == 2, y != 0].astype(int))
    yield ("poisson_layers", MLPRegressor(hidden_layer_sizes=(5, 4), activation=["gelu", "tanh"],
                                          loss="poisson", max_iter=5, random_state=0),
           Xr, np.abs(yr) / 50)
    yield ("callbacks_dropout", MLPClassifier(
        (6,), max_iter=5, random_state=0, dropout=0.1, monitor_gradients=True,
        callbacks=[ModelCheckpoint(monitor="loss"),
                   HistoryLogger(os.path.join(tempfile.mkdtemp(), "history.json"))]), X, y)


def main(out):
    os.makedirs(out, exist_ok=True)
    try:
        import skops.io as sio
    except ImportError:
        sio = None
    for name, est, X, y in models():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        pred = est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)
        with open(os.path.join(out, name + ".pkl"), "wb") as f:
            pickle.dump({"model": est, "X": X, "expected": pred}, f)
        if sio is not None and not est.callbacks:   # skops: see test_interop
            sio.dump(est, os.path.join(out, name + ".skops"))


if __name__ == "__main__":
    main(sys.argv[1])
