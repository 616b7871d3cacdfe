"""The instruction-set layer: CPU detection, the path list, CPROP_KERNEL, set_kernel under load.

The engine's results on each path are tested where they are computed (test_gemm.py, test_train.py,
test_backprop.py run every available path through the ``kernel`` fixture); here: that every path
this CPU can run is built and used (a missing one fails, never falls back silently), that detection
agrees with the operating system's own report, and that switching paths is safe while products run.
"""
import os
import platform
import subprocess
import sys
import threading

import numpy as np
import pytest

import cprop
from cprop._gemm import gemm_py, workspace_bounds
from cprop._isa import available_kernels, cpu_features, cpu_supports, kernel_info, set_kernel
from cprop._kernel_paths import PATHS, built_for

ARCH = platform.machine().lower()


def test_every_path_the_cpu_offers_is_built_and_available():
    """Fail loudly: a path built for this architecture whose features the CPU has must import."""
    info = kernel_info()
    assert info["missing"] == []
    have = set(cpu_features())
    for p in PATHS:
        expected = p["name"] in built_for(ARCH) and all(r in have for r in p["requires"])
        assert (p["name"] in info["available"]) == expected, p["name"]
    # auto picks the last (fastest) available path
    assert info["available"][-1] == available_kernels()[-1]


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo") or ARCH not in ("x86_64", "amd64"),
                    reason="compares CPUID detection with Linux's /proc/cpuinfo flags on x86_64")
def test_detection_agrees_with_the_kernel():
    """Linux lists a feature in /proc/cpuinfo only when the CPU has it and the kernel enables its
    register state: the same question our CPUID + XGETBV detection answers."""
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    names = {"avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512dq": "avx512dq",
             "avx512bw": "avx512bw", "avx512vl": "avx512vl"}
    assert set(cpu_features()) == {ours for ours, linux in names.items() if linux in flags}


def test_blocks_fit_the_workspace_bounds():
    """Plans are sized once with _config's bounds; every available path's blocks must fit them
    (cprop._isa refuses a path that does not; this checks the paths we ship)."""
    bounds = workspace_bounds()
    for name in available_kernels():
        old = kernel_info()["name"]
        try:
            set_kernel(name)
            info = kernel_info()
        finally:
            set_kernel(old)
        for dt in ("float32", "float64"):
            b = info[dt]
            mc_max, kc_max = bounds[dt]
            assert bounds["nr_max"] % b["nr"] == 0 and b["mc"] % b["mr"] == 0
            assert b["mc"] <= mc_max and b["kc"] <= kc_max and b["nc"] % b["nr"] == 0


def test_kernel_selection_api():
    info = kernel_info()
    assert info["name"] in available_kernels()
    assert available_kernels()[0] == "reference"
    for name in available_kernels():
        assert cpu_supports(name)
    with pytest.raises(ValueError, match="unknown kernel"):
        set_kernel("sse9")
    for p in PATHS:
        if p["name"] not in available_kernels():
            with pytest.raises(RuntimeError, match="not available"):
                set_kernel(p["name"])


def _kernel_in_subprocess(value):
    env = dict(os.environ, CPROP_KERNEL=value)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cprop.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", "from cprop._isa import kernel_info; print(kernel_info()['name'])"],
        env=env, capture_output=True, text=True,
        cwd=root)  # not the source tree: `-c` puts the cwd first on sys.path


def test_environment_variable_forces_path():
    res = _kernel_in_subprocess("auto")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == available_kernels()[-1]
    for p in PATHS:
        res = _kernel_in_subprocess(p["name"])
        if p["name"] in available_kernels():
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == p["name"]
        else:   # forced but unusable: a clear error at import, never a silent fallback
            assert res.returncode != 0
            assert "not available" in res.stderr and "CPROP_KERNEL" in res.stderr
    res = _kernel_in_subprocess("bogus")
    assert res.returncode != 0 and "CPROP_KERNEL" in res.stderr


def test_set_kernel_while_products_run():
    """Switching paths while other threads run products: each product uses one whole path (the
    switch is one atomic pointer store), so every result equals one path's result bit for bit."""
    paths = available_kernels()
    if len(paths) < 2:
        pytest.skip(f"needs two kernel paths; this CPU/build has {paths}")
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 300)).astype(np.float32)
    B = rng.standard_normal((300, 40)).astype(np.float32)
    expected = []
    for name in paths:
        C = np.empty((64, 40), np.float32)
        gemm_py(False, False, 1.0, A, B, 0.0, C, 1, path=name)
        expected.append(C)
    old = kernel_info()["name"]
    bad = []
    stop = threading.Event()

    def worker():
        C = np.empty((64, 40), np.float32)
        while not stop.is_set():
            gemm_py(False, False, 1.0, A, B, 0.0, C, 1)
            if not any(np.array_equal(C, e) for e in expected):
                bad.append(C.copy())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(3000):
            set_kernel(paths[i % len(paths)])
    finally:
        stop.set()
        for t in threads:
            t.join()
        set_kernel(old)
    assert not bad, f"{len(bad)} products mixed kernel paths"
