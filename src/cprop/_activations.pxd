# Activation functions: each forward written beside its derivative (micrograd style).
#
# Design
# 1. Where it can, the derivative is expressed through the activation's *output* a = f(z) (as
#    scikit-learn does), so the backward pass needs no stored pre-activations: relu'(z) = [a > 0],
#    logistic'(z) = a(1-a), tanh'(z) = 1 - a^2, identity'(z) = 1, exp'(z) = a, and likewise
#    leaky_relu, elu, selu and softplus (softplus'(z) = sigmoid(z) = 1 - e^{-a}).
# 2. gelu, gelu_tanh, silu and mish have derivatives that are not functions of their output (they
#    are not monotonic), so they read the pre-activation z: the forward epilogue also writes z + b
#    to a plan buffer (``zsave``), and the backward epilogue passes that buffer instead of A
#    (``act_needs_z``).  No other activation pays for it.
# 3. Fixed constants (the common defaults of PyTorch and Keras): leaky_relu slope 0.01; elu alpha 1;
#    selu lambda = 1.0507009873554805, alpha = 1.6732632423543772 (Klambauer et al. 2017).
#    'gelu' is the exact form z * Phi(z) (erf); 'gelu_tanh' the tanh approximation of
#    Hendrycks & Gimpel (2016).
# 4. The list of activations is cprop/_activation_list.py: the enum (ACT_*), the flags
#    (act_needs_z, act_is_elementwise) and the tile dispatch (act_forward_tile, act_backward_tile)
#    are rendered from it by setup.py into _activations.pxi (template _activations.pxi.tp),
#    included below.  A new activation is a list entry plus its pair of element functions here.
from libc.math cimport (exp, expf, tanh, tanhf, log, logf, fabs, erfc, erfcf, expm1, expm1f,
                        log1p, log1pf)
from cprop._typedefs cimport floating, intp_t

cdef extern from *:
    """
    #define CPROP_LEAKY_SLOPE 0.01
    #define CPROP_SELU_LAMBDA 1.0507009873554804934193349852946
    #define CPROP_SELU_ALPHA 1.6732632423543772848170429916717
    #define CPROP_SQRT1_2 0.70710678118654752440084436210485
    #define CPROP_INV_SQRT_2PI 0.39894228040143267793994605993438
    #define CPROP_SQRT_2_PI 0.79788456080286535587989211986876
    #define CPROP_GELU_C 0.044715
    """
    double LEAKY_SLOPE "CPROP_LEAKY_SLOPE"
    double SELU_LAMBDA "CPROP_SELU_LAMBDA"
    double SELU_ALPHA "CPROP_SELU_ALPHA"
    double SQRT1_2 "CPROP_SQRT1_2"
    double INV_SQRT_2PI "CPROP_INV_SQRT_2PI"
    double SQRT_2_PI "CPROP_SQRT_2_PI"
    double GELU_C "CPROP_GELU_C"


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _expm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _erfc(floating x) noexcept nogil:
    if floating is float:
        return erfcf(x)
    else:
        return erfc(x)


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

cdef inline floating relu_delta(floating d, floating a) noexcept nogil:
    # d * relu'(a) as a select (list entry ``delta``): a dead unit passes exactly 0, even when d is
    # inf or NaN, as scikit-learn's delta[Z == 0] = 0 does.
    return d if a > 0 else 0


# ---- exp (Poisson output) --------------------------------------------------------------------------
cdef inline floating exp_forward(floating z) noexcept nogil:
    return _exp(z)

cdef inline floating exp_backward(floating a) noexcept nogil:
    return a


# ---- leaky relu: f = z (z > 0), 0.01 z otherwise -----------------------------------------------------
cdef inline floating leaky_relu_forward(floating z) noexcept nogil:
    return z if (z > 0 or z != z) else <floating>LEAKY_SLOPE * z

cdef inline floating leaky_relu_backward(floating a) noexcept nogil:
    # a has the sign of z; at z == 0 the slope of the left piece (as relu takes 0 there).
    return 1 if a > 0 else <floating>LEAKY_SLOPE


# ---- elu (alpha = 1): f = z (z > 0), e^z - 1 otherwise; f' = 1 or e^z = a + 1 -------------------------
cdef inline floating elu_forward(floating z) noexcept nogil:
    return z if z > 0 else _expm1(z)      # expm1: exact near 0, where e^z - 1 cancels

cdef inline floating elu_backward(floating a) noexcept nogil:
    return 1 if a > 0 else a + 1


# ---- selu: f = lambda z (z > 0), lambda alpha (e^z - 1) otherwise; f' = lambda or a + lambda alpha ---
cdef inline floating selu_forward(floating z) noexcept nogil:
    return <floating>SELU_LAMBDA * z if z > 0 else <floating>(SELU_LAMBDA * SELU_ALPHA) * _expm1(z)

cdef inline floating selu_backward(floating a) noexcept nogil:
    return <floating>SELU_LAMBDA if a > 0 else a + <floating>(SELU_LAMBDA * SELU_ALPHA)


# ---- softplus: f = log(1 + e^z); f' = sigmoid(z) = 1 - e^{-a} -------------------------------------
cdef inline floating softplus_forward(floating z) noexcept nogil:
    # max(z, 0) + log1p(e^{-|z|}): never overflows, exact for large |z|.
    return (z if z > 0 else 0) + _log1p(_exp(-fabs(z)))

cdef inline floating softplus_backward(floating a) noexcept nogil:
    # sigmoid(z) = 1 - 1/(1 + e^z) = 1 - e^{-a}; -expm1(-a) keeps it exact when a (and z) is tiny.
    return -_expm1(-a)


# ---- gelu, exact: f = z Phi(z); f' = Phi(z) + z phi(z)    (reads z) --------------------------------
cdef inline floating _phi_cdf(floating z) noexcept nogil:
    # Phi(z) = erfc(-z / sqrt 2) / 2: no cancellation for negative z, unlike (1 + erf) / 2.
    return <floating>0.5 * _erfc(-z * <floating>SQRT1_2)

cdef inline floating gelu_forward(floating z) noexcept nogil:
    return z * _phi_cdf(z)

cdef inline floating gelu_backward(floating z) noexcept nogil:
    return _phi_cdf(z) + z * <floating>INV_SQRT_2PI * _exp(<floating>-0.5 * z * z)


# ---- gelu, tanh approximation: f = z (1 + tanh(u)) / 2, u = sqrt(2/pi) (z + 0.044715 z^3) ----------
cdef inline floating _gelu_u(floating z) noexcept nogil:
    return <floating>SQRT_2_PI * (z + <floating>GELU_C * z * z * z)

cdef inline floating gelu_tanh_forward(floating z) noexcept nogil:
    # (1 + tanh(u)) / 2 = sigmoid(2u): no cancellation in the left tail (1 + tanh(u) loses all
    # digits of float32 there).
    return z * logistic_forward(2 * _gelu_u(z))

cdef inline floating gelu_tanh_backward(floating z) noexcept nogil:
    # f' = s + 2 z s (1 - s) u'(z), s = sigmoid(2u); the second term is 0 once s saturates (and
    # z^3 may be inf there: skip it rather than form 0 * inf).
    cdef floating s = logistic_forward(2 * _gelu_u(z))
    cdef floating q = s * (1 - s)
    if q == 0:
        return s
    return s + 2 * z * q * <floating>SQRT_2_PI * (1 + <floating>(3 * GELU_C) * z * z)


# ---- silu (swish): f = z sigmoid(z); f' = s (1 + z (1 - s))    (reads z) ----------------------------
cdef inline floating silu_forward(floating z) noexcept nogil:
    return z * logistic_forward(z)

cdef inline floating silu_backward(floating z) noexcept nogil:
    cdef floating s = logistic_forward(z)
    return s * (1 + z * (1 - s))


# ---- mish: f = z tanh(softplus(z)); f' = t + z sigmoid(z) (1 - t^2)    (reads z) --------------------
# With n = e^z and q = n (n + 2): t = tanh(log(1 + n)) = q / (q + 2), 1 - t = 2 / (q + 2) and
# sigmoid(z) = n / (1 + n): one exp instead of exp, log1p and tanh (the direct form made a mish
# epoch 3.7x relu's).  Beyond z = 20, 1 - t < 1e-17 (below both epsilons) and q would overflow
# float32 a little later: f = z and f' = 1 there.
cdef inline floating mish_forward(floating z) noexcept nogil:
    cdef floating n, q
    if z > 20:
        return z
    n = _exp(z)
    q = n * (n + 2)
    return z * q / (q + 2)

cdef inline floating mish_backward(floating z) noexcept nogil:
    # 1 - t^2 = (1 - t)(1 + t): no cancellation as t -> 1
    cdef floating n, q, t
    if z > 20:
        return 1
    n = _exp(z)
    q = n * (n + 2)
    t = q / (q + 2)
    return t + z * (n / (1 + n)) * (2 / (q + 2)) * (1 + t)


# ---- row helpers used by GEMM epilogues and the backprop module -------------------------------------
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


# ---- rendered from cprop/_activation_list.py: ACT_* codes, flags, tile dispatch ----------------
include "_activations.pxi"


cdef inline void act_forward_row(floating* z, const floating* bias, intp_t n, int act,
                                 floating* zsave) noexcept nogil:
    """z := f(z + bias) over one row of n values (bias may be NULL); zsave (or NULL) := z + bias."""
    act_forward_tile(z, n, bias, 1, n, act, zsave, n)


cdef inline void act_backward_row(floating* delta, const floating* a, intp_t n, int act) noexcept nogil:
    """delta := delta * f'(.) over one row of n values (see act_backward_tile)."""
    act_backward_tile(delta, n, a, n, 1, n, act)


cdef void forward_rows(floating* Z, intp_t n_rows, intp_t n_cols, intp_t ldz, const floating* bias,
                       int act, floating* zsave, int n_threads) noexcept nogil
cdef void backward_rows(floating* D, const floating* A, intp_t n_rows, intp_t n_cols, intp_t ld,
                        int act, int n_threads) noexcept nogil
