from cprop._typedefs cimport floating, intp_t

cdef enum:
    LOSS_SQUARED = 0       # identity output: half squared error, summed over outputs
    LOSS_LOG = 1           # softmax output: multiclass cross-entropy
    LOSS_BINARY_LOG = 2    # logistic output: binary / multilabel cross-entropy
    LOSS_POISSON = 3       # exp output: half Poisson deviance
    LOSS_ABSOLUTE = 4      # identity output: absolute error, summed over outputs
    LOSS_HUBER = 5         # identity output: Huber loss with threshold loss_param, summed over outputs

cdef void loss_delta_rows(int loss, const floating* Y, const floating* P, floating* D,
                          const floating* sw, intp_t n_rows, intp_t n_out, double scale,
                          double* row_loss, double loss_param, int n_threads) noexcept nogil
