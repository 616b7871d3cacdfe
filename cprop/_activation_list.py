"""The activations: one entry each, the only list of them.

``setup.py`` reads this file (without importing cprop, as it reads ``_kernel_paths.py``) and renders
``src/cprop/_activations.pxi.tp`` from it into the engine's enum (``ACT_<NAME>``), the flags
(``act_needs_z``, ``act_is_elementwise``) and the forward and backward tile dispatch, which
``src/cprop/_activations.pxd`` includes below its hand-written element functions.  At run time
``cprop._activations`` (the codes, ``NEEDS_Z``) and ``cprop._engine`` (``HIDDEN_ACTIVATIONS``,
``OUTPUT_ACTIVATIONS``) read the same list, and ``tests/engine/test_activations.py`` checks that
``cprop.onnx.ACTIVATIONS`` has a formula for every entry.

Adding an activation: one entry here, its ``<name>_forward`` / ``<name>_backward`` pair in
``src/cprop/_activations.pxd`` (micrograd style: the derivative beside the function), and its ONNX
formula in ``cprop/onnx.py``.  Then rebuild (``python setup.py build_ext --inplace``).

Fields
------
name      the Python name (``activation=`` / ``out_activation_``).
hidden    allowed in hidden layers.
output    an output layer's activation (each has its canonical loss in ``cprop/_loss_list.py``).
needs_z   its derivative reads the pre-activation z (the forward epilogue then saves z), else the
          output a = f(z).  True exactly for the activations whose derivative is not a function of
          their output (not monotonic): see ``_activations.pxd``, design note 2.
forward   the C element function z -> f(z); with ``row``, the C function that transforms one row
          in place, ``f(floating* z, intp_t n)``.
backward  the C element function that gives f' from a (or from z with ``needs_z``); None for a
          row-wise activation (softmax is paired with log-loss, whose delta already includes it).
row       row-wise rather than element-wise (softmax): never fused into a GEMM tile.
skip      f(z) = z and f' = 1: the tile loops leave the values untouched (saves a pass).
fuse_bias the forward tile adds the bias and applies f in one pass when no z is saved (relu, the
          common hidden layer: bias and max then read each value once).
delta     optional C function (d, a) -> d * f'(a) used by the backward tile instead of
          ``d * backward(a)`` (relu: a select, so an inf or NaN delta of a dead unit gives 0, as
          scikit-learn's ``delta[Z == 0] = 0``).

The enum's values are the entries' positions (``codes()``), but nothing compares codes or depends
on their order: every test on a code is against a named ``ACT_*`` or a generated flag.
"""


def _act(name, *, hidden=True, output=False, needs_z=False, row=False, skip=False,
         fuse_bias=False, delta=None, forward=None, backward=None):
    return {"name": name, "hidden": hidden, "output": output, "needs_z": needs_z,
            "forward": forward or f"{name}_forward",
            "backward": None if row else (backward or f"{name}_backward"),
            "row": row, "skip": skip, "fuse_bias": fuse_bias, "delta": delta}


ACTIVATIONS = (
    _act("identity", output=True, skip=True),
    _act("logistic", output=True),
    _act("tanh"),
    _act("relu", fuse_bias=True, delta="relu_delta"),
    _act("exp", hidden=False, output=True),                     # output of the Poisson loss
    _act("softmax", hidden=False, output=True, row=True, forward="softmax_row"),
    _act("leaky_relu"),
    _act("elu"),
    _act("selu"),
    _act("softplus"),
    _act("gelu", needs_z=True),          # exact: z Phi(z)
    _act("gelu_tanh", needs_z=True),     # tanh approximation
    _act("silu", needs_z=True),          # z sigmoid(z)
    _act("mish", needs_z=True),          # z tanh(softplus(z))
)


def codes():
    """Name -> the engine's ``ACT_*`` code (the template renders the enum from this too)."""
    return {a["name"]: code for code, a in enumerate(ACTIVATIONS)}


HIDDEN_ACTIVATIONS = tuple(a["name"] for a in ACTIVATIONS if a["hidden"])
OUTPUT_ACTIVATIONS = tuple(a["name"] for a in ACTIVATIONS if a["output"])
NEEDS_Z = frozenset(a["name"] for a in ACTIVATIONS if a["needs_z"])
