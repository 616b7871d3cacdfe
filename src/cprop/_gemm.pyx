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
   B~ panel of at most NR/2 columns is packed NR/2 wide for a half-width kernel (N = 100: 6 full
   panels + 4 columns).
4. When N spans few B~ panels (the MLP case), packing A costs about what it saves: the micro-kernel
   takes A's strides and reads op(A) in place (row-major X, D; or MR consecutive values of a row of
   X per k step for X^T), packing only a partial last MR panel (DIRECT_A*_MAX_N in _gemm_config).
5. An optional epilogue runs on each tile right after its last k-block is written, while the tile is
   in L1: bias + activation (forward) or the activation derivative (backward).  The epilogue may
   also name rows to prefetch (the next mini-batch's rows of X): their cache lines are spread
   evenly over the tiles, a few after each micro-kernel call, so the loads overlap arithmetic.
6. Threads: B~ is packed cooperatively, then tasks (MR-aligned row ranges x NR-aligned panel
   ranges, about TASKS_PER_THREAD per thread) are taken dynamically, each with its own A~; one
   parallel region and one barrier per column block.  Each C element is owned by one task and its
   k-sum runs in one fixed order (kc from K alone), so results are bitwise identical for any thread
   count.  Products under GEMM_SERIAL_FLOPS run on the calling thread.
7. Micro-kernels come from a table (``_kern``, see _kernels.pxd): the portable reference kernels here,
   or an instruction-set module (``_kernels_avx2``, built with -mavx2 -mfma) imported only after
   CPU detection.  ``CPROP_KERNEL=reference|avx2|auto`` picks at import, ``set_kernel`` at run time;
   ``gemm`` copies the table once per call.  Block sizes and workspace never depend on the kernel.
"""
from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free
from libc.math cimport NAN
from libc.stdint cimport uintptr_t

import numpy as np

from cprop._typedefs cimport floating, intp_t
from cprop._gemm_config cimport (S_MC, S_KC, S_NC, D_MC, D_KC, D_NC, GEMM_SERIAL_FLOPS, NR_MAX,
                                 BPACK_MAX, TASKS_PER_THREAD, DIRECT_A_MAX_N,
                                 DIRECT_AT_MAX_N, DIRECT_A_OUTER)
from cprop._kernels cimport KernelTable, sukernel_t, dukernel_t
from cpython.pycapsule cimport PyCapsule_GetPointer
from cprop._activations cimport ACT_SOFTMAX
from cprop._epilogue cimport epilogue_tile
from cprop._optim cimport Optim, update_chunk
from cprop._prefetch cimport RowPrefetch, prefetch_row_lines


# Prefetch work of one product: tile t (numbered k-block, then MR panel, then NR panel) fetches
# lines t*per .. t*per+per-1 of the rows.
cdef struct _PfPlan:
    const RowPrefetch* rows
    intp_t per
    intp_t n_mp              # MR panels of C
    intp_t n_qt              # NR panels of C


# ---- reference micro-kernels (portable baseline) ---------------------------------------------------
# Accumulators are a fixed-size local array with compile-time MR/NR: gcc -O3 fully unrolls the i/j
# loops and keeps the tile in SSE registers (scalar replacement of aggregates).
cdef enum:
    SREF_MR = 4
    SREF_NR = 8
    DREF_MR = 4
    DREF_NR = 4


cdef void sukernel_ref(intp_t kc, float alpha, const float* a, intp_t rsa, intp_t csa,
                       const float* b, float beta, float* c, intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    """C[:m, :n] := alpha * A~(MR x kc) * B~(kc x NR) + beta * C[:m, :n]  (packed A~ only).

    The table says direct_a = False, so rsa = 1, csa = MR always: constant indexing keeps gcc
    vectorising the j loop (with a runtime stride it vectorised across k with shuffles, 4x slower).
    """
    cdef float acc[SREF_MR * SREF_NR]
    cdef intp_t i, j, p
    cdef float ai
    for i in range(SREF_MR * SREF_NR):
        acc[i] = 0
    for p in range(kc):
        for i in range(SREF_MR):
            ai = a[i]
            for j in range(SREF_NR):
                acc[i * SREF_NR + j] += ai * b[j]
        a += SREF_MR
        b += SREF_NR
    if beta == 0:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = alpha * acc[i * SREF_NR + j]
    else:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = alpha * acc[i * SREF_NR + j] + beta * c[i * ldc + j]


cdef void dukernel_ref(intp_t kc, double alpha, const double* a, intp_t rsa, intp_t csa,
                       const double* b, double beta, double* c, intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    """C[:m, :n] := alpha * A~(MR x kc) * B~(kc x NR) + beta * C[:m, :n]  (packed A~ only).

    The table says direct_a = False, so rsa = 1, csa = MR always: constant indexing keeps gcc
    vectorising the j loop (with a runtime stride it vectorised across k with shuffles, 4x slower).
    """
    cdef double acc[DREF_MR * DREF_NR]
    cdef intp_t i, j, p
    cdef double ai
    for i in range(DREF_MR * DREF_NR):
        acc[i] = 0
    for p in range(kc):
        for i in range(DREF_MR):
            ai = a[i]
            for j in range(DREF_NR):
                acc[i * DREF_NR + j] += ai * b[j]
        a += DREF_MR
        b += DREF_NR
    if beta == 0:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = alpha * acc[i * DREF_NR + j]
    else:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = alpha * acc[i * DREF_NR + j] + beta * c[i * ldc + j]


cdef KernelTable _ref_table
_ref_table.s_mr = SREF_MR
_ref_table.s_nr = SREF_NR
_ref_table.s_fn = sukernel_ref
_ref_table.s_fn_half = NULL
_ref_table.d_mr = DREF_MR
_ref_table.d_nr = DREF_NR
_ref_table.d_fn = dukernel_ref
_ref_table.d_fn_half = NULL
_ref_table.direct_a = False
_ref_table.s_epi = _s_epi_ref
_ref_table.d_epi = _d_epi_ref
_ref_table.s_update = _s_update_ref
_ref_table.d_update = _d_update_ref

# The kernels in use.  ``gemm`` copies this table once at entry, so ``set_kernel`` between calls
# never changes a running product halfway.
cdef KernelTable _kern = _ref_table
_kernel_name = "reference"


# ---- runtime instruction-set detection -------------------------------------------------------------
# Compiled into this baseline module: gcc/clang ask libgcc/compiler-rt (__builtin_cpu_supports checks
# the CPUID bits and that the OS saves the ymm state); MSVC reads CPUID leaf 1 (FMA, OSXSAVE, AVX),
# XCR0 (xmm+ymm state enabled) and leaf 7 (AVX2).  Any other target: no AVX2.
cdef extern from *:
    """
    #if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    #include <intrin.h>
    static int cprop_cpu_has_avx2_fma(void) {
        int r[4];
        __cpuid(r, 0);
        if (r[0] < 7) return 0;
        __cpuid(r, 1);
        if (!((r[2] >> 12) & 1) || !((r[2] >> 27) & 1) || !((r[2] >> 28) & 1)) return 0;
        if ((_xgetbv(0) & 6) != 6) return 0;
        __cpuidex(r, 7, 0);
        return (r[1] >> 5) & 1;
    }
    #elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int cprop_cpu_has_avx2_fma(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    static int cprop_cpu_has_avx2_fma(void) { return 0; }
    #endif
    """
    int cprop_cpu_has_avx2_fma() nogil


def cpu_supports(str isa):
    """True when this CPU (and OS) can run the named kernel path ('reference' always can)."""
    if isa == "reference":
        return True
    if isa == "avx2":
        return bool(cprop_cpu_has_avx2_fma())
    return False


def available_kernels():
    """Kernel paths this build and CPU can run, fastest last (e.g. ['reference', 'avx2'])."""
    names = ["reference"]
    if cprop_cpu_has_avx2_fma():
        try:
            import cprop._kernels_avx2  # noqa: F401  (built only on x86; imported only when usable)
            names.append("avx2")
        except ImportError:
            pass
    return names


def set_kernel(str name):
    """Install the micro-kernels of one path: 'reference', 'avx2', or 'auto' (the fastest available).

    Not thread-safe with respect to concurrent ``set_kernel`` calls; a product already running keeps
    the kernels it started with.  Returns the name installed.

    Examples
    --------
    >>> from cprop._gemm import set_kernel, kernel_info
    >>> set_kernel("reference")
    'reference'
    >>> kernel_info()["name"]
    'reference'
    >>> _ = set_kernel("auto")
    """
    global _kernel_name, _kern
    cdef KernelTable* t
    avail = available_kernels()
    if name == "auto":
        name = avail[len(avail) - 1]
    if name not in ("reference", "avx2"):
        raise ValueError(f"unknown kernel {name!r}; expected 'auto', 'reference' or 'avx2'.")
    if name not in avail:
        raise RuntimeError(f"kernel {name!r} is not available on this CPU/build; available: {avail}.")
    if name == "reference":
        _kern = _ref_table
    else:
        from cprop._kernels_avx2 import table
        t = <KernelTable*>PyCapsule_GetPointer(table(), b"cprop._kernels.KernelTable")
        _kern = t[0]
    _kernel_name = name
    return name


cdef KernelTable current_kernels() noexcept nogil:
    """A copy of the kernel table in use."""
    return _kern


def kernel_info():
    """Name and register-block sizes (MR, NR) of the micro-kernels in use, and the paths available."""
    return {"name": _kernel_name, "float32": (_kern.s_mr, _kern.s_nr),
            "float64": (_kern.d_mr, _kern.d_nr), "available": available_kernels()}


def _init_kernel():
    """At import: CPROP_KERNEL=reference|avx2|auto forces a path; default 'auto'."""
    import os
    import warnings
    want = os.environ.get("CPROP_KERNEL", "auto").strip().lower() or "auto"
    if want not in ("auto", "reference", "avx2"):
        raise ValueError(f"CPROP_KERNEL={want!r} is not a kernel path; expected 'auto', "
                         "'reference' or 'avx2'.")
    try:
        set_kernel(want)
    except RuntimeError as exc:
        warnings.warn(f"CPROP_KERNEL={want}: {exc} Using the reference kernels.", RuntimeWarning)
        set_kernel("reference")


# Tuning knobs with their defaults from _gemm_config.pxd; ``_set_tuning`` changes them for
# measurements (benchmarks/tune.py), never for results: none of them changes an element's arithmetic.
cdef intp_t _direct_a_max_n = DIRECT_A_MAX_N
cdef intp_t _direct_at_max_n = DIRECT_AT_MAX_N
cdef bint _direct_a_outer = DIRECT_A_OUTER


def _set_tuning(direct_a_max_n=None, direct_at_max_n=None, direct_a_outer=None):
    """Change tuning knobs (measurement only); returns the previous values."""
    global _direct_a_max_n, _direct_at_max_n, _direct_a_outer
    old = {"direct_a_max_n": _direct_a_max_n, "direct_at_max_n": _direct_at_max_n,
           "direct_a_outer": _direct_a_outer}
    if direct_a_max_n is not None:
        _direct_a_max_n = direct_a_max_n
    if direct_at_max_n is not None:
        _direct_at_max_n = direct_at_max_n
    if direct_a_outer is not None:
        _direct_a_outer = direct_a_outer
    return old


# ---- block sizes -----------------------------------------------------------------------------------
cdef inline void _blocks(const KernelTable* kt, bint is_float, intp_t* mc, intp_t* kc, intp_t* nc,
                         intp_t* mr, intp_t* nr) noexcept nogil:
    if is_float:
        mr[0] = kt.s_mr
        nr[0] = kt.s_nr
        mc[0] = (S_MC // mr[0]) * mr[0]
        kc[0] = S_KC
        nc[0] = (S_NC // nr[0]) * nr[0]
    else:
        mr[0] = kt.d_mr
        nr[0] = kt.d_nr
        mc[0] = (D_MC // mr[0]) * mr[0]
        kc[0] = D_KC
        nc[0] = (D_NC // nr[0]) * nr[0]


cdef inline intp_t _round_up(intp_t x, intp_t m) noexcept nogil:
    return ((x + m - 1) // m) * m


cdef inline intp_t _min(intp_t a, intp_t b) noexcept nogil:
    return a if a < b else b


cdef inline intp_t _balanced(intp_t total, intp_t block, intp_t mult) noexcept nogil:
    """Block size <= ``block`` (a multiple of ``mult``) splitting ``total`` into equal parts.

    K = 784 with KC = 256 gives four k-blocks of 196 rather than 256, 256, 256, 16: the short last
    block would pay a full write-back of C for little work.
    """
    cdef intp_t nb = (total + block - 1) // block
    # block is a multiple of mult (see _blocks), so the result never exceeds it
    return _min(block, _round_up((total + nb - 1) // nb, mult))


cdef inline int _gemm_threads(intp_t M, intp_t N, intp_t K, int n_threads) noexcept nogil:
    if n_threads <= 1 or 2.0 * M * N * K < GEMM_SERIAL_FLOPS:
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

    An upper bound valid for every kernel path (NR <= NR_MAX divides NR_MAX), so a plan made under
    one path stays valid after ``set_kernel``.
    """
    cdef intp_t mc = S_MC if is_float else D_MC
    cdef intp_t kc = S_KC if is_float else D_KC
    cdef int nt = _gemm_threads(M, N, K, n_threads)
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


# ---- elementwise kernels of the reference table ----------------------------------------------------
# _epilogue.epilogue_tile and _optim.update_chunk compiled in this (baseline) module.  An
# instruction-set module's table brings its own build of the same sources.  (The optimizer update
# is not GEMM's business; it rides in the table so that one switch selects every ISA build.)
cdef void _s_epi_ref(const Epilogue* epi, float* c, intp_t ldc, intp_t i0, intp_t j0, intp_t m,
                     intp_t n) noexcept nogil:
    epilogue_tile(epi, c, ldc, i0, j0, m, n)


cdef void _d_epi_ref(const Epilogue* epi, double* c, intp_t ldc, intp_t i0, intp_t j0, intp_t m,
                     intp_t n) noexcept nogil:
    epilogue_tile(epi, c, ldc, i0, j0, m, n)


cdef double _s_update_ref(float* p, const float* g, float* s1, float* s2, intp_t n, float l2,
                          const Optim* opt, bint want_sumsq) noexcept nogil:
    return update_chunk(p, g, s1, s2, n, l2, opt, want_sumsq)


cdef double _d_update_ref(double* p, const double* g, double* s1, double* s2, intp_t n, double l2,
                          const Optim* opt, bint want_sumsq) noexcept nogil:
    return update_chunk(p, g, s1, s2, n, l2, opt, want_sumsq)


# ---- loops 2 and 1 around the micro-kernel (the macro-kernel) ----------------------------------------
cdef inline intp_t _panel_width(const KernelTable* kt, bint is_float, intp_t n, intp_t nr) noexcept nogil:
    """Width of the B~ panel holding n <= NR valid columns: NR/2 when a half kernel can take it."""
    if n * 2 <= nr and ((is_float and kt.s_fn_half != NULL) or (not is_float and kt.d_fn_half != NULL)):
        return nr // 2
    return nr


cdef void _macro_kernel(const KernelTable* kt, const floating* apack, bint direct, intp_t rsa,
                        intp_t csa, const floating* aedge, const floating* bpack,
                        intp_t mc, intp_t kc, intp_t q0, intp_t q1, intp_t nc, intp_t mr, intp_t nr,
                        floating alpha, floating beta, floating* C, intp_t ldc,
                        intp_t ig, intp_t jg, bint last_k, const Epilogue* epi,
                        const _PfPlan* pf, intp_t kb) noexcept nogil:
    """C[:mc, q0*NR : q1*NR] (+)= alpha * A * B~ over NR panels q0..q1-1 of B~.

    A is either the packed A~ (``direct`` false) or op(A) read in place with strides (rsa, csa)
    and its partial last MR panel packed, zero-padded, at ``aedge``.
    (ig, jg): where C[0, 0] sits in the full product, for the epilogue's bias and aux.
    """
    cdef intp_t q, r, m, n, j, i, o, v, n_out, n_in
    cdef intp_t n_rp = (mc + mr - 1) // mr
    cdef floating* ct
    cdef const floating* ap
    cdef intp_t ars, acs
    cdef sukernel_t sfn
    cdef dukernel_t dfn
    cdef bint half
    cdef bint do_epi = last_k and epi != NULL and epi.kind != 0
    cdef bint is_float = floating is float
    # With A read in place, its MR rows are the scattered operand: keep one MR panel of A in L1
    # across the NR panels of B~ (loop 1 outside loop 2), B~ streaming from L2 as one sequential
    # stream.  Packed A~ keeps BLIS's order (a B~ panel in L1 across the A~ panels).
    cdef bint a_outer = direct and _direct_a_outer
    # prefetch numbering of this call's first tile (divisions once per call, not per tile)
    cdef intp_t pf_tile = (kb * pf.n_mp + ig // mr) * pf.n_qt + jg // nr if pf != NULL else 0
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
            n = _min(nr, nc - j)
            half = _panel_width(kt, is_float, n, nr) != nr
            i = r * mr
            m = _min(mr, mc - i)
            ct = C + i * ldc + j
            if not direct:
                ap = apack + r * mr * kc
                ars = 1
                acs = mr
            elif m == mr:
                ap = apack + i * rsa
                ars = rsa
                acs = csa
            else:
                ap = aedge
                ars = 1
                acs = mr
            if floating is float:
                sfn = kt.s_fn_half if half else kt.s_fn
                sfn(kc, alpha, ap, ars, acs, bpack + q * nr * kc, beta, ct, ldc, m, n)
            else:
                dfn = kt.d_fn_half if half else kt.d_fn
                dfn(kc, alpha, ap, ars, acs, bpack + q * nr * kc, beta, ct, ldc, m, n)
            if do_epi:
                if floating is float:
                    kt.s_epi(epi, ct, ldc, ig + i, jg + j, m, n)
                else:
                    kt.d_epi(epi, ct, ldc, ig + i, jg + j, m, n)
            if pf != NULL:
                prefetch_row_lines(pf.rows, (pf_tile + r * pf.n_qt + q) * pf.per, pf.per)


cdef void _scale_c(const KernelTable* kt, intp_t M, intp_t N, floating beta, floating* C,
                   intp_t ldc, const Epilogue* epi) noexcept nogil:
    """C := beta*C (C never read when beta == 0), then the epilogue: the K == 0 or alpha == 0 case."""
    cdef intp_t i, j
    for i in range(M):
        for j in range(N):
            C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        if epi != NULL and epi.kind != 0:
            if floating is float:
                kt.s_epi(epi, C + i * ldc, ldc, i, 0, 1, N)
            else:
                kt.d_epi(epi, C + i * ldc, ldc, i, 0, 1, N)


cdef inline void _pack_b(const KernelTable* kt, const floating* B, intp_t rsb, intp_t csb, intp_t ncur,
                         intp_t kcur, intp_t nr, intp_t q, floating* bpack) noexcept nogil:
    """Panel q of one k-block of B~ (the last panel possibly NR/2 wide, see _panel_width)."""
    cdef intp_t n = _min(nr, ncur - q * nr)
    cdef bint is_float = floating is float
    _pack_b_panel(B + q * nr * csb, rsb, csb, n, kcur, _panel_width(kt, is_float, n, nr),
                  bpack + q * nr * kcur)


cdef void _task(const KernelTable* kt, intp_t r0, intp_t r1, intp_t q0, intp_t q1, intp_t K,
                intp_t kc, intp_t mc, intp_t mr, intp_t nr, intp_t ncur, intp_t npad,
                floating alpha, const floating* A, intp_t rsa, intp_t csa, bint direct_a,
                const floating* bpack, floating beta, floating* C, intp_t ldc, intp_t jc,
                const Epilogue* epi, const _PfPlan* pf, floating* apack) noexcept nogil:
    """Rows r0..r1 x NR panels q0..q1 of the current column block of C, over all of K.

    loop 4 (pc) over k-blocks of the shared B~, loop 3 (ic) over MC rows of op(A) (packed into this
    thread's A~, or read in place), then the macro-kernel (loops 2 and 1).
    """
    cdef intp_t pc = 0, kcur, ic, mcur, qb
    cdef floating beta_k
    cdef bint last_k
    cdef const floating* bblk
    while pc < K:                                        # loop 4 (pc): KC of the shared dimension
        kcur = _min(kc, K - pc)
        beta_k = beta if pc == 0 else 1
        last_k = pc + kcur >= K
        bblk = bpack + pc * npad                         # this k-block of B~ (kcur x npad)
        ic = r0
        while ic < r1:                                   # loop 3 (ic): MC rows of op(A)
            mcur = _min(mc, r1 - ic)
            if direct_a:
                # the micro-kernel reads op(A) in place; only a partial last MR panel is packed
                if mcur % mr:
                    qb = mcur // mr
                    _pack_a_panel(A + (ic + qb * mr) * rsa + pc * csa, rsa, csa,
                                  mcur - qb * mr, kcur, mr, apack)
                _macro_kernel(kt, A + ic * rsa + pc * csa, True, rsa, csa, apack, bblk, mcur,
                              kcur, q0, q1, ncur, mr, nr, alpha, beta_k, C + ic * ldc + jc, ldc,
                              ic, jc, last_k, epi, pf, pc // kc)
            else:
                for qb in range(0, (mcur + mr - 1) // mr):
                    _pack_a_panel(A + (ic + qb * mr) * rsa + pc * csa, rsa, csa,
                                  _min(mr, mcur - qb * mr), kcur, mr, apack + qb * mr * kcur)
                _macro_kernel(kt, apack, False, 1, mr, apack, bblk, mcur, kcur, q0, q1, ncur, mr,
                              nr, alpha, beta_k, C + ic * ldc + jc, ldc, ic, jc, last_k, epi,
                              pf, pc // kc)
            ic += mcur
        pc += kcur


cdef void gemm(bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
               floating alpha, const floating* A, intp_t lda,
               const floating* B, intp_t ldb,
               floating beta, floating* C, intp_t ldc,
               const Epilogue* epi, floating* work, int n_threads) noexcept nogil:
    """C := alpha*op(A)*op(B) + beta*C, then the optional epilogue; ``work`` may be NULL.

    Per block of columns (loop 5; usually all of N): op(B) is packed for all of K into a shared B~
    (threads split the panels), then C is cut into tasks (ranges of MR rows x ranges of NR panels)
    that threads take dynamically, each running loops 4..1 with its own A~.  One parallel region
    with one barrier per column block; a thread that the OS delays does not hold up the others.
    An element's arithmetic depends only on K's blocking (kc, from K alone) and on whether its
    MR x NR tile is an edge tile (from M, N alone), never on tasks or threads: results are bitwise
    identical for any thread count.
    """
    cdef KernelTable kt = _kern      # one snapshot: set_kernel cannot switch kernels mid-product
    cdef intp_t rsa, csa, rsb, csb, mc, kc, nc, mr, nr, n_mp, n_q, jc, ncur, npad, pc, kcur
    cdef intp_t t, u, n_rt, n_ct, n_tasks, n_units
    cdef floating* owned = NULL
    cdef floating* bpack
    cdef floating* abase
    cdef int nt
    cdef bint direct_a
    cdef bint is_float = floating is float
    cdef _PfPlan pfplan
    cdef const _PfPlan* pf = NULL

    if M <= 0 or N <= 0:
        return
    if K <= 0 or alpha == 0:
        _scale_c(&kt, M, N, beta, C, ldc, epi)
        return
    if trans_a:
        rsa = 1
        csa = lda
    else:
        rsa = lda
        csa = 1
    if trans_b:
        rsb = 1
        csb = ldb
    else:
        rsb = ldb
        csb = 1
    _blocks(&kt, is_float, &mc, &kc, &nc, &mr, &nr)
    kc = _balanced(K, kc, 8)
    nc = _balanced(N, _b_cols(N, K, NR_MAX), nr)     # NR_MAX: the bound gemm_work_size uses
    nt = _gemm_threads(M, N, K, n_threads)
    # Read op(A) in place when N spans few B~ panels, so packing A would cost about as much as
    # it saves: row-major op(A) (csa == 1: forward X W, input gradient D W^T) or column-major
    # (rsa == 1: weight gradient A^T D, MR consecutive values of a row per k step).
    direct_a = kt.direct_a and ((csa == 1 and rsa != 1 and N <= _direct_a_max_n)
                                or (rsa == 1 and csa != 1 and N <= _direct_at_max_n))
    if work == NULL:
        owned = <floating*>malloc(gemm_work_size(is_float, M, N, K, nt) * sizeof(floating))
        if owned == NULL:
            # Callers in cprop always pass a workspace (plans, gemm_py); a direct cdef caller
            # that passes NULL gets C filled with NaN, never silently stale values.
            for jc in range(M):
                for pc in range(N):
                    C[jc * ldc + pc] = <floating>NAN
            return
        work = owned
    bpack = _align64(work)
    abase = _align64(bpack + K * _round_up(nc, nr))
    n_mp = (M + mr - 1) // mr
    if epi != NULL and epi.prefetch != NULL and epi.prefetch.n_rows > 0:
        pfplan.rows = epi.prefetch
        pfplan.n_mp = n_mp
        pfplan.n_qt = (N + nr - 1) // nr
        t = ((K + kc - 1) // kc) * n_mp * pfplan.n_qt                      # tiles
        u = epi.prefetch.n_rows * ((epi.prefetch.row_bytes + 63) // 64 + 1)   # lines
        pfplan.per = (u + t - 1) // t
        pf = &pfplan

    jc = 0
    while jc < N:                                        # loop 5 (jc): columns of C
        ncur = _min(nc, N - jc)
        n_q = (ncur + nr - 1) // nr
        npad = n_q * nr
        # Tasks: row ranges first (no duplicated packing), then column ranges if rows run out;
        # about TASKS_PER_THREAD per thread so dynamic scheduling can balance.
        n_rt = 1
        n_ct = 1
        if nt > 1:
            n_rt = _min(n_mp, nt * TASKS_PER_THREAD)
            n_ct = _min(n_q, (nt * TASKS_PER_THREAD + n_rt - 1) // n_rt)
        n_tasks = n_rt * n_ct
        if nt == 1:
            pc = 0
            while pc < K:
                kcur = _min(kc, K - pc)
                for t in range(n_q):
                    _pack_b(&kt, B + pc * rsb + jc * csb, rsb, csb, ncur, kcur, nr, t,
                            bpack + pc * npad)
                pc += kcur
            _task(&kt, 0, M, 0, n_q, K, kc, mc, mr, nr, ncur, npad, alpha, A, rsa, csa, direct_a,
                  bpack, beta, C, ldc, jc, epi, pf, abase)
        else:
            n_units = ((K + kc - 1) // kc) * n_q         # (k-block, panel) pairs of B~
            with parallel(num_threads=nt):
                for u in prange(n_units, schedule='static'):
                    _pack_b(&kt, B + (u // n_q) * kc * rsb + jc * csb, rsb, csb, ncur,
                            _min(kc, K - (u // n_q) * kc), nr, u % n_q,
                            bpack + (u // n_q) * kc * npad)
                for t in prange(n_tasks, schedule='dynamic'):
                    _task(&kt, _min(M, ((t // n_ct) * n_mp // n_rt) * mr),
                          _min(M, ((t // n_ct + 1) * n_mp // n_rt) * mr),
                          (t % n_ct) * n_q // n_ct, (t % n_ct + 1) * n_q // n_ct,
                          K, kc, mc, mr, nr, ncur, npad, alpha, A, rsa, csa, direct_a, bpack,
                          beta, C, ldc, jc, epi, pf, abase + threadid() * (mc * _min(kc, K) + 32))
        jc += ncur
    if owned != NULL:
        free(owned)


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


def gemm_py(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
            const floating[:, ::1] B, double beta, floating[:, ::1] C, int n_threads=1,
            const floating[::1] bias=None, int act=-1, bint reference=False,
            const floating[:, ::1] aux=None):
    """C := alpha*op(A)*op(B) + beta*C in place (C-contiguous arrays of one dtype).

    ``bias``/``act`` select the forward epilogue C := f(C + bias); with ``aux`` (M x N, the layer's
    activations a = f(z)) the backward epilogue C := C * f'(z) instead.  ``reference`` runs the
    plain triple loop instead (tests only; no epilogue).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._gemm import gemm_py
    >>> A = np.ones((2, 3)); B = np.ones((3, 4)); C = np.empty((2, 4))
    >>> gemm_py(False, False, 1.0, A, B, 0.0, C)
    >>> C[0, 0]
    np.float64(3.0)
    """
    M, N, K = _dims(trans_a, trans_b, A, B, C)
    if bias is not None and bias.shape[0] != N:
        raise ValueError(f"bias has {bias.shape[0]} values; expected N={N}.")
    if act == ACT_SOFTMAX:
        raise ValueError("softmax is row-wise and cannot be a tile epilogue.")
    if aux is not None and (aux.shape[0] != M or aux.shape[1] != N or bias is not None or act < 0):
        raise ValueError(f"aux must be {M}x{N}, with act given and no bias (derivative epilogue).")
    cdef Epilogue epi
    epi.kind = 1 if (bias is not None or act >= 0) else 0
    epi.act = act if act >= 0 else 0
    epi.bias = <const void*>&bias[0] if bias is not None else NULL
    epi.aux = NULL
    epi.ldaux = 0
    epi.prefetch = NULL
    if aux is not None:
        epi.kind = 2
        epi.aux = <const void*>&aux[0, 0] if M * N > 0 else NULL
        epi.ldaux = N
    cdef const floating* pa = &A[0, 0] if A.shape[0] * A.shape[1] > 0 else NULL
    cdef const floating* pb = &B[0, 0] if B.shape[0] * B.shape[1] > 0 else NULL
    cdef floating* pc = &C[0, 0] if C.shape[0] * C.shape[1] > 0 else NULL
    cdef intp_t lda = A.shape[1], ldb = B.shape[1], ldc = C.shape[1]
    cdef intp_t m = M, n = N, k = K
    # The workspace comes from numpy, so an allocation failure is a MemoryError here rather than
    # a silent no-op inside the kernel.
    work_arr = np.empty(max(1, gemm_work_size(floating is float, m, n, k, n_threads)),
                        dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    with nogil:
        if reference:
            gemm_naive(trans_a, trans_b, m, n, k, <floating>alpha, pa, lda, pb, ldb,
                       <floating>beta, pc, ldc)
        else:
            gemm(trans_a, trans_b, m, n, k, <floating>alpha, pa, lda, pb, ldb,
                 <floating>beta, pc, ldc, &epi, &work[0], n_threads)


def block_sizes():
    """Cache block sizes (MC, KC, NC) per dtype, before rounding to the kernel's MR/NR."""
    return {"float32": (S_MC, S_KC, S_NC), "float64": (D_MC, D_KC, D_NC),
            "serial_flops": GEMM_SERIAL_FLOPS}


def work_size(bint is_float, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int n_threads):
    """Elements of workspace ``gemm`` needs for an M x N x K product on n_threads."""
    return gemm_work_size(is_float, M, N, K, n_threads)


_init_kernel()
