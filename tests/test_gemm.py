"""Our GEMM against numpy: every kernel path, transpose pair, dtype, awkward size, beta, thread count.

Sizes straddle the register block (MR, NR, the half-width NR/2 panel) and the cache blocks (MC, KC,
NC) of the kernel path under test; C is pre-filled with NaN when beta == 0 (it must never be read).
Errors are checked elementwise against the standard GEMM bound
|C - C_exact| <= gamma_K (|alpha| |op(A)| |op(B)| + |beta| |C0|), gamma_K ~ K eps (Higham, Accuracy
and Stability of Numerical Algorithms, 3.5), with a safety factor of 2.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import cprop
from cprop import _gemm
from cprop._activations import ACTIVATION_CODES
from cprop._gemm import available_kernels, block_sizes, gemm_py, kernel_info, set_kernel, work_size

DTYPES = [np.float32, np.float64]
TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]
# The ``kernel`` fixture (conftest.py) installs each kernel path in turn.


def _operands(M, N, K, ta, tb, dtype, rng):
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return A, B


def _check(C, A, B, C0, ta, tb, alpha, beta, dtype):
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    K = opA.shape[1]
    exact = alpha * (opA @ opB) + (beta * C0.astype(np.float64) if beta != 0 else 0)
    scale = abs(alpha) * (np.abs(opA) @ np.abs(opB)) + abs(beta) * np.abs(C0.astype(np.float64))
    bound = 2 * (K + 2) * np.finfo(dtype).eps * scale + np.finfo(dtype).tiny
    assert np.all(np.isfinite(C)), "C holds NaN/inf: was C read with beta == 0?"
    err = np.abs(C - exact)
    assert np.all(err <= bound), f"max error {err.max():.3g}, max bound {bound.max():.3g}"


def _shapes(dtype):
    """(M, N, K) straddling the register and cache blocks of the installed kernel path."""
    key = "float32" if dtype == np.float32 else "float64"
    MR, NR = kernel_info()[key]
    MC, KC, NC = block_sizes()[key]
    return [
        (1, 1, 1),
        (MR - 1, NR - 1, 2),
        (MR + 1, NR + 1, 7),
        (MR, NR + NR // 2, 3),          # last panel exactly half wide
        (MR + 2, NR + NR // 2 + 1, 5),  # one column past the half panel
        (2 * MR + 1, 100, KC + 1),      # MLP width 100; K one past a cache block
        (MC + 1, 3 * NR + 1, 33),       # one row past an MC block (threaded)
        (2 * MC + 5, 37, 2 * KC + 3),   # several MC and KC blocks (threaded)
        (3, NC + 1, 5),                 # one column past an NC block
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_gemm_matches_numpy(kernel, dtype, ta, tb):
    rng = np.random.default_rng(0)
    for M, N, K in _shapes(dtype):
        A, B = _operands(M, N, K, ta, tb, dtype, rng)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        for beta in (0.0, 1.0, -0.5):
            for n_threads in (1, 2):
                C = np.full((M, N), np.nan, dtype) if beta == 0 else C0.copy()
                gemm_py(ta, tb, 0.75, A, B, beta, C, n_threads)
                _check(C, A, B, C0, ta, tb, 0.75, beta, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_degenerate_sizes(kernel, dtype):
    """K == 0 or alpha == 0: C := beta*C (never read when beta == 0); M or N == 0: nothing."""
    rng = np.random.default_rng(1)
    C0 = rng.standard_normal((5, 7)).astype(dtype)
    A = np.empty((5, 0), dtype)
    B = np.empty((0, 7), dtype)
    C = np.full((5, 7), np.nan, dtype)
    gemm_py(False, False, 1.0, A, B, 0.0, C)
    assert np.all(C == 0)
    C = C0.copy()
    gemm_py(False, False, 1.0, A, B, -0.5, C)
    np.testing.assert_array_equal(C, (-0.5 * C0).astype(dtype))
    A, B = _operands(5, 7, 3, False, False, dtype, rng)
    C = np.full((5, 7), np.nan, dtype)
    gemm_py(False, False, 0.0, A, B, 0.0, C)
    assert np.all(C == 0)
    C = np.empty((0, 7), dtype)
    gemm_py(False, False, 1.0, np.empty((0, 3), dtype), B, 0.0, C)


def _act_numpy(name, z):
    return {"identity": lambda v: v, "relu": lambda v: np.maximum(v, 0),
            "logistic": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "exp": np.exp}[name](z)


def _deriv_numpy(name, a):
    return {"identity": np.ones_like(a), "relu": (a > 0).astype(a.dtype),
            "logistic": a * (1 - a), "tanh": 1 - a * a, "exp": a}[name]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["identity", "relu", "logistic", "tanh", "exp"])
def test_bias_activation_epilogue(kernel, dtype, act):
    """C := f(A B + bias) fused at write-back, over several k-blocks and edge tiles."""
    rng = np.random.default_rng(2)
    M, N, K = 157, 100, 600
    A, B = _operands(M, N, K, False, False, dtype, rng)
    A *= 0.05
    bias = rng.standard_normal(N).astype(dtype)
    for n_threads in (1, 2):
        C = np.full((M, N), np.nan, dtype)
        gemm_py(False, False, 1.0, A, B, 0.0, C, n_threads, bias=bias, act=ACTIVATION_CODES[act])
        ref = _act_numpy(act, A.astype(np.float64) @ B.astype(np.float64) + bias)
        rtol = 1e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(C, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["identity", "relu", "logistic", "tanh"])
def test_derivative_epilogue(kernel, dtype, act):
    """C := (D W^T) * f'(z), f' through the stored activations a = f(z) (the backward delta)."""
    rng = np.random.default_rng(3)
    M, N, K = 131, 300, 100
    D, W = _operands(M, N, K, False, True, dtype, rng)
    a = _act_numpy(act, rng.standard_normal((M, N))).astype(dtype)
    if act == "relu":
        a[rng.random((M, N)) < 0.3] = 0
    for n_threads in (1, 2):
        C = np.full((M, N), np.nan, dtype)
        gemm_py(False, True, 1.0, D, W, 0.0, C, n_threads, act=ACTIVATION_CODES[act], aux=a)
        ref = (D.astype(np.float64) @ W.T.astype(np.float64)) * _deriv_numpy(act, a.astype(np.float64))
        rtol = 1e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(C, ref, rtol=rtol, atol=rtol * np.sqrt(K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_bitwise_identical_across_threads(kernel, dtype, ta, tb):
    rng = np.random.default_rng(4)
    for M, N, K in [(301, 100, 784), (200, 257, 300), (37, 1030, 70)]:
        A, B = _operands(M, N, K, ta, tb, dtype, rng)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        bias = rng.standard_normal(N).astype(dtype)
        outs = []
        for n_threads in (1, 2, 3, 4):
            C = C0.copy()
            gemm_py(ta, tb, 1.0, A, B, 0.5, C, n_threads)
            E = np.empty((M, N), dtype)
            gemm_py(ta, tb, 1.0, A, B, 0.0, E, n_threads, bias=bias, act=ACTIVATION_CODES["tanh"])
            outs.append((C, E))
        for C, E in outs[1:]:
            np.testing.assert_array_equal(C, outs[0][0])
            np.testing.assert_array_equal(E, outs[0][1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_plain_reference_gemm(kernel, dtype):
    """The blocked GEMM against the plain triple loop (gemm_py(..., reference=True))."""
    rng = np.random.default_rng(5)
    for ta, tb in TRANSPOSES:
        for M, N, K in [(7, 19, 300), (50, 33, 9)]:
            A, B = _operands(M, N, K, ta, tb, dtype, rng)
            C0 = rng.standard_normal((M, N)).astype(dtype)
            C1 = C0.copy()
            C2 = C0.copy()
            gemm_py(ta, tb, -1.25, A, B, -0.5, C1)
            gemm_py(ta, tb, -1.25, A, B, -0.5, C2, reference=True)
            _check(C1, A, B, C0, ta, tb, -1.25, -0.5, dtype)
            _check(C2, A, B, C0, ta, tb, -1.25, -0.5, dtype)
            rtol = 1e-4 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(C1, C2, rtol=rtol, atol=rtol * np.sqrt(K))


def test_paths_agree_closely():
    """avx2 and reference differ only by rounding (FMA, summation blocking)."""
    if "avx2" not in available_kernels():
        pytest.skip("avx2 path not available on this CPU/build")
    rng = np.random.default_rng(6)
    A, B = _operands(200, 100, 784, False, False, np.float64, rng)
    old = kernel_info()["name"]
    out = {}
    try:
        for name in ("reference", "avx2"):
            set_kernel(name)
            out[name] = np.empty((200, 100))
            gemm_py(False, False, 1.0, A, B, 0.0, out[name], 2)
    finally:
        set_kernel(old)
    np.testing.assert_allclose(out["avx2"], out["reference"], rtol=1e-12, atol=1e-12)


def test_work_size_does_not_depend_on_kernel():
    """Plans are made once per fit: a later set_kernel must not outgrow their GEMM workspace."""
    old = kernel_info()["name"]
    try:
        sizes = {}
        for name in available_kernels():
            set_kernel(name)
            sizes[name] = [work_size(f, M, N, K, nt) for f in (True, False)
                           for (M, N, K) in [(200, 100, 784), (5000, 5000, 3), (1, 1, 1)]
                           for nt in (1, 2)]
        assert len({tuple(v) for v in sizes.values()}) == 1
    finally:
        set_kernel(old)


def test_kernel_selection_api():
    info = kernel_info()
    assert info["name"] in available_kernels()
    assert available_kernels()[0] == "reference"
    assert ("avx2" in available_kernels()) <= _gemm.cpu_supports("avx2")
    with pytest.raises(ValueError, match="unknown kernel"):
        set_kernel("sse9")
    if "avx2" not in available_kernels():
        with pytest.raises(RuntimeError, match="not available"):
            set_kernel("avx2")


def _kernel_in_subprocess(value):
    env = dict(os.environ, CPROP_KERNEL=value)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cprop.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", "import warnings; warnings.simplefilter('error');"
         "from cprop._gemm import kernel_info; print(kernel_info()['name'])"],
        env=env, capture_output=True, text=True,
        cwd=root)  # not the source tree: `-c` puts the cwd first on sys.path


def test_environment_variable_forces_path():
    res = _kernel_in_subprocess("reference")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "reference"
    res = _kernel_in_subprocess("auto")
    assert res.stdout.strip() == available_kernels()[-1]
    res = _kernel_in_subprocess("avx2")
    if "avx2" in available_kernels():
        assert res.stdout.strip() == "avx2"
    else:   # forced but unusable: a warning (an error here, warnings are errors) and the baseline
        assert "not available" in res.stderr
    res = _kernel_in_subprocess("bogus")
    assert res.returncode != 0 and "CPROP_KERNEL" in res.stderr
