# GEMM block sizes: the one place they live.
#
# Origin: BLIS's haswell/zen configurations (bli_cntx_init_zen.c: sgemm MR x NR = 6 x 16, MC=144
# KC=256 NC=4080; dgemm 6 x 8, MC=72 KC=256 NC=4080), rounded so MC is a multiple of every MR we
# ship and NC of every NR.  KC*NR*sizeof panels stay in L1, MC*KC (A~, one per thread) in L2
# (512 KiB on Zen 3), B~ (shared) in L3.  _gemm balances blocks (K = 784 -> 4 x 196, not
# 3 x 256 + 16); the balanced sizes depend on the shape only, never on the thread count.

cdef enum:
    S_MC = 144
    S_KC = 256
    S_NC = 4080
    D_MC = 72
    D_KC = 256
    D_NC = 2040
    # Below this many flops (2*M*N*K) a product runs on one thread: about 25 us of work at 80
    # GFLOP/s, several fork/join costs (and far more when the machine is shared: a woken thread
    # may wait for a time slice).  Keeps the 100 x 10 layer products of W1 serial.
    GEMM_SERIAL_FLOPS = 2000000
    # Widest NR of any kernel path we ship (reference 8/4, avx2 16/8): workspace sizes use it so a
    # plan stays valid whichever kernel path is installed later.
    NR_MAX = 16
    # B~ holds all of K for a block of columns (packed once, shared by the threads); this caps
    # its size in elements (16 MiB of float32: L3-sized on Zen 3), narrowing the column block
    # when K is large.
    BPACK_MAX = 4194304
    # Tasks per thread in a parallel product, for dynamic load balancing (a thread delayed by
    # the OS or by a busy neighbour core gives its remaining tasks to the others).
    TASKS_PER_THREAD = 4
    # The micro-kernel reads a row-major op(A) in place (no A~) when N is at most this: each A
    # panel is then reused by few B~ panels and packing costs about as much as it saves.
    # Measured on Zen 3 (benchmarks/bench.py kernel table): see the design notes in _gemm.pyx.
    DIRECT_A_MAX_N = 1024
    # The same for a column-major op(A) (weight gradient X^T D): the kernel reads MR consecutive
    # values of one row of X per k step, stride lda.
    DIRECT_AT_MAX_N = 256
    # With A read in place, loop 1 (MR panels of A) runs outside loop 2 (NR panels of B~): see
    # _macro_kernel.  Measured on Zen 3 (predict and the MLP shapes): see the design notes.
    DIRECT_A_OUTER = 1
