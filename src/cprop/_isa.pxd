# The instruction-set layer: which kernel path is installed, and what each path carries.
from cprop._kernels cimport GemmContext
from cprop._epilogue cimport EpilogueTable
from cprop._optim cimport OptimTable
from cprop._sparse cimport SparseTable

# One kernel path's context (BLIS: one context per architecture): the GEMM's micro-kernels and
# blocks, and the network's elementwise builds (tile epilogues, optimizer updates) compiled for the
# same instruction set.  Each path module (rendered from _kernels.pyx.tp) holds one, static.
cdef struct KernelPath:
    const char* name
    GemmContext gemm
    EpilogueTable epi
    OptimTable optim
    SparseTable sparse       # the sparse first layer's row kernel (_sparse.pxd)

# The installed path: one atomic pointer load.  Paths are static and never freed, so a caller that
# took the pointer keeps valid kernels even if set_kernel installs another path meanwhile; take it
# once per pass (or per epoch) so a pass never mixes paths.
cdef const KernelPath* current_path() noexcept nogil
