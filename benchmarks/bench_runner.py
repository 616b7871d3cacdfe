"""Fits before and after the per-fit runner (issue 17), paired and interleaved.

    python benchmarks/bench_runner.py OLD NEW [REPS]
        # imports cprop from the directory OLD (a build before the change) and NEW in
        # alternating subprocesses, one thread (OMP_NUM_THREADS=1; CPROP_KERNEL passed on);
        # CPU seconds (process_time: a shared machine's run queue does not count), medians
        # [min-max] of REPS (default 5) rounds, each round the best of 3:
        # a default digits fit (adam, the compiled fit loop), L-BFGS fits
        # (MLPClassifier(solver='lbfgs', random_state=0)) of breast cancer (426 rows, 30-100-2,
        # float64: per-iteration overhead shows), digits (64-100-10, float64) and 5000 random
        # rows of a 784-100-10 float32 network (30 iterations), 200 prepared epochs of 426 rows
        # (Network.epochs, the estimator's Python loop) and 200 one-shot one-row train_epoch
        # calls.  The fitted weights' sums are printed: the two builds agree bitwise.
"""
import json
import os
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, time, warnings
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from cprop import MLPClassifier
from cprop._engine import Network
from cprop._optimizers import OptimizerState
warnings.simplefilter("ignore")
clock = time.process_time     # one thread: CPU seconds, not the run queue of a shared machine
Xb, yb = load_breast_cancer(return_X_y=True)
Xb = ((Xb - Xb.mean(0)) / Xb.std(0))[:426]
yb = yb[:426]
Xd, yd = load_digits(return_X_y=True)
rng = np.random.default_rng(0)
Xw = rng.random((5000, 784)).astype(np.float32)
yw = rng.integers(0, 10, 5000)
Xs = rng.standard_normal((426, 30)).astype(np.float32)
Ys = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 426)]
small = Network([30, 100, 2], "relu", "logistic", np.float32, n_threads=1)
p0 = small.init_params(np.random.RandomState(0))
order = rng.permutation(426)
out = {}


def best_of(name, fn, reps=3):
    best = np.inf
    for _ in range(reps):
        t = clock()
        res = fn()
        best = min(best, clock() - t)
    out[name] = best
    return res


for name, X, y, kw in [("digits_default", Xd, yd, dict(solver="adam")),
                       ("cancer_lbfgs", Xb, yb, dict(solver="lbfgs", max_iter=200)),
                       ("digits_lbfgs", Xd / 16.0, yd, dict(solver="lbfgs", max_iter=200)),
                       ("w784_lbfgs", Xw, yw, dict(solver="lbfgs", max_iter=30))]:
    clf = best_of(name, lambda: MLPClassifier(random_state=0, **kw).fit(X, y))
    out[name + "_iter"] = clf.n_iter_
    out[name + "_sum"] = float(sum(c.astype(np.float64).sum() for c in clf.coefs_))


def epochs():         # the estimator's Python loop: one prepared call per epoch
    st = OptimizerState("adam", small.n_params, np.float32)
    run = small.epochs(p0.copy(), st, Xs, Ys, None, 200, 1e-4)
    for _ in range(200):
        run(order)


def calls():          # one-shot train_epoch calls on one row (a call's fixed cost)
    st = OptimizerState("adam", small.n_params, np.float32)
    p = p0.copy()
    for _ in range(200):
        small.train_epoch(p, st, Xs[:1], Ys[:1], None, np.arange(1), 1, 1e-4)


best_of("epochs200", epochs)
best_of("calls200", calls)
import cprop
out["cprop"] = cprop.__file__
out["path"] = cprop.kernel_info()["name"]
print(json.dumps(out))
"""


def main(old, new, reps=5):
    res = {old: [], new: []}
    for _ in range(reps):
        for path in (old, new):
            env = {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
            if "CPROP_KERNEL" in os.environ:
                env["CPROP_KERNEL"] = os.environ["CPROP_KERNEL"]
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=path,
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if not os.path.realpath(r["cprop"]).startswith(os.path.realpath(path) + os.sep):
                raise RuntimeError(f"the child for {path} imported {r['cprop']}")
            res[path].append(r)
    keys = ("digits_default", "cancer_lbfgs", "digits_lbfgs", "w784_lbfgs", "epochs200",
            "calls200")
    fits = keys[:4]
    print(f"kernel path: {res[new][0]['path']}; CPU seconds, median [min-max] of {reps}")
    print("| build | " + " | ".join(keys) + " | n_iter | sum of coefs |")
    print("|---" * (len(keys) + 3) + "|")
    med = {}
    for path in (old, new):
        cols = []
        for key in keys:
            v = np.array([r[key] for r in res[path]])
            med[path, key] = np.median(v)
            cols.append(f"{np.median(v):.4f} [{v.min():.4f}-{v.max():.4f}]")
        r0 = res[path][0]
        print(f"| {path} | {' | '.join(cols)} | "
              f"{', '.join(str(r0[k + '_iter']) for k in fits)} | "
              f"{', '.join(repr(r0[k + '_sum']) for k in fits)} |")
    print("\nnew / old medians: " + ", ".join(
        f"{key} {med[new, key] / med[old, key]:.3f}" for key in keys))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)
