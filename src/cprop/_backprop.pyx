"""Forward pass, backward pass and gradient assembly: the only module that knows layers.

Design
1. Parameters live in one flat vector: W_0, b_0, W_1, b_1, ... (W_l row-major, fan_in x fan_out);
   gradients use the same layout, so optimizers and L-BFGS see one vector.
2. Forward: A_{l+1} = f_l(A_l W_l + b_l), one GEMM per layer with bias + activation applied at
   write-back (softmax, being row-wise, runs as a pass after the GEMM of the output layer).
3. Backward for layer l, given D_{l+1} = d loss / d Z_{l+1}:
       grad b_l = 1^T D_{l+1}           (column sums, one fixed row order per column)
       grad W_l = A_l^T D_{l+1}         (GEMM, transpose in packing)
       D_l      = (D_{l+1} W_l^T) * f'_{l-1}(A_l)   (GEMM with the derivative fused at write-back)
   The L2 term and the 1/sum(sw) factor are applied by the caller (the delta at the output already
   carries sw_i / sum(sw)), so a full-batch gradient can be accumulated over row chunks.
4. Sparse CSR input changes only layer 0: X W_0 row by row, and X^T D_1 split over column blocks
   of the output so each gradient element is summed in row order by one thread.
5. Buffers come from a plan (``make_plan``) computed once per fit: nothing is allocated per batch.
6. The caller may name rows to prefetch during the first layer's weight-gradient product (the
   last large product of a mini-batch): the next batch's rows of X, so gathering them afterwards
   reads cache rather than DRAM.
"""
from cython.parallel cimport prange
from libc.string cimport memset

import numpy as np

from cprop._typedefs cimport floating, intp_t
from cprop._gemm cimport gemm, gemm_work_size, Epilogue, EPI_NONE, EPI_BIAS_ACT, EPI_MUL_DERIV
from cprop._activations cimport ACT_SOFTMAX, ACT_IDENTITY, act_forward_row, forward_rows

cdef enum:
    COL_BLOCK = 64           # columns per task in sparse X^T D and column sums


cdef void colsum(const floating* D, intp_t n, intp_t m, floating* out, bint accumulate,
                 int n_threads) noexcept nogil:
    """out (+)= 1^T D for D (n x m): each column summed over rows 0..n-1 in order."""
    cdef intp_t nb = (m + COL_BLOCK - 1) // COL_BLOCK, b
    if n_threads > 1 and n * m > 50000 and nb > 1:
        for b in prange(nb, num_threads=n_threads, schedule='static'):
            _colsum_block(D, n, m, out, accumulate, b * COL_BLOCK,
                          COL_BLOCK if (b + 1) * COL_BLOCK <= m else m - b * COL_BLOCK)
    else:
        for b in range(nb):
            _colsum_block(D, n, m, out, accumulate, b * COL_BLOCK,
                          COL_BLOCK if (b + 1) * COL_BLOCK <= m else m - b * COL_BLOCK)


cdef inline void _colsum_block(const floating* D, intp_t n, intp_t m, floating* out, bint accumulate,
                               intp_t j0, intp_t w) noexcept nogil:
    cdef intp_t i, j
    if not accumulate:
        for j in range(w):
            out[j0 + j] = 0
    for i in range(n):
        for j in range(w):
            out[j0 + j] += D[i * m + j0 + j]


# ---- sparse first layer ----------------------------------------------------------------------------
cdef inline intp_t _csr_row(const Input* x, intp_t r) noexcept nogil:
    return x.rows[r] if x.rows != NULL else x.start + r


cdef void _sparse_forward(const Input* x, intp_t n, const floating* W, intp_t n_out,
                          floating* Z, int n_threads) noexcept nogil:
    """Z := X[rows] W (X in CSR), each output row owned by one thread."""
    cdef intp_t r
    if n_threads > 1 and n > 16:
        for r in prange(n, num_threads=n_threads, schedule='static'):
            _sparse_row(x, r, W, n_out, Z + r * n_out)
    else:
        for r in range(n):
            _sparse_row(x, r, W, n_out, Z + r * n_out)


cdef inline void _sparse_row(const Input* x, intp_t r, const floating* W, intp_t n_out,
                             floating* z) noexcept nogil:
    cdef intp_t row = _csr_row(x, r), k, j
    cdef const floating* data = <const floating*>x.data
    cdef const floating* w
    cdef floating v
    for j in range(n_out):
        z[j] = 0
    for k in range(x.indptr[row], x.indptr[row + 1]):
        v = data[k]
        w = W + x.indices[k] * n_out
        for j in range(n_out):
            z[j] += v * w[j]


cdef void _sparse_weight_grad(const Input* x, intp_t n, intp_t n_in, const floating* D, intp_t n_out,
                              floating* G, bint accumulate, int n_threads) noexcept nogil:
    """G (+)= X[rows]^T D over column blocks of G; within a block rows are added in order."""
    cdef intp_t nb = (n_out + COL_BLOCK - 1) // COL_BLOCK, b
    if n_threads > 1 and nb > 1:
        for b in prange(nb, num_threads=n_threads, schedule='static'):
            _sparse_grad_block(x, n, n_in, D, n_out, G, accumulate, b * COL_BLOCK,
                               COL_BLOCK if (b + 1) * COL_BLOCK <= n_out else n_out - b * COL_BLOCK)
    else:
        for b in range(nb):
            _sparse_grad_block(x, n, n_in, D, n_out, G, accumulate, b * COL_BLOCK,
                               COL_BLOCK if (b + 1) * COL_BLOCK <= n_out else n_out - b * COL_BLOCK)


cdef inline void _sparse_grad_block(const Input* x, intp_t n, intp_t n_in, const floating* D,
                                    intp_t n_out, floating* G, bint accumulate, intp_t j0,
                                    intp_t w) noexcept nogil:
    cdef intp_t r, row, k, j, f
    cdef const floating* data = <const floating*>x.data
    cdef const floating* d
    cdef floating* g
    cdef floating v
    if not accumulate:
        for f in range(n_in):
            for j in range(w):
                G[f * n_out + j0 + j] = 0
    for r in range(n):
        row = _csr_row(x, r)
        d = D + r * n_out + j0
        for k in range(x.indptr[row], x.indptr[row + 1]):
            v = data[k]
            g = G + x.indices[k] * n_out + j0
            for j in range(w):
                g[j] += v * d[j]


# ---- forward ---------------------------------------------------------------------------------------
cdef void forward(const NetSpec* net, const floating* params, const Input* x, intp_t n,
                  floating* work, floating* out) noexcept nogil:
    """A_{l+1} := f_l(A_l W_l + b_l) for l = 0..L-1 over n rows; A_L goes to ``out`` if not NULL."""
    cdef int l, act
    cdef intp_t fan_in, fan_out
    cdef const floating* A
    cdef floating* Z
    cdef Epilogue epi
    for l in range(net.L):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        act = net.acts[l]
        Z = out if (l == net.L - 1 and out != NULL) else work + net.a_off[l + 1]
        if l == 0 and x.sparse:
            _sparse_forward(x, n, params + net.w_off[0], fan_out, Z, net.n_threads)
            forward_rows(Z, n, fan_out, fan_out, params + net.b_off[0], act, net.n_threads)
            continue
        A = (<const floating*>x.dense) if l == 0 else work + net.a_off[l]
        epi.kind = EPI_BIAS_ACT
        epi.act = ACT_IDENTITY if act == ACT_SOFTMAX else act
        epi.bias = <const void*>(params + net.b_off[l])
        epi.aux = NULL
        epi.ldaux = 0
        epi.prefetch = NULL
        gemm(False, False, n, fan_out, fan_in, <floating>1, A, fan_in, params + net.w_off[l],
             fan_out, <floating>0, Z, fan_out, &epi, work + net.gemm_off, net.n_threads)
        if act == ACT_SOFTMAX:
            forward_rows(Z, n, fan_out, fan_out, NULL, ACT_SOFTMAX, net.n_threads)


# ---- backward, one layer ---------------------------------------------------------------------------
cdef void backward_layer(const NetSpec* net, int l, const floating* params, const Input* x,
                         intp_t n, floating* work, floating* grad, bint accumulate,
                         const RowPrefetch* prefetch) noexcept nogil:
    """Gradients of W_l, b_l from D_{l+1} (unscaled sums), then D_l for l > 0.

    ``prefetch`` (or NULL): rows fetched into cache during the weight-gradient product (l == 0).
    """
    cdef intp_t fan_in = net.sizes[l], fan_out = net.sizes[l + 1]
    cdef const floating* D = work + net.d_off[l + 1]
    cdef const floating* A
    cdef Epilogue epi
    colsum(D, n, fan_out, grad + net.b_off[l], accumulate, net.n_threads)
    if l == 0 and x.sparse:
        _sparse_weight_grad(x, n, fan_in, D, fan_out, grad + net.w_off[0], accumulate, net.n_threads)
        return
    A = (<const floating*>x.dense) if l == 0 else work + net.a_off[l]
    epi.kind = EPI_NONE
    epi.act = 0
    epi.bias = NULL
    epi.aux = NULL
    epi.ldaux = 0
    epi.prefetch = prefetch if l == 0 else NULL
    gemm(True, False, fan_in, fan_out, n, <floating>1, A, fan_in, D, fan_out,
         <floating>(1 if accumulate else 0), grad + net.w_off[l], fan_out, &epi,
         work + net.gemm_off, net.n_threads)
    if l > 0:
        epi.kind = EPI_MUL_DERIV
        epi.act = net.acts[l - 1]
        epi.bias = NULL
        epi.aux = <const void*>(work + net.a_off[l])
        epi.ldaux = fan_in
        epi.prefetch = NULL
        gemm(False, True, n, fan_in, fan_out, <floating>1, D, fan_out, params + net.w_off[l],
             fan_out, <floating>0, work + net.d_off[l], fan_in, &epi, work + net.gemm_off,
             net.n_threads)


# ---- plans -----------------------------------------------------------------------------------------
def _check_plan_args(sizes, acts, loss, cap, dtype, n_threads):
    """make_plan's arguments, checked (codes, counts, dtype): a plan is trusted by every kernel."""
    from cprop._activations import ACTIVATION_CODES
    from cprop._losses import LOSS_CODES
    sizes_in, acts_in = np.asarray(sizes), np.asarray(acts)
    if sizes_in.ndim != 1 or acts_in.ndim != 1 or (
            sizes_in.size and not np.issubdtype(sizes_in.dtype, np.integer)) or (
            acts_in.size and not np.issubdtype(acts_in.dtype, np.integer)):
        raise ValueError(f"sizes and acts must be 1-D sequences of ints; got {sizes!r}, {acts!r}.")
    sizes = np.ascontiguousarray(sizes_in, dtype=np.intp)
    acts = np.ascontiguousarray(acts_in, dtype=np.intc)
    L = len(sizes) - 1
    if L < 1 or len(acts) != L:
        raise ValueError(f"a network needs L >= 1 layers and one activation per layer; got "
                         f"sizes={sizes.tolist()}, acts={acts.tolist()}.")
    if np.any(sizes <= 0):
        raise ValueError(f"layer sizes must be positive; got {sizes.tolist()}.")
    known = set(int(c) for c in ACTIVATION_CODES.values())
    softmax = ACTIVATION_CODES["softmax"]
    for l, a in enumerate(acts.tolist()):
        if a not in known or (a == softmax and l != L - 1):
            raise ValueError(f"activation code {a} of layer {l} is not valid; expected one of "
                             f"{sorted(known)} (softmax only for the output layer).")
    if int(loss) not in set(int(c) for c in LOSS_CODES.values()):
        raise ValueError(f"loss code {loss} is not valid; expected one of "
                         f"{sorted(LOSS_CODES.values())} ({sorted(LOSS_CODES)}).")
    if int(cap) < 1 or int(n_threads) < 1:
        raise ValueError(f"cap and n_threads must be >= 1; got cap={cap}, n_threads={n_threads}.")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64; got {np.dtype(dtype)}.")
    return sizes, acts


def make_plan(sizes, acts, int loss, Py_ssize_t cap, dtype, int n_threads):
    """Offsets of parameters and work buffers for a network, as int arrays (see NetSpec).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import make_plan
    >>> p = make_plan([4, 3, 2], [3, 0], 0, 10, np.float64, 1)
    >>> int(p["n_params"])
    23
    """
    from cprop._gemm import work_size
    sizes, acts = _check_plan_args(sizes, acts, loss, cap, dtype, n_threads)
    L = len(sizes) - 1
    w_off = np.zeros(L, np.intp)
    b_off = np.zeros(L, np.intp)
    off = 0
    for l in range(L):
        w_off[l] = off
        off += sizes[l] * sizes[l + 1]
        b_off[l] = off
        off += sizes[l + 1]
    n_params = off
    a_off = np.zeros(L + 1, np.intp)
    d_off = np.zeros(L + 1, np.intp)
    off = 0
    for l in range(L + 1):
        a_off[l] = off
        off += cap * sizes[l]
    for l in range(1, L + 1):
        d_off[l] = off
        off += cap * sizes[l]
    y_off = off
    off += cap * sizes[L]
    sw_off = off
    off += cap
    gw = 0
    is_float = np.dtype(dtype) == np.float32
    for l in range(L):
        fi, fo = int(sizes[l]), int(sizes[l + 1])
        gw = max(gw, work_size(is_float, cap, fo, fi, n_threads),      # A_l W_l
                 work_size(is_float, fi, fo, cap, n_threads),          # A_l^T D
                 work_size(is_float, cap, fi, fo, n_threads))          # D W_l^T
    gemm_off = off + 16     # keep 64-byte alignment slack between regions
    total = gemm_off + gw
    return {"sizes": sizes, "acts": acts, "loss": int(loss), "w_off": w_off, "b_off": b_off,
            "a_off": a_off, "d_off": d_off, "y_off": int(y_off), "sw_off": int(sw_off),
            "gemm_off": int(gemm_off), "cap": cap, "n_threads": int(n_threads),
            "n_params": int(n_params), "work_size": int(total)}
