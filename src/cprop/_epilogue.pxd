# What a layer's product does to each finished tile of C, run by the GEMM's per-tile callback while the
# tile is in L1: bias + activation (forward) or the activation derivative into the delta (backward),
# and the spreading of prefetches of the next mini-batch's rows over the product's tiles.
#
# Inline here so each kernel path's module compiles it with that path's flags (the AVX2 build
# vectorises 8-wide, the AVX-512 one 16-wide); cprop._isa hands the installed path's build to
# cprop._backprop.  The GEMM itself only sees a TileCallback (cprop._kernels).
from cprop._typedefs cimport floating, intp_t
from cprop._kernels cimport Tile, stile_t, dtile_t
from cprop._activations cimport act_forward_tile, act_backward_tile
from cprop._prefetch cimport RowPrefetch, prefetch_row_lines


cdef enum:
    EPI_NONE = 0
    EPI_BIAS_ACT = 1     # C := f(C + 1 bias^T)            (forward: bias + activation at write-back)
    EPI_MUL_DERIV = 2    # C := C * f'(.) written via aux  (backward: activation derivative into delta)
    EPI_BIAS_ACT_Z = 3   # as EPI_BIAS_ACT, and zsave := C + 1 bias^T (the pre-activation, for the
                         # activations whose derivative reads z: _activations.act_needs_z)

cdef struct Epilogue:
    int kind
    int act              # an ACT_* code from _activations
    const void* bias     # floating[N] or NULL
    const void* aux      # floating[M, ldaux] (the layer's activations) for EPI_MUL_DERIV
    intp_t ldaux
    const RowPrefetch* prefetch   # rows to prefetch while the product runs, or NULL
    void* zsave          # floating[M, ldz]: pre-activations written by EPI_BIAS_ACT_Z (else unread)
    intp_t ldz

# One path's builds of the callback.
cdef struct EpilogueTable:
    stile_t s_tile
    dtile_t d_tile


cdef inline void epilogue_tile(const Epilogue* epi, floating* c, intp_t ldc, intp_t i0, intp_t j0,
                               intp_t m, intp_t n) noexcept nogil:
    """The m x n tile at c (rows i0.., columns j0.. of the product) := its epilogue."""
    cdef const floating* bias = <const floating*>epi.bias
    if epi.kind == EPI_BIAS_ACT:
        act_forward_tile(c, ldc, (bias + j0) if bias != NULL else NULL, m, n, epi.act, NULL, 0)
    elif epi.kind == EPI_BIAS_ACT_Z:
        act_forward_tile(c, ldc, (bias + j0) if bias != NULL else NULL, m, n, epi.act,
                         <floating*>epi.zsave + i0 * epi.ldz + j0, epi.ldz)
    elif epi.kind == EPI_MUL_DERIV:
        act_backward_tile(c, ldc, <const floating*>epi.aux + i0 * epi.ldaux + j0, epi.ldaux, m, n,
                          epi.act)


cdef inline void epilogue_callback(const void* data, floating* c, intp_t ldc,
                                   const Tile* t) noexcept nogil:
    """The per-tile callback: the epilogue once the tile is finished, and this tile's share of the
    prefetch lines (tile t of T fetches lines t*per .. t*per+per-1, per = ceil(lines / T))."""
    cdef const Epilogue* epi = <const Epilogue*>data
    cdef intp_t per
    if t.last_k and epi.kind != EPI_NONE:
        epilogue_tile(epi, c, ldc, t.i0, t.j0, t.m, t.n)
    if epi.prefetch != NULL and epi.prefetch.n_rows > 0:
        per = (epi.prefetch.n_rows * ((epi.prefetch.row_bytes + 63) // 64 + 1) + t.count - 1) // t.count
        prefetch_row_lines(epi.prefetch, t.index * per, per)
