"""The epoch loop, full-batch loss and gradient, and prediction: every pass runs with the GIL released.

Design
1. ``train_epoch`` trains one epoch of mini-batches in a single call: batch rows (a permutation
   drawn by the caller at the epoch boundary, as scikit-learn does) are gathered into the plan's
   buffers, the network runs forward and backward, and each layer's parameters are updated right
   after its gradient is assembled (its weights are no longer needed by the backward pass).
   No Python runs per mini-batch.
2. Updates are elementwise over fixed chunks of UPDATE_CHUNK values; the L2 term alpha*W/sum(sw) is
   added to the gradient inside the same pass, which also sums the squares of the weights for the
   reported loss (chunk partials combined in chunk order, never an OpenMP reduction).  The loop
   itself (_optim.update_chunk) comes from the kernel path installed when the call starts
   (cprop._isa): its OptimTable holds that instruction set's build (8-wide sqrt/div for AVX2,
   16-wide for AVX-512).
3. ``loss_grad`` gives L-BFGS the full-batch loss and gradient: row chunks of ``cap`` rows are
   accumulated into the gradient in chunk order, then the L2 term is added once.
4. Optimizers follow scikit-learn's update rules exactly: SGD with momentum / Nesterov momentum
   (v := mu v - lr g; p += v, or p += mu v - lr g) and Adam (bias-corrected step size
   lr * sqrt(1 - b2^t) / (1 - b1^t), then p -= lr_t m / (sqrt(v) + eps)).
"""
from cython.parallel cimport prange
from libc.math cimport sqrt, pow
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

import numpy as np

from cprop._typedefs cimport floating, intp_t
from cprop._backprop cimport NetSpec, Input, forward, backward_layer
from cprop._losses cimport loss_delta_rows
from cprop._prefetch cimport RowPrefetch, CPROP_PREFETCH
from cprop._optim cimport Optim, OptimTable, SOLVER_SGD, SOLVER_ADAM
from cprop._isa cimport current_path
from cprop._config cimport (PASS_SERIAL_FLOPS, GATHER_AHEAD, GATHER_PARALLEL_MIN, UPDATE_CHUNK)

SOLVER_CODES = {"sgd": SOLVER_SGD, "adam": SOLVER_ADAM}


# ---- parameter updates ----------------------------------------------------------------------------
cdef inline double _update_one(const OptimTable* ot, floating* p, const floating* g, floating* s1,
                               floating* s2, intp_t n, floating l2, const Optim* opt,
                               bint want_sumsq) noexcept nogil:
    if floating is float:
        return ot.s_update(p, g, s1, s2, n, l2, opt, want_sumsq)
    else:
        return ot.d_update(p, g, s1, s2, n, l2, opt, want_sumsq)


cdef double _update(const OptimTable* ot, floating* p, const floating* g, floating* s1,
                    floating* s2, intp_t n, floating l2, const Optim* opt, bint want_sumsq,
                    double* partial, int n_threads) noexcept nogil:
    """p, s1, s2 := optimizer step with gradient g + l2*p; returns sum(p_old^2) if want_sumsq."""
    cdef intp_t nc = (n + UPDATE_CHUNK - 1) // UPDATE_CHUNK, c
    cdef double total = 0
    for c in prange(nc, num_threads=n_threads, schedule='static',
                    use_threads_if=n_threads > 1 and nc > 1):
        partial[c] = _update_one(ot, p + c * UPDATE_CHUNK, g + c * UPDATE_CHUNK,
                                 s1 + c * UPDATE_CHUNK, s2 + c * UPDATE_CHUNK,
                                 UPDATE_CHUNK if (c + 1) * UPDATE_CHUNK <= n else n - c * UPDATE_CHUNK,
                                 l2, opt, want_sumsq)
    for c in range(nc):
        total += partial[c]
    return total


cdef double _l2_into_grad(const floating* p, floating* g, intp_t n, floating l2) noexcept nogil:
    """g += l2 * p; returns sum(p^2) (sequential: called once per L-BFGS evaluation)."""
    cdef intp_t i
    cdef double s = 0
    for i in range(n):
        s += <double>p[i] * p[i]
        g[i] += l2 * p[i]
    return s


# ---- gathering batch rows --------------------------------------------------------------------------
cdef inline void _copy_row(const floating* src, const floating* nxt, intp_t ld,
                           floating* dst) noexcept nogil:
    """dst := src (one row), prefetching row ``nxt`` (the row GATHER_AHEAD later) meanwhile."""
    cdef intp_t j
    cdef intp_t step = 64 // sizeof(floating)      # one cache line
    if nxt != NULL:
        j = 0
        while j < ld:
            CPROP_PREFETCH(nxt + j)
            j += step
    memcpy(dst, src, ld * sizeof(floating))


cdef void _gather_rows(const floating* src, intp_t ld, const intp_t* idx, intp_t n, floating* dst,
                       int n_threads) noexcept nogil:
    """dst[r] := src[idx[r]] for r < n.  Random rows of a large X come from DRAM one at a time, so
    each copy prefetches the row GATHER_AHEAD positions later (perf: gather time -35% on Zen 3)."""
    cdef intp_t r
    for r in prange(n, num_threads=n_threads, schedule='static',
                    use_threads_if=n_threads > 1 and n * ld > GATHER_PARALLEL_MIN):
        _copy_row(src + idx[r] * ld,
                  (src + idx[r + GATHER_AHEAD] * ld) if r + GATHER_AHEAD < n else NULL,
                  ld, dst + r * ld)


# ---- Python-facing helpers ------------------------------------------------------------------------
cdef void _serial_if_small(NetSpec* net, Py_ssize_t rows) noexcept nogil:
    """net.n_threads := 1 when a pass of ``rows`` rows is too small to repay threads."""
    cdef double w_all = 0, w_after = 0
    cdef int l
    for l in range(net.L):
        w_all += <double>net.sizes[l] * net.sizes[l + 1]
        if l > 0:
            w_after += <double>net.sizes[l] * net.sizes[l + 1]
    if 2.0 * rows * (2 * w_all + w_after) < PASS_SERIAL_FLOPS:
        net.n_threads = 1


cdef class _Spec:
    """Keeps a plan's arrays alive and exposes them as a NetSpec."""
    cdef NetSpec spec
    cdef intp_t[::1] sizes, w_off, b_off, a_off, d_off
    cdef int[::1] acts

    def __init__(self, dict plan):
        self.sizes = plan["sizes"]
        self.acts = plan["acts"]
        self.w_off = plan["w_off"]
        self.b_off = plan["b_off"]
        self.a_off = plan["a_off"]
        self.d_off = plan["d_off"]
        self.spec.L = self.sizes.shape[0] - 1
        self.spec.sizes = &self.sizes[0]
        self.spec.acts = &self.acts[0]
        self.spec.loss = plan["loss"]
        self.spec.w_off = &self.w_off[0]
        self.spec.b_off = &self.b_off[0]
        self.spec.a_off = &self.a_off[0]
        self.spec.d_off = &self.d_off[0]
        self.spec.y_off = plan["y_off"]
        self.spec.sw_off = plan["sw_off"]
        self.spec.gemm_off = plan["gemm_off"]
        self.spec.cap = plan["cap"]
        self.spec.n_threads = plan["n_threads"]
        # the kernel path of this call: one snapshot, so a pass never mixes paths
        self.spec.path = current_path()


cdef void _set_input(Input* x, const floating[::1] data, const intp_t[::1] indices,
                     const intp_t[::1] indptr):
    """x := the first-layer input: CSR when ``indptr`` is given, else dense rows set per pass."""
    x.sparse = indptr is not None
    x.dense = NULL
    x.data = <const void*>&data[0] if data is not None and data.shape[0] > 0 else NULL
    x.indices = &indices[0] if indices is not None and indices.shape[0] > 0 else NULL
    x.indptr = &indptr[0] if indptr is not None else NULL
    x.rows = NULL
    x.start = 0


cdef inline void _contiguous_rows(Input* x, const floating* dense, intp_t start,
                                  intp_t n_features) noexcept nogil:
    """Point x at rows start.. of the input, read in place (no gather)."""
    if x.sparse:
        x.start = start
    else:
        x.dense = <const void*>(dense + start * n_features)


def _check_plan(dict plan, Py_ssize_t n_params, Py_ssize_t n_features):
    if n_params != plan["n_params"]:
        raise ValueError(f"params has {n_params} values; this network has {plan['n_params']}.")
    if n_features != plan["sizes"][0]:
        raise ValueError(f"X has {n_features} features; this network expects {plan['sizes'][0]}.")


def predict(const floating[::1] params, const floating[:, ::1] X, const floating[::1] X_data,
            const intp_t[::1] X_indices, const intp_t[::1] X_indptr, Py_ssize_t n_features,
            dict plan, floating[:, ::1] out):
    """out := network output for every row of X (dense X, or CSR given by data/indices/indptr).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import make_plan
    >>> from cprop._train import predict
    >>> plan = make_plan([2, 1], [0], 0, 8, np.float64, 1)
    >>> params = np.array([1.0, 2.0, 0.5]); out = np.empty((1, 1))
    >>> predict(params, np.array([[1.0, 1.0]]), None, None, None, 2, plan, out); out
    array([[3.5]])
    """
    _check_plan(plan, params.shape[0], n_features)
    cdef _Spec s = _Spec(plan)
    cdef Py_ssize_t n = out.shape[0], start, cn, cap = s.spec.cap
    _serial_if_small(&s.spec, cap if cap < n else n)
    if n == 0:
        return
    work_arr = np.empty(plan["work_size"], dtype=np.asarray(params).dtype)
    cdef floating[::1] work = work_arr
    cdef Input x
    cdef const floating* dense = &X[0, 0] if X is not None else NULL
    _set_input(&x, X_data, X_indices, X_indptr)
    with nogil:
        start = 0
        while start < n:
            cn = cap if start + cap <= n else n - start
            _contiguous_rows(&x, dense, start, n_features)
            forward(&s.spec, &params[0], &x, cn, &work[0], &out[start, 0])
            start += cn


def loss_grad(const floating[::1] params, const floating[:, ::1] X, const floating[::1] X_data,
              const intp_t[::1] X_indices, const intp_t[::1] X_indptr, Py_ssize_t n_features,
              const floating[:, ::1] Y, const floating[::1] sample_weight, dict plan, double alpha,
              floating[::1] grad):
    """Full-batch loss (returned) and gradient (into ``grad``), as scikit-learn's ``_backprop``.

    loss = sum_i sw_i l_i / S + alpha/(2S) sum ||W||^2 and grad = its gradient, S = sum_i sw_i.
    """
    _check_plan(plan, params.shape[0], n_features)
    if grad.shape[0] != params.shape[0]:
        raise ValueError("grad must have the shape of params.")
    cdef _Spec s = _Spec(plan)
    cdef NetSpec* net = &s.spec
    cdef Py_ssize_t n = Y.shape[0], n_out = Y.shape[1], start, cn, cap = net.cap, i
    _serial_if_small(net, cap if cap < n else n)
    cdef int l
    if n == 0:
        raise ValueError("loss_grad needs at least one sample.")
    work_arr = np.empty(plan["work_size"], dtype=np.asarray(params).dtype)
    rows_arr = np.empty(cap, dtype=np.float64)
    cdef floating[::1] work = work_arr
    cdef double[::1] rows = rows_arr
    cdef const floating* sw = &sample_weight[0] if sample_weight is not None else NULL
    cdef const floating* dense = &X[0, 0] if X is not None else NULL
    cdef double sw_sum = 0, lsum = 0, sumsq = 0
    cdef floating* wk = &work[0]
    cdef Input x
    _set_input(&x, X_data, X_indices, X_indptr)
    with nogil:
        if sw == NULL:
            sw_sum = n
        else:
            for i in range(n):
                sw_sum += sw[i]
        start = 0
        while start < n:
            cn = cap if start + cap <= n else n - start
            _contiguous_rows(&x, dense, start, n_features)
            forward(net, &params[0], &x, cn, wk, NULL)
            loss_delta_rows(net.loss, &Y[start, 0], wk + net.a_off[net.L], wk + net.d_off[net.L],
                            (sw + start) if sw != NULL else NULL, cn, n_out, 1.0 / sw_sum,
                            &rows[0], net.n_threads)
            for i in range(cn):
                lsum += rows[i]
            for l in range(net.L - 1, -1, -1):
                backward_layer(net, l, &params[0], &x, cn, wk, &grad[0], start > 0, NULL)
            start += cn
        for l in range(net.L):
            sumsq += _l2_into_grad(&params[net.w_off[l]], &grad[net.w_off[l]],
                                   net.sizes[l] * net.sizes[l + 1], <floating>(alpha / sw_sum))
    return lsum / sw_sum + 0.5 * alpha * sumsq / sw_sum


def train_epoch(floating[::1] params, floating[::1] grad, floating[::1] state1,
                floating[::1] state2, const floating[:, ::1] X, const floating[::1] X_data,
                const intp_t[::1] X_indices, const intp_t[::1] X_indptr, Py_ssize_t n_features,
                const floating[:, ::1] Y, const floating[::1] sample_weight,
                const intp_t[::1] order, Py_ssize_t batch_size, dict plan, double alpha,
                str solver, double learning_rate, double momentum=0.9, bint nesterov=True,
                double beta_1=0.9, double beta_2=0.999, double epsilon=1e-8, double t=0):
    """One epoch of mini-batch training; returns (sum over batches of batch_loss * batch_rows, t).

    ``order`` (or None for 0..n-1) gives the rows in epoch order; batches are consecutive slices of
    ``batch_size`` rows, the last one shorter.  ``t`` is Adam's step count, returned advanced.
    ``state1``/``state2`` are the optimizer's state (SGD velocity; Adam first/second moments).
    """
    _check_plan(plan, params.shape[0], n_features)
    if grad.shape[0] != params.shape[0] or state1.shape[0] != params.shape[0] or \
            state2.shape[0] != params.shape[0]:
        raise ValueError("grad, state1 and state2 must have the shape of params.")
    cdef _Spec s = _Spec(plan)
    cdef NetSpec* net = &s.spec
    cdef Py_ssize_t n = Y.shape[0], n_out = Y.shape[1], cap = net.cap, i, start, cn, max_chunks
    cdef int l
    cdef Optim opt
    if n == 0:
        raise ValueError("train_epoch needs at least one sample.")
    if batch_size < 1 or batch_size > cap:
        raise ValueError(f"batch_size={batch_size} must be in [1, plan cap={cap}].")
    if order is not None and order.shape[0] != n:
        raise ValueError("order must hold one row index per sample.")
    if solver not in SOLVER_CODES:
        raise ValueError(f"solver must be one of {sorted(SOLVER_CODES)}; got {solver!r}.")
    _serial_if_small(net, batch_size if batch_size < n else n)
    opt.kind = SOLVER_CODES[solver]
    opt.momentum = momentum
    opt.nesterov = nesterov
    opt.beta1 = beta_1
    opt.beta2 = beta_2
    opt.eps = epsilon
    opt.lr = learning_rate
    max_chunks = max(params.shape[0] // UPDATE_CHUNK + 2, 2)
    work_arr = np.empty(plan["work_size"], dtype=np.asarray(params).dtype)
    rows_arr = np.empty(cap, dtype=np.float64)
    partial_arr = np.empty(max_chunks, dtype=np.float64)
    cdef floating[::1] work = work_arr
    cdef double[::1] rows = rows_arr
    cdef double[::1] partial = partial_arr
    cdef floating* wk = &work[0]
    cdef floating* P = &params[0]
    cdef floating* G = &grad[0]
    cdef floating* S1 = &state1[0]
    cdef floating* S2 = &state2[0]
    cdef const floating* sw = &sample_weight[0] if sample_weight is not None else NULL
    cdef const floating* dense = &X[0, 0] if X is not None else NULL
    cdef const intp_t* idx = &order[0] if order is not None else NULL
    cdef const floating* Yb
    cdef const floating* swb
    cdef double sw_sum, lsum, sumsq, accumulated = 0
    cdef Input x
    cdef RowPrefetch pf
    # the kernel path's build of the elementwise update (the snapshot the passes use too)
    cdef const OptimTable* ot = &net.path.optim
    pf.base = <const char*>dense
    pf.ld = n_features * sizeof(floating)
    pf.row_bytes = pf.ld
    pf.rows = NULL
    pf.n_rows = 0
    _set_input(&x, X_data, X_indices, X_indptr)
    with nogil:
        start = 0
        while start < n:
            cn = batch_size if start + batch_size <= n else n - start
            # -- the batch: rows start..start+cn of the epoch order --
            if idx != NULL:
                if x.sparse:
                    x.rows = idx + start
                else:
                    _gather_rows(dense, n_features, idx + start, cn, wk + net.a_off[0], net.n_threads)
                    x.dense = <const void*>(wk + net.a_off[0])
                _gather_rows(&Y[0, 0], n_out, idx + start, cn, wk + net.y_off, net.n_threads)
                Yb = wk + net.y_off
                if sw != NULL:
                    for i in range(cn):
                        wk[net.sw_off + i] = sw[idx[start + i]]
                    swb = wk + net.sw_off
                else:
                    swb = NULL
            else:
                _contiguous_rows(&x, dense, start, n_features)
                Yb = &Y[start, 0]
                swb = (sw + start) if sw != NULL else NULL
            sw_sum = 0
            if swb == NULL:
                sw_sum = cn
            else:
                for i in range(cn):
                    sw_sum += swb[i]
            # -- forward, loss and output delta --
            forward(net, P, &x, cn, wk, NULL)
            loss_delta_rows(net.loss, Yb, wk + net.a_off[net.L], wk + net.d_off[net.L], swb, cn,
                            n_out, 1.0 / sw_sum, &rows[0], net.n_threads)
            lsum = 0
            for i in range(cn):
                lsum += rows[i]
            # -- backward, each layer updated as soon as its gradient is assembled --
            if opt.kind == SOLVER_ADAM:
                t += 1
                opt.lr = learning_rate * sqrt(1 - pow(beta_2, t)) / (1 - pow(beta_1, t))
            sumsq = 0
            # the next batch's rows of X are fetched during layer 0's weight-gradient product
            pf.n_rows = 0
            if idx != NULL and not x.sparse and start + cn < n:
                pf.rows = idx + start + cn
                pf.n_rows = batch_size if start + cn + batch_size <= n else n - start - cn
            for l in range(net.L - 1, -1, -1):
                backward_layer(net, l, P, &x, cn, wk, G, False, &pf)
                sumsq += _update(ot, P + net.w_off[l], G + net.w_off[l], S1 + net.w_off[l],
                                 S2 + net.w_off[l], net.sizes[l] * net.sizes[l + 1],
                                 <floating>(alpha / sw_sum), &opt, True, &partial[0], net.n_threads)
                _update(ot, P + net.b_off[l], G + net.b_off[l], S1 + net.b_off[l],
                        S2 + net.b_off[l], net.sizes[l + 1], <floating>0, &opt, False, &partial[0],
                        net.n_threads)
            accumulated += (lsum / sw_sum + 0.5 * alpha * sumsq / sw_sum) * cn
            start += cn
    return accumulated, t
