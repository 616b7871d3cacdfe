# Dropout masks from a counter-based generator: keep(seed, epoch, layer, row, unit) is a pure
# function, so a mask never depends on the thread count, the batch a row falls in or the pass
# length, and the backward pass recomputes it instead of storing it.
#
# The generator is splitmix64's finaliser (Steele, Lea & Flood 2014, the mixer of
# java.util.SplittableRandom) applied to the key words in turn; the top 53 bits of the last mix
# give u in [0, 1), and a unit is kept when u >= rate.  Kept values are scaled by 1 / (1 - rate)
# (inverted dropout), so prediction uses the weights as they are.
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


cdef inline floating keep_scale(uint64_t rowkey, intp_t unit, double rate,
                                floating scale) noexcept nogil:
    """``scale`` if unit ``unit`` of the row is kept, else 0."""
    cdef uint64_t h = mix64(rowkey ^ (<uint64_t>unit * <uint64_t>0x9e3779b97f4a7c15ULL))
    return scale if <double>(h >> 11) * (1.0 / 9007199254740992.0) >= rate else 0
