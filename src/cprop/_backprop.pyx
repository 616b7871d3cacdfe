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
4. Sparse CSR input changes only layer 0: X W_0 row by row, and X^T D_1 row of G by row of G
   from the pass's entries grouped by column; both cost what the stored entries cost and sum each
   element in one fixed order (the sparse section below).
5. An activation whose derivative reads the pre-activation (gelu, silu, mish: act_needs_z) has
   its Z_l = A_{l-1} W_{l-1} + b_{l-1} written by the forward epilogue into a plan buffer, and the
   backward epilogue reads Z_l instead of A_l; other activations have no such buffer.
6. Dropout (training passes only, ``net.dropout`` set): after layer l's epilogue, the kept units of
   A_l, scaled by 1/(1 - rate), are written to a second buffer M_l, which the next product and the
   weight gradient read; the derivative epilogue still reads the unmasked A_l (or Z_l), and D_l is
   multiplied by the same mask afterwards (masks are recomputed from their counter-based key,
   _dropout.pxd).  A network without dropout rates runs none of this.
7. Buffers come from a plan (``make_plan``) computed once per fit: nothing is allocated per batch.
   The kernel path (cprop._isa) is taken once per pass into ``NetSpec.path``: its GEMM context
   and its build of the tile epilogue serve every product of the pass.
8. The caller may name rows to prefetch during the first layer's weight-gradient product (the
   last large product of a mini-batch): the next batch's rows of X, so gathering them afterwards
   reads cache rather than DRAM.
9. An input block (dense input only) is a list of typed per-feature layers run before dense
   layer 0: ``scale`` (y_j = s_j x_j), ``periodic`` (RealMLP's PBLD: per embedded column j,
   [W2_j cos(2 pi w1_j x_j + b1_j) + b2_j, x_j]) and ``embedding`` (per category-code column j,
   the row x_j of its table T_j; block layer 0 only).  Each kind's forward and backward row sit side
   by side below; the block writes its output to a plan buffer that dense layer 0 reads, and
   backward computes D_0 = D_1 W_0^T (only then) and walks the block from its last layer.  The
   block's parameter gradients are sums over rows: each chunk of BLOCK_ROW_CHUNK rows sums into
   its own partial, and the partials are combined in chunk order, so the bits do not depend on
   the thread count.  Block parameters sit after the dense ones in the flat vector (dense
   offsets unchanged).
"""
from cython.parallel cimport parallel, prange
from libc.string cimport memset

from cpython.pycapsule cimport PyCapsule_GetPointer

import numpy as np

from cprop._activations import ACTIVATION_CODES, NEEDS_Z

from cprop._typedefs cimport floating, intp_t
from cprop._gemm cimport gemm
from cprop._kernels cimport TileCallback
from cprop._epilogue cimport Epilogue, EPI_NONE, EPI_BIAS_ACT, EPI_MUL_DERIV, EPI_BIAS_ACT_Z
from cprop._dropout cimport Dropout, row_key, mask_row
from cprop._activations cimport (ACT_SOFTMAX, ACT_IDENTITY, act_forward_row, forward_rows,
                                 act_is_elementwise)
from cprop._isa cimport KernelPath, current_path
from cprop._config cimport (COL_BLOCK, COLSUM_PARALLEL_MIN, SPARSE_ROWS_PARALLEL_MIN,
                            SPARSE_GRAD_ROWS_PER_TASK, ROWS_PARALLEL_MIN, BLOCK_PARALLEL_MIN,
                            BLOCK_ROW_CHUNK)


cdef void colsum(const floating* D, intp_t n, intp_t m, floating* out, bint accumulate,
                 int n_threads) noexcept nogil:
    """out (+)= 1^T D for D (n x m): each column summed over rows 0..n-1 in order."""
    cdef intp_t nb = (m + COL_BLOCK - 1) // COL_BLOCK, b
    if n_threads > 1 and n * m > COLSUM_PARALLEL_MIN and nb > 1:
        for b in prange(nb, num_threads=n_threads, schedule='static'):
            _colsum_block(D, n, m, out, accumulate, b)
    else:
        for b in range(nb):
            _colsum_block(D, n, m, out, accumulate, b)


cdef inline void _colsum_block(const floating* D, intp_t n, intp_t m, floating* out, bint accumulate,
                               intp_t b) noexcept nogil:
    """Columns b*COL_BLOCK.. (at most COL_BLOCK) of out (+)= 1^T D.  The sums build in a local
    block (out may alias D as far as the compiler knows, which kept every partial sum in memory:
    a load and a store per element); each column still adds rows 0..n-1 in order."""
    cdef intp_t j0 = b * COL_BLOCK
    cdef intp_t w = COL_BLOCK if (b + 1) * COL_BLOCK <= m else m - b * COL_BLOCK
    cdef intp_t i, j
    cdef floating acc[COL_BLOCK]
    cdef const floating* row
    for j in range(w):
        acc[j] = out[j0 + j] if accumulate else 0
    for i in range(n):
        row = D + i * m + j0
        for j in range(w):
            acc[j] += row[j]
    for j in range(w):
        out[j0 + j] = acc[j]


# ---- sparse first layer ----------------------------------------------------------------------------
# Both products run the kernel path's row kernel (_sparse.pxd): out (+)= sum_k v_k B[idx_k, :].
# Forward: Z[r] from the stored entries of row r and rows of W_0, one thread per output row.
# Weight gradient: the pass's entries grouped by column first (a counting sort, rows kept in pass
# order), then G[f] from the entries of column f and rows of D, one thread per row of G.  Each
# element of Z and G is summed in one fixed order by one thread: results do not depend on the
# thread count.  The work is that of the stored entries (plus one pass over G's rows), never
# n_rows x n_features.
cdef extern from *:
    """
    /* The largest OpenMP team that ran each sparse loop (0: forward, 1: weight gradient) since the
       last reset, noted by each team's thread 0 on entering the parallel region: the tests'
       proof that threads ran. */
    static int cprop_sparse_teams[2] = {0, 0};
    #ifdef _OPENMP
    #include <omp.h>
    static void cprop_sparse_note_team(int loop) {
        if (omp_get_thread_num() == 0 && omp_get_num_threads() > cprop_sparse_teams[loop])
            cprop_sparse_teams[loop] = omp_get_num_threads();
    }
    #else
    static void cprop_sparse_note_team(int loop) { (void)loop; }
    #endif
    """
    int cprop_sparse_teams[2]
    void cprop_sparse_note_team(int loop) noexcept nogil


def _sparse_teams(bint reset=False):
    """(forward, weight gradient): the largest OpenMP team that ran each threaded loop of the
    sparse first layer since the last reset (0: none ran threaded); ``reset`` zeroes both after
    reading.  A test hook: each threaded loop notes its team once, a serial one never."""
    teams = (cprop_sparse_teams[0], cprop_sparse_teams[1])
    if reset:
        cprop_sparse_teams[0] = 0
        cprop_sparse_teams[1] = 0
    return teams


cdef inline intp_t _csr_row(const Input* x, intp_t r) noexcept nogil:
    return x.rows[r] if x.rows != NULL else x.start + r


cdef inline void _sparse_rows(const KernelPath* path, intp_t nnz, const floating* vals,
                              const intp_t* idx, const floating* B, intp_t ldb, intp_t n,
                              floating* out, bint accumulate) noexcept nogil:
    """out[:n] (+)= sum_k vals[k] B[idx[k], :n]: the path's build of the row kernel."""
    if floating is float:
        path.sparse.s_rows(nnz, vals, idx, B, ldb, n, out, accumulate)
    else:
        path.sparse.d_rows(nnz, vals, idx, B, ldb, n, out, accumulate)


cdef void _sparse_forward(const NetSpec* net, const Input* x, intp_t n, const floating* W,
                          intp_t n_out, floating* Z) noexcept nogil:
    """Z := X[rows] W (X in CSR), each output row owned by one thread."""
    cdef intp_t r
    if net.n_threads > 1 and n > SPARSE_ROWS_PARALLEL_MIN:
        with parallel(num_threads=net.n_threads):
            cprop_sparse_note_team(0)
            for r in prange(n, schedule='static'):
                _sparse_forward_row(net.path, x, r, W, n_out, Z + r * n_out)
    else:
        for r in range(n):
            _sparse_forward_row(net.path, x, r, W, n_out, Z + r * n_out)


cdef inline void _sparse_forward_row(const KernelPath* path, const Input* x, intp_t r,
                                     const floating* W, intp_t n_out, floating* z) noexcept nogil:
    cdef intp_t row = _csr_row(x, r)
    cdef intp_t k0 = x.indptr[row]
    _sparse_rows(path, x.indptr[row + 1] - k0, (<const floating*>x.data) + k0, x.indices + k0, W,
                 n_out, n_out, z, False)


cdef void _group_by_column(const Input* x, intp_t n, intp_t n_in, floating* vals) noexcept nogil:
    """x.by_col_ptr, x.by_col_rows and ``vals`` (x.by_col_vals) := the entries of the pass's n rows
    grouped by column, each column's entries in pass-row order (by_col_rows holds the row's
    position r in the pass, not its id in X)."""
    cdef intp_t* ptr = x.by_col_ptr
    cdef intp_t* rows = x.by_col_rows
    cdef const floating* data = <const floating*>x.data
    cdef const intp_t* ind = x.indices
    cdef intp_t r, row, k, c, pos, f
    memset(ptr, 0, (n_in + 1) * sizeof(intp_t))
    for r in range(n):
        row = _csr_row(x, r)
        for k in range(x.indptr[row], x.indptr[row + 1]):
            ptr[ind[k] + 1] += 1
    for f in range(n_in):
        ptr[f + 1] += ptr[f]
    # ptr[c] serves as column c's cursor; filled, it points at the end of c (the start of c + 1)
    for r in range(n):
        row = _csr_row(x, r)
        for k in range(x.indptr[row], x.indptr[row + 1]):
            c = ind[k]
            pos = ptr[c]
            rows[pos] = r
            vals[pos] = data[k]
            ptr[c] = pos + 1
    f = n_in
    while f > 0:
        ptr[f] = ptr[f - 1]
        f -= 1
    ptr[0] = 0


cdef void _sparse_weight_grad(const NetSpec* net, const Input* x, intp_t n, intp_t n_in,
                              const floating* D, intp_t n_out, floating* G,
                              bint accumulate) noexcept nogil:
    """G (+)= X[rows]^T D, each row of G from its column's entries (x's by_col scratch)."""
    cdef intp_t f
    _group_by_column(x, n, n_in, <floating*>x.by_col_vals)
    if net.n_threads > 1 and n_in > SPARSE_GRAD_ROWS_PER_TASK:
        with parallel(num_threads=net.n_threads):
            cprop_sparse_note_team(1)
            for f in prange(n_in, schedule='dynamic', chunksize=SPARSE_GRAD_ROWS_PER_TASK):
                _sparse_grad_row(net.path, x, f, D, n_out, G + f * n_out, accumulate)
    else:
        for f in range(n_in):
            _sparse_grad_row(net.path, x, f, D, n_out, G + f * n_out, accumulate)


cdef inline void _sparse_grad_row(const KernelPath* path, const Input* x, intp_t f,
                                  const floating* D, intp_t n_out, floating* g,
                                  bint accumulate) noexcept nogil:
    """g := (or +=) the gradient of row f of W_0, from the pass's entries in column f."""
    cdef intp_t k0 = x.by_col_ptr[f], nnz = x.by_col_ptr[f + 1] - k0, j
    if nnz == 0:                 # a column the pass does not use: a zero row of the gradient
        if not accumulate:
            for j in range(n_out):
                g[j] = 0
        return
    _sparse_rows(path, nnz, (<const floating*>x.by_col_vals) + k0, x.by_col_rows + k0, D, n_out,
                 n_out, g, accumulate)


# ---- dropout ---------------------------------------------------------------------------------------
cdef inline bint _drops(const NetSpec* net, int l) noexcept nogil:
    """True when A_l is dropped out in this pass (a training pass and a rate for layer l)."""
    return net.dropout != NULL and l > 0 and l < net.L and net.m_off[l] >= 0


cdef void _dropout_rows(const NetSpec* net, int l, const floating* src, floating* dst, intp_t n,
                        intp_t m) noexcept nogil:
    """dst := src * mask_l (0, or 1/(1 - rate) for kept units) over n rows of m units; dst may
    be src (the backward pass masks D_l in place)."""
    cdef intp_t r
    if net.n_threads > 1 and n * m > ROWS_PARALLEL_MIN:
        for r in prange(n, num_threads=net.n_threads, schedule='static'):
            _dropout_row(net, l, src + r * m, dst + r * m, r, m)
    else:
        for r in range(n):
            _dropout_row(net, l, src + r * m, dst + r * m, r, m)


cdef inline void _dropout_row(const NetSpec* net, int l, const floating* src, floating* dst,
                              intp_t r, intp_t m) noexcept nogil:
    cdef double rate = net.drop[l]
    mask_row(row_key(net.dropout, l, r), src, dst, m, rate, <floating>(1.0 / (1.0 - rate)))



# ---- input block: typed per-feature layers before dense layer 0 (design note 9) ------------------
cdef extern from *:
    """
    /* The largest OpenMP team that ran the input block's row chunks (0: forward, 1: backward)
       since the last reset, noted by thread 0 of each team: the tests' proof that threads ran. */
    static int cprop_block_teams[2] = {0, 0};
    #ifdef _OPENMP
    #include <omp.h>
    static void cprop_block_note_team(int loop) {
        if (omp_get_thread_num() == 0 && omp_get_num_threads() > cprop_block_teams[loop])
            cprop_block_teams[loop] = omp_get_num_threads();
    }
    #else
    static void cprop_block_note_team(int loop) { (void)loop; }
    #endif
    """
    int cprop_block_teams[2]
    void cprop_block_note_team(int loop) noexcept nogil


def _block_teams(bint reset=False):
    """(forward, backward): the largest OpenMP team that ran the input block's row chunks since
    the last reset (0: none ran threaded); ``reset`` zeroes both after reading.  A test hook."""
    teams = (cprop_block_teams[0], cprop_block_teams[1])
    if reset:
        cprop_block_teams[0] = 0
        cprop_block_teams[1] = 0
    return teams


cdef extern from *:
    """
    #include <math.h>
    /* c[i], s[i] := cos z[i], sin z[i] for n angles.  Branch-free so the loop vectorises: Cody-Waite
       reduction by pi/2 with fdlibm's two-part constant (pio2_1 has 33 bits, so q * pio2_1 is exact
       for |q| < 2^20), the nearest integer by the 1.5 * 2^52 trick, Taylor polynomials on
       [-pi/4, pi/4] (truncation below 1e-19: terms to y^17 and y^16), the quadrant applied by
       selects; the main loop vectorises (gcc -O3, SSE2: -fopt-info-vec).  |z| > 1e5 (beyond
       what the reduction is exact for, with margin) takes libm.  Against libm: within 1.2e-16
       on [-50, 50] and U(-1e5, 1e5) (tests/engine/test_embedding.py). */
    static void cprop_sincos(const double* z, double* c, double* s, Py_ssize_t n) {
        const double inv = 0.63661977236758134308, magic = 6755399441055744.0;
        const double p1 = 1.57079632673412561417e+00, p1t = 6.07710050650619224932e-11;
        Py_ssize_t i;
        int big = 0;
        for (i = 0; i < n; i++) {
            double q = (z[i] * inv + magic) - magic;
            double y = (z[i] - q * p1) - q * p1t, y2 = y * y;
            double sy = y + y * y2 * (-1.0 / 6 + y2 * (1.0 / 120 + y2 * (-1.0 / 5040
                        + y2 * (1.0 / 362880 + y2 * (-1.0 / 39916800 + y2 * (1.0 / 6227020800.0
                        + y2 * (-1.0 / 1307674368000.0 + y2 * (1.0 / 355687428096000.0))))))));
            double cy = 1.0 + y2 * (-0.5 + y2 * (1.0 / 24 + y2 * (-1.0 / 720 + y2 * (1.0 / 40320
                        + y2 * (-1.0 / 3628800 + y2 * (1.0 / 479001600.0
                        + y2 * (-1.0 / 87178291200.0 + y2 * (1.0 / 20922789888000.0))))))));
            /* the quadrant q mod 4 as r in {-2, ..., 2} (-2 and 2 alike), in doubles: SSE2 has
               no 64-bit integer conversion, and selects on double masks vectorise */
            double r = q - 4.0 * ((q * 0.25 + magic) - magic), ar = fabs(r);
            double bc = ar == 1.0 ? sy : cy, bs = ar == 1.0 ? cy : sy;
            c[i] = (r == 1.0 || ar == 2.0) ? -bc : bc;
            s[i] = (ar == 2.0 || r == -1.0) ? -bs : bs;
        }
        for (i = 0; i < n; i++)
            big |= fabs(z[i]) > 1e5;
        if (big)
            for (i = 0; i < n; i++)
                if (fabs(z[i]) > 1e5) { c[i] = cos(z[i]); s[i] = sin(z[i]); }
    }
    """
    void cprop_sincos(const double* z, double* c, double* s, intp_t n) noexcept nogil


def _sincos(const double[::1] z):
    """(cos z, sin z) by the periodic layer's branch-free kernel (a test hook)."""
    c = np.empty(z.shape[0])
    s = np.empty(z.shape[0])
    cdef double[::1] cv = c, sv = s
    if z.shape[0]:
        cprop_sincos(&z[0], &cv[0], &sv[0], z.shape[0])
    return c, s


cdef enum:
    ANGLE_TILE = 32          # angles of one column computed together (stack arrays)


BLOCK_KINDS = {"scale": BLK_SCALE, "periodic": BLK_PERIODIC, "embedding": BLK_EMBEDDING}
ROW_CHUNK = BLOCK_ROW_CHUNK
cdef double _TWO_PI = 6.283185307179586


# scale: y_j = s_j x_j;  grad s_j = sum_r dy_rj x_rj;  dx_rj = dy_rj s_j
cdef inline void _scale_forward_row(const floating* x, intp_t nin, const floating* s,
                                    floating* y) noexcept nogil:
    cdef intp_t j
    for j in range(nin):
        y[j] = s[j] * x[j]


cdef inline void _scale_backward_row(const floating* x, intp_t nin, const floating* s,
                                     const floating* dy, floating* dx, floating* gs) noexcept nogil:
    """gs += dy * x; dx := dy * s (dx NULL: the layer's input needs no gradient)."""
    cdef intp_t j
    for j in range(nin):
        gs[j] += dy[j] * x[j]
    if dx != NULL:
        for j in range(nin):
            dx[j] = dy[j] * s[j]


# periodic (PBLD), per embedded column j (e = its index among the embedded columns):
#   z_t = 2 pi w1[e,t] x_j + b1[e,t],  h_t = cos z_t  (t < k)
#   y[o] = b2[e,o] + sum_t h_t W2[e,t,o]  (o < m),  y[m] = x_j
# backward, from dy:
#   grad b2[e,o] = dy[o];  grad W2[e,t,o] = h_t dy[o];  dh_t = sum_o W2[e,t,o] dy[o]
#   dz_t = -sin(z_t) dh_t;  grad w1[e,t] = 2 pi x_j dz_t;  grad b1[e,t] = dz_t
#   dx_j = dy[m] + sum_t 2 pi w1[e,t] dz_t
# (cos z_t and sin z_t come from forward: the pass's trig buffer, in the model's dtype)
# Parameters: w1 (ne x k), b1 (ne x k), W2 (ne x k x m), b2 (ne x m), in that order.  The angle,
# its cosine and sine run in double (float32's cos of a large angle loses digits), ANGLE_TILE
# angles of a column at a time through cprop_sincos.
cdef inline void _periodic_forward_row(const floating* x, intp_t nin, const intp_t* feat,
                                       intp_t ne, intp_t k, intp_t m, const floating* P,
                                       floating* y, floating* trig) noexcept nogil:
    """y := the row's output; trig := [cos z, sin z] of each embedded column's k angles."""
    cdef const floating* w1 = P
    cdef const floating* b1 = P + ne * k
    cdef const floating* W2 = P + 2 * ne * k
    cdef const floating* b2 = W2 + ne * k * m
    cdef intp_t j, e, t, t0, tk, o, col = 0
    cdef floating xj
    cdef double acc
    cdef const floating* w2
    cdef floating* tr
    cdef double z[ANGLE_TILE]
    cdef double hc[ANGLE_TILE]
    cdef double hs[ANGLE_TILE]
    for j in range(nin):
        xj = x[j]
        e = feat[j]
        if e < 0:
            y[col] = xj
            col += 1
            continue
        for o in range(m):
            y[col + o] = b2[e * m + o]
        tr = trig + e * 2 * k
        t0 = 0
        while t0 < k:
            tk = ANGLE_TILE if t0 + ANGLE_TILE <= k else k - t0
            for t in range(tk):
                z[t] = _TWO_PI * w1[e * k + t0 + t] * xj + b1[e * k + t0 + t]
            cprop_sincos(z, hc, hs, tk)
            for t in range(tk):
                tr[t0 + t] = <floating>hc[t]
                tr[k + t0 + t] = <floating>hs[t]
            # each output: a dot product over the tile's angles, in t order, in double
            w2 = W2 + (e * k + t0) * m
            for o in range(m):
                acc = 0
                for t in range(tk):
                    acc += hc[t] * w2[t * m + o]
                y[col + o] += <floating>acc
            t0 += tk
        y[col + m] = xj
        col += m + 1


cdef inline void _periodic_backward_row(const floating* x, intp_t nin, const intp_t* feat,
                                        intp_t ne, intp_t k, intp_t m, const floating* P,
                                        const floating* dy, floating* dx, floating* G,
                                        const floating* trig) noexcept nogil:
    """G (the layer's gradient, laid out as P) += this row's terms; dx := d loss / d x (or NULL);
    trig: the row's cos and sin from forward."""
    cdef const floating* w1 = P
    cdef const floating* b1 = P + ne * k
    cdef const floating* W2 = P + 2 * ne * k
    cdef floating* gw1 = G
    cdef floating* gb1 = G + ne * k
    cdef floating* gW2 = G + 2 * ne * k
    cdef floating* gb2 = gW2 + ne * k * m
    cdef intp_t j, e, t, o, col = 0
    cdef double dh, dz, xj, dxj
    cdef floating h
    cdef const floating* d
    cdef const floating* w2
    cdef floating* g2
    cdef const floating* tr
    for j in range(nin):
        e = feat[j]
        if e < 0:
            if dx != NULL:
                dx[j] = dy[col]
            col += 1
            continue
        xj = x[j]
        d = dy + col
        dxj = d[m]
        for o in range(m):
            gb2[e * m + o] += d[o]
        tr = trig + e * 2 * k
        for t in range(k):
            h = tr[t]
            w2 = W2 + (e * k + t) * m
            g2 = gW2 + (e * k + t) * m
            dh = 0
            for o in range(m):
                dh += w2[o] * d[o]
                g2[o] += h * d[o]
            dz = -tr[k + t] * dh
            gw1[e * k + t] += <floating>(_TWO_PI * xj * dz)
            gb1[e * k + t] += <floating>dz
            dxj += _TWO_PI * w1[e * k + t] * dz
        if dx != NULL:
            dx[j] = <floating>dxj
        col += m + 1


# embedding (categorical), per code column j (e = its index among the code columns, K_e its
# categories, code x_j in 0..K_e, K_e: missing/unknown):
#   y[0..d-1] = T_e[x_j]      (T_e: rows rowoff[e]..rowoff[e+1]-1 of the layer's table, d wide)
# backward: grad T_e[x_j] += dy[0..d-1] (a scatter-add: rows in chunk order, then chunk partials
# in chunk order, so the sums run in one fixed order whatever the thread count); the codes
# are not differentiable and the layer is block layer 0, so no input gradient.
# Codes are checked at the Python boundary (cprop._engine); the kernel still clamps a code
# outside [0, K_e] (NaN included) to the missing row, so it never reads or writes out of bounds.
cdef inline intp_t _embedding_row(floating code, intp_t n_rows) noexcept nogil:
    """Table row of ``code`` among n_rows (= K_e + 1); out of range or NaN: the last row."""
    if not (code >= 0 and code < n_rows):
        return n_rows - 1
    return <intp_t>code


cdef inline void _embedding_forward_row(const floating* x, intp_t nin, const intp_t* feat,
                                        intp_t d, const floating* T, floating* y) noexcept nogil:
    cdef const intp_t* rowoff = feat + nin
    cdef intp_t j, e, o, col = 0
    cdef const floating* t
    for j in range(nin):
        e = feat[j]
        if e < 0:
            y[col] = x[j]
            col += 1
            continue
        t = T + (rowoff[e] + _embedding_row(x[j], rowoff[e + 1] - rowoff[e])) * d
        for o in range(d):
            y[col + o] = t[o]
        col += d


cdef inline void _embedding_backward_row(const floating* x, intp_t nin, const intp_t* feat,
                                         intp_t d, const floating* dy, floating* G) noexcept nogil:
    """G (laid out as the table) += this row's output gradient at its codes' rows."""
    cdef const intp_t* rowoff = feat + nin
    cdef intp_t j, e, o, col = 0
    cdef floating* g
    for j in range(nin):
        e = feat[j]
        if e < 0:
            col += 1
            continue
        g = G + (rowoff[e] + _embedding_row(x[j], rowoff[e + 1] - rowoff[e])) * d
        for o in range(d):
            g[o] += dy[col + o]
        col += d


cdef inline const floating* _block_in(const NetSpec* net, int b, const Input* x,
                                      const floating* work) noexcept nogil:
    """The input rows of block layer b: X, or the previous layer's output."""
    if b == 0:
        return <const floating*>x.dense
    return work + net.block[(b - 1) * BLK_NFIELDS + BF_OUT]


cdef inline const floating* input_rows(const NetSpec* net, const Input* x,
                                       const floating* work) noexcept nogil:
    """What dense layer 0 reads: X, or the input block's output."""
    if net.n_block == 0:
        return <const floating*>x.dense
    return work + net.block[(net.n_block - 1) * BLK_NFIELDS + BF_OUT]


cdef inline bint _block_threaded(const NetSpec* net, const intp_t* f, intp_t n,
                                 intp_t n_chunks) noexcept nogil:
    """Row chunks of block layer f on threads: more than one chunk and enough work."""
    cdef intp_t per_row = f[BF_NOUT] if f[BF_KIND] != BLK_PERIODIC else \
        f[BF_NE] * f[BF_K] * (f[BF_M] + 2) + f[BF_NIN]
    return net.n_threads > 1 and n_chunks > 1 and n * per_row > BLOCK_PARALLEL_MIN


cdef void _block_forward_chunk(const NetSpec* net, int b, const floating* params, const Input* x,
                               intp_t n, floating* work, intp_t c) noexcept nogil:
    """Rows of chunk c of block layer b, forward."""
    cdef const intp_t* f = net.block + b * BLK_NFIELDS
    cdef intp_t nin = f[BF_NIN], nout = f[BF_NOUT], r
    cdef intp_t r1 = (c + 1) * BLOCK_ROW_CHUNK if (c + 1) * BLOCK_ROW_CHUNK <= n else n
    cdef const floating* X = _block_in(net, b, x, work)
    cdef floating* Y = work + f[BF_OUT]
    cdef const floating* P = params + f[BF_POFF]
    for r in range(c * BLOCK_ROW_CHUNK, r1):
        if f[BF_KIND] == BLK_SCALE:
            _scale_forward_row(X + r * nin, nin, P, Y + r * nout)
        elif f[BF_KIND] == BLK_EMBEDDING:
            _embedding_forward_row(X + r * nin, nin, net.feat + f[BF_FEAT], f[BF_M], P,
                                   Y + r * nout)
        else:
            _periodic_forward_row(X + r * nin, nin, net.feat + f[BF_FEAT], f[BF_NE], f[BF_K],
                                  f[BF_M], P, Y + r * nout,
                                  work + f[BF_TRIG] + r * f[BF_NE] * 2 * f[BF_K])


cdef void _block_forward(const NetSpec* net, const floating* params, const Input* x, intp_t n,
                         floating* work) noexcept nogil:
    """The input block's layers in order over n rows (rows are independent)."""
    cdef int b
    cdef intp_t nch = (n + BLOCK_ROW_CHUNK - 1) // BLOCK_ROW_CHUNK, c
    for b in range(net.n_block):
        if _block_threaded(net, net.block + b * BLK_NFIELDS, n, nch):
            with parallel(num_threads=net.n_threads):
                cprop_block_note_team(0)
                for c in prange(nch, schedule='static'):
                    _block_forward_chunk(net, b, params, x, n, work, c)
        else:
            for c in range(nch):
                _block_forward_chunk(net, b, params, x, n, work, c)


cdef void _block_backward_chunk(const NetSpec* net, int b, const floating* params,
                                const Input* x, intp_t n, floating* work, intp_t c) noexcept nogil:
    """Chunk c of block layer b, backward: its partial parameter gradient (rows in order) and,
    when a layer precedes it, the gradient to its input for these rows."""
    cdef const intp_t* f = net.block + b * BLK_NFIELDS
    cdef intp_t nin = f[BF_NIN], nout = f[BF_NOUT], npar = f[BF_NPAR], r, i
    cdef intp_t r1 = (c + 1) * BLOCK_ROW_CHUNK if (c + 1) * BLOCK_ROW_CHUNK <= n else n
    cdef const floating* X = _block_in(net, b, x, work)
    cdef const floating* DY = work + f[BF_DOUT]
    cdef floating* DX = (work + net.block[(b - 1) * BLK_NFIELDS + BF_DOUT]) if b > 0 else NULL
    cdef const floating* P = params + f[BF_POFF]
    cdef floating* G = work + f[BF_PART] + c * npar
    for i in range(npar):
        G[i] = 0
    for r in range(c * BLOCK_ROW_CHUNK, r1):
        if f[BF_KIND] == BLK_SCALE:
            _scale_backward_row(X + r * nin, nin, P, DY + r * nout,
                                (DX + r * nin) if DX != NULL else NULL, G)
        elif f[BF_KIND] == BLK_EMBEDDING:      # block layer 0: DX is NULL
            _embedding_backward_row(X + r * nin, nin, net.feat + f[BF_FEAT], f[BF_M],
                                    DY + r * nout, G)
        else:
            _periodic_backward_row(X + r * nin, nin, net.feat + f[BF_FEAT], f[BF_NE], f[BF_K],
                                   f[BF_M], P, DY + r * nout, (DX + r * nin) if DX != NULL else NULL,
                                   G, work + f[BF_TRIG] + r * f[BF_NE] * 2 * f[BF_K])


cdef void _block_backward(const NetSpec* net, const floating* params, const Input* x, intp_t n,
                          floating* work, floating* grad, bint accumulate) noexcept nogil:
    """The block's parameter gradients (+)= their sums over n rows, from its output's gradient
    (D_0, at the last layer's BF_DOUT), last layer first."""
    cdef int b
    cdef const intp_t* f
    cdef intp_t nch = (n + BLOCK_ROW_CHUNK - 1) // BLOCK_ROW_CHUNK, c, i, npar
    cdef const floating* part
    cdef floating* g
    cdef floating acc
    for b in range(net.n_block - 1, -1, -1):
        f = net.block + b * BLK_NFIELDS
        if _block_threaded(net, f, n, nch):
            with parallel(num_threads=net.n_threads):
                cprop_block_note_team(1)
                for c in prange(nch, schedule='static'):
                    _block_backward_chunk(net, b, params, x, n, work, c)
        else:
            for c in range(nch):
                _block_backward_chunk(net, b, params, x, n, work, c)
        # chunk partials combined in chunk order (never an OpenMP reduction)
        npar = f[BF_NPAR]
        part = work + f[BF_PART]
        g = grad + f[BF_POFF]
        for i in range(npar):
            acc = g[i] if accumulate else 0
            for c in range(nch):
                acc += part[c * npar + i]
            g[i] = acc


# ---- forward ---------------------------------------------------------------------------------------
cdef inline void _callback(const KernelPath* path, const Epilogue* epi,
                           TileCallback* cb) noexcept nogil:
    """cb := the path's build of the tile epilogue, reading ``epi``."""
    cb.s = path.epi.s_tile
    cb.d = path.epi.d_tile
    cb.data = <const void*>epi


cdef void forward(const NetSpec* net, const floating* params, const Input* x, intp_t n,
                  floating* work, floating* out) noexcept nogil:
    """A_{l+1} := f_l(A_l W_l + b_l) for l = 0..L-1 over n rows; A_L goes to ``out`` if not NULL."""
    cdef int l, act
    cdef intp_t fan_in, fan_out
    cdef const floating* A
    cdef floating* Z
    cdef floating* zsave
    cdef Epilogue epi
    cdef TileCallback cb
    _callback(net.path, &epi, &cb)
    if net.n_block > 0:
        _block_forward(net, params, x, n, work)
    for l in range(net.L):
        fan_in = net.sizes[l]
        fan_out = net.sizes[l + 1]
        act = net.acts[l]
        Z = out if (l == net.L - 1 and out != NULL) else work + net.a_off[l + 1]
        zsave = (work + net.z_off[l + 1]) if net.z_off[l + 1] >= 0 else NULL
        if l == 0 and x.sparse:
            _sparse_forward(net, x, n, params + net.w_off[0], fan_out, Z)
            forward_rows(Z, n, fan_out, fan_out, params + net.b_off[0], act, zsave, net.n_threads)
            if _drops(net, 1):
                _dropout_rows(net, 1, Z, work + net.m_off[1], n, fan_out)
            continue
        A = input_rows(net, x, work) if l == 0 else \
            work + (net.m_off[l] if _drops(net, l) else net.a_off[l])
        epi.kind = EPI_BIAS_ACT if zsave == NULL else EPI_BIAS_ACT_Z
        epi.act = ACT_IDENTITY if act == ACT_SOFTMAX else act
        epi.bias = <const void*>(params + net.b_off[l])
        epi.aux = NULL
        epi.ldaux = 0
        epi.prefetch = NULL
        epi.zsave = <void*>zsave
        epi.ldz = fan_out
        gemm(&net.path.gemm, False, False, n, fan_out, fan_in, <floating>1, A, fan_in,
             params + net.w_off[l], fan_out, <floating>0, Z, fan_out, &cb, work + net.gemm_off,
             net.n_threads)
        if act == ACT_SOFTMAX:
            forward_rows(Z, n, fan_out, fan_out, NULL, ACT_SOFTMAX, NULL, net.n_threads)
        if _drops(net, l + 1):
            _dropout_rows(net, l + 1, Z, work + net.m_off[l + 1], n, fan_out)


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
    cdef TileCallback cb
    _callback(net.path, &epi, &cb)
    colsum(D, n, fan_out, grad + net.b_off[l], accumulate, net.n_threads)
    if l == 0 and x.sparse:
        _sparse_weight_grad(net, x, n, fan_in, D, fan_out, grad + net.w_off[0], accumulate)
        return
    # the weight gradient reads A_l as the forward product did: after dropout when it applies
    A = input_rows(net, x, work) if l == 0 else \
        work + (net.m_off[l] if _drops(net, l) else net.a_off[l])
    epi.kind = EPI_NONE
    epi.act = 0
    epi.bias = NULL
    epi.aux = NULL
    epi.ldaux = 0
    epi.prefetch = prefetch if l == 0 else NULL
    epi.zsave = NULL
    epi.ldz = 0
    gemm(&net.path.gemm, True, False, fan_in, fan_out, n, <floating>1, A, fan_in, D, fan_out,
         <floating>(1 if accumulate else 0), grad + net.w_off[l], fan_out,
         &cb if epi.prefetch != NULL else NULL, work + net.gemm_off, net.n_threads)
    if l > 0:
        epi.kind = EPI_MUL_DERIV
        epi.act = net.acts[l - 1]
        epi.bias = NULL
        # the derivative reads A_l, or Z_l for an activation that needs it (design note 5)
        epi.aux = <const void*>(work + (net.z_off[l] if net.z_off[l] >= 0 else net.a_off[l]))
        epi.ldaux = fan_in
        epi.prefetch = NULL
        gemm(&net.path.gemm, False, True, n, fan_in, fan_out, <floating>1, D, fan_out,
             params + net.w_off[l], fan_out, <floating>0, work + net.d_off[l], fan_in, &cb,
             work + net.gemm_off, net.n_threads)
        if _drops(net, l):      # d A_l(dropped) / d A_l = the mask
            _dropout_rows(net, l, work + net.d_off[l], work + net.d_off[l], n, fan_in)
    elif net.n_block > 0:
        # D_0 = D_1 W_0^T (the block's output is linear input: no derivative), then the block
        gemm(&net.path.gemm, False, True, n, fan_in, fan_out, <floating>1, D, fan_out,
             params + net.w_off[0], fan_out, <floating>0, work + net.d_off[0], fan_in, NULL,
             work + net.gemm_off, net.n_threads)
        _block_backward(net, params, x, n, work, grad, accumulate)


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


_NEEDS_Z = frozenset(ACTIVATION_CODES[name] for name in NEEDS_Z)


# Parameter groups of the flat vector (segments): their kinds, by name, in code order.
GROUP_KINDS = ("weights", "biases", "scale", "periodic_first", "periodic_second", "embedding")


def normalize_block(block, n_in):
    """The input block as make_plan keys it: a tuple of ("scale",) and ("periodic", k, m,
    embedded columns as a sorted tuple) entries, checked against the widths they meet; also
    returns the width of its output (dense layer 0's fan-in).

    Entries may be those tuples, or dicts {"kind": "scale"} / {"kind": "periodic",
    "n_frequencies": k, "n_outputs": m, "features": None (every column) or column indices of
    the layer's input}.
    """
    out = []
    width = int(n_in)
    for i, entry in enumerate(block or ()):
        if isinstance(entry, str):
            entry = {"kind": entry}
        if isinstance(entry, dict):
            kind = entry.get("kind")
            allowed = {"kind", "features", "cardinalities", "dim"} if kind == "embedding" \
                else {"kind", "n_frequencies", "n_outputs", "features", "sigma"}
            unknown = set(entry) - allowed
            if unknown:
                raise ValueError(f"input block layer {i}: unknown keys {sorted(unknown)}.")
            if kind == "embedding":
                entry = ("embedding", entry.get("dim", 8), entry.get("features"),
                         entry.get("cardinalities"))
            elif kind == "periodic":
                entry = ("periodic", entry.get("n_frequencies", 16), entry.get("n_outputs", 3),
                         entry.get("features"))
            else:
                entry = (kind,)
        entry = tuple(entry)
        if not entry or entry[0] not in BLOCK_KINDS:
            raise ValueError(f"input block layer {i}: kind {entry[0] if entry else None!r} is "
                             f"not one of {sorted(BLOCK_KINDS)}.")
        if entry[0] == "scale":
            if len(entry) != 1:
                raise ValueError(f"input block layer {i}: a scale layer takes no settings; got "
                                 f"{entry!r}.")
            out.append(("scale",))
            continue
        if entry[0] == "embedding":
            entry = _normalize_embedding(i, entry, width)
            out.append(entry)
            width += len(entry[2]) * (entry[1] - 1)
            continue
        if len(entry) != 4:
            raise ValueError(f"input block layer {i}: expected ('periodic', n_frequencies, "
                             f"n_outputs, features or None); got {entry!r}.")
        _, k, m, feats = entry
        if not (isinstance(k, (int, np.integer)) and isinstance(m, (int, np.integer))
                and k >= 1 and m >= 1):
            raise ValueError(f"input block layer {i}: n_frequencies and n_outputs must be ints "
                             f">= 1; got {k!r}, {m!r}.")
        if feats is None:
            feats = tuple(range(width))
        else:
            f = np.asarray(feats)
            if f.ndim != 1 or (f.size and not np.issubdtype(f.dtype, np.integer)) or (
                    f.size and (f.min() < 0 or f.max() >= width)) or \
                    np.unique(f).size != f.size:
                raise ValueError(f"input block layer {i}: features must be distinct column "
                                 f"indices in [0, {width}); got {feats!r}.")
            feats = tuple(sorted(int(j) for j in f))
        out.append(("periodic", int(k), int(m), feats))
        width += len(feats) * int(m)
    return tuple(out), width


def _normalize_embedding(i, entry, width):
    """("embedding", d, code columns sorted, their category counts K_j in the same order)."""
    if i != 0:
        raise ValueError(f"input block layer {i}: an embedding layer reads category codes, so it "
                         f"must be the block's first layer (layer 0).")
    if len(entry) != 4:
        raise ValueError(f"input block layer {i}: expected ('embedding', dim, features, "
                         f"cardinalities); got {entry!r}.")
    _, d, feats, cards = entry
    if not (isinstance(d, (int, np.integer)) and d >= 1):
        raise ValueError(f"input block layer {i}: dim must be an int >= 1; got {d!r}.")
    f = np.asarray(feats if feats is not None else [])
    c = np.asarray(cards if cards is not None else [])
    if f.ndim != 1 or f.size == 0 or not np.issubdtype(f.dtype, np.integer) or \
            f.min() < 0 or f.max() >= width or np.unique(f).size != f.size:
        raise ValueError(f"input block layer {i}: an embedding layer's features must be one or "
                         f"more distinct column indices in [0, {width}); got {feats!r}.")
    if c.shape != f.shape or not np.issubdtype(c.dtype, np.integer) or c.min() < 1:
        raise ValueError(f"input block layer {i}: cardinalities must hold one int >= 1 (the "
                         f"number of known categories K_j) per feature ({f.size}); got "
                         f"{cards!r}.")
    order = np.argsort(f, kind="stable")
    return ("embedding", int(d), tuple(int(j) for j in f[order]),
            tuple(int(k) for k in c[order]))


def make_plan(sizes, acts, int loss, Py_ssize_t cap, dtype, int n_threads, double loss_param=0.0,
              dropout=None, block=None, seg_lr=None, seg_wd=None):
    """Offsets of parameters and work buffers for a network, as int arrays (see NetSpec).

    ``block``: the input block (``normalize_block``'s entries), applied to the ``sizes[0]``
    input columns; dense layer 0 then reads its output (``plan["sizes"][0]`` is that width,
    ``plan["n_in"]`` the input's).  ``seg_lr`` / ``seg_wd``: one learning-rate and one
    weight-decay factor per parameter segment (``plan["seg_kind"]`` names each segment's group:
    the block's segments first, then W_0, b_0, W_1, ...); None: lr factors 1, weight-decay
    factors 1 except 0 for biases (which the L2 term and AdamW's decay spare).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import make_plan
    >>> p = make_plan([4, 3, 2], [3, 0], 0, 10, np.float64, 1)
    >>> int(p["n_params"])
    23
    >>> p = make_plan([4, 3, 2], [3, 0], 0, 10, np.float64, 1, block=[("scale",)])
    >>> int(p["n_params"]), p["seg_kind"][:3]
    (27, ('scale', 'weights', 'biases'))
    """
    from cprop._gemm import work_size
    sizes, acts = _check_plan_args(sizes, acts, loss, cap, dtype, n_threads)
    n_in = int(sizes[0])
    block_desc, width = normalize_block(block, n_in)
    sizes = sizes.copy()
    sizes[0] = width
    L = len(sizes) - 1
    w_off = np.zeros(L, np.intp)
    b_off = np.zeros(L, np.intp)
    off = 0
    for l in range(L):
        w_off[l] = off
        off += sizes[l] * sizes[l + 1]
        b_off[l] = off
        off += sizes[l + 1]
    # the input block's parameters follow the dense ones; its segments come first
    nb = len(block_desc)
    blk = np.zeros((max(nb, 1), BLK_NFIELDS), np.intp)
    feat = []
    seg_off, seg_len, seg_kind = [], [], []
    w_in = n_in
    for b, entry in enumerate(block_desc):
        f = blk[b]
        f[BF_POFF] = off
        f[BF_NIN] = w_in
        if entry[0] == "scale":
            f[BF_KIND] = BLK_SCALE
            f[BF_NOUT] = w_in
            f[BF_NPAR] = w_in
            seg_off.append(off)
            seg_len.append(w_in)
            seg_kind.append("scale")
        elif entry[0] == "embedding":
            _, d, feats, cards = entry
            ne, rows = len(feats), sum(k + 1 for k in cards)
            f[BF_KIND] = BLK_EMBEDDING
            f[BF_K], f[BF_M], f[BF_NE] = rows, d, ne
            f[BF_NOUT] = w_in + ne * (d - 1)
            f[BF_NPAR] = rows * d
            f[BF_FEAT] = len(feat)
            where = {j: e for e, j in enumerate(feats)}
            feat.extend(where.get(j, -1) for j in range(w_in))
            feat.extend(np.concatenate([[0], np.cumsum([k + 1 for k in cards])]).tolist())
            seg_off.append(off)
            seg_len.append(rows * d)
            seg_kind.append("embedding")
        else:
            _, k, m, feats = entry
            ne = len(feats)
            f[BF_KIND] = BLK_PERIODIC
            f[BF_K], f[BF_M], f[BF_NE] = k, m, ne
            f[BF_NOUT] = w_in + ne * m
            f[BF_NPAR] = 2 * ne * k + ne * k * m + ne * m
            f[BF_FEAT] = len(feat)
            where = {j: e for e, j in enumerate(feats)}
            feat.extend(where.get(j, -1) for j in range(w_in))
            seg_off += [off, off + 2 * ne * k]
            seg_len += [2 * ne * k, ne * k * m + ne * m]
            seg_kind += ["periodic_first", "periodic_second"]
        off += f[BF_NPAR]
        w_in = int(f[BF_NOUT])
    n_params = off
    seg_lo = np.zeros(L + 1, np.intp)
    for l in range(L):
        seg_lo[l] = len(seg_off) if l > 0 else 0     # layer 0: the block's segments too
        seg_off += [int(w_off[l]), int(b_off[l])]
        seg_len += [int(sizes[l] * sizes[l + 1]), int(sizes[l + 1])]
        seg_kind += ["weights", "biases"]
    seg_lo[L] = len(seg_off)
    n_seg = len(seg_off)
    lr = np.ones(n_seg) if seg_lr is None else np.array(seg_lr, dtype=np.float64).ravel()
    wd = np.array([0.0 if k == "biases" else 1.0 for k in seg_kind]) if seg_wd is None \
        else np.array(seg_wd, dtype=np.float64).ravel()
    if lr.shape != (n_seg,) or wd.shape != (n_seg,) or not (
            np.all(np.isfinite(lr)) and np.all(np.isfinite(wd)) and np.all(lr >= 0)
            and np.all(wd >= 0)):
        raise ValueError(f"seg_lr and seg_wd need one finite factor >= 0 per parameter segment "
                         f"({n_seg}: {list(seg_kind)}); got {seg_lr!r}, {seg_wd!r}.")
    a_off = np.zeros(L + 1, np.intp)
    d_off = np.zeros(L + 1, np.intp)
    off = 0
    for l in range(L + 1):
        a_off[l] = off
        off += cap * sizes[l]
    for l in range(1, L + 1):
        d_off[l] = off
        off += cap * sizes[l]
    drop = np.zeros(L + 1, np.float64)
    if dropout is not None:
        rates = np.asarray(dropout, dtype=np.float64).ravel()
        if rates.shape != (L - 1,) or not np.all((rates >= 0) & (rates < 1)):
            raise ValueError(f"dropout needs one rate in [0, 1) per hidden layer ({L - 1}); got "
                             f"{rates.tolist()}.")
        drop[1:L] = rates
    m_off = np.full(L + 1, -1, np.intp)
    for l in range(1, L):
        if drop[l] > 0:
            m_off[l] = off
            off += cap * sizes[l]
    z_off = np.full(L + 1, -1, np.intp)
    for l in range(1, L):
        if int(acts[l - 1]) in _NEEDS_Z:
            z_off[l] = off
            off += cap * sizes[l]
    y_off = off
    off += cap * sizes[L]
    sw_off = off
    off += cap
    # the block's buffers: output, its gradient, per-chunk partial parameter gradients
    n_chunks = (cap + BLOCK_ROW_CHUNK - 1) // BLOCK_ROW_CHUNK
    for b in range(nb):
        f = blk[b]
        f[BF_OUT] = off
        off += cap * f[BF_NOUT]
        f[BF_DOUT] = off
        off += cap * f[BF_NOUT]
        f[BF_PART] = off
        off += n_chunks * f[BF_NPAR]
        f[BF_TRIG] = -1
        if f[BF_KIND] == BLK_PERIODIC:
            f[BF_TRIG] = off
            off += cap * f[BF_NE] * 2 * f[BF_K]
    if nb:
        d_off[0] = blk[nb - 1, BF_DOUT]      # D_0: the block output's gradient
    gw = 0
    is_float = np.dtype(dtype) == np.float32
    for l in range(L):
        fi, fo = int(sizes[l]), int(sizes[l + 1])
        gw = max(gw, work_size(is_float, cap, fo, fi, n_threads),      # A_l W_l
                 work_size(is_float, fi, fo, cap, n_threads),          # A_l^T D
                 work_size(is_float, cap, fi, fo, n_threads))          # D W_l^T
    gemm_off = off + 16     # keep 64-byte alignment slack between regions
    total = gemm_off + gw
    return {"sizes": sizes, "acts": acts, "loss": int(loss), "loss_param": float(loss_param),
            "w_off": w_off, "b_off": b_off,
            "a_off": a_off, "d_off": d_off, "z_off": z_off,
            "m_off": m_off, "drop": drop, "y_off": int(y_off), "sw_off": int(sw_off),
            "gemm_off": int(gemm_off), "cap": cap, "n_threads": int(n_threads),
            "n_params": int(n_params), "work_size": int(total),
            "n_in": n_in, "block_desc": block_desc, "n_block": nb, "block": blk.ravel(),
            "feat": np.array(feat if feat else [-1], np.intp),
            "seg_off": np.array(seg_off, np.intp), "seg_len": np.array(seg_len, np.intp),
            "seg_kind": tuple(seg_kind), "seg_lo": seg_lo, "seg_lr": lr, "seg_wd": wd}


# ---- one fused layer product, for tests ------------------------------------------------------------
def epilogue_product(bint trans_a, bint trans_b, const floating[:, ::1] A, const floating[:, ::1] B,
                     floating[:, ::1] C, int n_threads=1, const floating[::1] bias=None,
                     int act=-1, const floating[:, ::1] aux=None, path=None):
    """C := f(op(A) op(B) + bias) (forward epilogue), or with ``aux`` (the layer's activations
    a = f(z), M x N) C := (op(A) op(B)) * f'(z) (derivative epilogue): one GEMM with a kernel path's
    build of the tile epilogue (None: the installed path).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._backprop import epilogue_product
    >>> from cprop._activations import ACTIVATION_CODES
    >>> C = np.empty((1, 2))
    >>> epilogue_product(False, False, np.ones((1, 3)), -np.ones((3, 2)), C,
    ...                  bias=np.array([1.0, 5.0]), act=ACTIVATION_CODES["relu"])
    >>> C
    array([[0., 2.]])
    """
    from cprop._gemm import _dims, work_size
    from cprop._isa import path_capsule
    M, N, K = _dims(trans_a, trans_b, A, B, C)
    if bias is not None and bias.shape[0] != N:
        raise ValueError(f"bias has {bias.shape[0]} values; expected N={N}.")
    if act != -1 and not act_is_elementwise(act):
        raise ValueError(f"act must be -1 (none) or an element-wise ACT_* code; got {act} (softmax "
                         "is row-wise).")
    if aux is not None and (aux.shape[0] != M or aux.shape[1] != N or bias is not None
                            or act == -1):
        raise ValueError(f"aux must be {M}x{N}, with act given and no bias (derivative epilogue).")
    cdef const KernelPath* kp = <const KernelPath*>PyCapsule_GetPointer(
        path_capsule(path), b"cprop._isa.KernelPath")
    cdef Epilogue epi
    cdef TileCallback cb
    epi.kind = EPI_BIAS_ACT if (bias is not None or act != -1) else EPI_NONE
    epi.act = act if act != -1 else ACT_IDENTITY
    epi.bias = <const void*>&bias[0] if bias is not None else NULL
    epi.aux = NULL
    epi.ldaux = 0
    epi.prefetch = NULL
    epi.zsave = NULL
    epi.ldz = 0
    if aux is not None:
        epi.kind = EPI_MUL_DERIV
        epi.aux = <const void*>&aux[0, 0] if M * N > 0 else NULL
        epi.ldaux = N
    _callback(kp, &epi, &cb)
    work_arr = np.empty(max(1, work_size(floating is float, M, N, K, n_threads)),
                        dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    cdef const floating* pa = &A[0, 0] if A.shape[0] * A.shape[1] > 0 else NULL
    cdef const floating* pb = &B[0, 0] if B.shape[0] * B.shape[1] > 0 else NULL
    cdef floating* pc = &C[0, 0] if C.shape[0] * C.shape[1] > 0 else NULL
    cdef intp_t m = M, n = N, k = K
    with nogil:
        gemm(&kp.gemm, trans_a, trans_b, m, n, k, <floating>1, pa, A.shape[1], pb, B.shape[1],
             <floating>0, pc, C.shape[1], &cb, &work[0], n_threads)


# the block table's layout, for cprop._engine's views
BLOCK_FIELDS = BLK_NFIELDS
BF_POFF_ = BF_POFF
BF_NIN_ = BF_NIN
