# The sparse first layer's one kernel, built per kernel path (_kernels.pyx.tp renders it with the
# path's vector operations; cprop._isa hands the installed path's build to cprop._backprop).
#
#     out[:n] (+)= sum_k vals[k] * B[idx[k], :n]        k = 0 .. nnz-1, in that order
#
# A weighted sum of rows of a dense row-major B (leading dimension ldb), accumulated in registers and
# stored once.  It serves both products of a CSR first layer:
#   forward          Z[r, :]  = sum over the stored (c, v) of row r of X:       v * W[c, :]
#   weight gradient  G[f, :]  = sum over the batch rows r with X[r, f] = v:     v * D[r, :]
#                    (the batch's entries grouped by column first, rows in batch order)
# Each output element is summed from 0 over k in order and, with ``accumulate``, added to out
# afterwards (out + sum, as a GEMM with beta = 1): the same order whatever the thread count or the
# split of the output over threads.
from cprop._typedefs cimport intp_t

ctypedef void (*ssparse_rows_t)(intp_t nnz, const float* vals, const intp_t* idx, const float* B,
                                intp_t ldb, intp_t n, float* out, bint accumulate) noexcept nogil
ctypedef void (*dsparse_rows_t)(intp_t nnz, const double* vals, const intp_t* idx, const double* B,
                                intp_t ldb, intp_t n, double* out, bint accumulate) noexcept nogil

# One path's builds of the kernel.
cdef struct SparseTable:
    ssparse_rows_t s_rows
    dsparse_rows_t d_rows
