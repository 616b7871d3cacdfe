# The one place for fused types and ctypedefs shared by the engine.

ctypedef fused floating:
    float
    double

ctypedef Py_ssize_t intp_t
