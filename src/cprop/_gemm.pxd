from cprop._typedefs cimport floating, intp_t
from cprop._prefetch cimport RowPrefetch

cdef enum:
    EPI_NONE = 0
    EPI_BIAS_ACT = 1     # C := f(C + 1 bias^T)            (forward: bias + activation at write-back)
    EPI_MUL_DERIV = 2    # C := C * f'(.) written via aux  (backward: activation derivative into delta)

cdef struct Epilogue:
    int kind
    int act              # an ACT_* code from _activations
    const void* bias     # floating[N] or NULL
    const void* aux      # floating[M, ldaux] (the layer's activations) for EPI_MUL_DERIV
    intp_t ldaux
    const RowPrefetch* prefetch   # rows to prefetch while the product runs, or NULL

# Micro-kernel types and the kernel table live in _kernels.pxd (shared with the ISA modules).
from cprop._kernels cimport sukernel_t, dukernel_t, KernelTable

cdef intp_t gemm_work_size(bint is_float, intp_t M, intp_t N, intp_t K, int n_threads) noexcept nogil

cdef void gemm(bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
               floating alpha, const floating* A, intp_t lda,
               const floating* B, intp_t ldb,
               floating beta, floating* C, intp_t ldc,
               const Epilogue* epi, floating* work, int n_threads) noexcept nogil
