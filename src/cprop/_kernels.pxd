# Micro-kernel table: the interface between the GEMM loops (_gemm) and the instruction-set-specific
# micro-kernel modules (_kernels_avx2, ...).  Types only: cimporting this imports no module, so the
# baseline _gemm never loads code built for an instruction set the CPU may lack.
from cprop._typedefs cimport intp_t

# C[:m, :n] := alpha * A(MR x kc) * B~(kc x NR) + beta * C[:m, :n]   (C never read when beta == 0)
# A(i, p) = a[i*rsa + p*csa]: a packed A~ panel (rsa = 1, csa = MR) or, for a table with direct_a,
# op(A) read in place (any strides; all MR rows must exist).  B~ is always packed.
ctypedef void (*sukernel_t)(intp_t kc, float alpha, const float* a, intp_t rsa, intp_t csa,
                            const float* b, float beta, float* c, intp_t ldc,
                            intp_t m, intp_t n) noexcept nogil
ctypedef void (*dukernel_t)(intp_t kc, double alpha, const double* a, intp_t rsa, intp_t csa,
                            const double* b, double beta, double* c, intp_t ldc,
                            intp_t m, intp_t n) noexcept nogil

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
