from cprop._typedefs cimport floating, intp_t
from cprop._prefetch cimport RowPrefetch
from cprop._isa cimport KernelPath
from cprop._dropout cimport Dropout

# A network and the layout of its buffers; every pointer is owned by the Python caller (a plan).
cdef struct NetSpec:
    int L                    # weight layers
    const intp_t* sizes      # L+1 layer widths, sizes[0] = n_features
    const int* acts          # L activation codes; acts[l] produces A_{l+1}; acts[L-1] is the output
    int loss                 # LOSS_* code paired with acts[L-1] (cprop._losses.LOSS_CODES)
    double loss_param        # the loss's parameter (cprop/_loss_list.py), 0 for a loss without
    const intp_t* w_off      # W_l (sizes[l] x sizes[l+1], row-major) at params + w_off[l]
    const intp_t* b_off      # b_l (sizes[l+1]) at params + b_off[l]
    const intp_t* a_off      # A_l (cap x sizes[l]) at work + a_off[l]   (l = 0..L)
    const intp_t* d_off      # D_l (cap x sizes[l]) at work + d_off[l]   (l = 1..L)
    const intp_t* z_off      # Z_l (cap x sizes[l]), the pre-activation of A_l, at work + z_off[l]
                             # when acts[l-1] reads z in its derivative (act_needs_z), else -1
    const intp_t* m_off      # A_l after dropout (cap x sizes[l]) at work + m_off[l] when layer l has
                             # a dropout rate, else -1
    const double* drop       # L+1 dropout rates, drop[l] for A_l (0: none)
    const Dropout* dropout   # the mask key of a training pass, or NULL (no dropout: inference,
                             # full-batch loss)
    intp_t y_off             # batch targets (cap x sizes[L])
    intp_t sw_off            # batch sample weights (cap)
    intp_t gemm_off          # GEMM packing workspace
    intp_t cap               # rows per pass
    int n_threads
    const KernelPath* path   # kernel path of the pass (one snapshot of cprop._isa.current_path())
    # -- the input block (typed per-feature layers before dense layer 0; make_plan, design note 9)
    intp_t n_in              # columns of the input X (sizes[0] when there is no input block)
    int n_block              # layers of the input block (0: none; dense layer 0 reads X)
    const intp_t* block      # n_block rows of BLK_NFIELDS values (the BF_* fields below)
    const intp_t* feat       # per periodic layer (from its BF_FEAT): for each input column, its
                             # index among the embedded columns, or -1 (passed through)
    # -- parameter segments (groups): the input block's, then W_0, b_0, W_1, b_1, ...
    int n_seg
    const intp_t* seg_off    # segment s: params + seg_off[s], seg_len[s] values
    const intp_t* seg_len
    const double* seg_lr     # learning-rate factor of segment s
    const double* seg_wd     # weight-decay factor (scales the L2 term alpha and AdamW's decay)
    const intp_t* seg_lo     # L+1 values: segments seg_lo[l]..seg_lo[l+1]-1 are updated right
                             # after dense layer l's backward (layer 0: the block's too)

# Kinds of input-block layer and the fields of a block row (NetSpec.block).
cdef enum:
    BLK_SCALE = 1            # y_j = s_j x_j
    BLK_PERIODIC = 2         # per embedded column: [W2 cos(2 pi w1 x + b1) + b2, x]; others: x
    BLK_EMBEDDING = 3        # per code column: table_e[x] (d values); others: x (block layer 0 only)

cdef enum:
    BF_KIND = 0
    BF_NIN = 1               # input columns
    BF_NOUT = 2              # output columns
    BF_POFF = 3              # parameters at params + BF_POFF
    BF_NPAR = 4              # parameter count
    BF_OUT = 5               # output (cap x n_out) at work + BF_OUT
    BF_DOUT = 6              # d loss / d output (cap x n_out) at work + BF_DOUT
    BF_PART = 7              # per-row-chunk partial gradients (chunks x n_par) at work + BF_PART
    BF_K = 8                 # periodic: frequencies per column; embedding: table rows in all
    BF_M = 9                 # periodic: outputs per column (besides x itself); embedding: d
    BF_FEAT = 10             # periodic, embedding: its column map at NetSpec.feat + BF_FEAT;
                             # embedding: then ne + 1 table row offsets (table e: rows
                             # rowoff[e]..rowoff[e+1]-1, the last one for missing/unknown)
    BF_NE = 11               # periodic, embedding: embedded columns
    BF_TRIG = 12             # periodic: cos and sin of each row's angles (cap x ne x 2k) at
                             # work + BF_TRIG, written by forward for backward
    BLK_NFIELDS = 13

# First-layer input of one pass of n rows: dense rows (ld = sizes[0]) or CSR rows.
cdef struct Input:
    bint sparse
    const void* dense
    const void* data
    const intp_t* indices
    const intp_t* indptr
    const intp_t* rows       # CSR row ids of the pass, or NULL for rows start..start+n-1
    intp_t start
    # Scratch of a CSR pass, owned by the caller: required when the pass runs backward (the
    # weight gradient groups the pass's entries by column there), unread by forward-only passes
    # (set NULL).  by_col_ptr: sizes[0] + 1 offsets; by_col_rows / by_col_vals (floating): room
    # for every stored entry of any pass (_train._sparse_backward_scratch sizes them).
    intp_t* by_col_ptr
    intp_t* by_col_rows
    void* by_col_vals

cdef void forward(const NetSpec* net, const floating* params, const Input* x, intp_t n,
                  floating* work, floating* out) noexcept nogil
cdef void backward_layer(const NetSpec* net, int l, const floating* params, const Input* x,
                         intp_t n, floating* work, floating* grad, bint accumulate,
                         const RowPrefetch* prefetch) noexcept nogil
cdef void colsum(const floating* D, intp_t n, intp_t m, floating* out, bint accumulate,
                 int n_threads) noexcept nogil
