from cprop._typedefs cimport floating, intp_t
from cprop._kernels cimport GemmContext, TileCallback

cdef enum:
    GEMM_NO_MEMORY = -1      # gemm could not allocate its workspace (only when given work == NULL)

cdef intp_t gemm_work_size(bint is_float, intp_t M, intp_t N, intp_t K, int n_threads) noexcept nogil

cdef int gemm(const GemmContext* ctx, bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
              floating alpha, const floating* A, intp_t lda, const floating* B, intp_t ldb,
              floating beta, floating* C, intp_t ldc, const TileCallback* cb, floating* work,
              int n_threads) noexcept nogil

cdef const GemmContext* context_from_capsule(object capsule) except NULL
