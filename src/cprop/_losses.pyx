"""Per-sample losses and, beside each, the gradient with respect to the output pre-activation.

Design
1. The losses come from one list, ``cprop/_loss_list.py``: ``setup.py`` renders the ``LOSS_*``
   codes and the per-row dispatch (``loss_row_value``, ``loss_row_delta``, in ``_losses.pxi``)
   from it over the functions below, which all have one signature per role: a row's value
   ``f(y, p, n, eps, param)`` and its delta ``g(y, p, d, n, f, param)``, d := f * dl/dz.  Nothing
   depends on the codes' order.  One compiled loss serves training (``loss_delta_rows``, from
   ``_train``) and evaluation (``loss_and_delta``: the validation loss).
2. Every output layer is paired with its canonical loss, so the delta at the output is
   d loss / d z = P - Y (softmax + cross-entropy, logistic + binary cross-entropy, identity + half
   squared error, exp + half Poisson deviance); each loss below is written beside that fact.  The
   robust regression losses on an identity output have their own gradients: sign(P - Y) for the
   absolute error, P - Y clipped to [-delta, delta] for Huber (the subgradient 0 at P == Y).
   Label smoothing (the cross-entropies' parameter eps) replaces the targets by
   Y' = (1 - eps) Y + eps / K (K = n outputs of a softmax, K = 2 for each logistic output): the loss
   is the cross-entropy against Y' and the delta P - Y'.  With eps = 0 (the default) the functions
   take the plain loops: scikit-learn's results bit for bit, at the cost they had (1 * Y + 0 would
   be Y exactly too, for two more operations per output).
3. Sample weights enter both: row_loss[i] = sw_i * l(y_i, p_i) and D[i] = sw_i * scale * dl/dz_i;
   the caller chooses scale = 1 / sum(sw) so the gradient is that of the weighted mean.
4. Probabilities are clipped to [eps, 1 - eps] inside the logarithms, with eps the dtype's machine
   epsilon, exactly as scikit-learn's log-loss does; x*log(y) is 0 when x == 0 (xlogy).
5. Losses accumulate in double whatever the dtype.  The per-row values are written to ``row_loss``
   and summed by the caller in row order, so the total does not depend on the thread count.
6. The squared error is summed over outputs (not averaged), so the reported loss is the function whose
   gradient is applied; scikit-learn 1.9 averages it over outputs (see README, differences).
"""
from cython.parallel cimport prange
from libc.math cimport log, fabs, NAN
from libc.float cimport FLT_EPSILON, DBL_EPSILON

from cprop._typedefs cimport floating, intp_t
from cprop._config cimport ROWS_PARALLEL_MIN

from cprop._loss_list import LOSSES as _LIST, codes as _codes, check_param as _check_param

# Name -> LOSS_* code, from the list the enum and the dispatch were rendered from.
LOSS_CODES = _codes()


cdef inline double _xlogy(double x, double y) noexcept nogil:
    return 0.0 if x == 0 else x * log(y)


cdef inline double _clip(double p, double eps) noexcept nogil:
    return eps if p < eps else (1 - eps if p > 1 - eps else p)


# ---- P - Y: the delta of every canonical pairing without a parameter -----------------------------
cdef inline void residual_grad(const floating* y, const floating* p, floating* d, intp_t n,
                               floating f, double param) noexcept nogil:
    cdef intp_t j
    for j in range(n):
        d[j] = (p[j] - y[j]) * f


# ---- half squared error: l = 1/2 sum_j (y_j - p_j)^2, dl/dz = p - y (identity output) ---------------
cdef inline double squared_loss(const floating* y, const floating* p, intp_t n, double eps,
                                double param) noexcept nogil:
    cdef double s = 0, r
    cdef intp_t j
    for j in range(n):
        r = <double>y[j] - <double>p[j]
        s += r * r
    return 0.5 * s


# ---- cross-entropy with label smoothing ls: y' = (1 - ls) y + ls / n, l = -sum_j y'_j log p_j,
#      dl/dz = p - y' (softmax output: sum_j y'_j = 1) --------------------------------------------
cdef inline double log_loss(const floating* y, const floating* p, intp_t n, double eps,
                            double ls) noexcept nogil:
    cdef double s = 0, keep = 1.0 - ls, share = ls / n
    cdef intp_t j
    if ls == 0:     # y' = y: two operations per output fewer (the default's cost unchanged)
        for j in range(n):
            s -= _xlogy(y[j], _clip(p[j], eps))
        return s
    for j in range(n):
        s -= _xlogy(keep * y[j] + share, _clip(p[j], eps))
    return s

cdef inline void log_loss_grad(const floating* y, const floating* p, floating* d, intp_t n,
                               floating f, double ls) noexcept nogil:
    cdef floating keep = <floating>(1.0 - ls), share = <floating>(ls / n)
    cdef intp_t j
    if ls == 0:
        residual_grad(y, p, d, n, f, ls)
        return
    for j in range(n):
        d[j] = (p[j] - (keep * y[j] + share)) * f


# ---- binary cross-entropy with label smoothing ls: y' = (1 - ls) y + ls / 2,
#      l = -sum_j [y' log p + (1-y') log(1-p)], dl/dz = p - y' (logistic output) ------------------
cdef inline double binary_log_loss(const floating* y, const floating* p, intp_t n, double eps,
                                   double ls) noexcept nogil:
    cdef double s = 0, pc, t, keep = 1.0 - ls, share = 0.5 * ls
    cdef intp_t j
    for j in range(n):
        pc = _clip(p[j], eps)
        t = keep * y[j] + share if ls != 0 else <double>y[j]
        s -= _xlogy(t, pc) + _xlogy(1.0 - t, 1.0 - pc)
    return s

cdef inline void binary_log_loss_grad(const floating* y, const floating* p, floating* d, intp_t n,
                                      floating f, double ls) noexcept nogil:
    cdef floating keep = <floating>(1.0 - ls), share = <floating>(0.5 * ls)
    cdef intp_t j
    if ls == 0:
        residual_grad(y, p, d, n, f, ls)
        return
    for j in range(n):
        d[j] = (p[j] - (keep * y[j] + share)) * f


# ---- half Poisson deviance: l = sum_j [y log(y/p) - y + p], dl/dz = p - y (p = exp(z)) --------------
cdef inline double poisson_loss(const floating* y, const floating* p, intp_t n, double eps,
                                double param) noexcept nogil:
    cdef double s = 0
    cdef intp_t j
    for j in range(n):
        s += _xlogy(y[j], <double>y[j] / <double>p[j]) - y[j] + p[j]
    return s


# ---- absolute error: l = sum_j |y_j - p_j|, dl/dz = sign(p - y) (identity output) -------------------
cdef inline double absolute_loss(const floating* y, const floating* p, intp_t n, double eps,
                                 double param) noexcept nogil:
    cdef double s = 0
    cdef intp_t j
    for j in range(n):
        s += fabs(<double>y[j] - <double>p[j])
    return s

cdef inline floating absolute_grad(floating y, floating p) noexcept nogil:
    return 1 if p > y else (-1 if p < y else 0)

cdef inline void absolute_grad_row(const floating* y, const floating* p, floating* d, intp_t n,
                                   floating f, double param) noexcept nogil:
    cdef intp_t j
    for j in range(n):
        d[j] = absolute_grad(y[j], p[j]) * f


# ---- Huber: l = sum_j h(p_j - y_j), h(r) = r^2/2 (|r| <= delta), delta (|r| - delta/2) otherwise;
#      dl/dz = r clipped to [-delta, delta] (identity output) ----------------------------------------
cdef inline double huber_loss(const floating* y, const floating* p, intp_t n, double eps,
                              double delta) noexcept nogil:
    cdef double s = 0, r
    cdef intp_t j
    for j in range(n):
        r = fabs(<double>p[j] - <double>y[j])
        s += 0.5 * r * r if r <= delta else delta * (r - 0.5 * delta)
    return s

cdef inline floating huber_grad(floating y, floating p, floating delta) noexcept nogil:
    cdef floating r = p - y
    return delta if r > delta else (-delta if r < -delta else r)

cdef inline void huber_grad_row(const floating* y, const floating* p, floating* d, intp_t n,
                                floating f, double param) noexcept nogil:
    cdef floating delta = <floating>param
    cdef intp_t j
    for j in range(n):
        d[j] = huber_grad(y[j], p[j], delta) * f


# ---- rendered from cprop/_loss_list.py: LOSS_* codes, names, per-row dispatch --------------------
include "_losses.pxi"


def _check_rendered():
    """The compiled codes and names agree with the list (else the build predates a change to the
    list, and every code could mean another loss)."""
    cdef const char* name
    stale = []
    for e in _LIST:
        name = loss_name(LOSS_CODES[e["name"]])
        if name == NULL or name.decode() != e["name"]:
            stale.append(e["name"])
    if stale:
        raise ImportError(f"cprop._losses was built from another loss list (differs at {stale}); "
                          f"rebuild: python setup.py build_ext --inplace")


_check_rendered()


cdef inline void _one_row(int loss, const floating* y, const floating* p, floating* d, double w,
                          double scale, intp_t n, double eps, double loss_param,
                          double* out) noexcept nogil:
    out[0] = w * loss_row_value(loss, y, p, n, eps, loss_param)
    if d != NULL:
        loss_row_delta(loss, y, p, d, n, <floating>(w * scale), loss_param)


cdef inline void _row_at(int loss, const floating* Y, const floating* P, floating* D,
                         const floating* sw, intp_t i, intp_t n_out, double scale, double eps,
                         double loss_param, double* row_loss) noexcept nogil:
    """Row i of loss_delta_rows."""
    _one_row(loss, Y + i * n_out, P + i * n_out, (D + i * n_out) if D != NULL else NULL,
             sw[i] if sw != NULL else 1.0, scale, n_out, eps, loss_param, row_loss + i)


cdef void loss_delta_rows(int loss, const floating* Y, const floating* P, floating* D,
                          const floating* sw, intp_t n_rows, intp_t n_out, double scale,
                          double* row_loss, double loss_param, int n_threads) noexcept nogil:
    """row_loss[i] := sw_i l(Y_i, P_i);  D_i := sw_i * scale * dl/dz_i  (D may be NULL).

    ``loss_param``: the loss's parameter (cprop/_loss_list.py; unused by a loss without one)."""
    cdef intp_t i
    cdef double eps = FLT_EPSILON if floating is float else DBL_EPSILON
    if n_threads > 1 and n_rows * n_out > ROWS_PARALLEL_MIN:
        for i in prange(n_rows, num_threads=n_threads, schedule='static'):
            _row_at(loss, Y, P, D, sw, i, n_out, scale, eps, loss_param, row_loss)
    else:
        for i in range(n_rows):
            _row_at(loss, Y, P, D, sw, i, n_out, scale, eps, loss_param, row_loss)


def loss_and_delta(str name, const floating[:, ::1] Y, const floating[:, ::1] P,
                   floating[:, ::1] D, const floating[::1] sample_weight=None, double scale=1.0,
                   int n_threads=1, loss_param=None):
    """Return sum_i sw_i l(Y_i, P_i) and set D := sw * scale * dl/dz (P - Y for the paired losses).

    ``loss_param``: the loss's parameter (``cprop._loss_list``: Huber's delta, the cross-entropies'
    label smoothing), None for its default; a loss without one takes None only.

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._losses import loss_and_delta
    >>> Y = np.array([[1.0]]); P = np.array([[3.0]]); D = np.empty((1, 1))
    >>> float(loss_and_delta("squared_error", Y, P, D)), D
    (2.0, array([[2.]]))
    """
    cdef int code
    cdef double param
    try:
        code = LOSS_CODES[name]
    except KeyError:
        raise ValueError(f"Unknown loss {name!r}; expected one of {sorted(LOSS_CODES)}.") from None
    if Y.shape[0] != P.shape[0] or Y.shape[1] != P.shape[1] or D.shape[0] != P.shape[0] \
            or D.shape[1] != P.shape[1]:
        raise ValueError("Y, P and D must have the same shape.")
    value = _check_param(name, loss_param)
    param = 0.0 if value is None else value
    if sample_weight is not None and sample_weight.shape[0] != Y.shape[0]:
        raise ValueError("sample_weight must have one value per row of Y.")
    import numpy as np
    rows = np.zeros(Y.shape[0], dtype=np.float64)
    cdef double[::1] rl = rows
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        return 0.0
    with nogil:
        loss_delta_rows(code, &Y[0, 0], &P[0, 0], &D[0, 0],
                        &sample_weight[0] if sample_weight is not None else NULL,
                        Y.shape[0], Y.shape[1], scale, &rl[0], param, n_threads)
    return float(sum(rows.tolist()))
