"""cprop speed benchmark: GEMM, training epochs, small-data fits, prediction and memory, side by side.

One command (from the repository root, with cprop importable):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py [--quick] [--threads 1,2]

Sections (issue 4): peak (numpy GEMM at 2048, the anchor for "% of peak"), kernel (cprop GEMM vs
numpy), W1/W2/W3 (one epoch of Adam; cprop vs scikit-learn float32 vs PyTorch when installed),
small data (whole fits; needs cprop.MLPClassifier), predict (rows/s), memory (peak extra RSS
during a W1 epoch).

Method
1. Threads are fixed per system: threadpoolctl limits OpenBLAS (numpy, scikit-learn), torch gets
   ``torch.set_num_threads``, cprop gets ``n_threads``.  While cprop runs, BLAS is limited to 1
   thread so idle OpenBLAS workers do not spin on the cores.
2. Systems are interleaved: every repetition runs each system once, in rotating order; tables give
   the median over repetitions and [min-max].  Nothing here is a test: no timing is asserted.
   Between two timed runs the benchmark sleeps ``--settle`` seconds (default 0.15): OpenBLAS
   workers spin for about 2^28 cycles after their last call and PyTorch's OpenMP workers for a
   while too, and a spinning thread steals a core from whichever system runs next.
3. Training, small-data fits and prediction run each system in its own spawned process (built
   once, then asked for one timed run per repetition): one library's thread pool never shares an
   address space, allocator or OpenMP runtime with another's, as for a user who imports one.
4. GFLOP/s of training counts the GEMM work of an epoch: forward 2 N sum(W) + weight gradients
   2 N sum(W) + input gradients of the layers after the first, sum(W) = sum of fan_in * fan_out.
   "% of peak" divides by numpy's float32 GEMM GFLOP/s at 2048 on the same thread count, taken
   from its fastest repetition (the median of a noisy stretch understates the machine).
5. Memory: each system runs one W1 epoch in a fresh subprocess holding the same data; the peak
   resident set (Linux: VmHWM after resetting it through /proc/self/clear_refs; elsewhere a 1 ms
   polling thread) minus the resident set just before the epoch is the extra memory.  tracemalloc
   would not see cprop's (or OpenBLAS's) malloc, RSS sees everything.
"""
import argparse
import datetime
import gc
import functools
import importlib.metadata
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover
    sys.exit("benchmarks/bench.py needs threadpoolctl (pip install threadpoolctl) to fix BLAS threads.")

import cprop
from cprop._engine import Network, OptimizerState
from cprop._gemm import gemm_py
from cprop._isa import available_kernels, kernel_info, set_cpu_model, set_kernel

try:
    from cprop import MLPClassifier as CpropMLP
except ImportError:
    CpropMLP = None

# PyTorch is imported only inside its own worker process (TorchEpoch), never beside cprop.
try:
    TORCH_VERSION = importlib.metadata.version("torch")
except importlib.metadata.PackageNotFoundError:
    TORCH_VERSION = None

WORKLOADS = {
    "W1": dict(hidden=(100,), batch=200),
    "W2": dict(hidden=(512, 256), batch=256),
    "W3": dict(hidden=(1024,), batch=1024),
}
N_SAMPLES, N_FEATURES, N_CLASSES = 60000, 784, 10


# ---- helpers -----------------------------------------------------------------------------------
def _blocks(dtype):
    b = kernel_info()[dtype]
    return f"{b['mr']}x{b['nr']}, MC/KC/NC {b['mc']}/{b['kc']}/{b['nc']}"


def machine_header():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
            f"{i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas"]
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                      "OMP_WAIT_POLICY", "CPROP_KERNEL") if k in os.environ}
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "n/a"
    lines = [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {cpu}; {os.cpu_count()} logical CPUs; {platform.system()} {platform.machine()}",
        f"load average at start: {load}",
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {_version('sklearn')}, torch {TORCH_VERSION or 'not installed'}",
        f"BLAS: {'; '.join(blas) or 'unknown'}",
        f"cprop {cprop.__version__}: kernel path {kernel_info()['name']} "
        f"(float32 {_blocks('float32')}, float64 {_blocks('float64')}), "
        f"available {available_kernels()}, CPU features {kernel_info()['cpu_features']}, "
        f"CPU {kernel_info()['cpu']} (model {kernel_info()['cpu_model'] or 'generic'}, "
        f"{kernel_info()['blocks']} blocks)",
        f"environment: {env or 'no OpenBLAS/OpenMP overrides'}",
    ]
    return lines


def _version(mod):
    try:
        return __import__(mod).__version__
    except ImportError:
        return "not installed"


def stats(ts):
    ts = np.asarray(ts, dtype=float)
    return float(np.median(ts)), float(ts.min()), float(ts.max())


def fmt_t(ts):
    med, lo, hi = stats(ts)
    return f"{med:.3f} [{lo:.3f}-{hi:.3f}]"


def fmt_rate(work, ts, unit=1e9, prec=1):
    """Rate for the median time, with the range from the slowest/fastest repetition."""
    med, lo, hi = stats(ts)
    return f"{work / med / unit:.{prec}f} [{work / hi / unit:.{prec}f}-{work / lo / unit:.{prec}f}]"


SETTLE = 0.15   # seconds between timed runs (see Method 2); --settle changes it


def interleave(systems, reps):
    """Run each (name, fn) once per repetition in rotating order; returns {name: [seconds]}."""
    times = {name: [] for name, _ in systems}
    for r in range(reps):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for name, fn in order:
            gc.collect()
            time.sleep(SETTLE)
            t = fn()
            times[name].append(t)
    return times


# ---- one system per process ----------------------------------------------------------------------
def _serve(conn, factory, args):
    """Child side of ``Remote``: build ``factory(*args)`` once, then time it on each request."""
    try:
        fn = factory(*args)
        conn.send(("ready", None, None))
        while conn.recv() is not None:
            gc.collect()
            t = fn()
            conn.send(("ok", t, getattr(fn, "info", None)))
    except BaseException:                       # report, never hang the parent
        conn.send(("error", traceback.format_exc(), None))
    finally:
        conn.close()


class Remote:
    """A system built in its own spawned process; calling it times one run there.

    ``factory`` and ``args`` must be picklable (module-level); the child builds its data itself.
    ``info`` holds what the system's ``info`` attribute said after the last run (e.g. accuracy).
    """

    def __init__(self, factory, *args):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, factory, args), daemon=True)
        self.proc.start()
        child.close()
        self.info = None
        self._reply()

    def _reply(self):
        kind, value, info = self.conn.recv()
        if kind == "error":
            self.close()
            raise RuntimeError(f"benchmark worker failed:\n{value}")
        self.info = info
        return value

    def __call__(self):
        self.conn.send("run")
        return self._reply()

    def close(self):
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


def table(title, header, rows, notes=()):
    out = [f"\n### {title}\n", "| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    out += [f"\n{n}" for n in notes]
    print("\n".join(out), flush=True)


def timed(fn, inner=1, clock=time.perf_counter):
    t = clock()
    for _ in range(inner):
        fn()
    return (clock() - t) / inner


# --cpu-time: one-thread GEMMs are timed by the calling thread's CPU time (time.thread_time), which
# leaves out the time the OS gives other processes on a shared machine (threads > 1: wall time).
CPU_TIME = False


def _clock(nt):
    return time.thread_time if CPU_TIME and nt == 1 else time.perf_counter


# ---- peak and kernel -----------------------------------------------------------------------------
def numpy_gemm(A, B, C, nt):
    def run():
        with threadpool_limits(limits=nt, user_api="blas"):
            return timed(lambda: np.matmul(A, B, out=C))
    return run


def cprop_gemm(ta, tb, A, B, C, nt, inner):
    def run():
        with threadpool_limits(limits=1, user_api="blas"):
            return timed(lambda: gemm_py(ta, tb, 1.0, A, B, 0.0, C, nt), inner, _clock(nt))
    return run


def bench_peak(threads, reps, size):
    peak = {}
    rows = []
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        A = rng.standard_normal((size, size)).astype(dt)
        B = rng.standard_normal((size, size)).astype(dt)
        C = np.empty((size, size), dt)
        flops = 2.0 * size ** 3
        for nt in threads:
            ts = interleave([("numpy", numpy_gemm(A, B, C, nt))], reps)["numpy"]
            # The fastest repetition: noise only ever slows a run down, so it is the best estimate
            # of what the machine can do (a median taken while another tenant held a core made
            # "% of peak" read 97% in one run).  Percentages divide medians by it: conservative.
            peak[(np.dtype(dt).name, nt)] = flops / min(ts) / 1e9
            rows.append([np.dtype(dt).name, nt, fmt_rate(flops, ts),
                         f"{peak[(np.dtype(dt).name, nt)]:.1f}"])
    table(f"peak: numpy GEMM at {size}, GFLOP/s (median [min-max])",
          ["dtype", "threads", "numpy GFLOP/s", "peak (fastest run)"], rows,
          ["'% of peak' below divides a median rate by the fastest run here."])
    return peak


def mlp_shapes(batch, fan_in, fan_out):
    """The three products of one dense layer: forward, weight gradient, input gradient."""
    return [(f"{batch}x{fan_in}x{fan_out} fwd X W", batch, fan_out, fan_in, False, False),
            (f"{batch}x{fan_in}x{fan_out} grad X^T D", fan_in, fan_out, batch, True, False),
            (f"{batch}x{fan_in}x{fan_out} grad D W^T", batch, fan_in, fan_out, False, True)]


def bench_kernel(threads, reps, squares, paths, quick=False, models=(None,), dtypes=None):
    """``models``: CPU models whose cache blocks each path runs (cprop._isa.set_cpu_model; None:
    the configured ones), each a column."""
    shapes = [(f"{n}^3", n, n, n, False, False) for n in squares]
    shapes += mlp_shapes(200, 784, 100)
    if not quick:
        shapes += mlp_shapes(256, 784, 512) + mlp_shapes(1024, 784, 1024)
    rows = []
    rng = np.random.default_rng(1)
    old = kernel_info()["name"]
    old_model = kernel_info()["cpu_model"] or "generic"
    systems_of = [(path, model) for path in paths for model in models]

    def label(path, model):
        return path if model is None else f"{path}/{model}"
    for dt in (dtypes or ((np.float32,) if quick else (np.float32, np.float64))):
        for shape_label, M, N, K, ta, tb in shapes:
            A = rng.standard_normal((K, M) if ta else (M, K)).astype(dt)
            B = rng.standard_normal((N, K) if tb else (K, N)).astype(dt)
            C = np.empty((M, N), dt)
            opA, opB = (A.T if ta else A), (B.T if tb else B)
            flops = 2.0 * M * N * K
            inner = max(1, int(0.02 * 50e9 / flops))   # about 20 ms per timing at 50 GFLOP/s
            for nt in threads:
                def np_run(nt=nt):
                    with threadpool_limits(limits=nt, user_api="blas"):
                        return timed(lambda: np.matmul(opA, opB, out=C), inner, _clock(nt))
                systems = [("numpy", np_run)]
                for path, model in systems_of:
                    def run(path=path, model=model, nt=nt):
                        if model is not None:
                            set_cpu_model(model)
                        set_kernel(path)
                        return cprop_gemm(ta, tb, A, B, C, nt, inner)()
                    systems.append((label(path, model), run))
                ts = interleave(systems, reps)
                row = [np.dtype(dt).name, shape_label, nt, fmt_rate(flops, ts["numpy"])]
                for path, model in systems_of:
                    name = label(path, model)
                    row += [fmt_rate(flops, ts[name]),
                            f"{stats(ts['numpy'])[0] / stats(ts[name])[0]:.2f}"]
                rows.append(row)
    set_cpu_model(old_model)
    set_kernel(old)
    header = ["dtype", "shape (MxKxN / op)", "threads", "numpy GFLOP/s"]
    for path, model in systems_of:
        header += [f"cprop {label(path, model)} GFLOP/s", f"{label(path, model)}/numpy"]
    table("kernel: GEMM GFLOP/s, median [min-max]; ratio of medians", header, rows,
          ["MLP rows: batch x fan_in x fan_out; 'fwd X W' is M=batch, N=fan_out, K=fan_in; "
           "'grad X^T D' is M=fan_in, N=fan_out, K=batch (A transposed); 'grad D W^T' is "
           "M=batch, N=fan_in, K=fan_out (B transposed)."
           + (" One-thread rows timed by thread CPU time (--cpu-time)." if CPU_TIME else "")])


# ---- training epochs -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def make_data(n=N_SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, N_FEATURES), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, n)
    return X, y


def train_flops(sizes, n):
    w = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2.0 * n * (2 * sum(w) + sum(w[1:]))


class CpropEpoch:
    """One epoch of Adam through the engine (or cprop.MLPClassifier.partial_fit when available)."""

    def __init__(self, X, y, hidden, batch, nt, use_estimator):
        self.X, self.y, self.batch, self.nt = X, y, batch, nt
        self.est = None
        if use_estimator and CpropMLP is not None and hasattr(CpropMLP, "partial_fit"):
            self.est = CpropMLP(hidden_layer_sizes=hidden, solver="adam", batch_size=batch,
                                alpha=1e-4, random_state=0, n_threads=nt)
            self.est.partial_fit(X[:batch], y[:batch], classes=np.arange(N_CLASSES))
            return
        self.net = Network([N_FEATURES, *hidden, N_CLASSES], "relu", "softmax", np.float32, nt)
        self.params = self.net.init_params(np.random.RandomState(0))
        self.state = OptimizerState("adam", self.net.n_params, np.float32)
        self.Y = np.eye(N_CLASSES, dtype=np.float32)[y]
        self.rng = np.random.RandomState(0)

    def __call__(self):
        with threadpool_limits(limits=1, user_api="blas"):
            if self.est is not None:
                return timed(lambda: self.est.partial_fit(self.X, self.y))
            order = self.rng.permutation(self.X.shape[0])   # drawn per epoch, as scikit-learn does
            return timed(lambda: self.net.train_epoch(self.params, self.state, self.X, self.Y,
                                                      order=order, batch_size=self.batch,
                                                      alpha=1e-4))


class SklearnEpoch:
    def __init__(self, X, y, hidden, batch, nt):
        from sklearn.neural_network import MLPClassifier
        self.X, self.y, self.nt = X, y, nt
        self.est = MLPClassifier(hidden_layer_sizes=hidden, solver="adam", batch_size=batch,
                                 alpha=1e-4, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.est.partial_fit(X[:batch], y[:batch], classes=np.arange(N_CLASSES))

    def __call__(self):
        with threadpool_limits(limits=self.nt, user_api="blas"):
            return timed(lambda: self.est.partial_fit(self.X, self.y))


class TorchEpoch:
    def __init__(self, X, y, hidden, batch, nt):
        import torch
        self.torch = torch
        self.nt, self.batch = nt, batch
        torch.manual_seed(0)
        layers, prev = [], N_FEATURES
        for h in hidden:
            layers += [torch.nn.Linear(prev, h), torch.nn.ReLU()]
            prev = h
        layers.append(torch.nn.Linear(prev, N_CLASSES))
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y.astype(np.int64))

    def epoch(self):
        perm = self.torch.randperm(self.X.shape[0])
        for s in range(0, self.X.shape[0], self.batch):
            idx = perm[s:s + self.batch]
            self.opt.zero_grad(set_to_none=True)
            out = self.loss(self.model(self.X[idx]), self.y[idx])
            out.backward()
            self.opt.step()

    def __call__(self):
        self.torch.set_num_threads(self.nt)
        with threadpool_limits(limits=1, user_api="blas"):
            return timed(self.epoch)


def epoch_system(kind, hidden, batch, nt, use_estimator):
    """Factory for ``Remote``: one system's epoch runner on the shared synthetic data."""
    X, y = make_data()
    if kind == "cprop":
        return CpropEpoch(X, y, hidden, batch, nt, use_estimator)
    if kind == "sklearn":
        return SklearnEpoch(X, y, hidden, batch, nt)
    return TorchEpoch(X, y, hidden, batch, nt)


def run_remote(systems, reps, warmup=True):
    """Start each (name, factory, args) in its own process, interleave ``reps`` runs, stop them."""
    remotes = []
    try:
        for name, factory, args in systems:
            remotes.append((name, Remote(factory, *args)))
        if warmup:
            for _, fn in remotes:   # one untimed run each (page faults, thread pools)
                fn()
        return interleave(remotes, reps), {name: fn.info for name, fn in remotes}
    finally:
        for _, fn in remotes:
            fn.close()


def bench_workloads(names, threads, reps, peak, use_estimator):
    rows = []
    results = {}
    for name in names:
        wl = WORKLOADS[name]
        sizes = [N_FEATURES, *wl["hidden"], N_CLASSES]
        flops = train_flops(sizes, N_SAMPLES)
        for nt in threads:
            args = (wl["hidden"], wl["batch"], nt, use_estimator)
            systems = [(kind, epoch_system, (kind, *args))
                       for kind in ("cprop", "sklearn", "torch") if kind != "torch" or TORCH_VERSION]
            ts, _ = run_remote(systems, reps)
            c = stats(ts["cprop"])[0]
            pk = peak.get(("float32", nt))
            row = [name, nt, fmt_t(ts["cprop"]), fmt_rate(flops, ts["cprop"]),
                   f"{100 * flops / c / 1e9 / pk:.0f}%" if pk else "n/a",
                   fmt_t(ts["sklearn"]), f"{stats(ts['sklearn'])[0] / c:.1f}x"]
            if TORCH_VERSION:
                row += [fmt_t(ts["torch"]), f"{stats(ts['torch'])[0] / c:.1f}x"]
            rows.append(row)
            results[(name, nt)] = {k: stats(v) for k, v in ts.items()}
    header = ["workload", "threads", "cprop s/epoch", "cprop GFLOP/s", "% of peak",
              "sklearn s/epoch", "sklearn/cprop"]
    if TORCH_VERSION:
        header += ["torch s/epoch", "torch/cprop"]
    via = ("cprop.MLPClassifier.partial_fit" if use_estimator and CpropMLP is not None
           else "cprop._engine.Network.train_epoch")
    table("training: one epoch of Adam on 60000x784 float32, 10 classes, alpha=1e-4; "
          "median [min-max]", header, rows,
          [f"W1: hidden (100,), batch 200; W2: (512, 256), batch 256; W3: (1024,), batch 1024. "
           f"cprop via {via}; scikit-learn MLPClassifier.partial_fit (one epoch, float32 input)"
           + ("; PyTorch nn.Sequential + Adam, plain loop" if TORCH_VERSION
              else "; PyTorch not installed") + ". % of peak: fastest float32 numpy GEMM at the same "
           "thread count."])
    return results


# ---- small data, predict, memory -----------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def small_data(dname):
    """Standardised float32 train/test split of a scikit-learn toy dataset."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = {"digits": load_digits, "breast_cancer": load_breast_cancer}[dname](return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0, stratify=y)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr).astype(np.float32), sc.transform(Xte).astype(np.float32), ytr, yte


class SmallFit:
    """A whole Adam fit (hidden (100,), max_iter=200); ``info`` is the test accuracy."""

    def __init__(self, kind, dname, nt):
        self.kind, self.nt = kind, nt
        self.data = small_data(dname)
        self.info = None

    def __call__(self):
        Xtr, Xte, ytr, yte = self.data
        if self.kind == "cprop":
            est = CpropMLP(hidden_layer_sizes=(100,), solver="adam", max_iter=200, random_state=0,
                           n_threads=self.nt)
        else:
            from sklearn.neural_network import MLPClassifier
            est = MLPClassifier(hidden_layer_sizes=(100,), solver="adam", max_iter=200,
                                random_state=0)
        lim = self.nt if self.kind == "sklearn" else 1
        with warnings.catch_warnings(), threadpool_limits(limits=lim, user_api="blas"):
            warnings.simplefilter("ignore")
            t = timed(lambda: est.fit(Xtr, ytr))
        self.info = est.score(Xte, yte)
        return t


def bench_small(threads, reps):
    if CpropMLP is None:
        table("small data: whole fits", ["note"],
              [["skipped: cprop.MLPClassifier is not importable"]])
        return
    rows = []
    for dname in ("digits", "breast_cancer"):
        for nt in threads:
            ts, acc = run_remote([(k, SmallFit, (k, dname, nt)) for k in ("cprop", "sklearn")],
                                 reps)
            rows.append([dname, nt, fmt_t(ts["cprop"]), f"{acc['cprop']:.3f}",
                         fmt_t(ts["sklearn"]), f"{acc['sklearn']:.3f}",
                         f"{stats(ts['sklearn'])[0] / stats(ts['cprop'])[0]:.1f}x"])
    table("small data: whole Adam fits (hidden (100,), max_iter=200), s; test accuracy",
          ["dataset", "threads", "cprop s", "cprop acc", "sklearn s", "sklearn acc",
           "sklearn/cprop"], rows)


class PredictRun:
    """predict_proba of the W1 network on the synthetic data; both systems get the same weights
    (scikit-learn's, after a deterministic partial_fit), and cprop's output is checked first."""

    def __init__(self, kind, nt):
        from sklearn.neural_network import MLPClassifier
        self.kind, self.nt = kind, nt
        self.X, y = make_data()
        self.sk = MLPClassifier(hidden_layer_sizes=(100,), max_iter=1, batch_size=200,
                                random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.sk.partial_fit(self.X[:2000], y[:2000], classes=np.arange(N_CLASSES))
        if kind == "cprop":
            self.net = Network([N_FEATURES, 100, N_CLASSES], "relu", "softmax", np.float32, nt)
            self.params = self.net.pack([c.astype(np.float32) for c in self.sk.coefs_],
                                        [b.astype(np.float32) for b in self.sk.intercepts_])
            np.testing.assert_allclose(self.net.predict(self.params, self.X),
                                       self.sk.predict_proba(self.X), rtol=1e-3, atol=1e-5)

    def __call__(self):
        if self.kind == "cprop":
            with threadpool_limits(limits=1, user_api="blas"):
                return timed(lambda: self.net.predict(self.params, self.X))
        with threadpool_limits(limits=self.nt, user_api="blas"):
            return timed(lambda: self.sk.predict_proba(self.X))


def bench_predict(threads, reps, peak):
    sizes = [N_FEATURES, 100, N_CLASSES]
    flops = 2.0 * N_SAMPLES * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    rows = []
    for nt in threads:
        ts, _ = run_remote([(k, PredictRun, (k, nt)) for k in ("cprop", "sklearn")], reps)
        pk = peak.get(("float32", nt))
        c = stats(ts["cprop"])[0]
        rows.append([nt, fmt_rate(N_SAMPLES, ts["cprop"], 1e6, 2), fmt_rate(flops, ts["cprop"]),
                     f"{100 * flops / c / 1e9 / pk:.0f}%" if pk else "n/a",
                     fmt_rate(N_SAMPLES, ts["sklearn"], 1e6, 2),
                     f"{stats(ts['sklearn'])[0] / c:.1f}x"])
    table("predict: W1 network (784-100-10) on 60000 rows, float32",
          ["threads", "cprop Mrows/s", "cprop GFLOP/s", "% of peak", "sklearn Mrows/s",
           "sklearn/cprop"], rows,
          ["Same weights in both (cprop's probabilities checked against predict_proba)."])


MEMORY_CHILD = r"""
import json, os, sys, threading, time, warnings
import numpy as np
sys.path[:0] = json.loads(sys.argv[3])
system, nt = sys.argv[1], int(sys.argv[2])
from threadpoolctl import threadpool_limits
rng = np.random.default_rng(0)
X = rng.random((60000, 784), dtype=np.float32)
y = rng.integers(0, 10, 60000)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

if system == "cprop":
    from cprop._engine import Network, OptimizerState
    net = Network([784, 100, 10], "relu", "softmax", np.float32, nt)
    p = net.init_params(np.random.RandomState(0))
    st = OptimizerState("adam", net.n_params, np.float32)
    Y = np.eye(10, dtype=np.float32)[y]
    order = np.random.RandomState(0).permutation(60000)
    run = lambda: net.train_epoch(p, st, X, Y, order=order, batch_size=200, alpha=1e-4)
else:
    from sklearn.neural_network import MLPClassifier
    est = MLPClassifier(hidden_layer_sizes=(100,), batch_size=200, alpha=1e-4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[:200], y[:200], classes=np.arange(10))
    run = lambda: est.partial_fit(X, y)
import gc; gc.collect()
peak = [0]
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")               # reset VmHWM (peak RSS) to the current RSS
    method = "VmHWM"
except OSError:
    method = "poll"
base = rss()
stop = False
def poll():
    while not stop:
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
th = threading.Thread(target=poll, daemon=True)
th.start()
with threadpool_limits(limits=nt, user_api="blas"):
    run()
stop = True
th.join()
peak[0] = max(peak[0], rss())
if method == "VmHWM":
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                peak[0] = max(peak[0], int(line.split()[1]) * 1024)
print(json.dumps({"extra": peak[0] - base, "base": base, "method": method}))
"""


def bench_memory(nt):
    if not os.path.exists("/proc/self/statm"):
        table("memory", ["note"], [["skipped: needs Linux /proc to read the resident set"]])
        return
    rows = []
    paths = json.dumps([p for p in sys.path if p])
    for system in ("cprop", "sklearn"):
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, system, str(nt), paths],
                             capture_output=True, text=True)
        if out.returncode:
            rows.append([system, "failed: " + out.stderr.strip().splitlines()[-1], "", ""])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append([system, f"{r['extra'] / 2**20:.1f}", f"{r['base'] / 2**20:.0f}", r["method"]])
    table(f"memory: peak extra resident memory during one W1 epoch ({nt} threads), MiB",
          ["system", "extra MiB", "RSS before (data + model), MiB", "method"], rows,
          ["Fresh subprocess per system with the same 60000x784 float32 data (179 MiB)."])


def main(argv=None):
    global SETTLE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="float32 kernel at 1024 and W1 shapes, W1 only, 3 repetitions (a few "
                         "minutes on an idle 2-core machine)")
    ap.add_argument("--threads", default=None, help="comma list (default: 1 and all CPUs)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per measurement")
    ap.add_argument("--only", default="peak,kernel,train,small,predict,memory",
                    help="comma list of sections")
    ap.add_argument("--workloads", default=None, help="comma list among W1,W2,W3")
    ap.add_argument("--paths", default=None, help="cprop kernel paths to compare in 'kernel'")
    ap.add_argument("--settle", type=float, default=SETTLE,
                    help="seconds to sleep before each timed run (lets other pools' spinning "
                         "threads go idle)")
    ap.add_argument("--cpu-models", default=None,
                    help="comma list of CPU models whose cache blocks 'kernel' compares "
                         "(generic, zen4, ...; default: the configured ones)")
    ap.add_argument("--squares", default=None, help="comma list of square sizes for 'kernel'")
    ap.add_argument("--dtypes", default=None, help="float32,float64 subset for 'kernel'")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time one-thread GEMMs by thread CPU time (a shared machine)")
    ap.add_argument("--engine", action="store_true",
                    help="time cprop's engine even if cprop.MLPClassifier is importable")
    args = ap.parse_args(argv)
    global CPU_TIME
    SETTLE = args.settle
    CPU_TIME = args.cpu_time
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else sorted({1, ncpu}))
    reps = args.reps or (3 if args.quick else 7)
    only = set(args.only.split(","))
    paths = args.paths.split(",") if args.paths else available_kernels()
    if args.quick:
        paths = [kernel_info()["name"]]
    print("# cprop benchmark" + (" (--quick)" if args.quick else ""))
    for line in machine_header():
        print(f"- {line}")
    print(f"- threads {threads}, {reps} repetitions per measurement, systems interleaved, "
          f"{SETTLE:g} s settle before each run; training, small fits and predict in one process "
          "per system")
    peak = {}
    if "peak" in only or "train" in only or "predict" in only:
        peak = bench_peak(threads, reps, 1024 if args.quick else 2048)
    if "kernel" in only:
        squares = ([int(n) for n in args.squares.split(",")] if args.squares
                   else [1024] if args.quick else [256, 512, 1024, 2048])
        bench_kernel(threads, reps, squares, paths, args.quick,
                     models=args.cpu_models.split(",") if args.cpu_models else (None,),
                     dtypes=[np.dtype(d).type for d in args.dtypes.split(",")] if args.dtypes
                     else None)
    if "train" in only:
        names = (args.workloads.split(",") if args.workloads
                 else (["W1"] if args.quick else ["W1", "W2", "W3"]))
        bench_workloads(names, threads, max(3, reps - 2), peak, not args.engine)
    if "small" in only:
        bench_small(threads, 3 if args.quick else 5)
    if "predict" in only:
        bench_predict(threads, reps, peak)
    if "memory" in only:
        bench_memory(threads[-1])


if __name__ == "__main__":
    main()
