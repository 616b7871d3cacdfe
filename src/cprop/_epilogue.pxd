# The GEMM epilogue on one finished tile of C: bias + activation (forward) or the activation
# derivative into the delta (backward).  Inline here so each module that cimports it compiles it
# with its own flags: cprop._gemm (baseline, the reference table) and cprop._kernels_avx2 (AVX2).
from cprop._typedefs cimport floating, intp_t
from cprop._kernels cimport Epilogue, EPI_BIAS_ACT, EPI_BIAS_ACT_Z, EPI_MUL_DERIV
from cprop._activations cimport act_forward_row, act_backward_row


cdef inline void epilogue_tile(const Epilogue* epi, floating* c, intp_t ldc, intp_t i0, intp_t j0,
                               intp_t m, intp_t n) noexcept nogil:
    """The m x n tile at c (rows i0.., columns j0.. of the product) := its epilogue."""
    cdef intp_t i
    cdef const floating* bias
    cdef const floating* aux
    cdef floating* zs
    if epi.kind == EPI_BIAS_ACT:
        bias = <const floating*>epi.bias
        for i in range(m):
            act_forward_row(c + i * ldc, (bias + j0) if bias != NULL else NULL, n, epi.act, NULL)
    elif epi.kind == EPI_BIAS_ACT_Z:
        bias = <const floating*>epi.bias
        zs = <floating*>epi.zsave
        for i in range(m):
            act_forward_row(c + i * ldc, (bias + j0) if bias != NULL else NULL, n, epi.act,
                            zs + (i0 + i) * epi.ldz + j0)
    elif epi.kind == EPI_MUL_DERIV:
        aux = <const floating*>epi.aux
        for i in range(m):
            act_backward_row(c + i * ldc, aux + (i0 + i) * epi.ldaux + j0, n, epi.act)
