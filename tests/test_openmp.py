"""The thread policy: explicit counts, OMP_NUM_THREADS, threadpoolctl limits, build flags."""
import os
import subprocess
import sys

import pytest

from cprop._openmp import build_info, effective_n_threads


def test_built_with_openmp():
    assert build_info()["openmp"], "the engine must be compiled with OpenMP"


def test_explicit_counts():
    assert effective_n_threads(3) == 3
    assert effective_n_threads(1) == 1
    n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert effective_n_threads(-1) == n_cpu
    assert effective_n_threads(-n_cpu - 5) == 1
    with pytest.raises(ValueError, match="n_threads=0"):
        effective_n_threads(0)


def test_default_respects_threadpoolctl_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert effective_n_threads(None) == 1
        assert effective_n_threads(2) == 2  # an explicit count wins


def test_default_respects_omp_num_threads(tmp_path):
    code = "from cprop._openmp import effective_n_threads as e; print(e(None))"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    # cwd outside the source tree, so the child imports the installed package, not ./cprop
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip() == "3"
