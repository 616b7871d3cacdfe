"""Test-session settings.

The engine's thread policy (``n_threads=None``) uses every CPU. On the shared 2-core machines
these tests run on, OpenMP regions on small problems cost far more than they give (a default
MLPRegressor fit measured 1.6 s with one thread and 26 s with two under a load average of 4), so
the session limits the default to one thread through threadpoolctl, which the engine's policy
honours. Tests that are about threads pass ``n_threads`` explicitly (explicit counts are not
affected by the limit): see test_mlp.py::test_threads_bitwise_identical. Set
CPROP_TEST_DEFAULT_THREADS=1 to run the whole suite under the engine's own policy instead.
"""
import os

import pytest
from threadpoolctl import threadpool_limits

from cprop._isa import available_kernels, kernel_info, set_kernel
from cprop._kernel_paths import PATHS

# Every kernel path of the list; a test taking the ``kernel`` fixture runs once per path and skips,
# with the reason, the paths this CPU or architecture cannot run (test_isa.py checks that no path
# the CPU could run is missing from the build).
KERNEL_PATHS = [p["name"] for p in PATHS]


@pytest.fixture(autouse=True, scope="session")
def _one_default_thread():
    if os.environ.get("CPROP_TEST_DEFAULT_THREADS"):
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(params=KERNEL_PATHS)
def kernel(request):
    """Install one kernel path (GEMM micro-kernels, epilogues, optimizer updates) for the test,
    restoring the previous one afterwards; skipped where the CPU or build lacks the path."""
    name = request.param
    if name not in available_kernels():
        info = kernel_info()
        pytest.skip(f"kernel path {name!r} not available here (CPU features "
                    f"{info['cpu_features']}; available: {info['available']})")
    old = kernel_info()["name"]
    set_kernel(name)
    yield name
    set_kernel(old)
