"""L-BFGS fits before and after the per-fit runner (issue 17), paired and interleaved.

    python benchmarks/bench_runner.py OLD NEW [REPS]
        # imports cprop from the directory OLD (a build before the change) and NEW in
        # alternating subprocesses, one thread (OMP_NUM_THREADS=1; CPROP_KERNEL passed on);
        # medians [min-max] of REPS (default 5) rounds, each round the best of 3 fits:
        # breast cancer (426 rows, 30-100-2, float64: per-iteration overhead shows), digits
        # (1797 rows, 64-100-10, float64) and 5000 random rows of a 784-100-10 float32 network,
        # all MLPClassifier(solver='lbfgs', random_state=0); the fitted weights' sum is printed
        # so that the two builds can be seen to agree bitwise.
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
warnings.simplefilter("ignore")
Xb, yb = load_breast_cancer(return_X_y=True)
Xb = ((Xb - Xb.mean(0)) / Xb.std(0))[:426]
yb = yb[:426]
Xd, yd = load_digits(return_X_y=True)
Xd = Xd / 16.0
rng = np.random.default_rng(0)
Xw = rng.random((5000, 784)).astype(np.float32)
yw = rng.integers(0, 10, 5000)
out = {}
for name, X, y, kw in [("cancer", Xb, yb, dict(max_iter=200)),
                       ("digits", Xd, yd, dict(max_iter=200)),
                       ("w784", Xw, yw, dict(max_iter=30))]:
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        clf = MLPClassifier(solver="lbfgs", random_state=0, **kw).fit(X, y)
        best = min(best, time.perf_counter() - t)
    out[name] = best
    out[name + "_iter"] = clf.n_iter_
    out[name + "_sum"] = float(sum(c.astype(np.float64).sum() for c in clf.coefs_))
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
    keys = ("cancer", "digits", "w784")
    print(f"kernel path: {res[new][0]['path']}")
    print("| build | cancer lbfgs fit s | digits lbfgs fit s | 5000x784-100-10 f32 lbfgs s | "
          "n_iter | sum of coefs |")
    print("|---|---|---|---|---|---|")
    med = {}
    for path in (old, new):
        cols = []
        for key in keys:
            v = np.array([r[key] for r in res[path]])
            med[path, key] = np.median(v)
            cols.append(f"{np.median(v):.4f} [{v.min():.4f}-{v.max():.4f}]")
        r0 = res[path][0]
        print(f"| {path} | {' | '.join(cols)} | "
              f"{', '.join(str(r0[k + '_iter']) for k in keys)} | "
              f"{', '.join(repr(r0[k + '_sum']) for k in keys)} |")
    print("\nnew / old medians: " + ", ".join(
        f"{key} {med[new, key] / med[old, key]:.3f}" for key in keys))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)
