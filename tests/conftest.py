"""Test-session settings and the fixtures every layer shares (tests/README.md: which layer goes
where, and what each shared fixture gives).

The engine's thread policy (``n_threads=None``) uses every CPU. On the shared 2-core machines
these tests run on, OpenMP regions on small problems cost far more than they give (a default
MLPRegressor fit measured 1.6 s with one thread and 26 s with two under a load average of 4), so
the session limits the default to one thread through threadpoolctl, which the engine's policy
honours. Tests that are about threads pass ``n_threads`` explicitly (explicit counts are not
affected by the limit): see estimator/test_mlp.py::test_threads_bitwise_identical. Set
CPROP_TEST_DEFAULT_THREADS=1 to run the whole suite under the engine's own policy instead.
"""
import contextlib
import importlib
import importlib.util
import importlib.machinery
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
# Modules every build has; their absence means a source tree that was never compiled.
COMPILED = ("_openmp", "_gemm", "_train")
HOW_TO_TEST = (
    "Either install it and run the tests against the installed package:\n"
    "    pip install '.[test]'\n"
    "    pytest            (or: python -m pytest)\n"
    "or build it in place and put the build first on the path:\n"
    "    python setup.py build_ext --inplace\n"
    "    PYTHONPATH=. pytest"
)


def _is_built(pkg_dir):
    return all(any((pkg_dir / (name + suffix)).exists()
                   for suffix in importlib.machinery.EXTENSION_SUFFIXES) for name in COMPILED)


def _import_built_cprop():
    """Make ``import cprop`` find a *built* cprop, or stop the session with what to do.

    ``python -m pytest`` run in a clone puts the clone first on sys.path, so ``import cprop``
    would find the source tree's ``cprop/`` without its compiled modules (and fail with a
    confusing circular-import error). Then the clone is taken off the path, so the installed
    cprop is tested, as plain ``pytest`` does; without one the session stops at once.
    """
    spec = importlib.util.find_spec("cprop")
    if spec is not None and spec.origin and _is_built(Path(spec.origin).parent):
        return
    source = ROOT / "cprop"
    if spec is not None and spec.origin and Path(spec.origin).parent == source:
        sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != ROOT]
        for name in [m for m in sys.modules if m == "cprop" or m.startswith("cprop.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("cprop")
        if spec is not None and spec.origin and _is_built(Path(spec.origin).parent):
            return
    where = f"only the source tree at {source}" if spec is None or (
        spec.origin and Path(spec.origin).parent == source) else f"a cprop at {spec.origin}"
    pytest.exit(f"cprop's compiled engine was not found: Python sees {where}, "
                f"which has no compiled modules ({', '.join(COMPILED)}).\n" + HOW_TO_TEST,
                returncode=4)


def pytest_configure(config):
    _import_built_cprop()


def pytest_generate_tests(metafunc):
    """A test taking the ``kernel`` fixture runs once per kernel path of cprop's list (read after
    pytest_configure has found a built cprop); the fixture skips, with the reason, the paths this
    CPU or architecture cannot run (engine/test_isa.py checks that no path the CPU could run is
    missing from the build)."""
    if "kernel" in metafunc.fixturenames:
        from cprop._kernel_paths import PATHS

        metafunc.parametrize("kernel", [p["name"] for p in PATHS], indirect=True)


@pytest.fixture(autouse=True, scope="session")
def _one_default_thread():
    if os.environ.get("CPROP_TEST_DEFAULT_THREADS"):
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def kernel(request):
    """Install one kernel path (GEMM micro-kernels, epilogues, optimizer updates) for the test,
    restoring the previous one afterwards; skipped where the CPU or build lacks the path."""
    from cprop._isa import available_kernels, kernel_info, set_kernel

    name = request.param
    if name not in available_kernels():
        info = kernel_info()
        pytest.skip(f"kernel path {name!r} not available here (CPU features "
                    f"{info['cpu_features']}; available: {info['available']})")
    old = kernel_info()["name"]
    set_kernel(name)
    yield name
    set_kernel(old)


def pytest_sessionfinish(session, exitstatus):
    """With CPROP_REQUIRE_EXTRAS=1 (CI's extras step), a test skipped because an optional extra
    is missing fails the session: there the extras must be installed and their tests run."""
    if not os.environ.get("CPROP_REQUIRE_EXTRAS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    missing = []
    for rep in reporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if "extra" in reason:
            missing.append(f"{rep.nodeid}: {reason}")
    if missing:
        reporter.write_line("CPROP_REQUIRE_EXTRAS=1 but tests skipped for a missing extra:",
                            red=True)
        for line in missing:
            reporter.write_line("  " + line, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@contextlib.contextmanager
def _threaded_passes(lower=True):
    """Inside the block the engine's thread thresholds are 0 (every pass, product and batch
    gather with n_threads > 1 starts an OpenMP team, however small the data; ``lower=False``
    keeps the measured defaults); on leaving it, the yielded dict holds the largest team each kind
    of parallel loop started inside the block (cprop._openmp.TEAM_SITES; 0: it never ran
    threaded)."""
    from cprop import _openmp

    zero = 0 if lower else None
    old = _openmp._set_thread_thresholds(pass_serial_flops=zero, gemm_serial_flops=zero,
                                         gather_parallel_min=zero)
    _openmp._reset_team_sizes()
    teams = {}
    try:
        yield teams
    finally:
        teams.update(_openmp._team_sizes())
        _openmp._set_thread_thresholds(**old)


@pytest.fixture
def threaded_passes():
    """``with threaded_passes() as teams: ...``: run the block's passes threaded even on small data
    and then read ``teams``, so that a test of "the same bits for any thread count" proves that
    its threaded runs did run threads (issue 17: below the thresholds every count ran serially)."""
    from cprop import _openmp

    yield _threaded_passes
    assert _openmp._thread_thresholds() == _openmp.DEFAULT_THREAD_THRESHOLDS


def _assert_same_weights(a, b, tol=0.0):
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        if tol == 0.0:
            np.testing.assert_array_equal(wa, wb)
        else:
            np.testing.assert_allclose(wa, wb, rtol=tol, atol=tol)


@pytest.fixture
def assert_same_weights():
    """``assert_same_weights(a, b, tol=0.0)``: two fitted models' ``coefs_`` and ``intercepts_``
    are bitwise equal (``tol=0``) or within ``rtol = atol = tol``."""
    return _assert_same_weights


def cprop_subprocess_env(**overrides):
    """``os.environ`` with ``overrides`` for a Python subprocess that must import the cprop under
    test (installed, or an in-place build on PYTHONPATH): the directory holding that cprop leads
    its PYTHONPATH, ahead of whatever PYTHONPATH this process has."""
    import cprop

    parent = os.path.dirname(os.path.dirname(os.path.abspath(cprop.__file__)))
    env = dict(os.environ, **overrides)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def cprop_env():
    """``cprop_env(**overrides)``: the environment for a subprocess that imports the cprop under
    test (see cprop_subprocess_env)."""
    return cprop_subprocess_env


class ChildProcess:
    """``python -u -c CODE`` in ``tmp_path`` importing the cprop under test (installed, or an
    in-place build on PYTHONPATH), never a source tree in its working directory; its stdout is
    read line by line (the Ctrl-C tests signal it between printed milestones)."""

    # The start of a Ctrl-C test's child: epochs of a 784-1024-10 classifier on 48,000 rows, long
    # enough (about 1.5 s at one thread on the AVX-512 path) that an interrupt lands inside one.
    LONG_EPOCHS = r"""
import sys, time, warnings
import numpy as np
from cprop import MLPClassifier
warnings.simplefilter("ignore")
rng = np.random.RandomState(0)
X = rng.rand(48000, 784).astype(np.float32)
y = rng.randint(0, 10, 48000)
"""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []

    def start(self, code):
        proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1,
                                env=cprop_subprocess_env(), cwd=self.tmp_path)
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_for(proc, prefix, timeout):
        """The first line starting with ``prefix`` and when it was read."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line, time.perf_counter()
        raise AssertionError(f"child never printed {prefix!r}: {proc.stderr.read()}")


@pytest.fixture
def child_process(tmp_path):
    """A ChildProcess; children still running at teardown are killed."""
    child = ChildProcess(tmp_path)
    yield child
    for proc in child.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
