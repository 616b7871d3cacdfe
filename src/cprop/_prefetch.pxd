# Software prefetch hints, shared by the baseline modules (SSE's prefetch is baseline on x86).
# A hint never changes a result: it only asks the memory system to start loading a cache line.
from cprop._typedefs cimport intp_t

cdef extern from *:
    """
    /* T0: into L1 and L2 (data needed within a few hundred cycles); T1: into L2 only (data needed
       later, kept out of the L1 working set).  Compiler builtin elsewhere, nothing otherwise.
       On gcc/clang x86 the hints are volatile asm: gcc 12 treats a function whose only effect is
       __builtin_prefetch as pure and deletes calls to it (seen: prefetch_row_lines compiled to
       nothing), which an asm statement with side effects prevents. */
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #define CPROP_PREFETCH(p) __asm__ volatile("prefetcht0 %0" : : "m"(*(const char*)(p)))
    #define CPROP_PREFETCH_L2(p) __asm__ volatile("prefetcht1 %0" : : "m"(*(const char*)(p)))
    #elif defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
    #include <xmmintrin.h>
    #define CPROP_PREFETCH(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)
    #define CPROP_PREFETCH_L2(p) _mm_prefetch((const char*)(p), _MM_HINT_T1)
    #elif defined(__GNUC__)
    #define CPROP_PREFETCH(p) __builtin_prefetch((p), 0, 3)
    #define CPROP_PREFETCH_L2(p) __builtin_prefetch((p), 0, 2)
    #else
    #define CPROP_PREFETCH(p) ((void)(p))
    #define CPROP_PREFETCH_L2(p) ((void)(p))
    #endif
    """
    void CPROP_PREFETCH(const void* p) nogil
    void CPROP_PREFETCH_L2(const void* p) nogil


# Rows to bring into cache while a GEMM runs (the next mini-batch's rows of X, gathered after it):
# the GEMM spreads their cache lines evenly over its tiles, a few lines after each micro-kernel call.
cdef struct RowPrefetch:
    const char* base         # row r starts at base + rows[r] * ld
    intp_t ld                # bytes between rows
    intp_t row_bytes         # bytes of a row to fetch
    const intp_t* rows
    intp_t n_rows


cdef inline void prefetch_row_lines(const RowPrefetch* pf, intp_t first, intp_t count) noexcept nogil:
    """Prefetch (into L2) lines first..first+count-1 of the rows, numbered row by row."""
    cdef intp_t lines = (pf.row_bytes + 63) // 64 + 1    # +1: a row need not start on a line
    cdef intp_t r = first // lines                       # one division per call, not per line
    cdef intp_t off = (first - r * lines) * 64
    cdef intp_t k
    cdef const char* row
    if r >= pf.n_rows:
        return
    row = pf.base + pf.rows[r] * pf.ld
    for k in range(count):
        CPROP_PREFETCH_L2(row + (off if off < pf.row_bytes else pf.row_bytes - 1))
        off += 64
        if off >= lines * 64:
            r += 1
            if r >= pf.n_rows:
                return
            row = pf.base + pf.rows[r] * pf.ld
            off = 0
