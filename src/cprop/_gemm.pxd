from cprop._typedefs cimport floating, intp_t

# Epilogue, EPI_*, the micro-kernel types and the kernel table live in _kernels.pxd (shared with
# the instruction-set modules).
from cprop._kernels cimport (Epilogue, EPI_NONE, EPI_BIAS_ACT, EPI_MUL_DERIV, sukernel_t,
                             dukernel_t, KernelTable)

cdef intp_t gemm_work_size(bint is_float, intp_t M, intp_t N, intp_t K, int n_threads) noexcept nogil

cdef void gemm(bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
               floating alpha, const floating* A, intp_t lda,
               const floating* B, intp_t ldb,
               floating beta, floating* C, intp_t ldc,
               const Epilogue* epi, floating* work, int n_threads) noexcept nogil

# The kernel table in use (a copy: set_kernel cannot change it under the caller).
cdef KernelTable current_kernels() noexcept nogil
