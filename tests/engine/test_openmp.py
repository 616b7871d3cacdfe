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


# ---- usable CPUs: the cgroup CPU quota, as joblib/loky's cpu_count() reads it ----------------------
import math  # noqa: E402

import cprop._openmp as _omp  # noqa: E402
from cprop._openmp import _cgroup_cpu_limit, usable_cpus  # noqa: E402


def _affinity():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v2_tree(tmp_path, cpu_max, rel="/kubepods/pod1"):
    """A cgroup v2 mount with the process in ``rel`` whose cpu.max holds ``cpu_max``."""
    root = tmp_path / "cg"
    _write(root / rel.strip("/") / "cpu.max", cpu_max)
    _write(tmp_path / "self_cgroup", f"0::{rel}\n")
    return root, tmp_path / "self_cgroup"


def _v1_tree(tmp_path, quota, period, rel="/docker/abc", mount="cpu,cpuacct"):
    root = tmp_path / "cg"
    d = root / mount / rel.strip("/")
    _write(d / "cpu.cfs_quota_us", f"{quota}\n")
    _write(d / "cpu.cfs_period_us", f"{period}\n")
    _write(root / mount / "cpu.cfs_quota_us", "-1\n")   # the mount's own (root) cgroup: no limit
    _write(root / mount / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "self_cgroup",
           f"12:memory:/docker/abc\n4:{mount}:{rel}\n1:name=systemd:/init.scope\n0::/\n")
    return root, tmp_path / "self_cgroup"


@pytest.mark.parametrize("quota, period", [(200000, 100000), (150000, 100000), (50000, 100000),
                                           (1, 100000), (6400000, 100000)])
def test_cgroup_v2_quota(tmp_path, quota, period):
    root, proc = _v2_tree(tmp_path, f"{quota} {period}\n")
    # loky's rule: ceil(quota / period), and a quota under one CPU still leaves one
    assert _cgroup_cpu_limit(root, proc) == max(1, math.ceil(quota / period))


@pytest.mark.parametrize("quota, period", [(200000, 100000), (250000, 100000), (30000, 100000)])
@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu"])
def test_cgroup_v1_quota(tmp_path, quota, period, mount):
    root, proc = _v1_tree(tmp_path, quota, period, mount=mount)
    assert _cgroup_cpu_limit(root, proc) == max(1, math.ceil(quota / period))


def test_cgroup_unlimited(tmp_path):
    root, proc = _v2_tree(tmp_path, "max 100000\n")
    assert _cgroup_cpu_limit(root, proc) is None
    root1, proc1 = _v1_tree(tmp_path / "v1", -1, 100000)
    assert _cgroup_cpu_limit(root1, proc1) is None


def test_cgroup_missing_or_bad_files(tmp_path):
    # no mount, no /proc/self/cgroup: no limit, no error
    assert _cgroup_cpu_limit(tmp_path / "absent", tmp_path / "absent_cgroup") is None
    # a cgroup directory without cpu.max (cpu controller not enabled), or with garbage
    root, proc = _v2_tree(tmp_path, "max 100000\n")
    (root / "kubepods" / "pod1" / "cpu.max").unlink()
    assert _cgroup_cpu_limit(root, proc) is None
    _write(root / "kubepods" / "pod1" / "cpu.max", "lots\n")
    assert _cgroup_cpu_limit(root, proc) is None
    _write(root / "kubepods" / "pod1" / "cpu.max", "100000 0\n")   # period 0: ignored, no crash
    assert _cgroup_cpu_limit(root, proc) is None
    # v1 with the quota file but no period
    root1, proc1 = _v1_tree(tmp_path / "v1", 200000, 100000)
    (root1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us").unlink()
    assert _cgroup_cpu_limit(root1, proc1) is None


def test_cgroup_parent_quota_binds(tmp_path):
    # the pod's own cgroup is unlimited, its parent slice holds 3 CPUs: the parent binds
    root, proc = _v2_tree(tmp_path, "max 100000\n", rel="/kubepods/pod1/ctr")
    _write(root / "kubepods" / "pod1" / "cpu.max", "300000 100000\n")
    assert _cgroup_cpu_limit(root, proc) == 3
    # both set: the smaller wins
    _write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "120000 100000\n")
    assert _cgroup_cpu_limit(root, proc) == 2


def test_cgroup_container_sees_only_its_own_cgroup(tmp_path):
    # cgroup v1 without a cgroup namespace: /proc/self/cgroup names the host path, the mount holds
    # the container's cgroup at its top
    root = tmp_path / "cg"
    _write(root / "cpu" / "cpu.cfs_quota_us", "200000\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "self_cgroup", "3:cpu:/kubepods/burstable/pod9/0123abcd\n")
    assert _cgroup_cpu_limit(root, tmp_path / "self_cgroup") == 2


def _with_tree(monkeypatch, root, proc):
    monkeypatch.setattr(_omp, "CGROUP_ROOT", str(root))
    monkeypatch.setattr(_omp, "PROC_SELF_CGROUP", str(proc))


def test_default_threads_follow_the_quota(tmp_path, monkeypatch):
    """The default thread count, -1 and the explicit-count ceiling follow a fake quota of 1 CPU."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    root, proc = _v2_tree(tmp_path, "100000 100000\n")
    _with_tree(monkeypatch, root, proc)
    assert usable_cpus() == 1
    assert effective_n_threads(-1) == 1
    assert _omp.thread_ceiling() == _omp.THREADS_PER_CPU
    with threadpoolctl.threadpool_limits(limits=64, user_api="openmp"):
        assert effective_n_threads(None) == 1     # 64 allowed by OpenMP, 1 by the quota
    with pytest.warns(UserWarning, match="1 usable CPUs"):
        assert effective_n_threads(100) == _omp.THREADS_PER_CPU


def test_quota_above_affinity_leaves_the_affinity(tmp_path, monkeypatch):
    root, proc = _v1_tree(tmp_path, 100000 * (_affinity() + 7), 100000)
    _with_tree(monkeypatch, root, proc)
    assert usable_cpus() == _affinity()
    assert effective_n_threads(-1) == _affinity()


def test_no_quota_is_the_affinity(tmp_path, monkeypatch):
    _with_tree(monkeypatch, tmp_path / "absent", tmp_path / "absent_cgroup")
    assert usable_cpus() == _affinity()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux only")
def test_this_machine_matches_an_independent_reading():
    """On the real /sys/fs/cgroup: the affinity, lowered to whatever quota the files hold, read here
    by a second, independent reading (every cpu.max / cfs quota on the path from the mount)."""
    limits = []
    lines = open("/proc/self/cgroup").read().splitlines()
    for line in lines:
        hid, ctrls, rel = line.split(":", 2)
        parts = [p for p in rel.split("/") if p]
        if hid == "0":
            bases, names = ["/sys/fs/cgroup"], ("cpu.max",)
        elif "cpu" in ctrls.split(","):
            bases = [os.path.join("/sys/fs/cgroup", m) for m in ("cpu,cpuacct", "cpuacct,cpu", "cpu")
                     if os.path.isdir(os.path.join("/sys/fs/cgroup", m))][:1]
            names = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for base in bases:
            for n in range(len(parts) + 1):
                d = os.path.join(base, *parts[:n])
                try:
                    vals = [open(os.path.join(d, f)).read().split() for f in names]
                except OSError:
                    continue
                words = vals[0] if len(names) == 1 else [vals[0][0], vals[1][0]]
                if words[0] not in ("max", "-1") and int(words[1]) > 0:
                    limits.append(max(1, math.ceil(int(words[0]) / int(words[1]))))
    expected = min([_affinity()] + limits)
    assert usable_cpus() == expected
