# The GEMM's view of a kernel path: micro-kernels with their register and cache blocking, per dtype,
# and the per-tile callback type.  Types only, and nothing about networks: cimporting this imports
# no module, so the baseline _gemm never loads code built for an instruction set the CPU may lack.
from cprop._typedefs cimport intp_t


# C[:m, :n] := alpha * A(MR x kc) * B~(kc x NR) + beta * C[:m, :n]   (C never read when beta == 0)
# A(i, p) = a[i*rsa + p*csa]: a packed A~ panel (rsa = 1, csa = MR) or, for a context with direct_a,
# op(A) read in place (any strides; all MR rows must exist).  B~ is always packed.
ctypedef void (*sukernel_t)(intp_t kc, float alpha, const float* a, intp_t rsa, intp_t csa,
                            const float* b, float beta, float* c, intp_t ldc,
                            intp_t m, intp_t n) noexcept nogil
ctypedef void (*dukernel_t)(intp_t kc, double alpha, const double* a, intp_t rsa, intp_t csa,
                            const double* b, double beta, double* c, intp_t ldc,
                            intp_t m, intp_t n) noexcept nogil

# Register blocking MR x NR and cache blocking MC x KC (A~ per thread) and NC (columns of B~ per
# loop-5 block, further capped by _config.BPACK_MAX) of one dtype.
cdef struct SGemmBlocks:
    int mr
    int nr
    int mc
    int kc
    int nc
    sukernel_t fn
    sukernel_t fn_half       # MR x NR/2 kernel for a last B~ panel of <= NR/2 columns, or NULL

cdef struct DGemmBlocks:
    int mr
    int nr
    int mc
    int kc
    int nc
    dukernel_t fn
    dukernel_t fn_half

cdef struct GemmContext:
    SGemmBlocks s
    DGemmBlocks d
    bint direct_a            # kernels honour any A strides (else only packed A~: rsa = 1, csa = MR)
    # With direct_a, op(A) is read in place (no A~) when N is at most these: row-major op(A)
    # (X W, D W^T) and column-major op(A) (X^T D).  Measured per path (cprop/_kernel_paths.py).
    intp_t direct_a_max_n
    intp_t direct_at_max_n
    # ... unless a row of row-major op(A) spans a multiple of this many bytes (0: no such rule):
    # the MR rows the micro-kernel reads per k step then map to one L1 set and evict each other
    # (Zen 4's 32 KiB 8-way L1d, 4 KiB rows: float64 1024^3 at 0.64-0.86 of OpenBLAS read in place,
    # 0.82-0.90 packed; benchmarks/results/2026-12-07-oversubscription-zen4.md).  Packing A~ reads
    # each panel once into a contiguous buffer and does not change any sum's order.
    intp_t direct_a_alias_bytes

# Where a finished micro-kernel call sits in the product, handed to the per-tile callback.
cdef struct Tile:
    intp_t i0                # first row and column of the tile in the whole product
    intp_t j0
    intp_t m                 # valid rows and columns
    intp_t n
    intp_t index             # tiles numbered k-block, then MR panel, then NR panel
    intp_t count             # tiles in the whole product (all k-blocks)
    bint last_k              # the tile's last k-block: C holds the finished product there

# Called after each micro-kernel call with the caller's data and the tile of C just written.
ctypedef void (*stile_t)(const void* data, float* c, intp_t ldc, const Tile* t) noexcept nogil
ctypedef void (*dtile_t)(const void* data, double* c, intp_t ldc, const Tile* t) noexcept nogil

# The callback of one product: ``s`` or ``d`` by the product's dtype, called with ``data``.
cdef struct TileCallback:
    stile_t s
    dtile_t d
    const void* data
