"""Thread policy: the one owner of how many OpenMP threads the engine uses.

Design
1. ``effective_n_threads(None)`` follows ``omp_get_max_threads()``, which already reflects
   ``OMP_NUM_THREADS`` and any ``threadpoolctl.threadpool_limits`` (threadpoolctl calls
   ``omp_set_num_threads`` on the OpenMP runtime this module is linked to), capped by the CPUs this
   process may use when ``OMP_NUM_THREADS`` is unset -- the policy scikit-learn uses.
   "Usable CPUs" (``_cpu_count``) is the CPU affinity, lowered to a cgroup CPU quota when one is set,
   as joblib/loky's ``cpu_count()`` does: ceil(quota / period), at least 1 (v1:
   ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; v2: ``cpu.max``).  The files are those of this
   process's cgroup (``/proc/self/cgroup``) and of every ancestor below the mount point, the
   smallest limit winning (a quota set on a parent slice binds too); a container whose mount
   shows only its own cgroup is read at the mount point.  Read once per process: a pod limited
   to 2 CPUs on a 64-core node then starts 2 threads, not 64.
2. A positive ``n_threads`` is used as given; ``-1`` means all allowed CPUs, ``-2`` all but one, ...
3. Every ``prange``/``parallel`` in the engine receives the result explicitly via ``num_threads=``.
4. ``engine_threads`` is the last word, asked once per compiled call (``_train``'s plan wrapper):
   - after ``fork`` in a process whose engine already ran threads, GNU libgomp's thread pool is
     gone (its threads were not copied) and the next team of > 1 threads waits for them forever;
     a ``pthread_atfork`` child handler marks such a child and every later call runs on one
     thread.  (LLVM's libomp re-creates its pool after fork itself; the guard is built for gcc.)
   - libgomp calls ``exit(1)`` when it cannot create a thread (a memory or process limit).  Before
     a calling thread first asks for a team of n threads, n - 1 threads are started and joined
     here; if only k of them start, the call runs on k + 1 threads (results do not depend on the
     count) with a warning, never an exit.  Teams are per calling thread in OpenMP, so the
     verified size is thread-local.
   - explicit counts above ``thread_ceiling()`` (4 per usable CPU) are capped with a warning: a
     thread beyond that only adds buffers and context switches.
"""
import math
import numbers
import os
import warnings

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cprop_omp_max_threads(void) { return omp_get_max_threads(); }
    #define CPROP_HAVE_OPENMP 1
    #else
    static int cprop_omp_max_threads(void) { return 1; }
    #define CPROP_HAVE_OPENMP 0
    #endif
    #ifndef CPROP_DEBUG_BUILD
    #define CPROP_DEBUG_BUILD 0
    #endif
    """
    int cprop_omp_max_threads() noexcept nogil
    int CPROP_HAVE_OPENMP
    int CPROP_DEBUG_BUILD


cdef extern from *:
    """
    /* Fork guard (GNU libgomp only: gcc without clang, on a system with fork). */
    #if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__) && !defined(_WIN32)
    #define CPROP_FORK_GUARD 1
    #else
    #define CPROP_FORK_GUARD 0
    #endif
    #if !defined(_WIN32)
    #include <pthread.h>
    #include <stdlib.h>
    #define CPROP_HAVE_PTHREADS 1
    #else
    #define CPROP_HAVE_PTHREADS 0
    #endif

    static volatile int cprop_threads_used = 0;     /* this process handed out a team of > 1 */
    static volatile int cprop_fork_serial = 0;      /* forked after that: stay on one thread */

    #if CPROP_FORK_GUARD
    static void cprop_atfork_child(void) { if (cprop_threads_used) cprop_fork_serial = 1; }
    static int cprop_register_atfork(void) { return pthread_atfork(NULL, NULL, cprop_atfork_child); }
    #else
    static int cprop_register_atfork(void) { return 0; }
    #endif

    #if CPROP_HAVE_PTHREADS
    /* Largest team this calling thread has verified it can start (OpenMP pools are per caller). */
    static __thread int cprop_verified_team = 1;
    static pthread_mutex_t cprop_gate = PTHREAD_MUTEX_INITIALIZER;
    static void* cprop_wait_gate(void* arg) {
        (void)arg;
        pthread_mutex_lock(&cprop_gate);
        pthread_mutex_unlock(&cprop_gate);
        return NULL;
    }
    /* Start up to n threads that all live at once (stack size as OpenMP's, 0: the default),
       then release and join them; returns how many started. */
    static int cprop_try_threads(int n, size_t stacksize) {
        pthread_t* t = (pthread_t*)malloc(sizeof(pthread_t) * (size_t)(n > 0 ? n : 1));
        pthread_attr_t attr;
        int k = 0;
        if (t == NULL) return 0;
        pthread_attr_init(&attr);
        if (stacksize > 0) pthread_attr_setstacksize(&attr, stacksize);
        pthread_mutex_lock(&cprop_gate);
        for (k = 0; k < n; k++)
            if (pthread_create(&t[k], &attr, cprop_wait_gate, NULL) != 0) break;
        pthread_mutex_unlock(&cprop_gate);
        for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
        pthread_attr_destroy(&attr);
        free(t);
        return k;
    }
    static int cprop_get_verified(void) { return cprop_verified_team; }
    static void cprop_set_verified(int n) { cprop_verified_team = n; }
    #else
    static int cprop_try_threads(int n, size_t stacksize) { (void)stacksize; return n; }
    static int cprop_get_verified(void) { return 1 << 30; }
    static void cprop_set_verified(int n) { (void)n; }
    #endif
    """
    int CPROP_FORK_GUARD
    int cprop_threads_used
    int cprop_fork_serial
    int cprop_register_atfork() noexcept nogil
    int cprop_try_threads(int n, size_t stacksize) noexcept nogil
    int cprop_get_verified() noexcept nogil
    void cprop_set_verified(int n) noexcept nogil


if cprop_register_atfork() != 0:
    raise ImportError("cprop could not register its fork handler (pthread_atfork failed).")

# Built with the fork guard (gcc/libgomp on a system with fork)?
FORK_GUARD = bool(CPROP_FORK_GUARD)
# Explicit thread counts are capped at this many per usable CPU.
THREADS_PER_CPU = 4


# Where cgroup files are read (module globals, so tests point them at a fake tree).
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
# cgroup v1 mount points of the cpu controller under CGROUP_ROOT, in the order tried.
_V1_CPU_MOUNTS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")
_quota_cache = {}


def _read_text(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_limit(quota, period):
    """ceil(quota / period) for a positive quota and period given as text, else None (unlimited:
    v1's -1, v2's "max", or a value that does not parse)."""
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def _own_and_ancestors(base, rel):
    """base/rel and each of its ancestors down to base itself, those that exist (a container's
    mount often holds only its own cgroup, not the host path /proc/self/cgroup names)."""
    parts = [c for c in (rel or "/").split("/") if c and c not in (".", "..")]
    out = []
    for n in range(len(parts), -1, -1):
        d = os.path.join(base, *parts[:n])
        if os.path.isdir(d):
            out.append(d)
    return out


def _cgroup_cpu_limit(root=None, proc_cgroup=None):
    """CPUs a cgroup CPU bandwidth quota allows this process, or None when none is set or readable.

    ceil(quota / period), at least 1, the smallest over the process's cgroup and its ancestors, of
    cgroup v2 (``cpu.max``: "quota period" or "max period") and v1 (``cpu.cfs_quota_us``, -1 when
    unlimited, over ``cpu.cfs_period_us``).  ``root`` (default ``CGROUP_ROOT``) is the cgroup mount,
    ``proc_cgroup`` (default ``PROC_SELF_CGROUP``) the file naming the process's cgroups.
    """
    root = CGROUP_ROOT if root is None else os.fspath(root)
    proc_cgroup = PROC_SELF_CGROUP if proc_cgroup is None else os.fspath(proc_cgroup)
    v2_rel, v1_rel = "/", "/"
    for line in (_read_text(proc_cgroup) or "").splitlines():
        fields = line.split(":", 2)   # hierarchy-ID:controllers:path
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            v2_rel = fields[2]
        elif "cpu" in fields[1].split(","):
            v1_rel = fields[2]
    limits = []
    for d in _own_and_ancestors(root, v2_rel):
        words = (_read_text(os.path.join(d, "cpu.max")) or "").split()
        if len(words) == 2:
            limits.append(_quota_limit(words[0], words[1]))
    for mount in _V1_CPU_MOUNTS:
        base = os.path.join(root, mount)
        if not os.path.isdir(base):
            continue
        for d in _own_and_ancestors(base, v1_rel):
            limits.append(_quota_limit(_read_text(os.path.join(d, "cpu.cfs_quota_us")),
                                       _read_text(os.path.join(d, "cpu.cfs_period_us"))))
        break
    limits = [n for n in limits if n is not None]
    return min(limits) if limits else None


def _affinity_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _cpu_count():
    """Usable CPUs: the affinity, lowered to the cgroup CPU quota (read once per process and
    cgroup location; the affinity is asked each time, it is one system call)."""
    key = (CGROUP_ROOT, PROC_SELF_CGROUP)
    if key not in _quota_cache:
        _quota_cache[key] = _cgroup_cpu_limit()
    limit = _quota_cache[key]
    n = _affinity_count()
    return n if limit is None else max(1, min(n, limit))


def usable_cpus():
    """CPUs this process may use: its CPU affinity, lowered to its cgroup CPU quota when one is
    set (ceil(quota / period), as joblib/loky's ``cpu_count()``).  The default thread count.

    Examples
    --------
    >>> from cprop._openmp import usable_cpus
    >>> usable_cpus() >= 1
    True
    """
    return _cpu_count()


def build_info():
    """How this engine was built: ``{"openmp": bool, "debug": bool}``.

    Examples
    --------
    >>> from cprop._openmp import build_info
    >>> sorted(build_info())
    ['debug', 'openmp']
    """
    return {"openmp": bool(CPROP_HAVE_OPENMP), "debug": bool(CPROP_DEBUG_BUILD)}


def effective_n_threads(n_threads=None):
    """Number of OpenMP threads the engine will use.

    Parameters
    ----------
    n_threads : int or None
        None: ``OMP_NUM_THREADS``/threadpoolctl limits, else the usable CPUs. Positive: that many.
        Negative: ``usable CPUs + 1 + n_threads`` (so -1 means all). Zero is an error.

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> from cprop._openmp import effective_n_threads
    >>> effective_n_threads(2)
    2
    """
    if n_threads is not None and not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or an int; got {n_threads!r} "
                        f"({type(n_threads).__name__}).")
    if n_threads == 0:
        raise ValueError("n_threads=0 is not allowed; use None for the default or a positive count.")
    if cprop_fork_serial:
        return 1
    max_threads = cprop_omp_max_threads()
    if n_threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return max(1, max_threads)
        return max(1, min(max_threads, _cpu_count()))
    n_threads = int(n_threads)
    if n_threads < 0:
        return max(1, _cpu_count() + 1 + n_threads)
    ceiling = thread_ceiling()
    if n_threads > ceiling:
        warnings.warn(
            f"n_threads={n_threads} is more threads than this machine can use ({_cpu_count()} "
            f"usable CPUs); using {ceiling} ({THREADS_PER_CPU} per CPU). Pass n_threads=None or -1 "
            "to use every CPU.", UserWarning, stacklevel=2)
        return ceiling
    return n_threads


def thread_ceiling():
    """The most threads an explicit ``n_threads`` gets: ``THREADS_PER_CPU`` per usable CPU.

    Examples
    --------
    >>> from cprop._openmp import thread_ceiling
    >>> thread_ceiling() >= 4
    True
    """
    return THREADS_PER_CPU * _cpu_count()


def _omp_stacksize():
    """Bytes of stack OpenMP gives its threads when ``OMP_STACKSIZE``/``GOMP_STACKSIZE`` set it
    (number with an optional B/K/M/G suffix, K by default), else 0 (the system default)."""
    for name in ("OMP_STACKSIZE", "GOMP_STACKSIZE"):
        text = os.environ.get(name, "").strip().upper()
        if not text:
            continue
        unit = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[len(text) - 1])
        digits = text[:len(text) - 1] if unit else text
        try:
            return int(digits.strip()) * (unit or 1 << 10)
        except ValueError:
            continue
    return 0


def fork_serial():
    """True in a process forked after the engine ran threads (it then runs on one thread).

    Examples
    --------
    >>> from cprop._openmp import fork_serial
    >>> fork_serial()
    False
    """
    return bool(cprop_fork_serial)


def engine_threads(int n_threads):
    """The threads a compiled call may use now, given the ``n_threads`` its plan was made for.

    One thread in a child forked after threads ran (see the module notes); otherwise
    ``n_threads``, or fewer when the system cannot start that many threads (with a
    ``RuntimeWarning``), checked once per calling thread and team size.

    Examples
    --------
    >>> from cprop._openmp import engine_threads
    >>> engine_threads(1)
    1
    """
    global cprop_threads_used
    cdef int started
    cdef size_t stack
    if n_threads <= 1 or cprop_fork_serial or not CPROP_HAVE_OPENMP:
        return 1
    if n_threads > cprop_get_verified():
        stack = _omp_stacksize()
        with nogil:
            started = cprop_try_threads(n_threads - 1, stack)
        if started < n_threads - 1:
            warnings.warn(
                f"cprop could start only {started + 1} of the {n_threads} threads asked for "
                f"(a memory or process limit); running on {started + 1}. Results are the same "
                "for any thread count; pass a smaller n_threads to silence this.",
                RuntimeWarning, stacklevel=2)
            n_threads = started + 1
        cprop_set_verified(n_threads)
    if n_threads > 1:
        cprop_threads_used = 1
    return n_threads


# ---- test hook: run-time thread thresholds and the team-size probe (_openmp.pxd) -----------------
from cprop._config cimport PASS_SERIAL_FLOPS, GEMM_SERIAL_FLOPS, GATHER_PARALLEL_MIN

thresholds.pass_serial_flops = PASS_SERIAL_FLOPS
thresholds.gemm_serial_flops = GEMM_SERIAL_FLOPS
thresholds.gather_parallel_min = GATHER_PARALLEL_MIN

# The probe's kinds of parallel loop, in the order of _openmp.pxd's TEAM_* codes.
TEAM_SITES = ("gemm", "update", "grad_norm", "clip", "gather")
# The thresholds' compile-time defaults (_config.pxd), by the names _set_thread_thresholds takes.
DEFAULT_THREAD_THRESHOLDS = {"pass_serial_flops": float(PASS_SERIAL_FLOPS),
                             "gemm_serial_flops": float(GEMM_SERIAL_FLOPS),
                             "gather_parallel_min": int(GATHER_PARALLEL_MIN)}


def _thread_thresholds():
    """The thresholds below which the engine runs a pass, a product or a gather on one thread.

    Examples
    --------
    >>> from cprop._openmp import _thread_thresholds, DEFAULT_THREAD_THRESHOLDS
    >>> _thread_thresholds() == DEFAULT_THREAD_THRESHOLDS
    True
    """
    return {"pass_serial_flops": thresholds.pass_serial_flops,
            "gemm_serial_flops": thresholds.gemm_serial_flops,
            "gather_parallel_min": int(thresholds.gather_parallel_min)}


def _set_thread_thresholds(pass_serial_flops=None, gemm_serial_flops=None,
                           gather_parallel_min=None):
    """Test hook: set the thread thresholds (None keeps one); returns the previous ones.

    0 makes every pass, product and gather with ``n_threads > 1`` start a team, so small test
    data exercises the threaded loops.  Results never depend on these (they choose which loops
    use threads, never the order of a sum), and every workspace is sized for the plan's thread
    count whatever they are; they only cost time.  Not for users: the defaults were measured
    (_config.pxd).

    Examples
    --------
    >>> from cprop._openmp import _set_thread_thresholds, _thread_thresholds
    >>> old = _set_thread_thresholds(pass_serial_flops=0)
    >>> _thread_thresholds()["pass_serial_flops"]
    0.0
    >>> _ = _set_thread_thresholds(**old)
    """
    new = _thread_thresholds()
    given = {"pass_serial_flops": pass_serial_flops, "gemm_serial_flops": gemm_serial_flops,
             "gather_parallel_min": gather_parallel_min}
    for name, value in given.items():
        if value is None:
            continue
        if not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0; got {value!r}.")
        new[name] = value
    old = _thread_thresholds()
    thresholds.pass_serial_flops = new["pass_serial_flops"]
    thresholds.gemm_serial_flops = new["gemm_serial_flops"]
    thresholds.gather_parallel_min = int(new["gather_parallel_min"])
    return old


def _team_sizes():
    """Test probe: the largest OpenMP team each kind of parallel loop started since
    ``_reset_team_sizes()`` (0: it never ran threaded), by the names of ``TEAM_SITES``.

    Examples
    --------
    >>> from cprop._openmp import _reset_team_sizes, _team_sizes
    >>> _reset_team_sizes()
    >>> _team_sizes()
    {'gemm': 0, 'update': 0, 'grad_norm': 0, 'clip': 0, 'gather': 0}
    """
    return {name: int(team_max[i]) for i, name in enumerate(TEAM_SITES)}


def _reset_team_sizes():
    """Forget the team sizes ``_team_sizes()`` reports."""
    cdef int i
    for i in range(N_TEAM_SITES):
        team_max[i] = 0
