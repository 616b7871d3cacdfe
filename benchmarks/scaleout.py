"""GridSearchCV under joblib's backends: cprop's MLPClassifier beside scikit-learn's.

Usage (repository root, cprop installed or built in place with PYTHONPATH=.):

    python benchmarks/scaleout.py [--backends loky,dask,ray,spark] [--repeat 3]

Design
1. The workload is the README's search: digits (X / 16), MLPClassifier(max_iter=100,
   random_state=0) over hidden_layer_sizes in {(64,), (128,)} x alpha in {1e-4, 1e-2}, 3-fold
   CV: 12 fits plus the refit, the same for both libraries.
2. Each backend gets 2 workers of 1 CPU: loky ``n_jobs=2``; a ``distributed.LocalCluster`` of 2
   processes x 1 thread; ``ray.init(num_cpus=2)``; Spark ``local[2]`` (joblibspark). Starting
   a backend is not timed; a small warm-up search runs first on each (worker imports).
3. Before timing, each backend reports what a worker sees: cprop's default thread count
   (``cprop._openmp.effective_n_threads(None)``) and the BLAS threads (threadpoolctl). Those
   explain the times: a backend that leaves them at the CPU count oversubscribes the cores.
4. Libraries and repetitions alternate; cells are median [min-max] seconds of the whole search.
   A backend whose package is not installed is reported as such, never estimated.
"""
import argparse
import os
import statistics
import sys
import time
import warnings


def worker_threads():
    from threadpoolctl import threadpool_info

    from cprop._openmp import effective_n_threads

    blas = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    return effective_n_threads(None), blas, os.environ.get("OMP_NUM_THREADS")


def make_search(lib, hidden=((64,), (128,)), max_iter=100):
    from sklearn.model_selection import GridSearchCV

    if lib == "cprop":
        from cprop import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    return GridSearchCV(MLPClassifier(max_iter=max_iter, random_state=0),
                        {"hidden_layer_sizes": list(hidden), "alpha": [1e-4, 1e-2]}, cv=3)


def start(backend):
    """Start a backend; returns (joblib backend name, kwargs, stop function)."""
    if backend == "loky":
        return "loky", {"n_jobs": 2}, lambda: None
    if backend == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        return "dask", {}, lambda: (client.close(), cluster.close())
    if backend == "ray":
        import ray
        from ray.util.joblib import register_ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        register_ray()
        return "ray", {"n_jobs": 2}, ray.shutdown
    if backend == "spark":
        from joblibspark import register_spark
        from pyspark.sql import SparkSession

        spark = (SparkSession.builder.master("local[2]").appName("cprop-scaleout")
                 .config("spark.ui.enabled", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        register_spark()
        return "spark", {"n_jobs": 2}, spark.stop
    raise ValueError(f"unknown backend {backend!r}")


def run(backend, X, y, repeat):
    import joblib

    try:
        name, kw, stop = start(backend)
    except ImportError as exc:
        return {"backend": backend, "missing": str(exc)}
    try:
        with joblib.parallel_backend(name, **kw):
            seen = joblib.Parallel()(joblib.delayed(worker_threads)() for _ in range(2))
            for lib in ("cprop", "sklearn"):  # warm-up: imports on the workers
                make_search(lib, hidden=((8,),), max_iter=2).fit(X[:300], y[:300])
            times = {"cprop": [], "sklearn": []}
            scores = {}
            for _ in range(repeat):
                for lib in ("cprop", "sklearn"):
                    search = make_search(lib)
                    t0 = time.perf_counter()
                    search.fit(X, y)
                    times[lib].append(time.perf_counter() - t0)
                    scores[lib] = search.best_score_
        return {"backend": backend, "seen": seen, "times": times, "scores": scores}
    finally:
        stop()


def cell(values):
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="loky,dask,ray,spark")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # ConvergenceWarning in workers

    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    print("| backend (2 workers) | cprop s | scikit-learn s | ratio | cprop threads / BLAS threads "
          "/ OMP_NUM_THREADS in a worker | best CV score cprop / sklearn |")
    print("|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        r = run(backend, X, y, args.repeat)
        if "missing" in r:
            print(f"| {backend} | not installed ({r['missing']}) | | | | |")
            continue
        t = r["times"]
        ratio = statistics.median(t["sklearn"]) / statistics.median(t["cprop"])
        threads = "; ".join(f"{c} / {b} / {o}" for c, b, o in r["seen"])
        print(f"| {backend} | {cell(t['cprop'])} | {cell(t['sklearn'])} | {ratio:.1f}x | "
              f"{threads} | {r['scores']['cprop']:.3f} / {r['scores']['sklearn']:.3f} |",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
