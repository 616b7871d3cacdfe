"""AVX2 + FMA micro-kernels: C[:m, :n] := alpha * A~ * B~ + beta * C[:m, :n] on one register tile.

This module is compiled with -mavx2 -mfma (MSVC: /arch:AVX2) and nothing else is; ``cprop._gemm``
imports it only after CPU detection says AVX2 and FMA are usable, so its code (module init included)
never runs on a CPU without them.

Design
1. float32: a 6 x 16 tile in twelve ymm accumulators (6 rows x 2 vectors of 8); per k step two
   vector loads of B~, six broadcasts of A~ and twelve FMAs.  float64: 6 x 8 in twelve ymm
   (6 rows x 2 vectors of 4).  Register budget: 12 accumulators + 2 B + 1 broadcast = 15 of 16 ymm.
   These are BLIS's haswell/zen sgemm/dgemm register blocks (bli_cntx_init_haswell.c).
2. Half-width kernels (6 x 8 float32, 6 x 4 float64) serve a last B~ panel of at most NR/2 columns
   (N = 100 hidden units is 6 full panels + 4 columns), halving the wasted lanes there.
3. Accumulators are named locals, not an array: gcc keeps them in registers (an array accumulator
   made gcc vectorise the short row loop instead; see STYLE.md).  Checked with
   ``objdump -d _kernels_avx2*.so | grep -c vfmadd``.
4. Write-back: full tiles go straight from registers (alpha, then beta*C by FMA; C is not read when
   beta == 0); edge tiles spill the accumulators to a stack buffer and copy the m x n valid part.
"""
from cpython.pycapsule cimport PyCapsule_New

from cprop._typedefs cimport intp_t
from cprop._kernels cimport KernelTable, Epilogue
from cprop._epilogue cimport epilogue_tile
from cprop._optim cimport Optim, update_chunk


cdef extern from "immintrin.h" nogil:
    ctypedef float __m256
    ctypedef double __m256d
    __m256 _mm256_setzero_ps()
    __m256 _mm256_loadu_ps(const float* p)
    void _mm256_storeu_ps(float* p, __m256 a)
    __m256 _mm256_broadcast_ss(const float* p)
    __m256 _mm256_set1_ps(float a)
    __m256 _mm256_fmadd_ps(__m256 a, __m256 b, __m256 c)
    __m256 _mm256_mul_ps(__m256 a, __m256 b)
    __m256d _mm256_setzero_pd()
    __m256d _mm256_loadu_pd(const double* p)
    void _mm256_storeu_pd(double* p, __m256d a)
    __m256d _mm256_broadcast_sd(const double* p)
    __m256d _mm256_set1_pd(double a)
    __m256d _mm256_fmadd_pd(__m256d a, __m256d b, __m256d c)
    __m256d _mm256_mul_pd(__m256d a, __m256d b)
    void _mm_prefetch(const char* p, int hint)
    int _MM_HINT_T0

cdef enum:
    S_MR = 6
    S_NR = 16
    D_MR = 6
    D_NR = 8


cdef inline void _prefetch_c(const void* c, intp_t ldc_bytes, intp_t row_bytes) noexcept nogil:
    """Touch the 6 rows of the C tile (first and last byte) so write-back does not stall on misses."""
    cdef const char* p = <const char*>c
    cdef int i
    for i in range(6):
        _mm_prefetch(p, _MM_HINT_T0)
        _mm_prefetch(p + row_bytes - 1, _MM_HINT_T0)
        p += ldc_bytes


# ---- write-back helpers ----------------------------------------------------------------------------
cdef inline void _s_store(float* c, __m256 x, __m256 va, __m256 vb, bint read_c) noexcept nogil:
    """c[0:8] := alpha*x (+ beta*c[0:8])."""
    if read_c:
        _mm256_storeu_ps(c, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), _mm256_mul_ps(va, x)))
    else:
        _mm256_storeu_ps(c, _mm256_mul_ps(va, x))


cdef inline void _d_store(double* c, __m256d x, __m256d va, __m256d vb, bint read_c) noexcept nogil:
    """c[0:4] := alpha*x (+ beta*c[0:4])."""
    if read_c:
        _mm256_storeu_pd(c, _mm256_fmadd_pd(vb, _mm256_loadu_pd(c), _mm256_mul_pd(va, x)))
    else:
        _mm256_storeu_pd(c, _mm256_mul_pd(va, x))


cdef inline void _s_edge(const float* buf, intp_t ldb, float alpha, float beta, float* c, intp_t ldc,
                         intp_t m, intp_t n) noexcept nogil:
    cdef intp_t i, j
    for i in range(m):
        for j in range(n):
            if beta == 0:
                c[i * ldc + j] = alpha * buf[i * ldb + j]
            else:
                c[i * ldc + j] = alpha * buf[i * ldb + j] + beta * c[i * ldc + j]


cdef inline void _d_edge(const double* buf, intp_t ldb, double alpha, double beta, double* c,
                         intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    cdef intp_t i, j
    for i in range(m):
        for j in range(n):
            if beta == 0:
                c[i * ldc + j] = alpha * buf[i * ldb + j]
            else:
                c[i * ldc + j] = alpha * buf[i * ldb + j] + beta * c[i * ldc + j]


# ---- float32 6 x 16 --------------------------------------------------------------------------------
cdef void sukernel_avx2(intp_t kc, float alpha, const float* a, intp_t rsa, intp_t csa,
                        const float* b, float beta, float* c, intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    """C[:m, :n] := alpha * A(6 x kc) * B~(kc x 16) + beta * C[:m, :n]."""
    cdef __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps()
    cdef __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps()
    cdef __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps()
    cdef __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps()
    cdef __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps()
    cdef __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps()
    cdef __m256 b0, b1, ai, va, vb
    cdef intp_t p
    cdef intp_t o1 = rsa, o2 = 2 * rsa, o3 = 3 * rsa, o4 = 4 * rsa, o5 = 5 * rsa
    cdef float buf[S_MR * S_NR]
    cdef bint read_c = beta != 0
    _prefetch_c(c, ldc * sizeof(float), 16 * sizeof(float))
    for p in range(kc):
        b0 = _mm256_loadu_ps(b)
        b1 = _mm256_loadu_ps(b + 8)
        ai = _mm256_broadcast_ss(a)
        c00 = _mm256_fmadd_ps(ai, b0, c00)
        c01 = _mm256_fmadd_ps(ai, b1, c01)
        ai = _mm256_broadcast_ss(a + o1)
        c10 = _mm256_fmadd_ps(ai, b0, c10)
        c11 = _mm256_fmadd_ps(ai, b1, c11)
        ai = _mm256_broadcast_ss(a + o2)
        c20 = _mm256_fmadd_ps(ai, b0, c20)
        c21 = _mm256_fmadd_ps(ai, b1, c21)
        ai = _mm256_broadcast_ss(a + o3)
        c30 = _mm256_fmadd_ps(ai, b0, c30)
        c31 = _mm256_fmadd_ps(ai, b1, c31)
        ai = _mm256_broadcast_ss(a + o4)
        c40 = _mm256_fmadd_ps(ai, b0, c40)
        c41 = _mm256_fmadd_ps(ai, b1, c41)
        ai = _mm256_broadcast_ss(a + o5)
        c50 = _mm256_fmadd_ps(ai, b0, c50)
        c51 = _mm256_fmadd_ps(ai, b1, c51)
        a += csa
        b += S_NR
    if m == S_MR and n == S_NR:
        va = _mm256_set1_ps(alpha)
        vb = _mm256_set1_ps(beta)
        _s_store(c, c00, va, vb, read_c)
        _s_store(c + 8, c01, va, vb, read_c)
        c += ldc
        _s_store(c, c10, va, vb, read_c)
        _s_store(c + 8, c11, va, vb, read_c)
        c += ldc
        _s_store(c, c20, va, vb, read_c)
        _s_store(c + 8, c21, va, vb, read_c)
        c += ldc
        _s_store(c, c30, va, vb, read_c)
        _s_store(c + 8, c31, va, vb, read_c)
        c += ldc
        _s_store(c, c40, va, vb, read_c)
        _s_store(c + 8, c41, va, vb, read_c)
        c += ldc
        _s_store(c, c50, va, vb, read_c)
        _s_store(c + 8, c51, va, vb, read_c)
    else:
        _mm256_storeu_ps(buf, c00)
        _mm256_storeu_ps(buf + 8, c01)
        _mm256_storeu_ps(buf + 16, c10)
        _mm256_storeu_ps(buf + 24, c11)
        _mm256_storeu_ps(buf + 32, c20)
        _mm256_storeu_ps(buf + 40, c21)
        _mm256_storeu_ps(buf + 48, c30)
        _mm256_storeu_ps(buf + 56, c31)
        _mm256_storeu_ps(buf + 64, c40)
        _mm256_storeu_ps(buf + 72, c41)
        _mm256_storeu_ps(buf + 80, c50)
        _mm256_storeu_ps(buf + 88, c51)
        _s_edge(buf, S_NR, alpha, beta, c, ldc, m, n)


cdef void sukernel_avx2_half(intp_t kc, float alpha, const float* a, intp_t rsa, intp_t csa,
                             const float* b, float beta, float* c, intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    """C[:m, :n] := alpha * A(6 x kc) * B~(kc x 8) + beta * C[:m, :n]  (B~ panel 8 wide)."""
    cdef __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps()
    cdef __m256 c3 = _mm256_setzero_ps(), c4 = _mm256_setzero_ps(), c5 = _mm256_setzero_ps()
    cdef __m256 b0, va, vb
    cdef intp_t p
    cdef intp_t o1 = rsa, o2 = 2 * rsa, o3 = 3 * rsa, o4 = 4 * rsa, o5 = 5 * rsa
    cdef float buf[S_MR * 8]
    cdef bint read_c = beta != 0
    _prefetch_c(c, ldc * sizeof(float), 8 * sizeof(float))
    for p in range(kc):
        b0 = _mm256_loadu_ps(b)
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a), b0, c0)
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o1), b0, c1)
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o2), b0, c2)
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o3), b0, c3)
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o4), b0, c4)
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o5), b0, c5)
        a += csa
        b += 8
    if m == S_MR and n == 8:
        va = _mm256_set1_ps(alpha)
        vb = _mm256_set1_ps(beta)
        _s_store(c, c0, va, vb, read_c)
        _s_store(c + ldc, c1, va, vb, read_c)
        _s_store(c + 2 * ldc, c2, va, vb, read_c)
        _s_store(c + 3 * ldc, c3, va, vb, read_c)
        _s_store(c + 4 * ldc, c4, va, vb, read_c)
        _s_store(c + 5 * ldc, c5, va, vb, read_c)
    else:
        _mm256_storeu_ps(buf, c0)
        _mm256_storeu_ps(buf + 8, c1)
        _mm256_storeu_ps(buf + 16, c2)
        _mm256_storeu_ps(buf + 24, c3)
        _mm256_storeu_ps(buf + 32, c4)
        _mm256_storeu_ps(buf + 40, c5)
        _s_edge(buf, 8, alpha, beta, c, ldc, m, n)


# ---- float64 6 x 8 ---------------------------------------------------------------------------------
cdef void dukernel_avx2(intp_t kc, double alpha, const double* a, intp_t rsa, intp_t csa,
                        const double* b, double beta, double* c, intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    """C[:m, :n] := alpha * A(6 x kc) * B~(kc x 8) + beta * C[:m, :n]."""
    cdef __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd()
    cdef __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd()
    cdef __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd()
    cdef __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd()
    cdef __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd()
    cdef __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd()
    cdef __m256d b0, b1, ai, va, vb
    cdef intp_t p
    cdef intp_t o1 = rsa, o2 = 2 * rsa, o3 = 3 * rsa, o4 = 4 * rsa, o5 = 5 * rsa
    cdef double buf[D_MR * D_NR]
    cdef bint read_c = beta != 0
    _prefetch_c(c, ldc * sizeof(double), 8 * sizeof(double))
    for p in range(kc):
        b0 = _mm256_loadu_pd(b)
        b1 = _mm256_loadu_pd(b + 4)
        ai = _mm256_broadcast_sd(a)
        c00 = _mm256_fmadd_pd(ai, b0, c00)
        c01 = _mm256_fmadd_pd(ai, b1, c01)
        ai = _mm256_broadcast_sd(a + o1)
        c10 = _mm256_fmadd_pd(ai, b0, c10)
        c11 = _mm256_fmadd_pd(ai, b1, c11)
        ai = _mm256_broadcast_sd(a + o2)
        c20 = _mm256_fmadd_pd(ai, b0, c20)
        c21 = _mm256_fmadd_pd(ai, b1, c21)
        ai = _mm256_broadcast_sd(a + o3)
        c30 = _mm256_fmadd_pd(ai, b0, c30)
        c31 = _mm256_fmadd_pd(ai, b1, c31)
        ai = _mm256_broadcast_sd(a + o4)
        c40 = _mm256_fmadd_pd(ai, b0, c40)
        c41 = _mm256_fmadd_pd(ai, b1, c41)
        ai = _mm256_broadcast_sd(a + o5)
        c50 = _mm256_fmadd_pd(ai, b0, c50)
        c51 = _mm256_fmadd_pd(ai, b1, c51)
        a += csa
        b += D_NR
    if m == D_MR and n == D_NR:
        va = _mm256_set1_pd(alpha)
        vb = _mm256_set1_pd(beta)
        _d_store(c, c00, va, vb, read_c)
        _d_store(c + 4, c01, va, vb, read_c)
        c += ldc
        _d_store(c, c10, va, vb, read_c)
        _d_store(c + 4, c11, va, vb, read_c)
        c += ldc
        _d_store(c, c20, va, vb, read_c)
        _d_store(c + 4, c21, va, vb, read_c)
        c += ldc
        _d_store(c, c30, va, vb, read_c)
        _d_store(c + 4, c31, va, vb, read_c)
        c += ldc
        _d_store(c, c40, va, vb, read_c)
        _d_store(c + 4, c41, va, vb, read_c)
        c += ldc
        _d_store(c, c50, va, vb, read_c)
        _d_store(c + 4, c51, va, vb, read_c)
    else:
        _mm256_storeu_pd(buf, c00)
        _mm256_storeu_pd(buf + 4, c01)
        _mm256_storeu_pd(buf + 8, c10)
        _mm256_storeu_pd(buf + 12, c11)
        _mm256_storeu_pd(buf + 16, c20)
        _mm256_storeu_pd(buf + 20, c21)
        _mm256_storeu_pd(buf + 24, c30)
        _mm256_storeu_pd(buf + 28, c31)
        _mm256_storeu_pd(buf + 32, c40)
        _mm256_storeu_pd(buf + 36, c41)
        _mm256_storeu_pd(buf + 40, c50)
        _mm256_storeu_pd(buf + 44, c51)
        _d_edge(buf, D_NR, alpha, beta, c, ldc, m, n)


cdef void dukernel_avx2_half(intp_t kc, double alpha, const double* a, intp_t rsa, intp_t csa,
                             const double* b, double beta, double* c, intp_t ldc, intp_t m, intp_t n) noexcept nogil:
    """C[:m, :n] := alpha * A(6 x kc) * B~(kc x 4) + beta * C[:m, :n]  (B~ panel 4 wide)."""
    cdef __m256d c0 = _mm256_setzero_pd(), c1 = _mm256_setzero_pd(), c2 = _mm256_setzero_pd()
    cdef __m256d c3 = _mm256_setzero_pd(), c4 = _mm256_setzero_pd(), c5 = _mm256_setzero_pd()
    cdef __m256d b0, va, vb
    cdef intp_t p
    cdef intp_t o1 = rsa, o2 = 2 * rsa, o3 = 3 * rsa, o4 = 4 * rsa, o5 = 5 * rsa
    cdef double buf[D_MR * 4]
    cdef bint read_c = beta != 0
    _prefetch_c(c, ldc * sizeof(double), 4 * sizeof(double))
    for p in range(kc):
        b0 = _mm256_loadu_pd(b)
        c0 = _mm256_fmadd_pd(_mm256_broadcast_sd(a), b0, c0)
        c1 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + o1), b0, c1)
        c2 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + o2), b0, c2)
        c3 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + o3), b0, c3)
        c4 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + o4), b0, c4)
        c5 = _mm256_fmadd_pd(_mm256_broadcast_sd(a + o5), b0, c5)
        a += csa
        b += 4
    if m == D_MR and n == 4:
        va = _mm256_set1_pd(alpha)
        vb = _mm256_set1_pd(beta)
        _d_store(c, c0, va, vb, read_c)
        _d_store(c + ldc, c1, va, vb, read_c)
        _d_store(c + 2 * ldc, c2, va, vb, read_c)
        _d_store(c + 3 * ldc, c3, va, vb, read_c)
        _d_store(c + 4 * ldc, c4, va, vb, read_c)
        _d_store(c + 5 * ldc, c5, va, vb, read_c)
    else:
        _mm256_storeu_pd(buf, c0)
        _mm256_storeu_pd(buf + 4, c1)
        _mm256_storeu_pd(buf + 8, c2)
        _mm256_storeu_pd(buf + 12, c3)
        _mm256_storeu_pd(buf + 16, c4)
        _mm256_storeu_pd(buf + 20, c5)
        _d_edge(buf, 4, alpha, beta, c, ldc, m, n)


# ---- elementwise kernels built for AVX2 ---------------------------------------------------------------
# The same source as the baseline builds (_epilogue.pxd, _optim.pxd), compiled here with -mavx2
# -mfma: gcc vectorises 8-wide (4-wide in float64) where the baseline gets SSE2's 4 (2); the Adam
# update, bound by sqrt and division, takes about half the time (78400 values: 30 vs 60 us).  With
# FMA contraction the last bit of a result may differ from the baseline path's.
cdef void s_epi_avx2(const Epilogue* epi, float* c, intp_t ldc, intp_t i0, intp_t j0, intp_t m,
                     intp_t n) noexcept nogil:
    epilogue_tile(epi, c, ldc, i0, j0, m, n)


cdef void d_epi_avx2(const Epilogue* epi, double* c, intp_t ldc, intp_t i0, intp_t j0, intp_t m,
                     intp_t n) noexcept nogil:
    epilogue_tile(epi, c, ldc, i0, j0, m, n)


cdef double s_update_avx2(float* p, const float* g, float* s1, float* s2, intp_t n, float l2,
                          const Optim* opt, bint want_sumsq) noexcept nogil:
    return update_chunk(p, g, s1, s2, n, l2, opt, want_sumsq)


cdef double d_update_avx2(double* p, const double* g, double* s1, double* s2, intp_t n, double l2,
                          const Optim* opt, bint want_sumsq) noexcept nogil:
    return update_chunk(p, g, s1, s2, n, l2, opt, want_sumsq)


# ---- the table handed to _gemm ---------------------------------------------------------------------
cdef KernelTable _table
_table.s_mr = S_MR
_table.s_nr = S_NR
_table.s_fn = sukernel_avx2
_table.s_fn_half = sukernel_avx2_half
_table.d_mr = D_MR
_table.d_nr = D_NR
_table.d_fn = dukernel_avx2
_table.d_fn_half = dukernel_avx2_half
_table.direct_a = True
_table.s_epi = s_epi_avx2
_table.d_epi = d_epi_avx2
_table.s_update = s_update_avx2
_table.d_update = d_update_avx2


def table():
    """A capsule holding this module's KernelTable (read by ``cprop._gemm.set_kernel``)."""
    return PyCapsule_New(<void*>&_table, b"cprop._kernels.KernelTable", NULL)
