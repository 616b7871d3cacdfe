# Dropout masks from a counter-based generator: keep(seed, epoch, layer, row, unit) is a pure
# function, so a mask never depends on the thread count, the batch a row falls in or the pass
# length, and the backward pass recomputes it instead of storing it.
#
# The generator is splitmix64's finaliser (Steele, Lea & Flood 2014, the mixer of
# java.util.SplittableRandom) applied to the key words in turn.  One 64-bit mix serves four
# consecutive units: unit j reads 16-bit field j % 4 of mix(row key ^ (j // 4) * golden) as
# u = field / 65536, and is kept when u >= rate (so a rate acts rounded up to a multiple of 2^-16,
# i.e. the kept fraction is off by < 1.6e-5).  Hashing four units per mix made a dropout epoch
# cheaper (see the README's figures).  Kept values are scaled by 1 / (1 - rate) (inverted
# dropout), so prediction uses the weights as they are.
from libc.stdint cimport uint64_t
from cprop._typedefs cimport floating, intp_t

cdef struct Dropout:
    uint64_t seed
    uint64_t epoch
    const intp_t* rows       # sample id of pass row r, or NULL for row0 + r
    intp_t row0


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef inline uint64_t row_key(const Dropout* d, int layer, intp_t r) noexcept nogil:
    """The generator state for pass row r of layer ``layer``: seed, epoch, layer, sample id."""
    cdef uint64_t sample = <uint64_t>(d.rows[r] if d.rows != NULL else d.row0 + r)
    cdef uint64_t h = mix64(d.seed + <uint64_t>0x9e3779b97f4a7c15ULL)
    h = mix64(h ^ d.epoch)
    h = mix64(h ^ <uint64_t>layer)
    return mix64(h ^ sample)


cdef inline void mask_row(uint64_t rowkey, const floating* src, floating* dst, intp_t m,
                          double rate, floating scale) noexcept nogil:
    """dst[j] := src[j] * (scale if unit j is kept else 0), j < m (dst may be src)."""
    cdef intp_t j0, j, k
    cdef uint64_t h
    cdef uint64_t thr = <uint64_t>(rate * 65536.0)
    # u >= rate  <=>  field >= ceil(rate * 65536); fields are integers
    if <double>thr < rate * 65536.0:
        thr += 1
    j0 = 0
    while j0 < m:
        h = mix64(rowkey ^ (<uint64_t>(j0 >> 2) * <uint64_t>0x9e3779b97f4a7c15ULL))
        k = m - j0 if m - j0 < 4 else 4
        for j in range(k):
            # branch-free: a mask is a coin flip, a branch on it mispredicts at rate 0.5
            dst[j0 + j] = src[j0 + j] * (scale * <floating>(((h >> (16 * j)) & 0xffff) >= thr))
        j0 += 4
