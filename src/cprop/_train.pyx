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
5. Interrupts and progress inside an epoch (and a long full-batch pass): after a batch, once about ``poll_flops`` GEMM flops
   have run since the last poll, the loop takes the GIL, runs pending signal handlers
   (``PyErr_CheckSignals``: Ctrl-C) and calls the caller's ``hook(rows_done)``.  An exception from
   either ends the epoch after that complete batch: the caller gets the rows done, the loss over
   them and Adam's step count, all consistent with the weights.  Counting flops, not batches,
   keeps small fits (a digits epoch is ~4e7 flops) from ever taking the GIL inside an epoch.
6. Gradient clipping needs every layer's gradient before any update (the global norm), so with
   clipping on the backward pass runs to the first layer first; the norm is a fixed-order sum of
   chunk partials, and the clipped gradient (L2 term folded in) is then applied layer by layer.
   Without clipping the updates stay interleaved with the backward pass (design note 1).
7. Per-call cost: a small fit runs thousands of these calls, so what a call does besides the
   passes is kept to a few microseconds.  A plan (``make_plan``'s dict) is checked once into a
   ``CheckedPlan``, immutable from then on (private copies of its arrays; ``plan`` hands out a
   copy); ``Network`` caches and passes those, and only a plain dict is checked at every call.
   Serial loops enter no OpenMP region at all (_config.pxd, serial loops).
8. ``fit_epochs`` runs many epochs of a stochastic fit in one call, with the estimator's
   per-epoch bookkeeping (schedule, tol count, stopping rule), so a small fit runs no Python
   per epoch.
9. One trust boundary per fit: a ``Runner`` is built once from the checked plan, the parameters
   and the data; it checks them once and allocates the work buffers, the gradient and the CSR
   scratch once, and its ``epoch``, ``fit_epochs`` and ``loss_grad`` (L-BFGS's objective) run
   the passes in them.  The def functions ``train_epoch``, ``fit_epochs`` and ``loss_grad`` are
   one-shot runners; ``predict`` and ``serve`` (no fit) keep their own per-call buffers.
10. Per-batch schedules (coslog4 learning rate, flat_cos weight decay and dropout; RealMLP's)
   are set by ``_batch_rates`` at the top of each batch of ``_run_batches``, the batch loop
   that train_epoch and fit_epochs share, so both fit loops get the same doubles.  A batch's t
   is its index over all the batches of max_iter epochs; the cost is a few scalar operations
   per batch (no measurable change in a 16-unit fit of 57 batches per epoch).  Dropout rates
   are scaled in a per-call copy that net.drop points to, never in the checked plan.
"""
from cython.parallel cimport prange, parallel, threadid
from libc.math cimport sqrt, pow, cos, log2
from libc.stdint cimport uint32_t, uint64_t
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.exc cimport PyErr_CheckSignals

import numpy as np

from cprop._openmp import engine_threads
from cprop._typedefs cimport floating, intp_t
from cprop._backprop cimport NetSpec, Input, forward, backward_layer
from cprop._dropout cimport Dropout
from cprop._losses cimport loss_delta_rows
from cprop._prefetch cimport RowPrefetch, CPROP_PREFETCH
from cprop._optim cimport (Optim, OptimTable, SOLVER_SGD, SOLVER_ADAM, SOLVER_ADAMW,
                          grad_sumsq_chunk, clip_chunk)
from cprop._isa cimport current_path
from cprop._config cimport GATHER_AHEAD, UPDATE_CHUNK
# the run-time thresholds (defaults: _config's) and the team-size probe, both for tests
from cprop._openmp cimport (thresholds, note_team, TEAM_UPDATE, TEAM_GRAD_NORM, TEAM_CLIP,
                            TEAM_GATHER)

# GEMM flops between two polls for signals/progress inside an epoch (design note 5): 5-15 ms at
# the AVX2 path's 70-130 GFLOP/s here, ~70 ms at the portable path's ~15, well inside the 0.2 s a
# Ctrl-C may take; one poll (GIL + signal check) costs a few microseconds.
DEFAULT_POLL_FLOPS = 1e9

SOLVER_CODES = {"sgd": SOLVER_SGD, "adam": SOLVER_ADAM, "adamw": SOLVER_ADAMW}


# ---- parameter updates ----------------------------------------------------------------------------
cdef inline intp_t _chunk_len(intp_t n, intp_t c) noexcept nogil:
    """Values in chunk c of an n-value vector cut into UPDATE_CHUNK pieces."""
    return UPDATE_CHUNK if (c + 1) * UPDATE_CHUNK <= n else n - c * UPDATE_CHUNK


cdef inline double _update_chunk(const OptimTable* ot, floating* p, const floating* g, floating* s1,
                                 floating* s2, intp_t n, intp_t c, floating l2, const Optim* opt,
                                 bint want_sumsq) noexcept nogil:
    """The optimizer step over chunk c (the kernel path's build of _optim.update_chunk)."""
    cdef intp_t o = c * UPDATE_CHUNK
    if floating is float:
        return ot.s_update(p + o, g + o, s1 + o, s2 + o, _chunk_len(n, c), l2, opt, want_sumsq)
    else:
        return ot.d_update(p + o, g + o, s1 + o, s2 + o, _chunk_len(n, c), l2, opt, want_sumsq)


cdef double _update(const OptimTable* ot, floating* p, const floating* g, floating* s1,
                    floating* s2, intp_t n, floating l2, const Optim* opt, bint want_sumsq,
                    double* partial, int n_threads) noexcept nogil:
    """p, s1, s2 := optimizer step with gradient g + l2*p; returns sum(p_old^2) if want_sumsq."""
    cdef intp_t nc = (n + UPDATE_CHUNK - 1) // UPDATE_CHUNK, c
    cdef double total = 0
    if n_threads > 1 and nc > 1:            # (_config.pxd, serial loops)
        for c in prange(nc, num_threads=n_threads, schedule='static'):
            note_team(TEAM_UPDATE)
            partial[c] = _update_chunk(ot, p, g, s1, s2, n, c, l2, opt, want_sumsq)
    else:
        for c in range(nc):
            partial[c] = _update_chunk(ot, p, g, s1, s2, n, c, l2, opt, want_sumsq)
    for c in range(nc):
        total += partial[c]
    return total


cdef double _grad_sumsq(const floating* p, const floating* g, intp_t n, floating l2, double* partial,
                        int n_threads) noexcept nogil:
    """sum((g + l2 p)^2): chunk partials combined in chunk order (any thread count, same sum)."""
    cdef intp_t nc = (n + UPDATE_CHUNK - 1) // UPDATE_CHUNK, c
    cdef double total = 0
    if n_threads > 1 and nc > 1:
        for c in prange(nc, num_threads=n_threads, schedule='static'):
            note_team(TEAM_GRAD_NORM)
            partial[c] = grad_sumsq_chunk(p + c * UPDATE_CHUNK, g + c * UPDATE_CHUNK,
                                              _chunk_len(n, c), l2)
    else:
        for c in range(nc):
            partial[c] = grad_sumsq_chunk(p + c * UPDATE_CHUNK, g + c * UPDATE_CHUNK,
                                              _chunk_len(n, c), l2)
    for c in range(nc):
        total += partial[c]
    return total


cdef void _clip(const floating* p, floating* g, intp_t n, floating l2, floating scale,
                floating clip_value, int n_threads) noexcept nogil:
    """g := clip(scale * (g + l2 p), +-clip_value) over chunks (elementwise: order-free)."""
    cdef intp_t nc = (n + UPDATE_CHUNK - 1) // UPDATE_CHUNK, c
    if n_threads > 1 and nc > 1:
        for c in prange(nc, num_threads=n_threads, schedule='static'):
            note_team(TEAM_CLIP)
            clip_chunk(p + c * UPDATE_CHUNK, g + c * UPDATE_CHUNK, _chunk_len(n, c), l2, scale,
                       clip_value)
    else:
        for c in range(nc):
            clip_chunk(p + c * UPDATE_CHUNK, g + c * UPDATE_CHUNK, _chunk_len(n, c), l2, scale,
                       clip_value)


cdef double _l2_into_grad(const floating* p, floating* g, intp_t n, floating l2) noexcept nogil:
    """g += l2 * p; returns sum(p^2) (sequential: called once per L-BFGS evaluation)."""
    cdef intp_t i
    cdef double s = 0
    for i in range(n):
        s += <double>p[i] * p[i]
        g[i] += l2 * p[i]
    return s


# ---- gathering batch rows --------------------------------------------------------------------------
cdef inline void _copy_row(const floating* src, intp_t ld, const intp_t* idx, intp_t n, intp_t r,
                           floating* dst) noexcept nogil:
    """dst[r] := src[idx[r]] (one row), prefetching row idx[r + GATHER_AHEAD] meanwhile."""
    cdef intp_t j
    cdef intp_t step = 64 // sizeof(floating)      # one cache line
    cdef const floating* nxt
    if r + GATHER_AHEAD < n:
        nxt = src + idx[r + GATHER_AHEAD] * ld
        j = 0
        while j < ld:
            CPROP_PREFETCH(nxt + j)
            j += step
    memcpy(dst + r * ld, src + idx[r] * ld, ld * sizeof(floating))


cdef void _gather_rows(const floating* src, intp_t ld, const intp_t* idx, intp_t n, floating* dst,
                       int n_threads) noexcept nogil:
    """dst[r] := src[idx[r]] for r < n.  Random rows of a large X come from DRAM one at a time, so
    each copy prefetches the row GATHER_AHEAD positions later (perf: gather time -35% on Zen 3)."""
    cdef intp_t r
    if n_threads > 1 and n * ld > thresholds.gather_parallel_min:
        for r in prange(n, num_threads=n_threads, schedule='static'):
            note_team(TEAM_GATHER)
            _copy_row(src, ld, idx, n, r, dst)
    else:
        for r in range(n):
            _copy_row(src, ld, idx, n, r, dst)


# ---- Python-facing helpers ------------------------------------------------------------------------
cdef double _sizes_row_flops(const intp_t* sizes, int L) noexcept nogil:
    """GEMM flops of one row's forward and backward pass: 2 (2 sum W + sum of W after layer 0)."""
    cdef double w_all = 0, w_after = 0
    cdef int l
    for l in range(L):
        w_all += <double>sizes[l] * sizes[l + 1]
        if l > 0:
            w_after += <double>sizes[l] * sizes[l + 1]
    return 2.0 * (2 * w_all + w_after)


cdef inline double _row_flops(const NetSpec* net) noexcept nogil:
    return _sizes_row_flops(net.sizes, net.L)


def row_flops(layer_sizes):
    """GEMM flops of one row's forward and backward pass through a network of these layer sizes
    (what the passes count between polls; cprop._engine.full_batch_rows sizes passes by it)."""
    cdef intp_t[::1] s = np.ascontiguousarray(layer_sizes, dtype=np.intp)
    return _sizes_row_flops(&s[0], s.shape[0] - 1)


cdef void _serial_if_small(NetSpec* net, Py_ssize_t rows) noexcept nogil:
    """net.n_threads := 1 when a pass of ``rows`` rows is too small to repay threads: under
    PASS_SERIAL_FLOPS (_config.pxd), read at run time so tests can lower it (_openmp.pxd)."""
    if rows * _row_flops(net) < thresholds.pass_serial_flops:
        net.n_threads = 1


cdef object _poll(object hook, Py_ssize_t rows_done):
    """With the GIL, between batches: run pending signal handlers (Ctrl-C) and ``hook(rows_done)``;
    returns the exception either raised (the caller ends the pass and hands it on), else None."""
    try:
        PyErr_CheckSignals()
        if hook is not None:
            hook(rows_done)
    except BaseException as e:
        return e
    return None


cdef inline void _set_dropout(NetSpec* net, Dropout* dk, long long seed,
                              unsigned long long epoch) noexcept nogil:
    """net.dropout := the mask key (seed, epoch) when seed >= 0 (else no dropout in the pass)."""
    dk.seed = <unsigned long long>seed
    dk.epoch = epoch
    dk.rows = NULL
    dk.row0 = 0
    if seed >= 0:
        net.dropout = dk


cdef class CheckedPlan:
    """A plan checked once against ``make_plan``'s layout (``_check_plan``) and immutable from
    then on: its arrays are private copies that nothing outside reaches (``plan`` hands out a
    fresh copy of the dict), its fields are read-only and it is set up in ``__cinit__``, which
    runs once per object (calling ``__init__`` again changes nothing).  The calls below trust it
    without checking it again (``Network`` passes these; a plain dict is checked at every call).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import make_plan
    >>> cp = CheckedPlan(make_plan([2, 1], [0], 0, 8, np.float64, 1), np.float64)
    >>> cp.plan["w_off"][0] = 99        # a copy: the checked plan is unchanged
    >>> int(cp.plan["w_off"][0]), cp.n_params
    (0, 3)
    """
    cdef NetSpec spec      # per-call fields (n_threads, path, dropout) are set on a copy
    cdef intp_t[::1] sizes, w_off, b_off, a_off, d_off, z_off, m_off
    cdef intp_t[::1] block, feat, seg_off, seg_len, seg_lo
    cdef double[::1] drop, seg_lr, seg_wd
    cdef int[::1] acts
    cdef int plan_threads
    cdef dict _plan        # the checked copies (never handed out)
    cdef readonly Py_ssize_t n_params, n_features, n_outputs, work_size
    cdef readonly bint is_float

    @property
    def plan(self):
        """A copy of the checked plan dict (editing it cannot reach the kernels)."""
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self._plan.items()}

    def __cinit__(self, dict plan, dtype):
        plan = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in plan.items()}
        self._plan = plan
        self.n_outputs = _check_plan(plan, dtype)       # checks the copies the kernels will read
        self.is_float = np.dtype(dtype) == np.float32
        self.n_params = plan["n_params"]
        self.work_size = plan["work_size"]
        self.sizes = plan["sizes"]
        self.acts = plan["acts"]
        self.w_off = plan["w_off"]
        self.b_off = plan["b_off"]
        self.a_off = plan["a_off"]
        self.d_off = plan["d_off"]
        self.z_off = plan["z_off"]
        self.m_off = plan["m_off"]
        self.drop = np.asarray(plan["drop"], dtype=np.float64)
        self.block = plan["block"]
        self.feat = plan["feat"]
        self.seg_off = plan["seg_off"]
        self.seg_len = plan["seg_len"]
        self.seg_lo = plan["seg_lo"]
        self.seg_lr = np.asarray(plan["seg_lr"], dtype=np.float64)
        self.seg_wd = np.asarray(plan["seg_wd"], dtype=np.float64)
        self.n_features = plan["n_in"]
        self.plan_threads = plan["n_threads"]
        self.spec.L = self.sizes.shape[0] - 1
        self.spec.sizes = &self.sizes[0]
        self.spec.acts = &self.acts[0]
        self.spec.loss = plan["loss"]
        self.spec.loss_param = plan["loss_param"]
        self.spec.w_off = &self.w_off[0]
        self.spec.b_off = &self.b_off[0]
        self.spec.a_off = &self.a_off[0]
        self.spec.d_off = &self.d_off[0]
        self.spec.z_off = &self.z_off[0]
        self.spec.m_off = &self.m_off[0]
        self.spec.drop = &self.drop[0]
        self.spec.dropout = NULL
        self.spec.y_off = plan["y_off"]
        self.spec.sw_off = plan["sw_off"]
        self.spec.gemm_off = plan["gemm_off"]
        self.spec.cap = plan["cap"]
        self.spec.n_threads = 1
        self.spec.path = NULL
        self.spec.n_in = plan["n_in"]
        self.spec.n_block = plan["n_block"]
        self.spec.block = &self.block[0]
        self.spec.feat = &self.feat[0]
        self.spec.n_seg = self.seg_off.shape[0]
        self.spec.seg_off = &self.seg_off[0]
        self.spec.seg_len = &self.seg_len[0]
        self.spec.seg_lr = &self.seg_lr[0]
        self.spec.seg_wd = &self.seg_wd[0]
        self.spec.seg_lo = &self.seg_lo[0]


cdef CheckedPlan _checked(object plan, bint is_float, Py_ssize_t n_params, Py_ssize_t n_features,
                          NetSpec* spec):
    """The checked form of ``plan`` (a CheckedPlan, or a dict checked now) for params of
    ``n_params`` values and ``n_features`` inputs; ``spec`` := its NetSpec for one call."""
    cdef CheckedPlan cp
    if isinstance(plan, CheckedPlan):
        cp = <CheckedPlan>plan
        if cp.is_float != is_float:
            raise ValueError(f"plan was checked for {'float32' if cp.is_float else 'float64'} "
                             f"work buffers; params are {'float32' if is_float else 'float64'}.")
    elif isinstance(plan, dict):
        cp = CheckedPlan(plan, np.float32 if is_float else np.float64)
    else:
        raise TypeError(f"plan must be a dict from cprop._backprop.make_plan or a CheckedPlan; "
                        f"got {type(plan).__name__}.")
    if n_params != cp.n_params:
        raise ValueError(f"params has {n_params} values; this network has {cp.n_params}.")
    if n_features != cp.n_features:
        raise ValueError(f"X has {n_features} features; this network expects {cp.n_features}.")
    spec[0] = cp.spec
    spec.n_threads = engine_threads(cp.plan_threads)   # 1 in a forked child, see _openmp
    # the kernel path of this call: one snapshot, so a pass never mixes paths
    spec.path = current_path()
    return cp


def _check_block_input(CheckedPlan cp, X_indptr):
    """An input block reads dense rows only: CSR input with one is refused."""
    if cp.spec.n_block > 0 and X_indptr is not None:
        raise ValueError("this network has an input block (per-feature layers before the first "
                         "dense layer), which reads dense input only; got sparse (CSR) X. Pass "
                         "X.toarray(), or build the network without input_block.")


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
    x.by_col_ptr = NULL
    x.by_col_rows = NULL
    x.by_col_vals = NULL


cdef object _sparse_backward_scratch(Input* x, const intp_t[::1] indptr, Py_ssize_t n,
                                     Py_ssize_t pass_rows, Py_ssize_t n_features, dtype):
    """For CSR input that passes will run backward on: x.by_col_* := scratch for the weight
    gradient's grouping by column (_backprop, sparse first layer), room for the entries of any
    ``pass_rows`` rows.  Returns the arrays (the caller keeps them alive for the call), or None."""
    cdef Py_ssize_t r, most = 0, total
    if not x.sparse:
        return None
    with nogil:
        for r in range(n):
            if indptr[r + 1] - indptr[r] > most:
                most = indptr[r + 1] - indptr[r]
    total = indptr[n]
    room = max(1, min(total, most * pass_rows))
    cdef intp_t[::1] ptr = np.empty(n_features + 1, dtype=np.intp)
    cdef intp_t[::1] rows = np.empty(room, dtype=np.intp)
    vals = np.empty(room, dtype=dtype)
    x.by_col_ptr = &ptr[0]
    x.by_col_rows = &rows[0]
    x.by_col_vals = <void*>(<Py_ssize_t>vals.ctypes.data)
    return ptr, rows, vals


cdef Py_ssize_t _sparse_pass_rows(const NetSpec* net, const Input* x, Py_ssize_t n,
                                  Py_ssize_t rows) noexcept nogil:
    """``rows`` of CSR input (n rows in all) as the number of dense rows with the same GEMM flops
    (layer 0 costs its stored entries, not n_features, per row): what _serial_if_small weighs."""
    cdef double dense = _row_flops(net), per_row
    if not x.sparse or dense <= 0 or n <= 0:
        return rows
    per_row = <double>x.indptr[n] / n
    return <Py_ssize_t>(rows * ((dense - 4.0 * (net.sizes[0] - per_row) * net.sizes[1]) / dense))


cdef inline void _contiguous_rows(Input* x, const floating* dense, intp_t start,
                                  intp_t n_features) noexcept nogil:
    """Point x at rows start.. of the input, read in place (no gather)."""
    if x.sparse:
        x.start = start
    else:
        x.dense = <const void*>(dense + start * n_features)


# ---- argument checks of the def functions (once per call; the kernels trust what passes) ----------
cdef intp_t _csr_bad_row(const intp_t* indptr, const intp_t* indices, intp_t n_rows,
                         intp_t n_features) noexcept nogil:
    """First row whose indptr step is negative or whose column indices leave [0, n_features);
    -1 when every row is well formed (indptr[0] == 0 and the end are checked by the caller)."""
    cdef intp_t r, k
    for r in range(n_rows):
        if indptr[r + 1] < indptr[r]:
            return r
        for k in range(indptr[r], indptr[r + 1]):
            if indices[k] < 0 or indices[k] >= n_features:
                return r
    return -1


cdef bint _out_of_range(const intp_t* idx, Py_ssize_t n, Py_ssize_t bound) noexcept nogil:
    """True when some idx[i] (i < n) lies outside [0, bound)."""
    cdef Py_ssize_t i
    for i in range(n):
        if idx[i] < 0 or idx[i] >= bound:
            return True
    return False


cdef bint _same_ints(const intp_t[::1] a, const intp_t[::1] b):
    cdef Py_ssize_t i
    if a.shape[0] != b.shape[0]:
        return False
    for i in range(a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


# Reference plans by (sizes, acts, loss, cap, n_threads, float32?): a checked plan must equal one.
_REFERENCE_PLANS = {}


cdef Py_ssize_t _check_plan(dict plan, dtype) except -1:
    """The plan is the one ``make_plan`` makes for its sizes, codes, cap, threads and this dtype
    (an edited offset or work size would send the kernels outside their buffers).  Compared with
    a cached reference plan (a few microseconds; CheckedPlan runs it once).  Returns the number
    of outputs."""
    is_float = dtype is not None and np.dtype(dtype) == np.float32
    try:
        sizes = np.asarray(plan["sizes"])
        acts = np.asarray(plan["acts"])
        drop = np.asarray(plan["drop"], dtype=np.float64)
        # the input sizes: the input's width first (the plan's sizes[0] is the block's output)
        in_sizes = (int(plan["n_in"]),) + tuple(sizes.tolist())[1:]
        seg_lr = np.asarray(plan["seg_lr"], dtype=np.float64)
        seg_wd = np.asarray(plan["seg_wd"], dtype=np.float64)
        key = (in_sizes, tuple(acts.tolist()), int(plan["loss"]), int(plan["cap"]),
               int(plan["n_threads"]), is_float, float(plan["loss_param"]),
               tuple(drop.tolist()), plan["block_desc"], tuple(seg_lr.tolist()),
               tuple(seg_wd.tolist()))
        ref = _REFERENCE_PLANS.get(key)
        if ref is None:
            from cprop._backprop import make_plan
            L = len(sizes) - 1
            ref = make_plan(in_sizes, acts, key[2], key[3], np.float32 if is_float else np.float64,
                            key[4], loss_param=key[6],
                            dropout=drop[1:L] if np.any(drop[1:L]) else None,
                            block=key[8], seg_lr=seg_lr, seg_wd=seg_wd)
            if len(_REFERENCE_PLANS) >= 256:
                _REFERENCE_PLANS.clear()
            _REFERENCE_PLANS[key] = ref
        same = (sizes.dtype == np.intp and acts.dtype == np.intc
                and all(_same_ints(plan[k], ref[k])
                        for k in ("w_off", "b_off", "a_off", "d_off", "z_off", "m_off", "sizes",
                                  "block", "feat", "seg_off", "seg_len", "seg_lo"))
                and plan["n_block"] == ref["n_block"]
                and np.array_equal(drop, ref["drop"])
                and all(plan[k] == ref[k] for k in ("y_off", "sw_off", "gemm_off", "n_params"))
                and plan["work_size"] >= ref["work_size"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"plan is not a network plan from cprop._backprop.make_plan ({exc}).") \
            from None
    if not same:
        raise ValueError("plan does not match make_plan's layout for its sizes, activations, cap, "
                         "thread count and dtype; build it with cprop._backprop.make_plan.")
    return int(key[0][len(key[0]) - 1])     # outputs


def _check_input(X, X_data, X_indices, X_indptr, Py_ssize_t n_features, Py_ssize_t n):
    """X (n x n_features, dense) or the CSR triple (n rows, column indices in [0, n_features))."""
    cdef const intp_t[::1] ip, ix
    cdef intp_t bad
    if X is not None:
        if X_data is not None or X_indices is not None or X_indptr is not None:
            raise ValueError("pass either dense X or the CSR arrays (X_data, X_indices, "
                             "X_indptr), not both.")
        if X.shape[0] != n or X.shape[1] != n_features:
            raise ValueError(f"X has shape ({X.shape[0]}, {X.shape[1]}); expected ({n}, "
                             f"{n_features}).")
        return
    if X_data is None or X_indices is None or X_indptr is None:
        raise ValueError("X is None: pass dense X, or all of X_data, X_indices and X_indptr (CSR).")
    ip = X_indptr
    ix = X_indices
    if ip.shape[0] != n + 1:
        raise ValueError(f"X_indptr has {ip.shape[0]} entries; {n} rows need {n + 1}.")
    if ip[0] != 0 or ip[n] > ix.shape[0] or ip[n] > X_data.shape[0]:
        raise ValueError(f"X_indptr must start at 0 and end at most at the number of stored "
                         f"values ({ix.shape[0]} indices, {X_data.shape[0]} data); it runs "
                         f"from {ip[0]} to {ip[n]}.")
    with nogil:
        bad = _csr_bad_row(&ip[0], &ix[0] if ix.shape[0] > 0 else NULL, n, n_features)
    if bad >= 0:
        raise ValueError(f"malformed CSR input in row {bad}: X_indptr must be non-decreasing and "
                         f"column indices must lie in [0, {n_features}).")


def _check_rows(str name, a, Py_ssize_t n):
    if a is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows; expected {n} (one per sample).")


def predict(const floating[::1] params, const floating[:, ::1] X, const floating[::1] X_data,
            const intp_t[::1] X_indices, const intp_t[::1] X_indptr, Py_ssize_t n_features,
            object plan, floating[:, ::1] out):
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
    cdef NetSpec spec
    cdef CheckedPlan cp = _checked(plan, floating is float, params.shape[0], n_features, &spec)
    _check_input(X, X_data, X_indices, X_indptr, n_features, out.shape[0])
    _check_block_input(cp, X_indptr)
    if out.shape[1] != cp.n_outputs:
        raise ValueError(f"out has {out.shape[1]} columns; the network has {cp.n_outputs} "
                         f"outputs.")
    cdef Py_ssize_t n = out.shape[0], start, cn, cap = spec.cap
    _serial_if_small(&spec, cap if cap < n else n)
    if n == 0:
        return
    work_arr = np.empty(cp.work_size, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    cdef Input x
    cdef const floating* dense = &X[0, 0] if X is not None else NULL
    _set_input(&x, X_data, X_indices, X_indptr)
    with nogil:
        start = 0
        while start < n:
            cn = cap if start + cap <= n else n - start
            _contiguous_rows(&x, dense, start, n_features)
            forward(&spec, &params[0], &x, cn, &work[0], &out[start, 0])
            start += cn



# ---- serving: predictions for a caller that has checked X itself (cprop._engine.Network.serve) ---
# A web service predicts one row, or a few, at a time: there the checks around a pass cost more
# than the pass.  ``serve`` trusts a dense C-contiguous X of the plan's width and dtype (the
# caller's cheap test), checks finiteness while it runs, and fuses what predict does with the
# outputs (argmax, or the binary threshold) into the pass, so a large batch goes over its output
# once, while it is in cache.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* 1 when every value is finite.  |x|'s bits are >= those of +inf exactly for inf and NaN, and
       adding 2^52 (2^23) to them then carries into the sign bit; OR-ing the sums of all values is
       integer arithmetic, which gcc vectorises without -ffast-math (a float test would not be
       reordered).  memcpy is the portable bit cast. */
    static int cprop_all_finite_d(const double* x, Py_ssize_t n) {
        uint64_t acc = 0, u;
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            memcpy(&u, x + i, sizeof u);
            acc |= (u & 0x7FFFFFFFFFFFFFFFULL) + 0x0010000000000000ULL;
        }
        return (acc >> 63) == 0;
    }
    static int cprop_all_finite_f(const float* x, Py_ssize_t n) {
        uint32_t acc = 0, u;
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            memcpy(&u, x + i, sizeof u);
            acc |= (u & 0x7FFFFFFFU) + 0x00800000U;
        }
        return (acc >> 31) == 0;
    }
    """
    int cprop_all_finite_d(const double* x, Py_ssize_t n) noexcept nogil
    int cprop_all_finite_f(const float* x, Py_ssize_t n) noexcept nogil


cdef inline bint _all_finite(const floating* x, intp_t n) noexcept nogil:
    """No inf or NaN among x[0..n)."""
    if floating is float:
        return cprop_all_finite_f(x, n)
    else:
        return cprop_all_finite_d(x, n)


cdef void _row_labels(const floating* P, intp_t n, intp_t m, double threshold,
                      intp_t* labels) noexcept nogil:
    """labels[i] := argmax_j P[i, j] as numpy's argmax (first maximum; a NaN counts as the
    maximum, the first one wins), or, with one column, 1 if P[i, 0] > threshold else 0 (a NaN
    gives 0), as scikit-learn's LabelBinarizer.inverse_transform decides."""
    cdef intp_t i, j, best
    cdef const floating* p
    if m == 1:
        for i in range(n):
            labels[i] = 1 if P[i] > threshold else 0
        return
    for i in range(n):
        p = P + i * m
        best = 0
        for j in range(1, m):
            if p[best] != p[best]:
                break
            if p[j] > p[best] or p[j] != p[j]:
                best = j
        labels[i] = best


cdef bint _serve_pass(const NetSpec* net, const floating* params, const floating* X, intp_t start,
                      intp_t cn, floating* out, intp_t* labels, double threshold,
                      bint check_finite, floating* work) noexcept nogil:
    """One pass over rows start..start+cn: out (or, out NULL, the pass's own output buffer) and
    labels (``_row_labels``) of them.  False, with nothing computed, when check_finite finds an
    inf or NaN among the rows."""
    cdef intp_t nf = net.n_in, m = net.sizes[net.L]
    cdef Input x
    cdef floating* P
    if check_finite and not _all_finite(X + start * nf, cn * nf):
        return False
    x.sparse = False
    x.dense = <const void*>(X + start * nf)
    x.data = NULL
    x.indices = NULL
    x.indptr = NULL
    x.rows = NULL
    x.start = 0
    forward(net, params, &x, cn, work, (out + start * m) if out != NULL else NULL)
    if labels != NULL:
        P = (out + start * m) if out != NULL else work + net.a_off[net.L]
        _row_labels(P, cn, m, threshold, labels + start)
    return True


cdef intp_t _serve_rows(const NetSpec* net, const floating* params, const floating* X, intp_t n,
                        floating* out, intp_t* labels, double threshold, bint check_finite,
                        floating* work, intp_t work_size, int n_threads) noexcept nogil:
    """``_serve_pass`` over the passes of ``net.cap`` rows of X, each pass on one thread: with
    n_threads > 1 the threads share the passes (dynamic schedule; thread t uses
    work + t * work_size) in one parallel region for the whole call.  Rows are independent, so
    neither the split nor the thread count changes a result.  Returns -1, or the first row of
    the first pass that holds an inf or NaN (that pass is not computed), or -2 (no memory)."""
    cdef intp_t cap = net.cap, n_pass = (n + cap - 1) // cap, c, bad = -1
    cdef unsigned char* ok
    if n_threads <= 1:      # one thread: no parallel region (_config.pxd, serial loops)
        for c in range(n_pass):
            if not _serve_pass(net, params, X, c * cap, cap if (c + 1) * cap <= n else n - c * cap,
                               out, labels, threshold, check_finite, work):
                return c * cap
        return -1
    ok = <unsigned char*>malloc(n_pass)
    if ok == NULL:
        return -2
    with parallel(num_threads=n_threads):
        for c in prange(n_pass, schedule='dynamic'):
            ok[c] = _serve_pass(net, params, X, c * cap,
                                cap if (c + 1) * cap <= n else n - c * cap, out, labels,
                                threshold, check_finite, work + threadid() * work_size)
    for c in range(n_pass):
        if not ok[c]:
            bad = c * cap
            break
    free(ok)
    return bad


cdef Py_ssize_t _serve(CheckedPlan cp, const floating[::1] params, const floating[:, ::1] X,
                       floating[:, ::1] out, intp_t[::1] labels, double threshold,
                       bint check_finite, int n_threads) except -2:
    cdef NetSpec spec
    _checked(cp, floating is float, params.shape[0], X.shape[1], &spec)
    cdef Py_ssize_t n = X.shape[0], bad
    if out is not None and (out.shape[0] != n or out.shape[1] != cp.n_outputs):
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({n}, "
                         f"{cp.n_outputs}).")
    if labels is not None and labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries; expected {n}.")
    if n == 0:
        return -1
    spec.n_threads = 1                      # threads go over passes, never inside one
    cdef int nt = 1
    if n_threads > 1 and n > spec.cap and n * _row_flops(&spec) >= thresholds.pass_serial_flops:
        nt = engine_threads(min(n_threads, (n + spec.cap - 1) // spec.cap))
    cdef floating* work = <floating*>malloc(nt * cp.work_size * sizeof(floating))
    if work == NULL:
        raise MemoryError(f"cannot allocate the {nt * cp.work_size * sizeof(floating)} bytes of "
                          f"a prediction's work buffers.")
    with nogil:
        bad = _serve_rows(&spec, &params[0], &X[0, 0], n,
                          &out[0, 0] if out is not None else NULL,
                          &labels[0] if labels is not None else NULL, threshold, check_finite,
                          work, cp.work_size, nt)
    free(work)
    if bad == -2:
        raise MemoryError("cannot allocate a prediction's pass flags.")
    return bad

def serial_rows(layer_sizes):
    """The most rows a pass of this network may hold and still run on one thread whatever its
    plan's thread count (``_serial_if_small``): a caller with no more rows needs no thread count.

    Examples
    --------
    >>> from cprop._train import serial_rows, row_flops
    >>> r = serial_rows([20, 64, 64, 3])
    >>> r * row_flops([20, 64, 64, 3]) < 16e6 <= (r + 1) * row_flops([20, 64, 64, 3])
    True
    """
    cdef double rf = row_flops(layer_sizes)
    cdef Py_ssize_t r = <Py_ssize_t>(thresholds.pass_serial_flops / rf)
    while r > 0 and r * rf >= thresholds.pass_serial_flops:
        r -= 1
    while (r + 1) * rf < thresholds.pass_serial_flops:
        r += 1
    return r

def serve(CheckedPlan plan not None, params, X, out=None, labels=None, double threshold=0.5,
          bint check_finite=True, int n_threads=1):
    """out := network output for every row of dense X; labels := each row's argmax (or its one
    output > threshold).  Returns -1, or the first row of a pass holding an inf/NaN (check_finite;
    out and labels are then incomplete).

    For callers that checked X themselves: params, X and out must be C-contiguous arrays of the
    plan's dtype (labels: intp), X 2-D of the plan's width; either of out, labels may be None.
    Passes of the plan's cap rows each run on one thread; up to ``n_threads`` threads share them
    when X holds more than one pass and at least ``PASS_SERIAL_FLOPS`` of work.

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import make_plan
    >>> from cprop._train import CheckedPlan, serve
    >>> plan = CheckedPlan(make_plan([2, 2], [0], 0, 8, np.float64, 1), np.float64)
    >>> params = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.5]); labels = np.empty(2, np.intp)
    >>> serve(plan, params, np.array([[1.0, 1.0], [0.0, 3.0]]), None, labels), labels
    (-1, array([1, 1]))
    >>> serve(plan, params, np.array([[1.0, np.nan]]), None, labels[:1])
    0
    """
    if plan.is_float:
        return _serve[float](plan, params, X, out, labels, threshold, check_finite, n_threads)
    return _serve[double](plan, params, X, out, labels, threshold, check_finite, n_threads)


def loss_grad(params, X, X_data, X_indices, X_indptr, Py_ssize_t n_features, Y, sample_weight,
              object plan, double alpha, grad, long long dropout_seed=-1,
              unsigned long long dropout_epoch=0):
    """Full-batch loss (returned) and gradient (into ``grad``), as scikit-learn's ``_backprop``.

    loss = sum_i sw_i l_i / S + alpha/(2S) sum ||W||^2 and grad = its gradient, S = sum_i sw_i.
    Pending signals are handled every ~DEFAULT_POLL_FLOPS flops (design note 5); a Ctrl-C stops
    the pass and is raised here (``grad`` is then incomplete and must be discarded).
    ``dropout_seed`` >= 0 (and a plan with dropout rates): the loss of the network with the fixed
    dropout masks of (seed, epoch, sample i) -- for gradient checks; otherwise no dropout.
    A one-shot ``Runner`` (passes of the plan's cap rows); a fit builds one and keeps it.
    """
    if grad is None:
        raise ValueError("grad must have the shape of params.")
    return Runner(plan, params, grad, X, X_data, X_indices, X_indptr, n_features, Y,
                  sample_weight, 0, alpha).loss_grad(None, dropout_seed, dropout_epoch)


# ---- mini-batch training: the batch loop shared by train_epoch and fit_epochs --------------------
cdef struct _EpochCfg:
    # what stays fixed over an epoch (and over fit_epochs' epochs); set by _epoch_cfg
    NetSpec* net
    const OptimTable* ot       # the kernel path's build of the elementwise update
    Optim opt                  # weights' step (opt.lr: Adam's bias-corrected rate, per step)
    Optim opt_b                # biases' step (never decayed)
    double learning_rate       # the epoch's rate (before Adam's bias correction)
    double beta_1
    double beta_2
    double alpha
    bint clipping
    double clip_grad_norm
    double clip_grad_value
    double* norms              # grad_norms or NULL
    Py_ssize_t n
    Py_ssize_t n_features
    Py_ssize_t n_out
    Py_ssize_t batch_size
    double row_flops           # GEMM flops per batch row, as _serial_if_small counts them
    double poll_flops
    # per-batch schedules (_batch_rates; all off unless _schedule_setup turned one on)
    bint per_batch             # some factor below changes from batch to batch
    int lr_schedule            # 0: the epoch's rate for every batch; _LR_COSLOG4
    int wd_schedule            # 0: constant weight decay; _FLAT_COS
    int drop_schedule          # 0: the plan's dropout rates; _FLAT_COS
    double epoch_rate          # the rate _set_rate gave the epoch
    double weight_decay        # AdamW's decay factor (times the rate, and the wd schedule)
    double lr0                 # coslog4's peak rate (learning_rate_init)
    double step0               # the global batch index of the epoch's first batch
    double n_steps             # batches in the whole horizon (max_iter epochs)
    const double* drop_base    # the plan's dropout rates (L + 1)
    double* drop_now           # the rates this batch uses (net.drop points here)


cdef inline void _set_rate(_EpochCfg* c, double learning_rate, double weight_decay) noexcept nogil:
    """The epoch's learning rate (and AdamW's decay, lr * weight_decay, that follows it)."""
    c.learning_rate = learning_rate
    c.opt.lr = learning_rate
    c.opt.decay = learning_rate * weight_decay if c.opt.kind == SOLVER_ADAMW else 0.0
    c.opt_b.lr = learning_rate
    c.epoch_rate = learning_rate
    c.weight_decay = weight_decay


# ---- per-batch schedules (design note 10; RealMLP, Holzmueller et al. 2024) ------------------------
# coslog4(t) = (1 - cos(2 pi log2(1 + 15 t))) / 2: four warm-restart cycles, log-spaced in t;
# flat_cos(t) = (1 + cos(pi (max(1, 2 t) - 1))) / 2: 1 for the first half, then cosine to 0.
# cprop._optimizers.coslog4 / flat_cos compute the same doubles operation for operation.
cdef enum:
    _LR_COSLOG4 = 1
    _FLAT_COS = 1


cdef inline double _coslog4(double t) noexcept nogil:
    return 0.5 * (1.0 - cos(2.0 * _PI * log2(1.0 + 15.0 * t)))


cdef inline double _flat_cos(double t) noexcept nogil:
    return 0.5 * (1.0 + cos(_PI * ((2.0 * t if 2.0 * t > 1.0 else 1.0) - 1.0)))


cdef inline void _batch_rates(_EpochCfg* c, Py_ssize_t start) noexcept nogil:
    """The rate, AdamW's decay and the dropout rates of the batch starting at epoch row ``start``
    (batch start // batch_size of the epoch, step0 + that of the horizon's n_steps)."""
    cdef double t = (c.step0 + <double>(start // c.batch_size)) / c.n_steps
    cdef double lr = c.epoch_rate, f
    cdef int l
    if c.lr_schedule == _LR_COSLOG4:
        lr = c.lr0 * _coslog4(t)
    c.learning_rate = lr
    c.opt.lr = lr
    c.opt_b.lr = lr
    if c.opt.kind == SOLVER_ADAMW:
        c.opt.decay = lr * c.weight_decay * (_flat_cos(t) if c.wd_schedule == _FLAT_COS else 1.0)
    if c.drop_schedule == _FLAT_COS:
        f = _flat_cos(t)
        for l in range(c.net.L + 1):
            c.drop_now[l] = c.drop_base[l] * f


cdef object _schedule_setup(_EpochCfg* c, NetSpec* net, CheckedPlan cp, Py_ssize_t n,
                            int lr_schedule, int wd_schedule, int drop_schedule, double lr0,
                            Py_ssize_t max_iter):
    """Turn on the per-batch schedules (codes checked here); returns the array of this call's
    dropout rates (net.drop points into it; the caller keeps it alive), or None."""
    c.per_batch = lr_schedule != 0 or wd_schedule != 0 or drop_schedule != 0
    c.lr_schedule = lr_schedule
    c.wd_schedule = wd_schedule
    c.drop_schedule = drop_schedule
    c.lr0 = lr0
    c.step0 = 0
    c.n_steps = 1
    c.drop_base = NULL
    c.drop_now = NULL
    if not c.per_batch:
        return None
    if lr_schedule not in (0, _LR_COSLOG4) or wd_schedule not in (0, _FLAT_COS) \
            or drop_schedule not in (0, _FLAT_COS):
        raise ValueError(f"schedule codes must be 0 or 1; got lr_schedule={lr_schedule}, "
                         f"wd_schedule={wd_schedule}, dropout_schedule={drop_schedule}.")
    if max_iter < 1:
        raise ValueError(f"per-batch schedules need max_iter >= 1 (their horizon); got "
                         f"{max_iter}.")
    c.n_steps = <double>max_iter * ((n + c.batch_size - 1) // c.batch_size)
    if drop_schedule == 0:
        return None
    rates = np.array(cp.drop, dtype=np.float64)
    cdef double[::1] now = rates
    c.drop_base = &cp.drop[0]
    c.drop_now = &now[0]
    net.drop = &now[0]
    return rates


cdef inline void _schedule_epoch(_EpochCfg* c, Py_ssize_t epoch, Py_ssize_t max_iter) noexcept nogil:
    """The epoch's first batch in the horizon: epoch (capped at max_iter - 1, so that later
    partial_fit epochs repeat the last one's rates) times the batches per epoch."""
    if c.per_batch:
        c.step0 = <double>(epoch if epoch < max_iter - 1 else max_iter - 1) * \
            ((c.n + c.batch_size - 1) // c.batch_size)


cdef double _update_segment(_EpochCfg* c, int s, floating* P, floating* G, floating* S1,
                           floating* S2, floating l2, double* partial) noexcept nogil:
    """The optimizer step of parameter segment s with its group's factors: learning rate
    lr * seg_lr[s]; L2 term l2 * seg_wd[s]; AdamW's decoupled decay (lr * weight_decay) *
    seg_lr[s] * seg_wd[s], i.e. the group's rate times the group's decay.  Returns
    seg_wd[s] * sum(p_old^2) (the segment's share of the L2 term in the loss).  Factors of 1
    (and 0 for biases, the defaults) reproduce the ungrouped update to the bit: x * 1.0 is x.

    NTK parametrisation (z = W x / sqrt(d_in) + b, unit-scale W) is this update with the weights
    of each layer in standard form W' = W / sqrt(d_in): Adam's step is invariant to the gradient's
    scale, so a step of size lr on W is a step of lr / sqrt(d_in) on W', i.e. lr factor
    1 / sqrt(d_in) (exact up to Adam's epsilon, which NTK sees multiplied by sqrt(d_in)); AdamW's
    decay p (1 - lr wd) matches with weight-decay factor sqrt(d_in) (the product of the two
    factors is 1).  cprop._engine.Network(parametrization="ntk") sets both, and draws W' from
    N(0, 1 / d_in)."""
    cdef NetSpec* net = c.net
    cdef Optim o = c.opt
    cdef double lrf = net.seg_lr[s], wdf = net.seg_wd[s]
    cdef intp_t off = net.seg_off[s]
    o.lr = c.opt.lr * lrf
    o.decay = c.opt.decay * lrf * wdf
    return wdf * _update(c.ot, P + off, G + off, S1 + off, S2 + off, net.seg_len[s],
                         <floating>(l2 * wdf), &o, wdf != 0, partial, net.n_threads)


cdef Py_ssize_t _run_batches(_EpochCfg* c, Input* x, RowPrefetch* pf, Dropout* dk,
                             floating* P, floating* G, floating* S1, floating* S2, floating* wk,
                             double* rows, double* partial, const floating* dense,
                             const floating* Y, const floating* sw, const intp_t* idx,
                             Py_ssize_t start, double* t, double* accumulated,
                             double* since_poll) noexcept nogil:
    """Train the batches of one epoch from row ``start`` of the epoch order (``idx``, or NULL for
    0..n-1) until the epoch ends or ``poll_flops`` GEMM flops have run since the last poll (design
    note 5) with rows left; returns the row reached.  ``t`` (Adam's step count), ``accumulated``
    (sum of batch loss * batch rows) and ``since_poll`` are advanced."""
    cdef NetSpec* net = c.net
    cdef const OptimTable* ot = c.ot
    cdef Py_ssize_t n = c.n, n_features = c.n_features, n_out = c.n_out, i, cn
    cdef Py_ssize_t batch_size = c.batch_size
    cdef int l, s
    cdef const floating* Yb
    cdef const floating* swb
    cdef double sw_sum, lsum, sumsq, gnorm
    cdef floating l2, scale
    while start < n:
        cn = batch_size if start + batch_size <= n else n - start
        if c.per_batch:
            _batch_rates(c, start)
        # -- the batch: rows start..start+cn of the epoch order --
        if idx != NULL:
            if x.sparse:
                x.rows = idx + start
            else:
                _gather_rows(dense, n_features, idx + start, cn, wk + net.a_off[0], net.n_threads)
                x.dense = <const void*>(wk + net.a_off[0])
            _gather_rows(Y, n_out, idx + start, cn, wk + net.y_off, net.n_threads)
            Yb = wk + net.y_off
            if sw != NULL:
                for i in range(cn):
                    wk[net.sw_off + i] = sw[idx[start + i]]
                swb = wk + net.sw_off
            else:
                swb = NULL
        else:
            _contiguous_rows(x, dense, start, n_features)
            Yb = Y + start * n_out
            swb = (sw + start) if sw != NULL else NULL
        sw_sum = 0
        if swb == NULL:
            sw_sum = cn
        else:
            for i in range(cn):
                sw_sum += swb[i]
        # -- forward, loss and output delta (dropout masks keyed by the rows' sample ids) --
        dk.rows = (idx + start) if idx != NULL else NULL
        dk.row0 = start
        forward(net, P, x, cn, wk, NULL)
        loss_delta_rows(net.loss, Yb, wk + net.a_off[net.L], wk + net.d_off[net.L], swb, cn,
                        n_out, 1.0 / sw_sum, rows, net.loss_param, net.n_threads)
        lsum = 0
        for i in range(cn):
            lsum += rows[i]
        # -- backward, each layer updated as soon as its gradient is assembled --
        if c.opt.kind != SOLVER_SGD:
            t[0] += 1
            c.opt.lr = c.learning_rate * sqrt(1 - pow(c.beta_2, t[0])) / (1 - pow(c.beta_1, t[0]))
            c.opt_b.lr = c.opt.lr
        sumsq = 0
        # the next batch's rows of X are fetched during layer 0's weight-gradient product
        pf.n_rows = 0
        if idx != NULL and not x.sparse and start + cn < n:
            pf.rows = idx + start + cn
            pf.n_rows = batch_size if start + cn + batch_size <= n else n - start - cn
        l2 = <floating>(c.alpha / sw_sum)
        if not c.clipping:
            for l in range(net.L - 1, -1, -1):
                backward_layer(net, l, P, x, cn, wk, G, False, pf)
                if c.norms != NULL:
                    c.norms[l] += sqrt(_grad_sumsq(P + net.w_off[l], G + net.w_off[l],
                                                   net.sizes[l] * net.sizes[l + 1], l2,
                                                   partial, net.n_threads))
                for s in range(net.seg_lo[l], net.seg_lo[l + 1]):
                    sumsq += _update_segment(c, s, P, G, S1, S2, l2, partial)
        else:
            # clipping (design note 5): every layer's gradient first, then one global norm
            for l in range(net.L - 1, -1, -1):
                backward_layer(net, l, P, x, cn, wk, G, False, pf)
                if c.norms != NULL:
                    c.norms[l] += sqrt(_grad_sumsq(P + net.w_off[l], G + net.w_off[l],
                                                   net.sizes[l] * net.sizes[l + 1], l2,
                                                   partial, net.n_threads))
            scale = 1
            if c.clip_grad_norm > 0:
                gnorm = 0
                for s in range(net.n_seg):
                    gnorm += _grad_sumsq(P + net.seg_off[s], G + net.seg_off[s], net.seg_len[s],
                                         <floating>(l2 * net.seg_wd[s]), partial, net.n_threads)
                gnorm = sqrt(gnorm)
                if gnorm > c.clip_grad_norm:
                    scale = <floating>(c.clip_grad_norm / (gnorm + 1e-6))
            for l in range(net.L - 1, -1, -1):
                for s in range(net.seg_lo[l], net.seg_lo[l + 1]):
                    _clip(P + net.seg_off[s], G + net.seg_off[s], net.seg_len[s],
                          <floating>(l2 * net.seg_wd[s]), scale, <floating>c.clip_grad_value,
                          net.n_threads)
                    # the L2 term is in the clipped gradient: the update adds none
                    sumsq += _update_segment(c, s, P, G, S1, S2, <floating>0, partial)
        accumulated[0] += (lsum / sw_sum + 0.5 * c.alpha * sumsq / sw_sum) * cn
        start += cn
        since_poll[0] += c.row_flops * cn
        if since_poll[0] >= c.poll_flops and start < n:
            break
    return start


cdef inline void _prefetch_setup(RowPrefetch* pf, const void* dense, Py_ssize_t row_bytes) noexcept nogil:
    pf.base = <const char*>dense
    pf.ld = row_bytes
    pf.row_bytes = row_bytes
    pf.rows = NULL
    pf.n_rows = 0


def train_epoch(params, grad, state1, state2, X, X_data, X_indices, X_indptr,
                Py_ssize_t n_features, Y, sample_weight, const intp_t[::1] order,
                Py_ssize_t batch_size, object plan, double alpha, str solver,
                double learning_rate, double momentum=0.9, bint nesterov=True, double beta_1=0.9,
                double beta_2=0.999, double epsilon=1e-8, double t=0, object hook=None,
                double poll_flops=DEFAULT_POLL_FLOPS, double weight_decay=0.0,
                double clip_grad_norm=0.0, double clip_grad_value=0.0,
                double[::1] grad_norms=None, long long dropout_seed=-1,
                unsigned long long epoch=0, int lr_schedule=0, int wd_schedule=0,
                int dropout_schedule=0, double learning_rate_init=0.0,
                Py_ssize_t schedule_epoch=0, Py_ssize_t max_iter=0):
    """One epoch of mini-batch training; returns (sum over batches of batch_loss * batch_rows, t,
    rows_done, exc).

    ``order`` (or None for 0..n-1) gives the rows in epoch order; batches are consecutive slices of
    ``batch_size`` rows, the last one shorter.  ``t`` is Adam's step count, returned advanced.
    ``state1``/``state2`` are the optimizer's state (SGD velocity; Adam first/second moments).
    Every ``poll_flops`` GEMM flops (design note 5) pending signals are handled and
    ``hook(rows_done)`` is called; if either raises, the epoch ends after the batch just finished
    and ``exc`` is that exception (else None); ``rows_done`` < n then.  Nothing is raised here:
    the caller records the partial epoch, then raises ``exc``.
    ``weight_decay``: AdamW's decoupled decay (weights only, not biases).
    ``clip_grad_norm`` / ``clip_grad_value`` (0: off): each mini-batch's gradient (L2 term
    included) is scaled to global norm <= clip_grad_norm, then clipped to +-clip_grad_value,
    before the update.  ``grad_norms`` (or None, shape (L,)): ||grad W_l|| of each mini-batch is
    added to grad_norms[l].
    ``dropout_seed`` >= 0 (and a plan with dropout rates): inverted dropout with the masks of
    (seed, ``epoch``, sample id, unit); otherwise none.
    Per-batch schedules over a horizon of ``max_iter`` epochs, this epoch being 0-based
    ``schedule_epoch`` (capped at max_iter - 1): ``lr_schedule`` 1 sets each batch's rate to
    learning_rate_init * coslog4(t) (0: ``learning_rate`` throughout); ``wd_schedule`` 1 scales
    AdamW's decay and ``dropout_schedule`` 1 the plan's dropout rates by flat_cos(t), t being the
    batch's index in the horizon over the horizon's batch count.
    A one-shot ``Runner``; a fit builds one and calls ``Runner.epoch`` per epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    cdef Runner r = Runner(plan, params, grad, X, X_data, X_indices, X_indptr, n_features, Y,
                           sample_weight, batch_size, alpha)
    r.set_optimizer(state1, state2, solver, momentum, nesterov, beta_1, beta_2, epsilon,
                    weight_decay, clip_grad_norm, clip_grad_value)
    return r.epoch(order, learning_rate, t, hook, poll_flops, grad_norms, dropout_seed, epoch,
                   lr_schedule, wd_schedule, dropout_schedule, learning_rate_init,
                   schedule_epoch, max_iter)


# ---- the compiled fit loop: many epochs in one call (design note 8) -------------------------------
cdef extern from *:
    """
    #include <stdint.h>
    /* numpy's bitgen_t (numpy/random/bitgen.h, numpy's documented random C API since 1.17),
       mirrored here so that the build needs no numpy headers. */
    typedef struct cprop_bitgen {
        void *state;
        uint64_t (*next_uint64)(void *st);
        uint32_t (*next_uint32)(void *st);
        double (*next_double)(void *st);
        uint64_t (*next_raw)(void *st);
    } cprop_bitgen_t;
    #ifdef _WIN32
    #include <windows.h>
    static double cprop_now(void) {
        LARGE_INTEGER f, c; QueryPerformanceFrequency(&f); QueryPerformanceCounter(&c);
        return (double)c.QuadPart / (double)f.QuadPart; }
    #else
    #include <time.h>
    static double cprop_now(void) {   /* what time.perf_counter reads on Linux */
        struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec; }
    #endif
    """
    ctypedef struct cprop_bitgen_t:
        void* state
        uint64_t (*next_uint64)(void* st) noexcept nogil
        uint32_t (*next_uint32)(void* st) noexcept nogil
    double cprop_now() noexcept nogil

# learning-rate schedules of fit_epochs (the estimator's learning_rate, for its solver)
SCHEDULE_CODES = {"constant": 0, "invscaling": 1, "adaptive": 2, "cosine": 3, "coslog4": 4}
cdef enum:
    _INVSCALING = 1
    _ADAPTIVE = 2
    _COSINE = 3
    _COSLOG4 = 4
# math.pi (the double nearest pi), as cprop._training_loop.cosine_rate uses it
cdef double _PI = 3.141592653589793


cdef inline uint64_t _random_interval(cprop_bitgen_t* bg, uint64_t mx) noexcept nogil:
    """A uniform integer in [0, mx] drawn as numpy's legacy ``random_interval`` draws it (masked
    rejection sampling: 32-bit draws while mx fits in 32 bits), so the stream stays the same."""
    cdef uint64_t mask = mx, value
    if mx == 0:
        return 0
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    mask |= mask >> 32
    if mx <= 0xffffffffUL:
        value = bg.next_uint32(bg.state) & mask
        while value > mx:
            value = bg.next_uint32(bg.state) & mask
    else:
        value = bg.next_uint64(bg.state) & mask
        while value > mx:
            value = bg.next_uint64(bg.state) & mask
    return value


cdef void _shuffle(cprop_bitgen_t* bg, intp_t* a, Py_ssize_t n) noexcept nogil:
    """``RandomState.shuffle(a)``: numpy's Fisher-Yates, swaps from the last position down.  The
    swaps do not look at the values, so shuffling the epoch order in place gives scikit-learn's
    ``sample_idx[shuffled arange]`` with the same draws."""
    cdef Py_ssize_t i
    cdef intp_t j, tmp
    for i in range(n - 1, 0, -1):
        j = <intp_t>_random_interval(bg, <uint64_t>i)
        tmp = a[j]
        a[j] = a[i]
        a[i] = tmp


def shuffle_like_numpy(object bit_generator, intp_t[::1] a):
    """Shuffle ``a`` in place as ``RandomState(bit_generator).shuffle`` would (tests)."""
    cdef cprop_bitgen_t* bg = _bitgen(bit_generator)
    with bit_generator.lock:
        with nogil:
            _shuffle(bg, &a[0] if a.shape[0] else NULL, a.shape[0])


cdef cprop_bitgen_t* _bitgen(object bit_generator) except NULL:
    return <cprop_bitgen_t*>PyCapsule_GetPointer(bit_generator.capsule, b"BitGenerator")


cdef inline double _cosine_rate(double lr0, Py_ssize_t epoch, Py_ssize_t max_iter,
                                Py_ssize_t warmup) noexcept nogil:
    """cprop._training_loop.cosine_rate, operation for operation (same doubles)."""
    cdef Py_ssize_t span, e
    if epoch < warmup:
        return lr0 * (epoch + 1) / warmup
    span = max_iter - warmup
    if span <= 0:
        return lr0
    e = (epoch if epoch < max_iter - 1 else max_iter - 1) - warmup
    return 0.5 * lr0 * (1.0 + cos(_PI * e / span))


def fit_epochs(params, grad, state1, state2, X, X_data, X_indices, X_indptr,
               Py_ssize_t n_features, Y, sample_idx, object bit_generator, Py_ssize_t batch_size,
               object plan, double alpha, str solver, double momentum, bint nesterov,
               double beta_1, double beta_2, double epsilon, double weight_decay,
               double clip_grad_norm, double clip_grad_value, double t, int schedule,
               double learning_rate, double learning_rate_init, double power_t,
               Py_ssize_t warmup_iter, Py_ssize_t max_iter, Py_ssize_t epoch0,
               long long n_seen, double tol, double n_iter_no_change,
               Py_ssize_t no_improvement, double best_loss, double poll_flops,
               out_loss, out_lr, out_time, out_rows, object hook=None, int wd_schedule=0):
    """Up to ``out_loss.shape[0]`` epochs of a stochastic fit without early stopping, with the
    estimator's per-epoch bookkeeping (``BaseMLP._fit_stochastic``) done here.

    Per epoch: the learning rate (``schedule``: 0 constant, 1 SGD's invscaling, 2 SGD's adaptive,
    3 cosine of 0-based epoch ``epoch0 + e``, 4 coslog4: per batch, train_epoch's
    ``lr_schedule=1``, the epoch's first batch's rate recorded), the row order (``sample_idx`` shuffled in place by
    ``bit_generator``, a RandomState's, unless it is None), the mini-batches (train_epoch's
    arithmetic), then the loss's tol/n_iter_no_change count, ``best_loss``, invscaling's rate
    t_-based update and the stopping rule (adaptive: rate / 5 until <= 1e-6).  ``out_*[e]``
    receive epoch e's loss, rate, seconds and rows.  Pending signals are handled and
    ``hook(rows_done_in_the_epoch)`` is called every ``poll_flops`` GEMM flops (between batches
    and at epoch ends, design note 5); an exception from either ends the call (between batches:
    a partial epoch; at an epoch end: after that epoch's bookkeeping).

    Returns (epochs, t, n_seen, learning_rate, no_improvement, best_loss, stopped, partial, exc):
    ``partial`` when the last epoch recorded was cut short (its bookkeeping is not done);
    ``stopped`` when the stopping rule ended training; ``exc`` the exception or None.
    A one-shot ``Runner``; a fit builds one and calls ``Runner.fit_epochs``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    cdef Runner r = Runner(plan, params, grad, X, X_data, X_indices, X_indptr, n_features, Y,
                           None, batch_size, alpha)
    r.set_optimizer(state1, state2, solver, momentum, nesterov, beta_1, beta_2, epsilon,
                    weight_decay, clip_grad_norm, clip_grad_value)
    return r.fit_epochs(sample_idx, bit_generator, t, schedule, learning_rate, learning_rate_init,
                        power_t, warmup_iter, max_iter, epoch0, n_seen, tol, n_iter_no_change,
                        no_improvement, best_loss, poll_flops, out_loss, out_lr, out_time,
                        out_rows, hook, wd_schedule)


# ---- the runner: one fit's checked data and work buffers (design note 9) --------------------------
cdef class Runner:
    """What a fit's compiled calls share, checked once: the plan (a ``CheckedPlan``), the
    parameters, the data (dense X or its CSR arrays, Y, sample weights) and the buffers every
    pass works in (the plan's work buffer, the per-row losses, the update's chunk partials, the
    gradient and the CSR column-grouping scratch), allocated here and reused by every call.

    ``Runner(plan, params, grad, X, X_data, X_indices, X_indptr, n_features, Y, sample_weight,
    batch_size, alpha=0.0)``: ``grad`` None allocates one; ``batch_size`` (mini-batch rows, at
    most the plan's cap; 0: the cap) and ``alpha`` (the L2 penalty) are fixed for the runner's
    life.  Then:

    - ``set_optimizer(state1, state2, solver, ...)``: the optimizer's state vectors and fixed
      settings, checked once; ``epoch`` and ``fit_epochs`` need it;
    - ``epoch(order, learning_rate, ...)``: one epoch of mini-batches (``train_epoch``);
    - ``fit_epochs(sample_idx, bit_generator, ...)``: many epochs in one call (``fit_epochs``);
    - ``loss_grad(x=None, ...)``: the full-batch loss, its gradient into ``grad`` (L-BFGS's
      objective; ``x``, when given, is first copied into ``params``).

    The arrays passed in are used in place (never copied) and must not be resized or freed
    while the runner lives; a runner serves one fit at a time (its buffers are not shared
    between threads).  Per call, only what changes is checked (the row order, the learning
    rate, the output arrays) and the kernel path and thread count are read, as every call does.

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import make_plan
    >>> plan = CheckedPlan(make_plan([2, 1], [0], 0, 4, np.float64, 1), np.float64)
    >>> params = np.array([1.0, 2.0, 0.5])
    >>> r = Runner(plan, params, None, np.array([[1.0, 1.0]]), None, None, None, 2,
    ...            np.array([[3.5]]), None, 0)
    >>> r.loss_grad(), r.grad          # the output is the target: loss and gradient 0
    (0.0, array([0., 0., 0.]))
    >>> work = r.work
    >>> r.loss_grad(np.array([1.0, 2.0, 1.5])), r.work is work
    (0.5, True)
    """
    cdef readonly CheckedPlan checked
    cdef readonly object params, grad, work, state1, state2
    cdef object _keep, _scratch
    cdef Input x                # the input (CSR scratch bound); each call works on a copy
    cdef void* P
    cdef void* G
    cdef void* S1
    cdef void* S2
    cdef void* W
    cdef const void* dense
    cdef const void* Yp
    cdef const void* sw
    cdef double* R
    cdef double* partial
    cdef readonly Py_ssize_t n, n_features, n_outputs, n_params, batch_size
    cdef readonly double alpha, sw_sum
    cdef readonly bint is_float
    cdef _EpochCfg cfg          # the optimizer's fixed settings (set_optimizer)
    cdef double weight_decay
    cdef bint has_optimizer

    def __cinit__(self, object plan, params, grad, X, X_data, X_indices, X_indptr,
                  Py_ssize_t n_features, Y, sample_weight, Py_ssize_t batch_size,
                  double alpha=0.0):
        dt = getattr(params, "dtype", None)
        if dt != np.float32 and dt != np.float64:
            raise TypeError(f"params must be a float32 or float64 vector; got "
                            f"{type(params).__name__}{'' if dt is None else ' of ' + str(dt)}.")
        if grad is None:
            grad = np.empty_like(params)
        if dt == np.float32:
            _bind[float](self, plan, params, grad, X, X_data, X_indices, X_indptr, n_features,
                         Y, sample_weight, batch_size)
        else:
            _bind[double](self, plan, params, grad, X, X_data, X_indices, X_indptr, n_features,
                          Y, sample_weight, batch_size)
        self.params = params
        self.grad = grad
        self.alpha = alpha

    def set_optimizer(self, state1, state2, str solver, double momentum=0.9, bint nesterov=True,
                      double beta_1=0.9, double beta_2=0.999, double epsilon=1e-8,
                      double weight_decay=0.0, double clip_grad_norm=0.0,
                      double clip_grad_value=0.0):
        """The optimizer of ``epoch``/``fit_epochs``: its state vectors (SGD velocity; Adam's
        moments), used in place, and its fixed settings (``train_epoch``'s arguments)."""
        if self.is_float:
            _bind_state[float](self, self.params, state1, state2)
        else:
            _bind_state[double](self, self.params, state1, state2)
        if solver not in SOLVER_CODES:
            raise ValueError(f"solver must be one of {sorted(SOLVER_CODES)}; got {solver!r}.")
        cdef _EpochCfg* c = &self.cfg
        c.opt.kind = SOLVER_CODES[solver]
        c.opt.momentum = momentum
        c.opt.nesterov = nesterov
        c.opt.beta1 = beta_1
        c.opt.beta2 = beta_2
        c.opt.eps = epsilon
        c.opt.lr = 0
        c.opt.decay = 0
        c.opt_b = c.opt       # biases are not decayed (as alpha's L2 term spares them)
        c.beta_1 = beta_1
        c.beta_2 = beta_2
        c.alpha = self.alpha
        c.clipping = clip_grad_norm > 0 or clip_grad_value > 0
        c.clip_grad_norm = clip_grad_norm
        c.clip_grad_value = clip_grad_value
        c.n = self.n
        c.n_features = self.n_features
        c.n_out = self.n_outputs
        c.batch_size = self.batch_size
        self.weight_decay = weight_decay
        self.state1 = state1
        self.state2 = state2
        self.has_optimizer = True

    cdef int _pass_spec(self, NetSpec* spec, Py_ssize_t pass_rows) except -1:
        """spec := the plan's NetSpec with this call's thread count and kernel path (one
        snapshot, so a pass never mixes paths), serial when passes of ``pass_rows`` rows are
        small (_serial_if_small)."""
        spec[0] = self.checked.spec
        spec.n_threads = engine_threads(self.checked.plan_threads)  # 1 in a forked child
        spec.path = current_path()
        if pass_rows > self.n:
            pass_rows = self.n
        _serial_if_small(spec, pass_rows)
        _serial_if_small(spec, _sparse_pass_rows(spec, &self.x, self.n, pass_rows))
        return 0

    cdef int _start_epochs(self, _EpochCfg* c, NetSpec* spec, double learning_rate,
                           double poll_flops, double[::1] grad_norms) except -1:
        """c := the optimizer's settings for a call of epochs at ``learning_rate``."""
        if not self.has_optimizer:
            raise ValueError("call set_optimizer before training epochs.")
        if grad_norms is not None and grad_norms.shape[0] != self.checked.spec.L:
            raise ValueError(f"grad_norms must hold one value per layer "
                             f"({self.checked.spec.L}).")
        self._pass_spec(spec, self.batch_size)
        c[0] = self.cfg
        c.net = spec
        c.norms = &grad_norms[0] if grad_norms is not None else NULL
        _set_rate(c, learning_rate, self.weight_decay)
        c.row_flops = _row_flops(spec)
        c.poll_flops = poll_flops
        # the kernel path's build of the elementwise update (the snapshot the passes use too)
        c.ot = &spec.path.optim
        return 0

    def epoch(self, const intp_t[::1] order, double learning_rate, double t=0, object hook=None,
              double poll_flops=DEFAULT_POLL_FLOPS, double[::1] grad_norms=None,
              long long dropout_seed=-1, unsigned long long epoch=0, int lr_schedule=0,
              int wd_schedule=0, int dropout_schedule=0, double learning_rate_init=0.0,
              Py_ssize_t schedule_epoch=0, Py_ssize_t max_iter=0):
        """One epoch of mini-batches in the given row ``order`` (None: 0..n-1); returns
        (sum over batches of batch_loss * batch_rows, t, rows_done, exc) as ``train_epoch``
        (whose per-batch schedule arguments these are too)."""
        cdef _EpochCfg cfg
        cdef NetSpec spec
        cdef Dropout dk
        cdef Py_ssize_t n = self.n
        self._start_epochs(&cfg, &spec, learning_rate, poll_flops, grad_norms)
        if order is not None and (order.shape[0] != n or _out_of_range(&order[0], n, n)):
            raise ValueError(f"order must hold {n} row indices in [0, {n}).")
        # this call's dropout rates when they are scheduled (spec.drop points into them)
        rates = _schedule_setup(&cfg, &spec, self.checked, n, lr_schedule, wd_schedule,
                                dropout_schedule, learning_rate_init, max_iter)
        _schedule_epoch(&cfg, schedule_epoch, max_iter)
        _set_dropout(&spec, &dk, dropout_seed, epoch)
        if self.is_float:
            return _epoch[float](self, &cfg, &dk, <float*>self.P, order, t, hook)
        return _epoch[double](self, &cfg, &dk, <double*>self.P, order, t, hook)

    def fit_epochs(self, intp_t[::1] sample_idx, object bit_generator, double t, int schedule,
                   double learning_rate, double learning_rate_init, double power_t,
                   Py_ssize_t warmup_iter, Py_ssize_t max_iter, Py_ssize_t epoch0,
                   long long n_seen, double tol, double n_iter_no_change,
                   Py_ssize_t no_improvement, double best_loss, double poll_flops,
                   double[::1] out_loss, double[::1] out_lr, double[::1] out_time,
                   intp_t[::1] out_rows, object hook=None, int wd_schedule=0):
        """Up to ``out_loss.shape[0]`` epochs with the estimator's bookkeeping: see
        ``fit_epochs``, whose arguments these are (less the runner's)."""
        cdef _EpochCfg cfg
        cdef NetSpec spec
        cdef Dropout dk
        cdef Py_ssize_t n = self.n, n_epochs = out_loss.shape[0]
        self._start_epochs(&cfg, &spec, learning_rate, poll_flops, None)
        if self.sw != NULL:
            raise ValueError("fit_epochs trains without sample weights; this runner has some.")
        if sample_idx.shape[0] != n or _out_of_range(&sample_idx[0], n, n):
            raise ValueError(f"sample_idx must hold {n} row indices in [0, {n}).")
        if out_lr.shape[0] < n_epochs or out_time.shape[0] < n_epochs or \
                out_rows.shape[0] < n_epochs:
            raise ValueError("out_lr, out_time and out_rows must be as long as out_loss.")
        if schedule not in (0, _INVSCALING, _ADAPTIVE, _COSINE, _COSLOG4):
            raise ValueError(f"schedule must be one of {sorted(SCHEDULE_CODES.values())}.")
        if schedule == _COSINE and (max_iter < 1 or warmup_iter < 0):
            raise ValueError("the cosine schedule needs max_iter >= 1 and warmup_iter >= 0.")
        cdef cprop_bitgen_t* bg = _bitgen(bit_generator) if bit_generator is not None else NULL
        _schedule_setup(&cfg, &spec, self.checked, n, _LR_COSLOG4 if schedule == _COSLOG4 else 0,
                        wd_schedule, 0, learning_rate_init, max_iter)
        _set_dropout(&spec, &dk, -1, 0)
        if self.is_float:
            return _fit_epochs[float](self, &cfg, &dk, <float*>self.P, &sample_idx[0], bg, t,
                                      schedule, learning_rate, learning_rate_init, power_t,
                                      warmup_iter, max_iter, epoch0, n_seen, tol,
                                      n_iter_no_change, no_improvement, best_loss, out_loss,
                                      out_lr, out_time, out_rows, hook)
        return _fit_epochs[double](self, &cfg, &dk, <double*>self.P, &sample_idx[0], bg, t,
                                   schedule, learning_rate, learning_rate_init, power_t,
                                   warmup_iter, max_iter, epoch0, n_seen, tol, n_iter_no_change,
                                   no_improvement, best_loss, out_loss, out_lr, out_time,
                                   out_rows, hook)

    def loss_grad(self, x=None, long long dropout_seed=-1, unsigned long long dropout_epoch=0):
        """The full-batch loss (returned) and its gradient (into ``grad``), as ``loss_grad``:
        passes of the plan's cap rows.  ``x`` (a vector of n_params values, any float dtype):
        copied into ``params`` first, rounded as ``x.astype(params.dtype)`` rounds (L-BFGS)."""
        cdef NetSpec spec
        cdef Dropout dk
        if x is not None:
            x = np.asarray(x)
            if x.shape != (self.n_params,):
                raise ValueError(f"x has shape {x.shape}; expected ({self.n_params},).")
            np.copyto(self.params, x, casting="unsafe")
        if self.sw_sum == 0:
            raise ValueError("sample_weight sums to 0: the weighted mean loss is undefined. Give "
                             "some samples a non-zero weight.")
        self._pass_spec(&spec, self.checked.spec.cap)
        _set_dropout(&spec, &dk, dropout_seed, dropout_epoch)
        if self.is_float:
            return _loss_grad[float](self, &spec, &dk, <float*>self.P)
        return _loss_grad[double](self, &spec, &dk, <double*>self.P)


cdef int _bind(Runner r, object plan, const floating[::1] params, floating[::1] grad,
               const floating[:, ::1] X, const floating[::1] X_data, const intp_t[::1] X_indices,
               const intp_t[::1] X_indptr, Py_ssize_t n_features, const floating[:, ::1] Y,
               const floating[::1] sample_weight, Py_ssize_t batch_size) except -1:
    """The runner's checks (once per fit: the kernels trust what passes) and buffers."""
    cdef NetSpec spec
    cdef CheckedPlan cp = _checked(plan, floating is float, params.shape[0], n_features, &spec)
    if grad is None or grad.shape[0] != params.shape[0]:
        raise ValueError("grad must have the shape of params.")
    if Y is None or Y.shape[1] != cp.n_outputs:
        raise ValueError(f"Y must have one column per network output ({cp.n_outputs}).")
    _check_input(X, X_data, X_indices, X_indptr, n_features, Y.shape[0])
    _check_block_input(cp, X_indptr)
    _check_rows("sample_weight", sample_weight, Y.shape[0])
    cdef Py_ssize_t n = Y.shape[0], i
    if n == 0:
        raise ValueError("training needs at least one sample; X has 0 rows.")
    if batch_size == 0:
        batch_size = spec.cap
    if batch_size < 1 or batch_size > spec.cap:
        raise ValueError(f"batch_size={batch_size} must be in [1, plan cap={spec.cap}].")
    dtype = np.float32 if floating is float else np.float64
    work_arr = np.empty(cp.work_size, dtype=dtype)
    cdef floating[::1] work = work_arr
    cdef double[::1] rows = np.empty(spec.cap, dtype=np.float64)
    cdef double[::1] partial = np.empty(max(params.shape[0] // UPDATE_CHUNK + 2, 2),
                                        dtype=np.float64)
    cdef const floating* sw = &sample_weight[0] if sample_weight is not None else NULL
    cdef double sw_sum = 0
    with nogil:
        if sw == NULL:
            sw_sum = n
        else:
            for i in range(n):
                sw_sum += sw[i]
    r.checked = cp
    r.is_float = floating is float
    r.n = n
    r.n_features = n_features
    r.n_outputs = Y.shape[1]
    r.n_params = params.shape[0]
    r.batch_size = batch_size
    r.sw_sum = sw_sum
    r.P = <void*>&params[0]
    r.G = <void*>&grad[0]
    r.W = <void*>&work[0]
    r.R = &rows[0]
    r.partial = &partial[0]
    r.dense = <const void*>&X[0, 0] if X is not None else NULL
    r.Yp = <const void*>&Y[0, 0]
    r.sw = <const void*>sw
    _set_input(&r.x, X_data, X_indices, X_indptr)
    r._scratch = _sparse_backward_scratch(&r.x, X_indptr, n, spec.cap, n_features, dtype)
    r.work = work_arr
    # the buffers the pointers above point into, alive as long as the runner
    r._keep = (params, grad, X, X_data, X_indices, X_indptr, Y, sample_weight, work, rows,
               partial)
    return 0


cdef int _bind_state(Runner r, floating[::1] params, floating[::1] state1,
                     floating[::1] state2) except -1:
    """The optimizer's state vectors (and params, which the updates write, writable)."""
    if state1 is None or state2 is None or state1.shape[0] != params.shape[0] or \
            state2.shape[0] != params.shape[0]:
        raise ValueError("grad, state1 and state2 must have the shape of params.")
    r.S1 = <void*>&state1[0]
    r.S2 = <void*>&state2[0]
    r._keep = r._keep[:11] + (state1, state2)
    return 0


cdef tuple _epoch(Runner r, _EpochCfg* cfg, Dropout* dk, floating* P, const intp_t[::1] order,
                  double t, object hook):
    """Runner.epoch's passes (train_epoch's loop) in the runner's buffers."""
    cdef NetSpec* net = cfg.net
    cdef Py_ssize_t n = r.n, start = 0
    cdef floating* G = <floating*>r.G
    cdef floating* S1 = <floating*>r.S1
    cdef floating* S2 = <floating*>r.S2
    cdef floating* wk = <floating*>r.W
    cdef double* rows = r.R
    cdef double* partial = r.partial
    cdef const floating* sw = <const floating*>r.sw
    cdef const floating* dense = <const floating*>r.dense
    cdef const floating* Y = <const floating*>r.Yp
    cdef const intp_t* idx = &order[0] if order is not None else NULL
    cdef double accumulated = 0, since_poll = 0
    cdef Input x = r.x
    cdef RowPrefetch pf
    _prefetch_setup(&pf, dense, r.n_features * sizeof(floating))
    exc = None
    while True:
        with nogil:
            start = _run_batches(cfg, &x, &pf, dk, P, G, S1, S2, wk, rows, partial, dense, Y, sw,
                                 idx, start, &t, &accumulated, &since_poll)
        if start >= n:
            break
        # -- poll for Ctrl-C and report progress (design note 5) --
        since_poll = 0
        exc = _poll(hook, start)
        if exc is not None:
            break
    return accumulated, t, start, exc


cdef tuple _fit_epochs(Runner r, _EpochCfg* cfg, Dropout* dk, floating* P, intp_t* idx,
                       cprop_bitgen_t* bg, double t, int schedule, double learning_rate,
                       double learning_rate_init, double power_t, Py_ssize_t warmup_iter,
                       Py_ssize_t max_iter, Py_ssize_t epoch0, long long n_seen, double tol,
                       double n_iter_no_change, Py_ssize_t no_improvement, double best_loss,
                       double[::1] out_loss, double[::1] out_lr, double[::1] out_time,
                       intp_t[::1] out_rows, object hook):
    """Runner.fit_epochs' epochs (fit_epochs' loop) in the runner's buffers."""
    cdef Py_ssize_t n = r.n, n_epochs = out_loss.shape[0], e = 0, start
    cdef floating* G = <floating*>r.G
    cdef floating* S1 = <floating*>r.S1
    cdef floating* S2 = <floating*>r.S2
    cdef floating* wk = <floating*>r.W
    cdef double* rows = r.R
    cdef double* partial = r.partial
    cdef const floating* dense = <const floating*>r.dense
    cdef const floating* Y = <const floating*>r.Yp
    cdef double accumulated, since_poll = 0, t0, loss, lr = learning_rate
    cdef double weight_decay = r.weight_decay, poll_flops = cfg.poll_flops
    cdef bint stopped = False, cut = False, raised = False
    cdef Input x = r.x
    cdef RowPrefetch pf
    _prefetch_setup(&pf, dense, r.n_features * sizeof(floating))
    exc = None
    with nogil:
        while e < n_epochs and not stopped and not raised:
            t0 = cprop_now()
            if schedule == _COSINE:
                lr = _cosine_rate(learning_rate_init, epoch0 + e, max_iter, warmup_iter)
            _set_rate(cfg, lr, weight_decay)
            _schedule_epoch(cfg, epoch0 + e, max_iter)
            if schedule == _COSLOG4:
                lr = learning_rate_init * _coslog4(cfg.step0 / cfg.n_steps)
            out_lr[e] = lr
            if bg != NULL:
                _shuffle(bg, idx, n)
            accumulated = 0
            start = 0
            while True:
                start = _run_batches(cfg, &x, &pf, dk, P, G, S1, S2, wk, rows, partial, dense, Y,
                                     NULL, idx, start, &t, &accumulated, &since_poll)
                if start >= n:
                    break
                since_poll = 0
                with gil:
                    exc = _poll(hook, start)
                    cut = exc is not None
                if cut:
                    raised = True
                    break
            loss = accumulated / start
            out_loss[e] = loss
            out_rows[e] = start
            n_seen += start
            if not cut:
                # BaseMLP._update_no_improvement_count (no early stopping), then the schedule
                if loss > best_loss - tol:
                    no_improvement += 1
                else:
                    no_improvement = 0
                if loss < best_loss:
                    best_loss = loss
                if schedule == _INVSCALING:
                    lr = learning_rate_init / pow(<double>(n_seen + 1), power_t)
                # BaseMLP._trigger_stopping
                if no_improvement > n_iter_no_change:
                    if schedule != _ADAPTIVE or lr <= 1e-6:
                        stopped = True
                    else:
                        lr /= 5.0
                        no_improvement = 0
            out_time[e] = cprop_now() - t0
            e += 1
            if not cut and since_poll >= poll_flops:
                since_poll = 0
                with gil:
                    exc = _poll(hook, n)
                    raised = exc is not None
    return e, t, n_seen, lr, no_improvement, best_loss, stopped, cut, exc


cdef double _loss_grad(Runner r, NetSpec* net, Dropout* dk, const floating* P) except? -1:
    """Runner.loss_grad's passes in the runner's buffers (design note 3)."""
    cdef Py_ssize_t n = r.n, n_out = r.n_outputs, n_features = r.n_features, start, cn, i
    cdef Py_ssize_t cap = net.cap
    cdef floating* grad = <floating*>r.G
    cdef floating* wk = <floating*>r.W
    cdef double* rows = r.R
    cdef const floating* sw = <const floating*>r.sw
    cdef const floating* dense = <const floating*>r.dense
    cdef const floating* Y = <const floating*>r.Yp
    cdef double sw_sum = r.sw_sum, alpha = r.alpha, lsum = 0, sumsq = 0
    cdef double row_flops = _row_flops(net), since_poll = 0, poll_flops = DEFAULT_POLL_FLOPS
    cdef bint stop = False
    cdef int l, s
    cdef Input x = r.x
    exc = None
    with nogil:
        start = 0
        while start < n:
            cn = cap if start + cap <= n else n - start
            _contiguous_rows(&x, dense, start, n_features)
            dk.row0 = start
            forward(net, P, &x, cn, wk, NULL)
            loss_delta_rows(net.loss, Y + start * n_out, wk + net.a_off[net.L],
                            wk + net.d_off[net.L], (sw + start) if sw != NULL else NULL, cn,
                            n_out, 1.0 / sw_sum, rows, net.loss_param, net.n_threads)
            for i in range(cn):
                lsum += rows[i]
            for l in range(net.L - 1, -1, -1):
                backward_layer(net, l, P, &x, cn, wk, grad, start > 0, NULL)
            start += cn
            since_poll += row_flops * cn
            if since_poll >= poll_flops and start < n:
                since_poll = 0
                with gil:
                    exc = _poll(None, start)
                    stop = exc is not None
                if stop:
                    break
        # the L2 term of every segment, times its weight-decay factor (biases: 0, skipped)
        for s in range(net.n_seg):
            if net.seg_wd[s] != 0:
                sumsq += net.seg_wd[s] * _l2_into_grad(
                    &P[net.seg_off[s]], &grad[net.seg_off[s]], net.seg_len[s],
                    <floating>((alpha / sw_sum) * net.seg_wd[s]))
    if exc is not None:
        raise exc
    return lsum / sw_sum + 0.5 * alpha * sumsq / sw_sum
