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

cimport openmp


cdef int effective_n_threads_c(int n_threads) noexcept nogil:
    cdef int nt = openmp.omp_get_max_threads()
    if n_threads > 0:
        return n_threads
    return nt if nt > 0 else 1


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def openmp_enabled():
    """True when the engine was compiled with OpenMP (always so for wheels and CI builds)."""
    return openmp.omp_get_max_threads() >= 1


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
    max_threads = openmp.omp_get_max_threads()
    if n_threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return max(1, max_threads)
        return max(1, min(max_threads, _cpu_count()))
    n_threads = int(n_threads)
    if n_threads < 0:
        return max(1, _cpu_count() + 1 + n_threads)
    return n_threads
