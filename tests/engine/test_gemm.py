"""Our GEMM against numpy: every kernel path, transpose pair, dtype, awkward size, beta, thread count.

Sizes straddle the register block (MR, NR, the half-width NR/2 panel) and the cache blocks (MC, KC,
NC) of the kernel path under test; C is pre-filled with NaN when beta == 0 (it must never be read).
Errors are checked elementwise against the standard GEMM bound
|C - C_exact| <= gamma_K (|alpha| |op(A)| |op(B)| + |beta| |C0|), gamma_K ~ K eps (Higham, Accuracy
and Stability of Numerical Algorithms, 3.5), with a safety factor of 2.
"""
import numpy as np
import pytest

from cprop._activations import ACTIVATION_CODES
from cprop._backprop import epilogue_product
from cprop._gemm import _gemm_no_workspace, gemm_py, work_size
from cprop._isa import available_kernels, kernel_info, set_cpu_model, set_kernel
from cprop._kernel_paths import PATHS

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
    b = kernel_info()["float32" if dtype == np.float32 else "float64"]
    MR, NR, MC, KC, NC = b["mr"], b["nr"], b["mc"], b["kc"], b["nc"]
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
def test_gemm_matches_numpy(kernel, dtype, ta, tb, threaded_passes):
    """Two threads with GEMM_SERIAL_FLOPS lowered, so that every shape, the edge cases small
    enough to run serially by default included, also runs threaded (the team is checked)."""
    rng = np.random.default_rng(0)
    for M, N, K in _shapes(dtype):
        A, B = _operands(M, N, K, ta, tb, dtype, rng)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        for beta in (0.0, 1.0, -0.5):
            for n_threads in (1, 2):
                C = np.full((M, N), np.nan, dtype) if beta == 0 else C0.copy()
                with threaded_passes() as teams:
                    gemm_py(ta, tb, 0.75, A, B, beta, C, n_threads)
                assert teams["gemm"] == (0 if n_threads == 1 else 2)
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
        epilogue_product(False, False, A, B, C, n_threads, bias=bias, act=ACTIVATION_CODES[act])
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
        epilogue_product(False, True, D, W, C, n_threads, act=ACTIVATION_CODES[act], aux=a)
        ref = (D.astype(np.float64) @ W.T.astype(np.float64)) * _deriv_numpy(act, a.astype(np.float64))
        rtol = 1e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(C, ref, rtol=rtol, atol=rtol * np.sqrt(K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_bitwise_identical_across_threads(kernel, dtype, ta, tb, threaded_passes):
    rng = np.random.default_rng(4)
    for M, N, K in [(301, 100, 784), (200, 257, 300), (37, 1030, 70)]:
        A, B = _operands(M, N, K, ta, tb, dtype, rng)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        bias = rng.standard_normal(N).astype(dtype)
        outs = []
        for n_threads in (1, 2, 3, 4):
            C = C0.copy()
            E = np.empty((M, N), dtype)
            with threaded_passes(lower=False) as teams:    # above GEMM_SERIAL_FLOPS: threaded
                gemm_py(ta, tb, 1.0, A, B, 0.5, C, n_threads)
                epilogue_product(ta, tb, A, B, E, n_threads, bias=bias,
                                 act=ACTIVATION_CODES["tanh"])
            assert teams["gemm"] == (0 if n_threads == 1 else n_threads)
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


@pytest.mark.parametrize("dtype", DTYPES)
def test_paths_agree_closely(dtype):
    """Every available path agrees with the reference path up to rounding (FMA, k blocking)."""
    rng = np.random.default_rng(6)
    A, B = _operands(200, 100, 784, False, False, dtype, rng)
    out = {}
    for name in available_kernels():
        out[name] = np.empty((200, 100), dtype)
        gemm_py(False, False, 1.0, A, B, 0.0, out[name], 2, path=name)
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    for name in out:
        np.testing.assert_allclose(out[name], out["reference"], rtol=rtol, atol=rtol)


def test_loop5_runs_more_than_once(kernel):
    """K*N beyond the B~ bound (BPACK_MAX elements): several loop-5 column blocks, each repacking B~."""
    rng = np.random.default_rng(7)
    M, N, K = 5, 2101, 2100
    A, B = _operands(M, N, K, False, False, np.float32, rng)
    C0 = rng.standard_normal((M, N)).astype(np.float32)
    for n_threads in (1, 2):
        C = C0.copy()
        gemm_py(False, False, 0.5, A, B, -0.5, C, n_threads)
        _check(C, A, B, C0, False, False, 0.5, -0.5, np.float32)


def test_gemm_without_workspace_allocates_and_reports_status():
    """gemm given no workspace allocates its own and returns 0 (GEMM_NO_MEMORY only on failure)."""
    rng = np.random.default_rng(8)
    A, B = _operands(33, 47, 65, False, False, np.float64, rng)
    C = np.full((33, 47), np.nan)
    assert _gemm_no_workspace(1.0, A, B, C) == 0
    _check(C, A, B, np.zeros((33, 47)), False, False, 1.0, 0.0, np.float64)


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


@pytest.fixture
def small_model_blocks(kernel, monkeypatch):
    """The path under test with per-CPU-model cache blocks far smaller than its own (a fake
    'zen4' entry, forced), so the shapes below cross many MC, KC and NC blocks."""
    entry = next(p for p in PATHS if p["name"] == kernel_info()["name"])
    before = kernel_info()["cpu_model"] or "generic"
    s, d = entry["s"], entry["d"]
    monkeypatch.setitem(entry, "cpus", {"zen4": {
        "s": {"mc": 2 * s["mr"], "kc": 16, "nc": 2 * s["nr"]},
        "d": {"mc": 3 * d["mr"], "kc": 24, "nc": 2 * d["nr"]}}})
    set_cpu_model("zen4")
    assert kernel_info()["blocks"] == "zen4"
    yield
    monkeypatch.undo()
    set_cpu_model(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_gemm_with_cpu_model_blocks(small_model_blocks, dtype, ta, tb):
    """Per-CPU-model blocks (cprop._isa.set_cpu_model) at sizes that are not multiples of MR, NR,
    MC, KC or NC of those blocks, direct and packed op(A), 1 and 2 threads."""
    rng = np.random.default_rng(4)
    for M, N, K in _shapes(dtype) + [(37, 1030, 29), (5, 300, 70)]:
        A, B = _operands(M, N, K, ta, tb, dtype, rng)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        for beta in (0.0, 1.0, -0.5):
            for n_threads in (1, 2):
                C = np.full((M, N), np.nan, dtype) if beta == 0 else C0.copy()
                gemm_py(ta, tb, 0.75, A, B, beta, C, n_threads)
                _check(C, A, B, C0, ta, tb, 0.75, beta, dtype)


# ---- the transposed small-N weight gradient (cprop._gemm design note 7) ---------------------------
@pytest.mark.parametrize("path", available_kernels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_n_weight_gradient_is_bitwise_the_general_product(path, dtype):
    """A^T B with N <= 16 outputs (what X^T D of a 10- or 1-output layer is) gives bitwise what
    the general five loops give, for the shapes it takes (beta 0 and 1) and those it leaves to
    them; the result is also checked against the double-precision reference."""
    from cprop._gemm import _set_small_tn, _small_tn_count
    rng = np.random.default_rng(5)
    ran = 0
    shapes = [(M, N, K) for M in (2, 13, 33, 100, 150) for N in (1, 2, 10, 12, 13, 16, 17)
              for K in (1, 7, 200, 300)]
    for M, N, K in shapes:
        A = rng.standard_normal((K, M)).astype(dtype)
        B = rng.standard_normal((K, N)).astype(dtype)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        for beta in (0.0, 1.0):
            got, ref = C0.copy(), C0.copy()
            if beta == 0:
                got[...] = np.nan
                ref[...] = np.nan
            n0 = _small_tn_count()
            gemm_py(True, False, 1.0, A, B, beta, got, 1, path=path)
            ran += _small_tn_count() - n0
            old = _set_small_tn(False)
            try:
                gemm_py(True, False, 1.0, A, B, beta, ref, 1, path=path)
            finally:
                _set_small_tn(old)
            np.testing.assert_array_equal(got, ref, err_msg=f"{M}x{N}x{K} beta={beta}")
            _check(got, A, B, C0, True, False, 1.0, beta, dtype)
    # it ran for a third of the products (N < M, K <= KC, serial size), not for the others
    assert 80 <= ran < 2 * len(shapes)
