"""Scale-out with Dask: a ``distributed.LocalCluster`` of 2 worker processes, 1 thread each.

References: the same computation run here in one process (a grid search with ``n_jobs=None``,
``partial_fit`` over the same chunks in the same order, ``predict`` on the numpy array); on the
cluster the results must be identical. Needs the ``dask`` extra (``pip install 'cprop[dask]'``:
dask, distributed, dask-ml); skipped without it.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("distributed", reason="needs the 'dask' extra: pip install 'cprop[dask]'")
pytest.importorskip("dask_ml", reason="needs the 'dask' extra: pip install 'cprop[dask]'")

import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from cprop import MLPClassifier  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Port 8787 is already in use"
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    with cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_workers_run_cprop_on_one_thread_unless_told(client):
    # Dask's nanny starts workers with OMP_NUM_THREADS=1, which cprop's thread policy honours:
    # two workers on two cores do not oversubscribe them. An explicit n_threads still wins.
    from cprop._openmp import effective_n_threads

    assert set(client.run(lambda: effective_n_threads(None)).values()) == {1}
    assert set(client.run(lambda: effective_n_threads(2)).values()) == {2}


def test_grid_search_under_dask_backend_equals_local(client, digits, quietly):
    X, y = digits
    X, y = X[:600], y[:600]
    params = {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4, 1e-2]}
    est = MLPClassifier(max_iter=15, random_state=0)
    local = quietly(GridSearchCV(est, params, cv=2).fit, X, y)
    grid = GridSearchCV(est, params, cv=2)
    with get_task_stream(client) as ts, joblib.parallel_backend("dask"):
        quietly(grid.fit, X, y)
    # the fits ran as tasks (joblib batches them) on the cluster's workers
    assert ts.data and {t["worker"] for t in ts.data} <= set(client.scheduler_info()["workers"])
    np.testing.assert_array_equal(grid.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    assert grid.best_params_ == local.best_params_
    for a, b in zip(grid.best_estimator_.coefs_, local.best_estimator_.coefs_):
        np.testing.assert_array_equal(a, b)


def test_incremental_over_chunked_dask_array_equals_partial_fit_loop(client, digits):
    from dask_ml.wrappers import Incremental

    X, y = digits
    X, y = X[:1000], y[:1000]
    classes = np.unique(y)
    Xd = da.from_array(X, chunks=(250, X.shape[1]))
    yd = da.from_array(y, chunks=250)
    inc = Incremental(MLPClassifier(hidden_layer_sizes=(16,), random_state=0),
                      shuffle_blocks=False)
    inc.fit(Xd, yd, classes=classes)
    ref = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    for start in range(0, len(X), 250):
        ref.partial_fit(X[start:start + 250], y[start:start + 250], classes=classes)
    for a, b in zip(inc.estimator_.coefs_ + inc.estimator_.intercepts_,
                    ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert inc.estimator_.t_ == ref.t_ == len(X)


def test_parallel_post_fit_prediction(client, digits, quietly):
    from dask_ml.wrappers import ParallelPostFit

    X, y = digits
    clf = quietly(ParallelPostFit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=20,
                                                 random_state=0)).fit, X, y)
    Xd = da.from_array(X, chunks=(400, X.shape[1]))
    pred = clf.predict(Xd)
    proba = clf.predict_proba(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), clf.estimator.predict(X))
    np.testing.assert_array_equal(proba.compute(), clf.estimator.predict_proba(X))
