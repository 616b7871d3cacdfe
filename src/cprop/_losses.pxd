from cprop._typedefs cimport floating, intp_t

# The LOSS_* codes and their dispatch are rendered from cprop/_loss_list.py into _losses.pxi (see
# _losses.pyx): callers hold a code from cprop._losses.LOSS_CODES, never a constant of their own.

cdef void loss_delta_rows(int loss, const floating* Y, const floating* P, floating* D,
                          const floating* sw, intp_t n_rows, intp_t n_out, double scale,
                          double* row_loss, double loss_param, int n_threads) noexcept nogil
