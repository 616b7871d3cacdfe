"""Elementwise activations and their derivatives over arrays (row-parallel).

The per-element forward/backward pairs live in ``_activations.pxd`` as inline functions, so the GEMM
epilogue and the backprop module inline them; this module holds the array loops and the Python
wrappers the tests call.
"""
from cython.parallel cimport prange

from cprop._typedefs cimport floating, intp_t
from cprop._config cimport ROWS_PARALLEL_MIN

from cprop._activation_list import ACTIVATIONS as _LIST, codes as _codes

# Name -> ACT_* code, and the activations whose derivative reads the pre-activation z (see
# _activations.pxd, design note 2): both from the list the enum and the dispatch were rendered from.
ACTIVATION_CODES = _codes()
NEEDS_Z = frozenset(a["name"] for a in _LIST if a["needs_z"])


def _check_rendered():
    """The compiled codes, names and flags agree with the list (else the build predates a change to
    the list, and every code could mean another activation)."""
    cdef const char* name
    stale = []
    for a in _LIST:
        code = ACTIVATION_CODES[a["name"]]
        name = act_name(code)
        if (name == NULL or name.decode() != a["name"] or act_needs_z(code) != a["needs_z"]
                or act_is_elementwise(code) == a["row"]):
            stale.append(a["name"])
    if stale:
        raise ImportError(f"cprop._activations was built from another activation list (differs at "
                          f"{stale}); rebuild: python setup.py build_ext --inplace")


_check_rendered()


cdef inline floating* _row(floating* M, intp_t i, intp_t ld) noexcept nogil:
    """Row i of M (NULL when M is)."""
    return (M + i * ld) if M != NULL else NULL


cdef void forward_rows(floating* Z, intp_t n_rows, intp_t n_cols, intp_t ldz, const floating* bias,
                       int act, floating* zsave, int n_threads) noexcept nogil:
    """Z := f(Z + 1 bias^T), row by row; zsave (n_rows x ldz, or NULL) := Z + 1 bias^T."""
    cdef intp_t i
    if n_threads > 1 and n_rows * n_cols > ROWS_PARALLEL_MIN:
        for i in prange(n_rows, num_threads=n_threads, schedule='static'):
            act_forward_row(Z + i * ldz, bias, n_cols, act, _row(zsave, i, ldz))
    else:
        for i in range(n_rows):
            act_forward_row(Z + i * ldz, bias, n_cols, act, _row(zsave, i, ldz))


cdef void backward_rows(floating* D, const floating* A, intp_t n_rows, intp_t n_cols, intp_t ld,
                        int act, int n_threads) noexcept nogil:
    """D := D * f'(Z), with f'(Z) written through A = f(Z)."""
    cdef intp_t i
    if n_threads > 1 and n_rows * n_cols > ROWS_PARALLEL_MIN:
        for i in prange(n_rows, num_threads=n_threads, schedule='static'):
            act_backward_row(D + i * ld, A + i * ld, n_cols, act)
    else:
        for i in range(n_rows):
            act_backward_row(D + i * ld, A + i * ld, n_cols, act)


def _code(name):
    try:
        return ACTIVATION_CODES[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(ACTIVATION_CODES)}."
        ) from None


def forward(str name, floating[:, ::1] Z, int n_threads=1):
    """Z := f(Z) in place, for the activation called ``name``.

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._activations import forward
    >>> Z = np.array([[-1.0, 2.0]]); forward("relu", Z); Z
    array([[0., 2.]])
    """
    cdef int act = _code(name)
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        return
    with nogil:
        forward_rows(&Z[0, 0], Z.shape[0], Z.shape[1], Z.shape[1], NULL, act, NULL, n_threads)


def backward(str name, const floating[:, ::1] A, floating[:, ::1] D, int n_threads=1):
    """D := D * f'(Z) in place, where A = f(Z) is the forward output, or A = Z itself for the
    activations in ``NEEDS_Z`` (gelu, gelu_tanh, silu, mish), whose derivative reads Z.

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._activations import backward
    >>> A = np.array([[0.5]]); D = np.ones((1, 1)); backward("logistic", A, D); D
    array([[0.25]])
    """
    cdef int act = _code(name)
    if act == ACT_SOFTMAX:
        raise ValueError("softmax has no elementwise derivative; it is paired with log-loss.")
    if A.shape[0] != D.shape[0] or A.shape[1] != D.shape[1]:
        raise ValueError(f"A has shape ({A.shape[0]}, {A.shape[1]}) but D has ({D.shape[0]}, {D.shape[1]}); they must match.")
    if D.shape[0] == 0 or D.shape[1] == 0:
        return
    with nogil:
        backward_rows(&D[0, 0], &A[0, 0], D.shape[0], D.shape[1], D.shape[1], act, n_threads)
