"""CPROP_REQUIRE_KERNELS: kernel paths the build under test must carry (set by CI).

A build that lacks one of its platform's instruction-set modules still imports and passes every
other test on the portable reference path.  CI names the paths a runner's build must have
(``CPROP_REQUIRE_KERNELS=neon`` on the arm64 wheel jobs and in ``.ci/check_arm64.sh``); this test
then fails when one of them is missing or computes a wrong product.
"""
import os

import numpy as np
import pytest

from cprop._gemm import gemm_py
from cprop._isa import kernel_info, set_kernel

REQUIRED = [n.strip() for n in os.environ.get("CPROP_REQUIRE_KERNELS", "").split(",") if n.strip()]


@pytest.mark.skipif(not REQUIRED, reason="CPROP_REQUIRE_KERNELS is not set (CI sets it to the "
                                         "kernel paths a runner's build must carry)")
@pytest.mark.parametrize("name", REQUIRED or ["unset"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_required_kernel_path(name, dtype):
    info = kernel_info()
    assert name in info["available"], (
        f"CPROP_REQUIRE_KERNELS names {name!r} but this build/CPU offers only {info['available']}")
    rng = np.random.default_rng(0)
    # Odd sizes: edge tiles in both directions; op(A) = A^T exercises the transposed packing.
    M, N, K = 37, 29, 53
    A = rng.standard_normal((K, M)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    C = np.full((M, N), np.nan, dtype=dtype)
    old = info["name"]
    try:
        set_kernel(name)
        assert kernel_info()["name"] == name
        gemm_py(True, False, 1.0, A, B, 0.0, C)
    finally:
        set_kernel(old)
    expected = A.astype(np.float64).T @ B.astype(np.float64)
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(C, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
