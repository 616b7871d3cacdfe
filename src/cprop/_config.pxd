# Thresholds and workspace bounds of the engine: the one place they live, each with where and how it
# was measured.  Block sizes of the GEMM belong to each kernel path (cprop/_kernel_paths.py); the
# bounds below are what every path's blocks must fit (cprop._isa checks each path at import).
#
# None of these changes a result: they choose how work is split and which loops use threads, never
# the order of any sum (see the determinism notes in _gemm.pyx and _train.pyx).

cdef enum:
    # ---- workspace bounds (elements), valid for every kernel path ---------------------------------
    # Widest NR of any path (avx512 float32: 32); every path's NR divides it, so a plan sized under
    # one path stays valid after set_kernel.
    NR_MAX = 32
    # Largest MC and KC of any path, per dtype (avx512: 480 x 384 float32, 240 x 256 float64): one
    # thread's A~ holds at most MC_MAX * min(KC_MAX, K) elements.
    S_MC_MAX = 480
    S_KC_MAX = 384
    D_MC_MAX = 240
    D_KC_MAX = 256
    # B~ holds all of K for a block of columns (packed once, shared by the threads); this caps its
    # size in elements (16 MiB of float32: L3-sized on Zen 3), narrowing the column block when K is
    # large.  Loop 5 then runs more than once (tests/engine/test_gemm.py: K*N past it).
    BPACK_MAX = 4194304

    # ---- when to use threads ----------------------------------------------------------------------
    # PASS_SERIAL_FLOPS, GEMM_SERIAL_FLOPS and GATHER_PARALLEL_MIN are the defaults of run-time
    # copies (_openmp.pxd: thresholds), which tests lower so that small data runs threaded loops.
    # Serial loops: a loop that may run threaded is written twice, `prange` under `if <threads>:`
    # and plain `range` under `else:` (each body one call), never as `prange(...,
    # use_threads_if=...)`.  An `omp parallel if(0)` still enters libgomp and builds a one-thread
    # team (~0.5 us); a breast-cancer mini-batch ran 15 of them (+8 us per batch, +25% on a
    # whole small fit; Xeon, avx2 path, callgrind/perf of Network.train_epoch).
    # Below this many flops (2*M*N*K) a product runs on one thread: about 25 us of work at 80
    # GFLOP/s, several fork/join costs (far more on a shared machine, where a woken thread may wait
    # for a time slice).  Keeps the 100 x 10 layer products of W1 serial.  Zen 3, 2 cores, W1 epoch.
    GEMM_SERIAL_FLOPS = 2000000
    # A pass (one mini-batch, or one chunk of rows) with fewer GEMM flops than this runs every
    # kernel on one thread: ~0.2 ms of work at 80 GFLOP/s, a few dozen fork/joins.  Whole small-data
    # fits (digits: ~6e6 flops per batch of 200) then never touch OpenMP.  Zen 3, digits and
    # breast-cancer fits of the benchmark at 1 and 2 threads.
    PASS_SERIAL_FLOPS = 16000000
    # Elementwise passes over rows (activation, loss/delta, column sums, row gather) use threads
    # above this many values: below it a fork/join (~5-10 us on the shared 2-core VM) costs more
    # than the pass.  Zen 3, W1's 200 x 100 and 200 x 10 passes at 2 threads (perf: libgomp wait).
    ROWS_PARALLEL_MIN = 20000
    GATHER_PARALLEL_MIN = 50000
    COLSUM_PARALLEL_MIN = 50000
    # Input-block layers (scale, periodic embedding) run their row chunks on threads above this
    # many multiply-adds per pass (rows x per-row work); set equal to ROWS_PARALLEL_MIN, not
    # measured on its own yet.
    BLOCK_PARALLEL_MIN = 20000
    # Sparse first layer: rows per pass above which X W runs threaded (each row is independent).
    SPARSE_ROWS_PARALLEL_MIN = 16
    # Sparse weight gradient: rows of G per task (dynamic schedule; each row is one task's, so
    # results do not depend on it).
    SPARSE_GRAD_ROWS_PER_TASK = 16
    # Columns per task in column sums (each column is summed in row order by
    # one task, so results do not depend on it).
    COL_BLOCK = 64
    # Tasks per thread in a parallel product, for dynamic load balancing (a thread delayed by the
    # OS or by a busy neighbour core gives its remaining tasks to the others).
    TASKS_PER_THREAD = 4

    # ---- GEMM loop shapes ---------------------------------------------------------------------------
    # (When the micro-kernel reads op(A) in place instead of packing A~ is measured per kernel
    # path: direct_a_max_n / direct_at_max_n in cprop/_kernel_paths.py.)
    # With A read in place, loop 1 (MR panels of A) runs outside loop 2 (NR panels of B~): one MR
    # panel of A stays in L1 across the B~ panels.  Zen 3, paired runs: +2% to +6% (MLP shapes).
    DIRECT_A_OUTER = 1

    # ---- fixed chunking (part of the arithmetic's order: changing these changes results) ----------
    # Optimizer updates run over chunks of this many values; the sums of squares of the chunks are
    # combined in chunk order.
    UPDATE_CHUNK = 8192
    # Input-block parameter gradients are summed over row chunks of this many rows, the chunk
    # partials then combined in chunk order (so any thread count gives the same bits).
    BLOCK_ROW_CHUNK = 32
    # Rows prefetched ahead when gathering a batch (perf: gather time -35% on Zen 3).
    GATHER_AHEAD = 4
