"""C := alpha*op(A)*op(B) + beta*C, our own GEMM in the BLIS design (row-major, float32/float64).

Design
1. Five loops around a micro-kernel (BLIS KernelsHowTo): loop 5 (jc) over column blocks of C with
   op(B) packed into B~ for all of K, loop 4 (pc) over KC of the shared dimension, loop 3 (ic) over
   MC rows with op(A) packed into A~, loop 2 (jr) over NR-wide panels of B~, loop 1 (ir) over
   MR-tall panels of A~, and the micro-kernel computing one MR x NR tile of C in registers.
2. Transposes live in packing only: op(A)(i, p) = A[i*rsa + p*csa], op(B)(p, j) = B[p*rsb + j*csb].
   X*W (forward), X^T*D (weight gradient) and D*W^T (input gradient) are the same code.
3. Packed panels are zero-padded to MR/NR, so the micro-kernel never branches on edges; it applies
   alpha, beta and the edge mask only at write-back, and with beta == 0 it never reads C.  A last
   B~ panel of at most NR/2 columns is packed NR/2 wide for a half-width kernel (N = 100 with
   NR = 16: 6 full panels + 4 columns).
4. When N spans few B~ panels (the MLP case), packing A costs about what it saves: the micro-kernel
   takes A's strides and reads op(A) in place (row-major X, D; or MR consecutive values of a row of
   X per k step for X^T), packing only a partial last MR panel (the path's direct_a_max_n / direct_at_max_n).
5. The GEMM knows nothing of networks.  It takes a kernel context (cprop._kernels.GemmContext: the
   micro-kernels and register/cache blocks of one instruction set, chosen by cprop._isa) and an
   optional per-tile callback, called after each micro-kernel call with the tile's place in the
   product (a network uses it for bias + activation at write-back and to spread prefetches).
6. Threads: B~ is packed cooperatively, then tasks (MR-aligned row ranges x NR-aligned panel
   ranges, about TASKS_PER_THREAD per thread) are taken dynamically, each with its own A~; one
   parallel region and one barrier per column block.  Each C element is owned by one task and its
   k-sum runs in one fixed order (kc from K and the path alone), so results are bitwise identical
   for any thread count.  Products under GEMM_SERIAL_FLOPS run on the calling thread (the same
   loop, OpenMP's ``if`` clause off).
7. A weight gradient with few outputs (X^T D with N <= SMALL_TN_MAX_N, one k-block, serial size,
   alpha 1, beta 0 or 1, no callback) runs as C^T = D^T X (``_gemm_tn_small``): X's rows are
   copied whole into B~ panels (contiguous copies) instead of packing X^T value by value into
   MR-tall A~ panels, and the micro-kernel covers N rows of C^T instead of N <= 16 of NR columns
   of C.  Each element is the same chain of multiply-adds over k in the same order, and with
   alpha 1 and beta 0 or 1 every write-back form rounds alike, so C is bitwise what the general
   loops give (tests/engine/test_gemm.py compares the two on every path).
8. ``gemm`` returns 0, or GEMM_NO_MEMORY when it had to allocate its workspace and could not
   (C untouched); callers in cprop pass a workspace sized by ``gemm_work_size``, valid for every
   kernel path.
"""
from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free
from libc.stdint cimport uintptr_t

import numpy as np

from cprop._typedefs cimport floating, intp_t
from cprop._config cimport (S_MC_MAX, S_KC_MAX, D_MC_MAX, D_KC_MAX, GEMM_SERIAL_FLOPS, NR_MAX,
                            BPACK_MAX, TASKS_PER_THREAD, DIRECT_A_OUTER)
# the run-time copy of GEMM_SERIAL_FLOPS and the team-size probe, both for tests
from cprop._openmp cimport thresholds, note_team, TEAM_GEMM
from cprop._kernels cimport GemmContext, Tile, TileCallback, sukernel_t, dukernel_t
from cpython.pycapsule cimport PyCapsule_GetPointer


# Everything one product needs below loop 5, so each loop is a small function of (product, indices).
# Pointers are void (one struct for both dtypes); the fused functions cast them back.
cdef struct _Product:
    const GemmContext* ctx
    intp_t M
    intp_t N
    intp_t K
    const void* A            # op(A)(i, p) = A[i*rsa + p*csa]
    intp_t rsa
    intp_t csa
    bint direct_a            # op(A) read in place (design note 4)
    bint a_outer             # loop 1 outside loop 2 (with direct_a)
    double alpha
    double beta
    void* C
    intp_t ldc
    intp_t mr
    intp_t nr
    intp_t mc
    intp_t kc                # balanced k-block (from K and the path only)
    intp_t n_mp              # MR panels of C
    intp_t n_qt              # NR panels of C
    intp_t n_tiles           # tiles of the whole product, all k-blocks (for the callback)
    const TileCallback* cb
    # the current column block (loop 5)
    const void* bpack        # B~ for all of K: k-block pc starts at bpack + pc * npad
    intp_t jc
    intp_t ncur
    intp_t npad


# ---- block sizes -----------------------------------------------------------------------------------
cdef inline intp_t _round_up(intp_t x, intp_t m) noexcept nogil:
    return ((x + m - 1) // m) * m


cdef inline intp_t _min(intp_t a, intp_t b) noexcept nogil:
    return a if a < b else b


cdef inline bint _aliased_rows(intp_t row_bytes, intp_t alias_bytes) noexcept nogil:
    """True when rows row_bytes apart fall in one cache set (a multiple of alias_bytes; 0: never)."""
    return alias_bytes > 0 and row_bytes % alias_bytes == 0


cdef inline intp_t _balanced(intp_t total, intp_t block, intp_t mult) noexcept nogil:
    """Block size <= ``block`` (a multiple of ``mult``) splitting ``total`` into equal parts.

    K = 784 with KC = 256 gives four k-blocks of 196 rather than 256, 256, 256, 16: the short last
    block would pay a full write-back of C for little work.
    """
    cdef intp_t nb = (total + block - 1) // block
    # block is a multiple of mult, so the result never exceeds it
    return _min(block, _round_up((total + nb - 1) // nb, mult))


cdef inline int _gemm_threads(intp_t M, intp_t N, intp_t K, int n_threads) noexcept nogil:
    """Threads for an M x N x K product: 1 under GEMM_SERIAL_FLOPS (read at run time, so tests
    can lower it: _openmp.pxd)."""
    if n_threads <= 1 or 2.0 * M * N * K < thresholds.gemm_serial_flops:
        return 1
    return n_threads


cdef inline intp_t _b_cols(intp_t N, intp_t K, intp_t nr) noexcept nogil:
    """Columns of op(B) packed at once (loop 5 block): B~ holds all of K for them, at most
    BPACK_MAX elements (so K x NC never grows without bound), at least one NR panel."""
    cdef intp_t nc = (BPACK_MAX // (K if K > 0 else 1)) // nr * nr
    if nc < nr:
        nc = nr
    return nc if nc < N else N


cdef intp_t gemm_work_size(bint is_float, intp_t M, intp_t N, intp_t K, int n_threads) noexcept nogil:
    """Elements of workspace gemm needs: the shared B~ (all of K x a block of columns) and one A~
    (MC x KC) per thread, plus alignment slack.

    An upper bound valid for every kernel path (NR <= NR_MAX divides NR_MAX; MC, KC within
    _config's bounds, checked by cprop._isa), so a plan made under one path stays valid after
    ``set_kernel``.  One A~ per thread of ``n_threads`` even when the product is small enough to
    run on one (GEMM_SERIAL_FLOPS): the threshold is read at run time and a test may lower it after
    the workspace was sized (only the threads that run write their A~).
    """
    cdef intp_t mc = S_MC_MAX if is_float else D_MC_MAX
    cdef intp_t kc = S_KC_MAX if is_float else D_KC_MAX
    cdef int nt = n_threads if n_threads > 1 else 1
    cdef intp_t kk = K if K > 0 else 1
    return (kk * _round_up(_b_cols(N if N > 0 else 1, kk, NR_MAX), NR_MAX)
            + nt * (mc * _min(kc, kk) + 32) + 64)


cdef inline floating* _align64(floating* p) noexcept nogil:
    return <floating*>((<uintptr_t>p + 63) & ~(<uintptr_t>63))


# ---- packing (loops 3 and 4) -----------------------------------------------------------------------
# A~ layout: ceil(mc/MR) panels; panel r holds rows r*MR.. as kc columns of MR values:
#     A~[r*MR*kc + p*MR + i] = op(A)(ic + r*MR + i, pc + p), zero for rows past the edge.
# B~ layout: ceil(nc/NR) panels; panel q holds columns q*NR.. as kc rows of NR values:
#     B~[q*NR*kc + p*NR + j] = op(B)(pc + p, jc + q*NR + j), zero for columns past the edge.
cdef void _pack_a_panel(const floating* A, intp_t rsa, intp_t csa, intp_t m, intp_t kc, intp_t mr,
                        floating* dst) noexcept nogil:
    """One MR-tall panel of op(A) (m <= MR valid rows, kc columns) into dst."""
    cdef intp_t i, p
    if csa == 1:
        for i in range(m):
            for p in range(kc):
                dst[p * mr + i] = A[i * rsa + p]
    else:
        for p in range(kc):
            for i in range(m):
                dst[p * mr + i] = A[i * rsa + p * csa]
    if m < mr:
        for p in range(kc):
            for i in range(m, mr):
                dst[p * mr + i] = 0


cdef void _pack_b_panel(const floating* B, intp_t rsb, intp_t csb, intp_t n, intp_t kc, intp_t nr,
                        floating* dst) noexcept nogil:
    """One NR-wide panel of op(B) (kc rows, n <= NR valid columns) into dst."""
    cdef intp_t j, p
    if csb == 1:
        for p in range(kc):
            for j in range(n):
                dst[p * nr + j] = B[p * rsb + j]
            for j in range(n, nr):
                dst[p * nr + j] = 0
    else:
        for j in range(n):
            for p in range(kc):
                dst[p * nr + j] = B[p * rsb + j * csb]
        if n < nr:
            for p in range(kc):
                for j in range(n, nr):
                    dst[p * nr + j] = 0


# ---- loops 2 and 1 around the micro-kernel (the macro-kernel) ----------------------------------------
cdef inline intp_t _panel_width(const _Product* P, bint is_float, intp_t n) noexcept nogil:
    """Width of the B~ panel holding n <= NR valid columns: NR/2 when a half kernel can take it."""
    if n * 2 <= P.nr and ((is_float and P.ctx.s.fn_half != NULL)
                          or (not is_float and P.ctx.d.fn_half != NULL)):
        return P.nr // 2
    return P.nr


cdef void _macro_kernel(const _Product* P, const floating* a, bint direct, intp_t rsa, intp_t csa,
                        const floating* aedge, intp_t ic, intp_t mcur, intp_t pc, intp_t kcur,
                        intp_t q0, intp_t q1, floating beta_k) noexcept nogil:
    """C[ic:ic+mcur, panels q0..q1-1 of the column block] (+)= alpha * A * B~ for one k-block.

    A is either the packed A~ (``direct`` false) or op(A) read in place with strides (rsa, csa),
    its partial last MR panel packed, zero-padded, at ``aedge``.
    """
    cdef intp_t q, r, m, n, j, i, o, v, n_out, n_in, ars, acs
    cdef intp_t mr = P.mr, nr = P.nr, ldc = P.ldc
    cdef intp_t n_rp = (mcur + mr - 1) // mr
    cdef floating alpha = <floating>P.alpha
    cdef floating* ct
    cdef const floating* ap
    cdef const floating* bblk = (<const floating*>P.bpack) + pc * P.npad
    cdef bint half
    cdef sukernel_t sfn
    cdef dukernel_t dfn
    cdef bint is_float = floating is float
    cdef bint a_outer = direct and P.a_outer
    cdef Tile tile
    cdef intp_t kb = pc // P.kc
    tile.count = P.n_tiles
    tile.last_k = pc + kcur >= P.K
    # With A read in place, its MR rows are the scattered operand: keep one MR panel of A in L1
    # across the NR panels of B~ (loop 1 outside loop 2), B~ streaming from L2 as one sequential
    # stream.  Packed A~ keeps BLIS's order (a B~ panel in L1 across the A~ panels).
    n_out = n_rp if a_outer else q1 - q0
    n_in = q1 - q0 if a_outer else n_rp
    for o in range(n_out):                        # loop 2 (jr) over loop 1 (ir), or the reverse
        for v in range(n_in):
            if a_outer:
                r = o
                q = q0 + v
            else:
                q = q0 + o
                r = v
            j = q * nr
            n = _min(nr, P.ncur - j)
            half = _panel_width(P, is_float, n) != nr
            i = r * mr
            m = _min(mr, mcur - i)
            ct = (<floating*>P.C) + (ic + i) * ldc + P.jc + j
            if not direct:
                ap = a + r * mr * kcur
                ars = 1
                acs = mr
            elif m == mr:
                ap = a + i * rsa
                ars = rsa
                acs = csa
            else:
                ap = aedge
                ars = 1
                acs = mr
            if floating is float:
                sfn = P.ctx.s.fn_half if half else P.ctx.s.fn
                sfn(kcur, alpha, ap, ars, acs, bblk + q * nr * kcur, beta_k, ct, ldc, m, n)
            else:
                dfn = P.ctx.d.fn_half if half else P.ctx.d.fn
                dfn(kcur, alpha, ap, ars, acs, bblk + q * nr * kcur, beta_k, ct, ldc, m, n)
            if P.cb != NULL:
                tile.i0 = ic + i
                tile.j0 = P.jc + j
                tile.m = m
                tile.n = n
                tile.index = (kb * P.n_mp + (ic + i) // mr) * P.n_qt + (P.jc + j) // nr
                if floating is float:
                    P.cb.s(P.cb.data, ct, ldc, &tile)
                else:
                    P.cb.d(P.cb.data, ct, ldc, &tile)


cdef void _scale_c(const TileCallback* cb, intp_t M, intp_t N, floating beta, floating* C,
                   intp_t ldc) noexcept nogil:
    """C := beta*C (C never read when beta == 0), then the callback on all of C as one finished
    tile: the K == 0 or alpha == 0 case."""
    cdef intp_t i, j
    cdef Tile tile
    for i in range(M):
        for j in range(N):
            C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
    if cb != NULL:
        tile.i0 = 0
        tile.j0 = 0
        tile.m = M
        tile.n = N
        tile.index = 0
        tile.count = 1
        tile.last_k = True
        if floating is float:
            cb.s(cb.data, C, ldc, &tile)
        else:
            cb.d(cb.data, C, ldc, &tile)


cdef inline void _pack_b(const _Product* P, const floating* B, intp_t rsb, intp_t csb, intp_t pc,
                         intp_t q) noexcept nogil:
    """Panel q of k-block pc of B~ (the last panel possibly NR/2 wide, see _panel_width)."""
    cdef intp_t kcur = _min(P.kc, P.K - pc)
    cdef intp_t n = _min(P.nr, P.ncur - q * P.nr)
    cdef bint is_float = floating is float
    _pack_b_panel(B + pc * rsb + (P.jc + q * P.nr) * csb, rsb, csb, n, kcur,
                  _panel_width(P, is_float, n),
                  (<floating*>P.bpack) + pc * P.npad + q * P.nr * kcur)


cdef void _task(const _Product* P, intp_t r0, intp_t r1, intp_t q0, intp_t q1,
                floating* apack) noexcept nogil:
    """Rows r0..r1 x NR panels q0..q1 of the current column block of C, over all of K.

    loop 4 (pc) over k-blocks of the shared B~, loop 3 (ic) over MC rows of op(A) (packed into this
    thread's A~, or read in place), then the macro-kernel (loops 2 and 1).
    """
    cdef intp_t pc = 0, kcur, ic, mcur, qb
    cdef intp_t mr = P.mr, rsa = P.rsa, csa = P.csa
    cdef const floating* A = <const floating*>P.A
    cdef floating beta_k
    while pc < P.K:                                      # loop 4 (pc): KC of the shared dimension
        kcur = _min(P.kc, P.K - pc)
        beta_k = <floating>P.beta if pc == 0 else 1
        ic = r0
        while ic < r1:                                   # loop 3 (ic): MC rows of op(A)
            mcur = _min(P.mc, r1 - ic)
            if P.direct_a:
                # the micro-kernel reads op(A) in place; only a partial last MR panel is packed
                if mcur % mr:
                    qb = mcur // mr
                    _pack_a_panel(A + (ic + qb * mr) * rsa + pc * csa, rsa, csa,
                                  mcur - qb * mr, kcur, mr, apack)
                _macro_kernel(P, A + ic * rsa + pc * csa, True, rsa, csa, apack, ic, mcur, pc,
                              kcur, q0, q1, beta_k)
            else:
                for qb in range(0, (mcur + mr - 1) // mr):
                    _pack_a_panel(A + (ic + qb * mr) * rsa + pc * csa, rsa, csa,
                                  _min(mr, mcur - qb * mr), kcur, mr, apack + qb * mr * kcur)
                _macro_kernel(P, apack, False, 1, mr, apack, ic, mcur, pc, kcur, q0, q1, beta_k)
            ic += mcur
        pc += kcur


# ---- a weight gradient with few outputs, transposed (design note 7) --------------------------------
# Outputs up to which X^T D runs as (D^T X)^T: the digits (10) and binary (1) output layers' weight
# gradients; 100x10x200 float32 on the avx512 path (AMD Zen 4, 1 thread) took 11.9 us through the
# general loops, most of it packing X^T value by value.
cdef enum:
    SMALL_TN_MAX_N = 16
cdef bint _small_tn_on = True          # tests switch it off to compare with the general loops
cdef Py_ssize_t _small_tn_calls = 0    # products it ran (tests; not exact under concurrent calls)


cdef inline intp_t _small_tn_size(intp_t M, intp_t N, intp_t K, intp_t mr, intp_t nr) noexcept nogil:
    """Workspace elements of _gemm_tn_small: B~ (all of X), A~ (D^T), C^T, and alignment slack."""
    return K * _round_up(M, nr) + K * _round_up(N, mr) + N * M + 3 * 16


cdef void _gemm_tn_small(const GemmContext* ctx, intp_t M, intp_t N, intp_t K, floating alpha,
                         const floating* A, intp_t lda, const floating* B, intp_t ldb,
                         floating beta, floating* C, intp_t ldc, floating* work) noexcept nogil:
    """C := alpha*A^T*B + beta*C (A: K x M, B: K x N, one k-block) as C^T := alpha*B^T*A +
    beta*C^T in ``work``, then C := that transposed."""
    cdef intp_t mr, nr, q, r, m, n, w, i, j
    cdef bint has_half
    if floating is float:
        mr, nr, has_half = ctx.s.mr, ctx.s.nr, ctx.s.fn_half != NULL
    else:
        mr, nr, has_half = ctx.d.mr, ctx.d.nr, ctx.d.fn_half != NULL
    cdef intp_t n_q = (M + nr - 1) // nr, n_p = (N + mr - 1) // mr
    cdef floating* bpack = _align64(work)
    cdef floating* apack = _align64(bpack + K * n_q * nr)
    cdef floating* ct = _align64(apack + K * n_p * mr)
    for q in range(n_q):             # B~ := X, NR-wide panels of whole rows (the last maybe NR/2)
        n = _min(nr, M - q * nr)
        w = nr // 2 if (n * 2 <= nr and has_half) else nr
        _pack_b_panel(A + q * nr, lda, 1, n, K, w, bpack + q * nr * K)
    for r in range(n_p):             # A~ := D^T, MR-tall panels
        _pack_a_panel(B + r * mr, 1, ldb, _min(mr, N - r * mr), K, mr, apack + r * mr * K)
    if beta != 0:
        for j in range(N):
            for i in range(M):
                ct[j * M + i] = C[i * ldc + j]
    for r in range(n_p):
        m = _min(mr, N - r * mr)
        for q in range(n_q):
            n = _min(nr, M - q * nr)
            if floating is float:
                if n * 2 <= nr and has_half:
                    ctx.s.fn_half(K, alpha, apack + r * mr * K, 1, mr, bpack + q * nr * K, beta,
                                  ct + r * mr * M + q * nr, M, m, n)
                else:
                    ctx.s.fn(K, alpha, apack + r * mr * K, 1, mr, bpack + q * nr * K, beta,
                             ct + r * mr * M + q * nr, M, m, n)
            else:
                if n * 2 <= nr and has_half:
                    ctx.d.fn_half(K, alpha, apack + r * mr * K, 1, mr, bpack + q * nr * K, beta,
                                  ct + r * mr * M + q * nr, M, m, n)
                else:
                    ctx.d.fn(K, alpha, apack + r * mr * K, 1, mr, bpack + q * nr * K, beta,
                             ct + r * mr * M + q * nr, M, m, n)
    for i in range(M):
        for j in range(N):
            C[i * ldc + j] = ct[j * M + i]


cdef int gemm(const GemmContext* ctx, bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
              floating alpha, const floating* A, intp_t lda, const floating* B, intp_t ldb,
              floating beta, floating* C, intp_t ldc, const TileCallback* cb, floating* work,
              int n_threads) noexcept nogil:
    """C := alpha*op(A)*op(B) + beta*C with ``ctx``'s kernels, calling ``cb`` (or NULL) per tile.

    Per block of columns (loop 5): op(B) is packed for all of K into a shared B~ (threads split
    the panels), then C is cut into tasks (ranges of MR rows x ranges of NR panels) that threads
    take dynamically, each running loops 4..1 with its own A~.  An element's arithmetic depends
    only on K's blocking and on whether its tile is an edge tile (from the shape and the path),
    never on tasks or threads: results are bitwise identical for any thread count.
    ``work`` (gemm_work_size elements) may be NULL: then it is allocated here, and GEMM_NO_MEMORY
    is returned, C untouched, if that fails.  Returns 0 otherwise.
    """
    global _small_tn_calls
    cdef _Product P
    cdef intp_t rsb, csb, nc, t, u, n_rt, n_ct, n_tasks, n_units, n_q, a_size
    cdef floating* owned = NULL
    cdef floating* bpack
    cdef floating* abase
    cdef int nt
    cdef bint is_float = floating is float

    if M <= 0 or N <= 0:
        return 0
    if K <= 0 or alpha == 0:
        _scale_c(cb, M, N, beta, C, ldc)
        return 0
    P.ctx = ctx
    P.M = M
    P.N = N
    P.K = K
    P.A = <const void*>A
    P.rsa = 1 if trans_a else lda
    P.csa = lda if trans_a else 1
    rsb = 1 if trans_b else ldb
    csb = ldb if trans_b else 1
    P.alpha = alpha
    P.beta = beta
    P.C = <void*>C
    P.ldc = ldc
    P.cb = cb
    if is_float:
        P.mr = ctx.s.mr
        P.nr = ctx.s.nr
        P.mc = ctx.s.mc
        P.kc = _balanced(K, ctx.s.kc, 8)
        nc = _balanced(N, _min(ctx.s.nc, _b_cols(N, K, NR_MAX)), P.nr)
    else:
        P.mr = ctx.d.mr
        P.nr = ctx.d.nr
        P.mc = ctx.d.mc
        P.kc = _balanced(K, ctx.d.kc, 8)
        nc = _balanced(N, _min(ctx.d.nc, _b_cols(N, K, NR_MAX)), P.nr)
    nt = _gemm_threads(M, N, K, n_threads)
    if (_small_tn_on and trans_a and not trans_b and cb == NULL and N <= SMALL_TN_MAX_N
            and N < M and K <= P.kc and nt == 1 and alpha == 1 and (beta == 0 or beta == 1)
            and work != NULL
            and _small_tn_size(M, N, K, P.mr, P.nr) <= gemm_work_size(is_float, M, N, K, 1)):
        _gemm_tn_small(ctx, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work)
        _small_tn_calls += 1
        return 0
    # Read op(A) in place when N spans few B~ panels, so packing A would cost about as much as
    # it saves: row-major op(A) (csa == 1: forward X W, input gradient D W^T) or column-major
    # (rsa == 1: weight gradient A^T D, MR consecutive values of a row per k step).
    # A row-major op(A) whose rows span a multiple of ctx.direct_a_alias_bytes is packed anyway
    # (its MR rows would share one L1 set: _kernels.pxd, GemmContext).
    P.direct_a = ctx.direct_a and ((P.csa == 1 and P.rsa != 1 and N <= ctx.direct_a_max_n
                                    and not _aliased_rows(P.rsa * <intp_t>sizeof(floating),
                                                          ctx.direct_a_alias_bytes))
                                   or (P.rsa == 1 and P.csa != 1 and N <= ctx.direct_at_max_n))
    P.a_outer = DIRECT_A_OUTER
    P.n_mp = (M + P.mr - 1) // P.mr
    P.n_qt = (N + P.nr - 1) // P.nr
    P.n_tiles = ((K + P.kc - 1) // P.kc) * P.n_mp * P.n_qt
    if work == NULL:
        owned = <floating*>malloc(gemm_work_size(is_float, M, N, K, nt) * sizeof(floating))
        if owned == NULL:
            return GEMM_NO_MEMORY
        work = owned
    bpack = _align64(work)
    P.bpack = <const void*>bpack
    abase = _align64(bpack + K * _round_up(nc, P.nr))
    a_size = P.mc * _min(P.kc, K) + 32                   # one thread's A~

    P.jc = 0
    while P.jc < N:                                      # loop 5 (jc): columns of C
        P.ncur = _min(nc, N - P.jc)
        n_q = (P.ncur + P.nr - 1) // P.nr
        P.npad = n_q * P.nr
        # Tasks: row ranges first (no duplicated packing), then column ranges if rows run out;
        # about TASKS_PER_THREAD per thread so dynamic scheduling can balance.
        n_rt = _min(P.n_mp, nt * TASKS_PER_THREAD) if nt > 1 else 1
        n_ct = _min(n_q, (nt * TASKS_PER_THREAD + n_rt - 1) // n_rt) if nt > 1 else 1
        n_tasks = n_rt * n_ct
        n_units = ((K + P.kc - 1) // P.kc) * n_q         # (k-block, panel) pairs of B~
        if nt > 1:
            with parallel(num_threads=nt):
                note_team(TEAM_GEMM)
                for u in prange(n_units, schedule='static'):
                    _pack_b(&P, B, rsb, csb, (u // n_q) * P.kc, u % n_q)
                for t in prange(n_tasks, schedule='dynamic'):
                    _task(&P, _min(M, ((t // n_ct) * P.n_mp // n_rt) * P.mr),
                          _min(M, ((t // n_ct + 1) * P.n_mp // n_rt) * P.mr),
                          (t % n_ct) * n_q // n_ct, (t % n_ct + 1) * n_q // n_ct,
                          abase + threadid() * a_size)
        else:       # one thread: no parallel region (_config.pxd, serial loops)
            for u in range(n_units):
                _pack_b(&P, B, rsb, csb, (u // n_q) * P.kc, u % n_q)
            _task(&P, 0, M, 0, n_q, abase)
        P.jc += P.ncur
    if owned != NULL:
        free(owned)
    return 0


# ---- plain reference GEMM, for tests ---------------------------------------------------------------
cdef void gemm_naive(bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
                     floating alpha, const floating* A, intp_t lda, const floating* B, intp_t ldb,
                     floating beta, floating* C, intp_t ldc) noexcept nogil:
    """C := alpha*op(A)*op(B) + beta*C by the triple loop, accumulating in double."""
    cdef intp_t i, j, p
    cdef double s
    for i in range(M):
        for j in range(N):
            s = 0
            for p in range(K):
                s += <double>(A[p * lda + i] if trans_a else A[i * lda + p]) * \
                     <double>(B[j * ldb + p] if trans_b else B[p * ldb + j])
            C[i * ldc + j] = <floating>(alpha * s) if beta == 0 else <floating>(alpha * s + beta * C[i * ldc + j])


# ---- Python wrappers (validation once, then nogil) -------------------------------------------------
def _dims(trans_a, trans_b, A, B, C):
    M, K = (A.shape[1], A.shape[0]) if trans_a else (A.shape[0], A.shape[1])
    Kb, N = (B.shape[1], B.shape[0]) if trans_b else (B.shape[0], B.shape[1])
    if K != Kb or C.shape[0] != M or C.shape[1] != N:
        raise ValueError(
            f"gemm shapes do not match: op(A) is {M}x{K}, op(B) is {Kb}x{N}, C is "
            f"{C.shape[0]}x{C.shape[1]}; expected op(A) M x K, op(B) K x N, C M x N."
        )
    return M, N, K


cdef const GemmContext* context_from_capsule(object capsule) except NULL:
    """The GemmContext in a capsule from ``cprop._isa.gemm_context`` (raises if it is not one)."""
    return <const GemmContext*>PyCapsule_GetPointer(capsule, b"cprop._kernels.GemmContext")


def gemm_py(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
            const floating[:, ::1] B, double beta, floating[:, ::1] C, int n_threads=1,
            path=None, bint reference=False):
    """C := alpha*op(A)*op(B) + beta*C in place (C-contiguous arrays of one dtype).

    ``path`` names the kernel path (None: the installed one, see ``cprop._isa``); ``reference``
    runs the plain triple loop instead (tests only).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._gemm import gemm_py
    >>> A = np.ones((2, 3)); B = np.ones((3, 4)); C = np.empty((2, 4))
    >>> gemm_py(False, False, 1.0, A, B, 0.0, C)
    >>> C[0, 0]
    np.float64(3.0)
    """
    from cprop._isa import gemm_context
    M, N, K = _dims(trans_a, trans_b, A, B, C)
    cdef const GemmContext* ctx = context_from_capsule(gemm_context(path))
    cdef const floating* pa = &A[0, 0] if A.shape[0] * A.shape[1] > 0 else NULL
    cdef const floating* pb = &B[0, 0] if B.shape[0] * B.shape[1] > 0 else NULL
    cdef floating* pc = &C[0, 0] if C.shape[0] * C.shape[1] > 0 else NULL
    cdef intp_t lda = A.shape[1], ldb = B.shape[1], ldc = C.shape[1]
    cdef intp_t m = M, n = N, k = K
    # The workspace comes from numpy, so an allocation failure is a MemoryError here.
    work_arr = np.empty(max(1, gemm_work_size(floating is float, m, n, k, n_threads)),
                        dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    with nogil:
        if reference:
            gemm_naive(trans_a, trans_b, m, n, k, <floating>alpha, pa, lda, pb, ldb,
                       <floating>beta, pc, ldc)
        else:
            gemm(ctx, trans_a, trans_b, m, n, k, <floating>alpha, pa, lda, pb, ldb,
                 <floating>beta, pc, ldc, NULL, &work[0], n_threads)


def _gemm_no_workspace(double alpha, const double[:, ::1] A, const double[:, ::1] B,
                       double[:, ::1] C):
    """gemm with work = NULL (it allocates its own workspace); returns its status (tests)."""
    from cprop._isa import gemm_context
    cdef intp_t M, N, K
    M, N, K = _dims(False, False, A, B, C)
    cdef const GemmContext* ctx = context_from_capsule(gemm_context(None))
    cdef int status
    with nogil:
        status = gemm(ctx, False, False, M, N, K, alpha, &A[0, 0],
                      A.shape[1], &B[0, 0], B.shape[1], 0.0, &C[0, 0], C.shape[1], NULL, NULL, 1)
    return status


def _set_small_tn(bint on):
    """Switch the transposed small-N weight-gradient product (design note 7) on or off (tests);
    returns the previous setting."""
    global _small_tn_on
    old = _small_tn_on
    _small_tn_on = on
    return old


def _small_tn_count():
    """Products run by the transposed small-N path so far (tests)."""
    return _small_tn_calls


def work_size(bint is_float, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int n_threads):
    """Elements of workspace ``gemm`` needs for an M x N x K product on n_threads (any path)."""
    return gemm_work_size(is_float, M, N, K, n_threads)


def workspace_bounds():
    """What every kernel path's blocks must fit (cprop._isa checks each path against it)."""
    return {"nr_max": NR_MAX, "float32": (S_MC_MAX, S_KC_MAX), "float64": (D_MC_MAX, D_KC_MAX),
            "serial_flops": GEMM_SERIAL_FLOPS}
