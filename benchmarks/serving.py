"""Serving: one-row latency and large-batch predict, cprop beside scikit-learn and onnxruntime.

    python benchmarks/serving.py                   # both tables, markdown on stdout
    python benchmarks/serving.py --only latency    # or: --only batch, --only w1
    flock /tmp/cprop-bench.lock python benchmarks/serving.py   # on a shared machine

Model: a 20-64-64-3 MLPClassifier (relu, float64, scikit-learn's defaults), the same weights in
all three systems (cprop's, copied into scikit-learn with ``to_sklearn`` and exported to ONNX
with ``cprop.onnx``); the outputs are checked against each other before timing.

1. Latency: ``predict`` / ``predict_proba`` on one row, a C-contiguous float64 array of shape
   (1, 20) -- what a web service passes.  Each repetition times ``calls`` calls back to back;
   the table gives the median per call over the repetitions [min-max].  onnxruntime runs the
   exported graph (``zipmap=False``, double input) with one session thread; one ``run`` returns
   both labels and probabilities, so its figure stands in both rows.
2. Batch: 60,000 rows at 1 and 2 threads, medians of interleaved repetitions, for the model
   above and for bench.py's W1 predict network (784-100-10, float32).  "forward" is cprop's
   compiled forward passes alone (``Network.serve`` into a preallocated output, no checks, no
   labels): the floor that ``predict`` is measured against.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import machine_header  # noqa: E402

REPS = 7


def _model(kind="small"):
    """(cprop model, the same weights in scikit-learn, 60,000 C-contiguous rows).

    small: the 20-64-64-3 float64 classifier above, on make_classification data.
    w1: bench.py's predict network, 784-100-10 in float32, on uniform random rows.
    """
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from cprop import MLPClassifier
    if kind == "small":
        X, y = make_classification(n_samples=60000, n_features=20, n_informative=10,
                                   n_classes=3, random_state=0)
        hidden = (64, 64)
    else:
        rng = np.random.default_rng(0)
        X = rng.random((60000, 784), dtype=np.float32)
        y = rng.integers(0, 10, 60000)
        hidden = (100,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden, max_iter=5, random_state=0, n_threads=1).fit(X[:5000],
                                                                                y[:5000])
    sk = clf.to_sklearn()
    return clf, sk, np.ascontiguousarray(X)
def _onnx_session(clf, X, threads):
    try:
        import onnxruntime as ort
        from skl2onnx import to_onnx
        import cprop.onnx  # noqa: F401 (registers the converters)
    except ImportError:
        return None
    onx = to_onnx(clf, X[:1], options={"zipmap": False})
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # no spin-waiting after a run: its threads would take the other core from the next timer
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _check(clf, sk, sess, X):
    x = X[:2000]
    tol = 1e-4 if X.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(clf.predict_proba(x), sk.predict_proba(x), rtol=tol, atol=tol)
    assert (clf.predict(x) == sk.predict(x)).mean() > 0.999
    if sess is not None:
        label, proba = sess.run(None, {"X": x})
        np.testing.assert_allclose(proba, clf.predict_proba(x), rtol=max(tol, 1e-6), atol=1e-6)
        assert (label == clf.predict(x)).mean() > 0.999


def _per_call(fn, calls):
    fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


SETTLE = 0.05     # seconds of sleep before each timed run: BLAS threads stop spinning


def _paired(timers, reps):
    """{name: [seconds per repetition]}, the timers interleaved repetition by repetition, each
    after SETTLE seconds of sleep (so no system's spinning threads slow the next one)."""
    times = {k: [] for k in timers}
    for _ in range(reps):
        for k, run in timers.items():
            time.sleep(SETTLE)
            times[k].append(run())
    return times


def _cell(v, scale, digits):
    return f"{np.median(v) * scale:.{digits}f} [{min(v) * scale:.{digits}f}-{max(v) * scale:.{digits}f}]"


def latency(clf, sk, X, reps):
    x1 = np.ascontiguousarray(X[:1])
    sess = _onnx_session(clf, X, 1)
    clf.set_params(n_threads=1)
    calls = {"cprop": 20000, "sklearn": 2000, "onnxruntime": 20000}
    with threadpool_limits(1):
        timers = {
            ("predict", "cprop"): lambda: _per_call(lambda: clf.predict(x1), calls["cprop"]),
            ("predict", "sklearn"): lambda: _per_call(lambda: sk.predict(x1), calls["sklearn"]),
            ("predict_proba", "cprop"): lambda: _per_call(lambda: clf.predict_proba(x1),
                                                          calls["cprop"]),
            ("predict_proba", "sklearn"): lambda: _per_call(lambda: sk.predict_proba(x1),
                                                            calls["sklearn"]),
        }
        if sess is not None:
            timers[("both", "onnxruntime")] = lambda: _per_call(
                lambda: sess.run(None, {"X": x1}), calls["onnxruntime"])
        times = _paired(timers, reps)
    print("### one-row latency: 20-64-64-3 classifier, float64 row of shape (1, 20), one thread; "
          "us per call, median [min-max]\n")
    print("| method | cprop us | scikit-learn us | sklearn / cprop | onnxruntime us | "
          "cprop / onnxruntime |\n|---|---|---|---|---|---|")
    ort_t = times.get(("both", "onnxruntime"))
    for m in ("predict", "predict_proba"):
        c, s = times[(m, "cprop")], times[(m, "sklearn")]
        o = _cell(ort_t, 1e6, 1) if ort_t else "not installed"
        r = f"{np.median(c) / np.median(ort_t):.2f}" if ort_t else "-"
        print(f"| {m} | {_cell(c, 1e6, 1)} | {_cell(s, 1e6, 1)} | "
              f"{np.median(s) / np.median(c):.1f} | {o} | {r} |")
    print(f"\n{calls['cprop']} calls per repetition for cprop and onnxruntime, "
          f"{calls['sklearn']} for scikit-learn; {reps} repetitions, interleaved.\n")


def batch(clf, sk, X, reps, title, threads=(1, 2)):
    print(f"### large batch: {title}; ms per call, median [min-max]\n")
    print("| threads | what | cprop ms | forward ms | forward / cprop | old engine ms | "
          "scikit-learn ms | sklearn / cprop | onnxruntime ms | onnxruntime / cprop |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for t in threads:
        clf.set_params(n_threads=t)
        net = clf._network(clf._layer_units(), X.dtype)      # the old engine's
        clf.predict(X[:1])
        serving = clf._nets["serving"]                          # the serving path's
        params = clf._params
        out = np.empty((X.shape[0], clf.n_outputs_), dtype=X.dtype)
        sess = _onnx_session(clf, X, t)

        def timed(fn):
            def run():
                s = time.perf_counter()
                fn()
                return time.perf_counter() - s
            return run
        with threadpool_limits(t):
            timers = {
                "forward": timed(lambda: serving.net.serve(params, X, out, None,
                                                           check_finite=False, n_threads=t)),
                "old engine": timed(lambda: net.predict(params, X)),
                "predict": timed(lambda: clf.predict(X)),
                "predict_proba": timed(lambda: clf.predict_proba(X)),
                "sk predict": timed(lambda: sk.predict(X)),
                "sk predict_proba": timed(lambda: sk.predict_proba(X)),
            }
            if sess is not None:
                timers["onnxruntime"] = timed(lambda: sess.run(None, {"X": X}))
            for fn in timers.values():
                fn()
            times = _paired(timers, reps)
        f = np.median(times["forward"])
        for m in ("predict", "predict_proba"):
            c, s = times[m], times["sk " + m]
            o = times.get("onnxruntime")
            print(f"| {t} | {m} | {_cell(c, 1e3, 2)} | {_cell(times['forward'], 1e3, 2)} | "
                  f"{f / np.median(c):.3f} | {_cell(times['old engine'], 1e3, 2)} | "
                  f"{_cell(s, 1e3, 2)} | {np.median(s) / np.median(c):.2f} | "
                  f"{_cell(o, 1e3, 2) if o else 'not installed'} | "
                  f"{(np.median(o) / np.median(c)) if o else float('nan'):.2f} |")
    clf.set_params(n_threads=1)
    print(f"\n{reps} repetitions, interleaved; scikit-learn's BLAS and onnxruntime's session "
          "limited to the same thread count. 'forward': the compiled passes alone "
          "(``Network.serve`` into a preallocated output, no finiteness check, no labels), the "
          "floor of predict; 'forward / cprop' is the share of a call spent there (1.0: nothing "
          "else costs). 'old engine': ``Network.predict``, the passes as predict ran them before "
          "the serving path (threads inside each product, 4096-row passes at 2 threads), "
          "without validation or labels.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="latency,batch,w1")
    ap.add_argument("--reps", type=int, default=REPS)
    args = ap.parse_args()
    import cprop
    clf, sk, X = _model("small")
    _check(clf, sk, _onnx_session(clf, X, 1), X)
    for line in machine_header():
        print(f"- {line}")
    try:
        import onnxruntime
        print(f"- onnxruntime {onnxruntime.__version__}")
    except ImportError:
        print("- onnxruntime not installed")
    print(f"- kernel path: {cprop.kernel_info()['name']}\n")
    if "latency" in args.only:
        latency(clf, sk, X, args.reps)
    if "batch" in args.only:
        batch(clf, sk, X, args.reps, "60,000 rows x 20 features, 20-64-64-3, float64")
    if "w1" in args.only:
        clf, sk, X = _model("w1")
        _check(clf, sk, _onnx_session(clf, X, 1), X)
        batch(clf, sk, X, args.reps, "60,000 rows x 784 features, 784-100-10 (bench.py's W1 "
              "predict), float32")


if __name__ == "__main__":
    main()
