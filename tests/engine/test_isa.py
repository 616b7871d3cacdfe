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
from cprop._isa import (available_kernels, cpu_features, cpu_identity, cpu_supports,
                        detected_cpu_model, kernel_info, set_cpu_model, set_kernel)
from cprop._kernel_paths import CPU_MODELS, PATHS, built_for, cpu_model

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


def _kernel_in_subprocess(cprop_env, value):
    env = cprop_env(CPROP_KERNEL=value)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cprop.__file__)))
    return subprocess.run(
        [sys.executable, "-c", "from cprop._isa import kernel_info; print(kernel_info()['name'])"],
        env=env, capture_output=True, text=True,
        cwd=root)  # not the source tree: `-c` puts the cwd first on sys.path


def test_environment_variable_forces_path(cprop_env):
    res = _kernel_in_subprocess(cprop_env, "auto")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == available_kernels()[-1]
    for p in PATHS:
        res = _kernel_in_subprocess(cprop_env, p["name"])
        if p["name"] in available_kernels():
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == p["name"]
        else:   # forced but unusable: a clear error at import, never a silent fallback
            assert res.returncode != 0
            assert "not available" in res.stderr and "CPROP_KERNEL" in res.stderr
    res = _kernel_in_subprocess(cprop_env, "bogus")
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


# ---- per-CPU-model blocks ---------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo") or ARCH not in ("x86_64", "amd64"),
                    reason="compares CPUID's identity with Linux's /proc/cpuinfo on x86_64")
def test_cpu_identity_agrees_with_the_kernel():
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break
            key, _, val = line.partition(":")
            fields[key.strip()] = val.strip()
    assert cpu_identity() == {"vendor": fields["vendor_id"], "family": int(fields["cpu family"]),
                              "model": int(fields["model"])}


@pytest.mark.parametrize("vendor, family, model, expected", [
    ("AuthenticAMD", 0x19, 0x11, "zen4"),    # EPYC 9004 Genoa (this project's Zen 4 machine)
    ("AuthenticAMD", 0x19, 0x10, "zen4"),
    ("AuthenticAMD", 0x19, 0x61, "zen4"),    # Ryzen 7000 Raphael
    ("AuthenticAMD", 0x19, 0x74, "zen4"),    # Phoenix
    ("AuthenticAMD", 0x19, 0xA0, "zen4"),    # Bergamo
    ("AuthenticAMD", 0x19, 0x01, None),      # Zen 3 Milan: same family, no AVX-512
    ("AuthenticAMD", 0x19, 0x21, None),      # Zen 3 Vermeer
    ("AuthenticAMD", 0x19, 0x50, None),      # Zen 3 Cezanne
    ("AuthenticAMD", 0x1A, 0x11, None),      # Zen 5
    ("AuthenticAMD", 0x17, 0x31, None),      # Zen 2
    ("GenuineIntel", 0x06, 0x8F, None),      # Sapphire Rapids: the generic (skx) blocks
    ("GenuineIntel", 0x19, 0x11, None),      # Zen 4's numbers under another vendor
])
def test_cpu_model_rule(vendor, family, model, expected):
    assert cpu_model(vendor, family, model) == expected


def test_detected_model_follows_the_identity():
    ident = cpu_identity()
    expected = None if ident is None else cpu_model(ident["vendor"], ident["family"], ident["model"])
    assert detected_cpu_model() == expected
    info = kernel_info()
    assert info["cpu"] == ident
    # the test session runs without CPROP_CPU_MODEL (else the override is what is reported)
    if "CPROP_CPU_MODEL" not in os.environ:
        assert info["cpu_model"] == expected


def test_shipped_model_blocks_fit_and_name_known_models():
    names = [m["name"] for m in CPU_MODELS]
    bounds = workspace_bounds()
    for p in PATHS:
        for model, over in (p.get("cpus") or {}).items():
            assert model in names, (p["name"], model)
            for dt, key in (("s", "float32"), ("d", "float64")):
                b = dict(p[dt], **over.get(dt, {}))
                mc_max, kc_max = bounds[key]
                assert b["mc"] % b["mr"] == 0 and b["mc"] <= mc_max
                assert b["kc"] % 8 == 0 and b["kc"] <= kc_max and b["nc"] % b["nr"] == 0


@pytest.fixture
def fake_model_blocks(monkeypatch):
    """The installed path's entry carries blocks for 'zen4' (whatever this CPU is); restored after."""
    info = kernel_info()
    entry = next(p for p in PATHS if p["name"] == info["name"])
    before = info["cpu_model"] or "generic"
    s, d = entry["s"], entry["d"]
    over = {"s": {"mc": 2 * s["mr"], "kc": 16, "nc": 2 * s["nr"]},
            "d": {"mc": 3 * d["mr"], "kc": 24, "nc": 3 * d["nr"]}}
    monkeypatch.setitem(entry, "cpus", {"zen4": over})
    yield entry, over
    monkeypatch.undo()
    set_cpu_model(before)


def test_model_blocks_are_installed_and_reported(fake_model_blocks):
    entry, over = fake_model_blocks
    generic = set_cpu_model("generic")
    assert generic == "generic"
    info = kernel_info()
    assert info["blocks"] == "generic" and info["cpu_model"] is None
    for key, dt in (("float32", "s"), ("float64", "d")):
        assert info[key] == {k: entry[dt][k] for k in ("mr", "nr", "mc", "kc", "nc")}
    assert set_cpu_model("zen4") == "zen4"
    info = kernel_info()
    assert info["blocks"] == "zen4" and info["cpu_model"] == "zen4"
    for key, dt in (("float32", "s"), ("float64", "d")):
        # cache blocks from the model, register blocks from the compiled kernels
        assert info[key] == {"mr": entry[dt]["mr"], "nr": entry[dt]["nr"], **over[dt]}
    # set_kernel keeps the model: another path without zen4 blocks runs its own
    other = [n for n in available_kernels() if n != entry["name"]]
    if other:
        set_kernel(other[0])
        assert kernel_info()["blocks"] == "generic"
        set_kernel(entry["name"])
        assert kernel_info()["blocks"] == "zen4"
    with pytest.raises(ValueError, match="unknown CPU model"):
        set_cpu_model("zen9")


def test_model_blocks_change_only_the_k_blocking(fake_model_blocks):
    """Small model blocks give a product within rounding of the generic blocks' (K > both KCs, so
    the k-sums split differently), and bitwise the same for 1 and 2 threads."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        A = rng.standard_normal((97, 300)).astype(dtype)
        B = rng.standard_normal((300, 71)).astype(dtype)
        out = {}
        for model in ("generic", "zen4"):
            set_cpu_model(model)
            for nt in (1, 2):
                C = np.empty((97, 71), dtype)
                gemm_py(False, False, 1.0, A, B, 0.0, C, nt)
                out[model, nt] = C
        assert np.array_equal(out["zen4", 1], out["zen4", 2])
        tol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out["zen4", 1], out["generic", 1], rtol=tol, atol=tol)
        np.testing.assert_allclose(out["zen4", 1], A.astype(np.float64) @ B, rtol=tol, atol=tol)


def test_model_blocks_outside_the_bounds_are_refused(fake_model_blocks, monkeypatch):
    entry, _ = fake_model_blocks
    before = kernel_info()
    kc_max = workspace_bounds()["float64"][1]
    monkeypatch.setitem(entry, "cpus", {"zen4": {"d": {"kc": kc_max + 8}}})
    with pytest.raises(RuntimeError, match="workspace bounds"):
        set_cpu_model("zen4")
    monkeypatch.setitem(entry, "cpus", {"zen4": {"d": {"mr": 4}}})
    with pytest.raises(ValueError, match="cache blocks"):
        set_cpu_model("zen4")
    after = kernel_info()   # a refused model leaves the installed path and its blocks as they were
    assert (after["blocks"], after["cpu_model"], after["float64"]) == (
        before["blocks"], before["cpu_model"], before["float64"])


def _info_in_subprocess(cprop_env, model):
    env = cprop_env()
    env.pop("CPROP_KERNEL", None)
    if model is None:
        env.pop("CPROP_CPU_MODEL", None)
    else:
        env["CPROP_CPU_MODEL"] = model
    root = os.path.dirname(os.path.dirname(os.path.abspath(cprop.__file__)))
    code = ("import json; from cprop._isa import kernel_info as k; i = k(); "
            "print(json.dumps([i['cpu_model'], i['blocks'], i['float32'], i['float64']]))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=root)


def test_cpu_model_environment_variable(cprop_env):
    import json
    auto = _info_in_subprocess(cprop_env, None)
    assert auto.returncode == 0, auto.stderr
    assert json.loads(auto.stdout)[0] == detected_cpu_model()
    gen = _info_in_subprocess(cprop_env, "generic")
    assert gen.returncode == 0, gen.stderr
    model, blocks, s, d = json.loads(gen.stdout)
    entry = next(p for p in PATHS if p["name"] == available_kernels()[-1])
    assert model is None and blocks == "generic"
    assert [s[k] for k in ("mc", "kc", "nc")] == [entry["s"][k] for k in ("mc", "kc", "nc")]
    assert [d[k] for k in ("mc", "kc", "nc")] == [entry["d"][k] for k in ("mc", "kc", "nc")]
    for m in CPU_MODELS:   # any model can be forced on any CPU (blocks never decide what runs)
        res = _info_in_subprocess(cprop_env, m["name"])
        assert res.returncode == 0, res.stderr
        model, blocks, s, d = json.loads(res.stdout)
        assert model == m["name"]
        assert blocks == (m["name"] if m["name"] in (entry.get("cpus") or {}) else "generic")
    bad = _info_in_subprocess(cprop_env, "zen9")
    assert bad.returncode != 0 and "CPROP_CPU_MODEL" in bad.stderr


def test_model_blocks_are_made_once(fake_model_blocks):
    """Switching models back and forth reuses one context copy per (path, blocks) instead of
    allocating a new one per switch."""
    from cprop._isa import _variants
    set_cpu_model("zen4")
    n = len(_variants)
    for _ in range(5):
        set_cpu_model("generic")
        set_cpu_model("zen4")
    assert len(_variants) == n


def test_alias_rule_packs_aliased_rows_bitwise(monkeypatch):
    """A model's ``direct_a_alias_bytes`` (Zen 4: rows 4 KiB apart share an L1 set) makes the
    GEMM pack op(A) instead of reading it in place: kernel_info reports the rule, and packing
    changes no sum's order, so the product is bitwise the generic one (and within rounding of
    numpy's), at 1 and 2 threads, for rows that alias and rows that do not."""
    info = kernel_info()
    entry = next(p for p in PATHS if p["name"] == info["name"])
    if not entry.get("direct_a"):
        pytest.skip(f"path {entry['name']!r} never reads op(A) in place (direct_a off)")
    before = info["cpu_model"] or "generic"
    monkeypatch.setitem(entry, "cpus", {"zen4": {"direct_a_alias_bytes": 4096}})
    rng = np.random.default_rng(5)
    try:
        for dtype in (np.float32, np.float64):
            itemsize = np.dtype(dtype).itemsize
            for K in (4096 // itemsize, 4096 // itemsize + 8):    # 4 KiB rows, then not
                A = rng.standard_normal((37, K)).astype(dtype)
                B = rng.standard_normal((K, 45)).astype(dtype)
                out = {}
                for model in ("generic", "zen4"):
                    set_cpu_model(model)
                    assert kernel_info()["direct_a_alias_bytes"] == (
                        4096 if model == "zen4" else entry.get("direct_a_alias_bytes", 0))
                    for nt in (1, 2):
                        C = np.full((37, 45), np.nan, dtype)
                        gemm_py(False, False, 1.0, A, B, 0.0, C, nt)
                        out[model, nt] = C
                assert np.array_equal(out["zen4", 1], out["generic", 1])
                assert np.array_equal(out["zen4", 1], out["zen4", 2])
                tol = 1e-3 if dtype == np.float32 else 1e-10
                np.testing.assert_allclose(out["zen4", 1], A.astype(np.float64) @ B,
                                           rtol=tol, atol=tol)
    finally:
        monkeypatch.undo()
        set_cpu_model(before)
