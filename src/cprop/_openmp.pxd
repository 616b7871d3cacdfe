cdef int effective_n_threads_c(int n_threads) noexcept nogil
