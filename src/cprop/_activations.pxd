# Activation functions: each forward written beside its derivative (micrograd style).
#
# The derivative is expressed through the activation's *output* a = f(z) (as scikit-learn does), so the
# backward pass needs no stored pre-activations: relu'(z) = [a > 0], logistic'(z) = a(1-a),
# tanh'(z) = 1 - a^2, identity'(z) = 1, exp'(z) = a.  An activation whose derivative is not a function
# of its output (gelu, silu, ...) would add a pre-activation buffer; the ``ACT_*`` codes and the two
# row functions below are the only places that would change.
from libc.math cimport exp, expf, tanh, tanhf, log, logf, fabs
from cprop._typedefs cimport floating, intp_t

cdef enum:
    ACT_IDENTITY = 0
    ACT_LOGISTIC = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_EXP = 4        # output layer of the Poisson loss
    ACT_SOFTMAX = 5    # output layer of multiclass log-loss; row-wise, never fused element-wise


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


# ---- identity --------------------------------------------------------------------------------------
cdef inline floating identity_forward(floating z) noexcept nogil:
    return z

cdef inline floating identity_backward(floating a) noexcept nogil:
    return 1


# ---- logistic --------------------------------------------------------------------------------------
cdef inline floating logistic_forward(floating z) noexcept nogil:
    # Split on the sign so exp never overflows: for z < 0 use e^z / (1 + e^z).
    cdef floating e
    if z >= 0:
        return 1 / (1 + _exp(-z))
    e = _exp(z)
    return e / (1 + e)

cdef inline floating logistic_backward(floating a) noexcept nogil:
    return a * (1 - a)


# ---- tanh ------------------------------------------------------------------------------------------
cdef inline floating tanh_forward(floating z) noexcept nogil:
    if floating is float:
        return tanhf(z)
    else:
        return tanh(z)

cdef inline floating tanh_backward(floating a) noexcept nogil:
    return 1 - a * a


# ---- relu ------------------------------------------------------------------------------------------
cdef inline floating relu_forward(floating z) noexcept nogil:
    # NaN propagates (z > 0 is False for NaN, but we return z for NaN so bad input stays visible).
    return z if (z > 0 or z != z) else 0

cdef inline floating relu_backward(floating a) noexcept nogil:
    # scikit-learn: delta[Z == 0] = 0, i.e. the subgradient at 0 is 0.
    return 1 if a > 0 else 0


# ---- exp (Poisson output) --------------------------------------------------------------------------
cdef inline floating exp_forward(floating z) noexcept nogil:
    return _exp(z)

cdef inline floating exp_backward(floating a) noexcept nogil:
    return a


# ---- row helpers used by GEMM epilogues and the backprop module -------------------------------------
cdef inline void act_forward_row(floating* z, const floating* bias, intp_t n, int act) noexcept nogil:
    """z := f(z + bias) over one row of n values (bias may be NULL)."""
    cdef intp_t j
    if bias != NULL:
        for j in range(n):
            z[j] += bias[j]
    if act == ACT_IDENTITY:
        pass
    elif act == ACT_RELU:
        for j in range(n):
            z[j] = relu_forward(z[j])
    elif act == ACT_LOGISTIC:
        for j in range(n):
            z[j] = logistic_forward(z[j])
    elif act == ACT_TANH:
        for j in range(n):
            z[j] = tanh_forward(z[j])
    elif act == ACT_EXP:
        for j in range(n):
            z[j] = exp_forward(z[j])
    elif act == ACT_SOFTMAX:
        softmax_row(z, n)


cdef inline void act_backward_row(floating* delta, const floating* a, intp_t n, int act) noexcept nogil:
    """delta := delta * f'(z), with f'(z) written through the output a = f(z)."""
    cdef intp_t j
    if act == ACT_IDENTITY:
        pass
    elif act == ACT_RELU:
        for j in range(n):
            delta[j] = delta[j] if a[j] > 0 else 0
    elif act == ACT_LOGISTIC:
        for j in range(n):
            delta[j] *= logistic_backward(a[j])
    elif act == ACT_TANH:
        for j in range(n):
            delta[j] *= tanh_backward(a[j])
    elif act == ACT_EXP:
        for j in range(n):
            delta[j] *= exp_backward(a[j])


cdef inline void softmax_row(floating* z, intp_t n) noexcept nogil:
    """z := exp(z - max z) / sum(exp(z - max z)); the max shift keeps exp from overflowing."""
    cdef intp_t j
    cdef floating m = z[0]
    cdef double s = 0
    for j in range(1, n):
        if z[j] > m:
            m = z[j]
    for j in range(n):
        z[j] = _exp(z[j] - m)
        s += z[j]
    for j in range(n):
        z[j] = <floating>(z[j] / s)


cdef void forward_rows(floating* Z, intp_t n_rows, intp_t n_cols, intp_t ldz, const floating* bias,
                       int act, int n_threads) noexcept nogil
cdef void backward_rows(floating* D, const floating* A, intp_t n_rows, intp_t n_cols, intp_t ld,
                        int act, int n_threads) noexcept nogil
