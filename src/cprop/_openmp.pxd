# What the other engine modules cimport from the thread-policy module: the run-time copies of the
# "when to use threads" thresholds, and a probe of the OpenMP teams that actually ran.
#
# Both exist so that tests can prove what they claim (issue 17): a test of "bitwise identical for
# any thread count" on small data would otherwise run every count on one thread (passes under
# PASS_SERIAL_FLOPS never start a team) and could not fail.  Tests lower the thresholds through
# ``_openmp._set_thread_thresholds`` (tests/conftest.py: the ``threaded_passes`` fixture) and read
# the largest team each kind of parallel loop started through ``_openmp._team_sizes``.
#
# Cost on the hot path: each pass (or product) reads one threshold through one pointer, where it
# used to compare with a compile-time constant; a parallel loop's thread 0 compares and stores one
# int per region (GEMM) or per chunk of UPDATE_CHUNK values (optimizer updates).  Serial loops
# never touch the probe.
from cprop._typedefs cimport intp_t

# The thresholds the engine reads at run time; defaults are _config.pxd's enum (where each was
# measured).  Written only by _openmp._set_thread_thresholds, with the GIL.
cdef struct ThreadThresholds:
    double pass_serial_flops        # _config.PASS_SERIAL_FLOPS   (_train: a pass runs on one thread)
    double gemm_serial_flops        # _config.GEMM_SERIAL_FLOPS   (_gemm: a product runs on one thread)
    intp_t gather_parallel_min      # _config.GATHER_PARALLEL_MIN (_train: batch-row gathers)

cdef ThreadThresholds thresholds

# Kinds of parallel loop the probe tells apart (names in _openmp.TEAM_SITES, same order).
cdef enum:
    TEAM_GEMM = 0           # the GEMM's parallel region (packing B~ and the tasks)
    TEAM_UPDATE = 1         # optimizer updates over UPDATE_CHUNK chunks
    TEAM_GRAD_NORM = 2      # sums of squares of the gradient (clipping by norm, monitoring)
    TEAM_CLIP = 3           # the clipped gradient
    TEAM_GATHER = 4         # gathering a mini-batch's rows
    N_TEAM_SITES = 5

# Largest team (omp_get_num_threads()) each kind of loop ran with since _reset_team_sizes();
# 0: it never ran threaded.
cdef int team_max[N_TEAM_SITES]

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    /* Inside a parallel region: the team's size on its thread 0, 0 on the others. */
    static int cprop_team_on_master(void) {
        return omp_get_thread_num() == 0 ? omp_get_num_threads() : 0;
    }
    #else
    static int cprop_team_on_master(void) { return 0; }
    #endif
    """
    int cprop_team_on_master() noexcept nogil


cdef inline void note_team(int site) noexcept nogil:
    """Inside a parallel region: record its team size for ``site`` (thread 0 writes, alone)."""
    cdef int n = cprop_team_on_master()
    if n > team_max[site]:
        team_max[site] = n
