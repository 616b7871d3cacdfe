"""Thread policy: the one owner of how many OpenMP threads the engine uses.

Design
1. ``effective_n_threads(None)`` follows ``omp_get_max_threads()``, which already reflects
   ``OMP_NUM_THREADS`` and any ``threadpoolctl.threadpool_limits`` (threadpoolctl calls
   ``omp_set_num_threads`` on the OpenMP runtime this module is linked to), capped by the CPUs this
   process may use (cgroup/affinity) when ``OMP_NUM_THREADS`` is unset -- the policy scikit-learn uses.
2. A positive ``n_threads`` is used as given; ``-1`` means all allowed CPUs, ``-2`` all but one, ...
3. Every ``prange``/``parallel`` in the engine receives the result explicitly via ``num_threads=``.
"""
import os

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


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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
    if n_threads == 0:
        raise ValueError("n_threads=0 is not allowed; use None for the default or a positive count.")
    max_threads = cprop_omp_max_threads()
    if n_threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return max(1, max_threads)
        return max(1, min(max_threads, _cpu_count()))
    n_threads = int(n_threads)
    if n_threads < 0:
        return max(1, _cpu_count() + 1 + n_threads)
    return n_threads
