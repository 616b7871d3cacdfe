# Micro-kernel table: the interface between the GEMM loops (_gemm) and the instruction-set-specific
# micro-kernel modules (_kernels_avx2, ...).  Types only: cimporting this imports no module, so the
# baseline _gemm never loads code built for an instruction set the CPU may lack.
from cprop._typedefs cimport intp_t
from cprop._optim cimport Optim
from cprop._prefetch cimport RowPrefetch


# What a product does to each finished tile of C (see _gemm's design note 5).
cdef enum:
    EPI_NONE = 0
    EPI_BIAS_ACT = 1     # C := f(C + 1 bias^T)            (forward: bias + activation at write-back)
    EPI_MUL_DERIV = 2    # C := C * f'(.) written via aux  (backward: activation derivative into delta)
    EPI_BIAS_ACT_Z = 3   # as EPI_BIAS_ACT, and zsave := C + 1 bias^T (the pre-activation, for the
                         # activations whose derivative reads z: _activations.act_needs_z)

cdef struct Epilogue:
    int kind
    int act              # an ACT_* code from _activations
    const void* bias     # floating[N] or NULL
    const void* aux      # floating[M, ldaux] (the layer's activations) for EPI_MUL_DERIV
    intp_t ldaux
    const RowPrefetch* prefetch   # rows to prefetch while the product runs, or NULL
    void* zsave          # floating[M, ldz]: pre-activations written by EPI_BIAS_ACT_Z (else unread)
    intp_t ldz

# C[:m, :n] := alpha * A(MR x kc) * B~(kc x NR) + beta * C[:m, :n]   (C never read when beta == 0)
# A(i, p) = a[i*rsa + p*csa]: a packed A~ panel (rsa = 1, csa = MR) or, for a table with direct_a,
# op(A) read in place (any strides; all MR rows must exist).  B~ is always packed.
ctypedef void (*sukernel_t)(intp_t kc, float alpha, const float* a, intp_t rsa, intp_t csa,
                            const float* b, float beta, float* c, intp_t ldc,
                            intp_t m, intp_t n) noexcept nogil
ctypedef void (*dukernel_t)(intp_t kc, double alpha, const double* a, intp_t rsa, intp_t csa,
                            const double* b, double beta, double* c, intp_t ldc,
                            intp_t m, intp_t n) noexcept nogil

# The epilogue on one finished m x n tile at c (rows i0.., columns j0.. of the whole product).
ctypedef void (*sepi_t)(const Epilogue* epi, float* c, intp_t ldc, intp_t i0, intp_t j0,
                        intp_t m, intp_t n) noexcept nogil
ctypedef void (*depi_t)(const Epilogue* epi, double* c, intp_t ldc, intp_t i0, intp_t j0,
                        intp_t m, intp_t n) noexcept nogil
# One chunk of an optimizer update (_optim.update_chunk); returns sum(p_old^2) if want_sumsq.
ctypedef double (*supdate_t)(float* p, const float* g, float* s1, float* s2, intp_t n, float l2,
                             const Optim* opt, bint want_sumsq) noexcept nogil
ctypedef double (*dupdate_t)(double* p, const double* g, double* s1, double* s2, intp_t n,
                             double l2, const Optim* opt, bint want_sumsq) noexcept nogil

cdef struct KernelTable:
    int s_mr                 # float32 register block MR x NR
    int s_nr
    sukernel_t s_fn
    sukernel_t s_fn_half     # MR x NR/2 kernel for a last B~ panel of <= NR/2 columns, or NULL
    int d_mr                 # float64 register block
    int d_nr
    dukernel_t d_fn
    dukernel_t d_fn_half
    bint direct_a            # kernels honour any A strides (else only packed A~: rsa = 1, csa = MR)
    sepi_t s_epi             # tile epilogues built for this path
    depi_t d_epi
    supdate_t s_update       # optimizer update built for this path
    dupdate_t d_update
