# Optimizer updates, elementwise: one chunk of parameters at a time.
#
# Inline here so each kernel path's module compiles them with that path's flags (the reference
# build; AVX2's 8-wide and AVX-512's 16-wide sqrt/div: half the time per update or less);
# cprop._isa hands the installed path's build (an OptimTable) to cprop._train.
from libc.math cimport sqrt, sqrtf
from cprop._typedefs cimport floating, intp_t

cdef enum:
    SOLVER_SGD = 0
    SOLVER_ADAM = 1
    SOLVER_ADAMW = 2     # Adam with decoupled weight decay (Loshchilov & Hutter 2019)


cdef struct Optim:
    int kind
    double lr            # SGD: learning rate; Adam: bias-corrected lr_t of the current step
    double momentum
    bint nesterov
    double beta1
    double beta2
    double eps
    double decay         # AdamW: lr * weight_decay, the fraction of each weight removed per step
                         # (0 for biases); unused by SGD and Adam

# One chunk of an optimizer update (update_chunk below); returns sum(p_old^2) if want_sumsq.
ctypedef double (*supdate_t)(float* p, const float* g, float* s1, float* s2, intp_t n, float l2,
                             const Optim* opt, bint want_sumsq) noexcept nogil
ctypedef double (*dupdate_t)(double* p, const double* g, double* s1, double* s2, intp_t n,
                             double l2, const Optim* opt, bint want_sumsq) noexcept nogil

# One path's builds of the update.
cdef struct OptimTable:
    supdate_t s_update
    dupdate_t d_update


cdef inline double sum_squares(const floating* p, intp_t n) noexcept nogil:
    """sum(p^2) in double, four interleaved partial sums (a fixed order, so deterministic)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef intp_t i = 0
    while i + 4 <= n:
        s0 += <double>p[i] * p[i]
        s1 += <double>p[i + 1] * p[i + 1]
        s2 += <double>p[i + 2] * p[i + 2]
        s3 += <double>p[i + 3] * p[i + 3]
        i += 4
    while i < n:
        s0 += <double>p[i] * p[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline double update_chunk(floating* p, const floating* g, floating* s1, floating* s2,
                                intp_t n, floating l2, const Optim* opt, bint want_sumsq) noexcept nogil:
    # One branch-free loop per rule, all in the parameter's precision (sqrtf for float32), so the
    # compiler vectorises it; the sum of squares (for the reported loss) is a separate pass.
    cdef intp_t i
    cdef double sumsq = sum_squares(p, n) if want_sumsq else 0
    cdef floating w, gi, v, m
    cdef floating lr = <floating>opt.lr, mu = <floating>opt.momentum
    cdef floating b1 = <floating>opt.beta1, b2 = <floating>opt.beta2, eps = <floating>opt.eps
    cdef floating decay = <floating>opt.decay
    cdef floating one = 1
    if opt.kind == SOLVER_SGD:
        if opt.nesterov:
            for i in range(n):
                w = p[i]
                gi = g[i] + l2 * w
                v = mu * s1[i] - lr * gi
                s1[i] = v
                p[i] = w + (mu * v - lr * gi)
        else:
            for i in range(n):
                w = p[i]
                gi = g[i] + l2 * w
                v = mu * s1[i] - lr * gi
                s1[i] = v
                p[i] = w + v
    else:
        # Adam, and AdamW: the Adam step on the loss gradient (L2 term included when alpha > 0),
        # and the weight shrunk by lr * weight_decay outside the moments: p := w (1 - decay) -
        # step.  Adam has decay 0: w * 1 is exact (with or without FMA contraction), so the
        # update is scikit-learn's p := w - step to the bit.
        if opt.kind == SOLVER_ADAM:
            decay = 0
        for i in range(n):
            w = p[i]
            gi = g[i] + l2 * w
            m = b1 * s1[i] + (one - b1) * gi
            v = b2 * s2[i] + (one - b2) * (gi * gi)
            s1[i] = m
            s2[i] = v
            p[i] = w * (one - decay) + (-lr * m / (_sqrt(v) + eps))
    return sumsq


# ---- gradient clipping and norms (issue 11): elementwise over one chunk, like update_chunk -------------
cdef inline double grad_sumsq_chunk(const floating* p, const floating* g, intp_t n,
                                    floating l2) noexcept nogil:
    """sum((g + l2 p)^2) in double (the gradient the update applies), four interleaved partial sums
    in a fixed order."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, a
    cdef intp_t i = 0
    while i + 4 <= n:
        a = <double>(g[i] + l2 * p[i])
        s0 += a * a
        a = <double>(g[i + 1] + l2 * p[i + 1])
        s1 += a * a
        a = <double>(g[i + 2] + l2 * p[i + 2])
        s2 += a * a
        a = <double>(g[i + 3] + l2 * p[i + 3])
        s3 += a * a
        i += 4
    while i < n:
        a = <double>(g[i] + l2 * p[i])
        s0 += a * a
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline void clip_chunk(const floating* p, floating* g, intp_t n, floating l2, floating scale,
                            floating clip_value) noexcept nogil:
    """g := clip(scale * (g + l2 p), -clip_value, clip_value); no value clip when clip_value <= 0.
    The L2 term is folded in, so the update that follows runs with l2 = 0."""
    cdef intp_t i
    cdef floating v
    if clip_value > 0:
        for i in range(n):
            v = scale * (g[i] + l2 * p[i])
            g[i] = clip_value if v > clip_value else (-clip_value if v < -clip_value else v)
    else:
        for i in range(n):
            g[i] = scale * (g[i] + l2 * p[i])
