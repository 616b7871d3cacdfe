"""The Python face of the compiled engine: a network description, its flat parameters, and calls.

Design
1. ``Network`` holds the architecture (layer sizes, activation per layer, output loss), the dtype
   (float32 or float64) and a *plan*: offsets of each W_l / b_l in the flat parameter vector and of
   every work buffer, computed once.  Parameters are one flat vector W_0, b_0, W_1, b_1, ...;
   ``coefs``/``intercepts`` return reshaped views of it, so estimators expose scikit-learn's
   ``coefs_``/``intercepts_`` layout without copies.
2. Inputs are validated here once per call (dtype, C order, shapes, CSR conversion); the kernels
   trust them.
3. One epoch of SGD/Adam is one call into compiled code (``Network.train_epoch``); the caller draws
   the row order at the epoch boundary.  A fit builds one ``_train.Runner`` (``Network.runner``:
   the plan in its checked, immutable form, the data checked once, the work buffers allocated
   once) and drives it: ``Network.epochs`` trains one epoch per call, ``cprop._fast_fit`` many,
   and L-BFGS calls its full-batch ``loss_grad`` per iteration.  ``train_epoch`` and
   ``loss_grad`` here are one-shot runners.
4. An optional input block (``input_block``) puts typed per-feature layers before the first dense
   layer: ``scale`` (a learnable scale per column) and ``periodic`` (RealMLP's PBLD numeric
   embedding), and, as the block's first layer only, ``embedding`` (a learnable table per
   category-code column, RealMLP's categorical embedding).  Their parameters follow the dense
   ones in the flat vector (``block_params`` gives views), so ``coefs``/``intercepts`` keep their
   offsets; the first dense layer's fan-in is then the block's output width (``dense_sizes[0]``).
   Category codes are checked here, once per call (``_check_codes``): the kernels trust them
   (and clamp an out-of-range code to the missing row all the same).
5. Parameter groups: every segment of the flat vector (each layer's weights, biases, the scale,
   the periodic layer's first (w1, b1) and second (W2, b2) parts) has a learning-rate factor and
   a weight-decay factor (``lr_factors``/``wd_factors`` by group kind), applied by the compiled
   optimizer updates.  ``parametrization="ntk"`` is the neural-tangent parametrisation expressed
   with them (see ``_train._update_segment``).

Examples
--------
>>> import numpy as np
>>> from cprop._engine import Network
>>> net = Network([3, 5, 2], ["relu"], "softmax", np.float64)
>>> params = net.init_params(np.random.RandomState(0))
>>> P = net.predict(params, np.ones((4, 3)))
>>> P.shape, bool(np.allclose(P.sum(axis=1), 1))
((4, 2), True)
"""
import threading

import numpy as np
import scipy.sparse as sp

from . import _activation_list, _backprop, _loss_list, _train
from ._activations import ACTIVATION_CODES
from ._losses import LOSS_CODES
from ._openmp import effective_n_threads
from ._optimizers import OptimizerState  # noqa: F401 (its home is cprop._optimizers)

# The activation names, from the one list of activations (cprop/_activation_list.py).
HIDDEN_ACTIVATIONS = _activation_list.HIDDEN_ACTIVATIONS
OUTPUT_ACTIVATIONS = _activation_list.OUTPUT_ACTIVATIONS
# Each output activation's own loss, and the others it may carry: from the one list of losses
# (cprop/_loss_list.py).
OUTPUT_LOSS = _loss_list.OUTPUT_LOSS
OTHER_LOSSES = _loss_list.OTHER_LOSSES
# Rows per pass for full-batch loss/gradient and prediction: bounds memory, fixed (not derived
# from the thread count) so results do not depend on it.
FULL_BATCH_CHUNK = 4096
# A full-batch loss/gradient pass (L-BFGS's objective) also holds about this many GEMM flops
# at most: _train.loss_grad handles pending signals once DEFAULT_POLL_FLOPS have run, so with
# passes of just that size it does so after every pass and a Ctrl-C waits for one pass (~10 ms
# on the avx512 path, ~70 ms on the portable one; a 4096-row pass of a 784-1024-10 network was
# 1.3e10 flops, 0.1-1 s).  Derived from the layer sizes alone (full_batch_rows), never from the
# thread count or the machine, so results stay the same everywhere.
FULL_BATCH_PASS_FLOPS = _train.DEFAULT_POLL_FLOPS
# Rows per pass of a one-thread prediction: a pass's layer outputs stay in L2 (predict of the W1
# network at 1 thread, paired runs: 66-68 GFLOP/s against 56-63 with 4096 rows).  With more
# threads the longer passes win (2 threads: 116 against 105).  Rows are independent, so the chunk
# never changes a prediction.
PREDICT_CHUNK_SERIAL = 512
# GEMM flops between two polls for Ctrl-C / progress inside a compiled epoch (read at each call,
# so tests can lower it); see cprop._train, design note 5.
POLL_FLOPS = _train.DEFAULT_POLL_FLOPS


# Plans kept per Network (one per distinct row count of a pass); least recently used dropped.
PLAN_CACHE_SIZE = 16


def full_batch_rows(layer_sizes):
    """Rows per full-batch pass: FULL_BATCH_CHUNK, fewer for a network whose pass would go
    past FULL_BATCH_PASS_FLOPS: then the fewest rows that reach it (at least 64), counting a
    row's flops as the compiled passes do (``_train.row_flops``)."""
    row_flops = _train.row_flops(layer_sizes)
    return int(min(FULL_BATCH_CHUNK, max(64, -(-FULL_BATCH_PASS_FLOPS // row_flops))))


def check_sparse_structure(X, name="X"):
    """Raise ValueError unless the index arrays of sparse ``X`` describe its shape.

    scipy trusts ``indptr``/``indices`` (and COO coordinates): a column index of -1 or past the
    last column, or an ``indptr`` that decreases or runs past the stored values, makes its own
    conversions and the engine's kernels read or write outside the arrays.  Checked with a few
    vectorised passes over the index arrays, without modifying X (scipy's
    ``check_format(full_check=True)`` may rewrite index dtypes in place).  Dense input passes.
    """
    if not sp.issparse(X):
        return
    fmt = X.format
    if fmt in ("csr", "csc"):
        n_major, n_minor = X.shape if fmt == "csr" else X.shape[::-1]
        what = "column" if fmt == "csr" else "row"
        indptr, indices, data = np.asarray(X.indptr), np.asarray(X.indices), np.asarray(X.data)
        problem = None
        if indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1:
            problem = "indptr, indices and data must be 1-D"
        elif not (np.issubdtype(indptr.dtype, np.integer)
                  and np.issubdtype(indices.dtype, np.integer)):
            problem = f"indptr and indices must be integers (got {indptr.dtype}, {indices.dtype})"
        elif indptr.shape[0] != n_major + 1:
            problem = f"indptr has {indptr.shape[0]} entries for {n_major} {fmt[-1]}-rows " \
                      f"(expected {n_major + 1})"
        elif indptr[0] != 0:
            problem = f"indptr starts at {indptr[0]} instead of 0"
        elif indptr[-1] > min(indices.shape[0], data.shape[0]):
            problem = (f"indptr ends at {indptr[-1]} but only {indices.shape[0]} indices and "
                       f"{data.shape[0]} values are stored")
        elif n_major and np.any(indptr[1:] < indptr[:-1]):
            problem = "indptr is not non-decreasing"
        elif indptr[-1] > 0:
            used = indices[:indptr[-1]]
            lo, hi = used.min(), used.max()
            if lo < 0 or hi >= n_minor:
                problem = (f"{what} index {lo if lo < 0 else hi} is outside [0, {n_minor}) for "
                           f"a matrix of shape {X.shape}")
    elif fmt == "coo":
        coords = getattr(X, "coords", None) or (X.row, X.col)
        problem = None
        for axis, c in enumerate(coords):
            c = np.asarray(c)
            if c.shape[0] != np.asarray(X.data).shape[0]:
                problem = "row, col and data have different lengths"
            elif c.size and (c.min() < 0 or c.max() >= X.shape[axis]):
                problem = (f"a {'row' if axis == 0 else 'column'} coordinate lies outside "
                           f"[0, {X.shape[axis]})")
            if problem:
                break
    else:
        return
    if problem:
        raise ValueError(f"{name} is a malformed sparse {fmt.upper()} matrix: {problem}. Rebuild it "
                         f"with scipy (e.g. scipy.sparse.csr_matrix((data, indices, indptr), "
                         f"shape=...)) and check it with {name}.check_format(full_check=True).")


def to_engine_csr(X, dtype):
    """Canonical CSR (sorted indices, duplicates summed, as ``X.toarray()`` sums them) with
    ``dtype`` data and intp indices: the layout the kernels read.  X itself is never modified.

    Converting once (estimators do it per fit) means later calls pass X to the kernels uncopied.
    The index arrays are checked first (``check_sparse_structure``): the kernels trust them.
    """
    check_sparse_structure(X)
    X = sp.csr_matrix(X)
    if not X.has_canonical_format:
        X = X.copy()        # csr_matrix(X) may share X's arrays; sum_duplicates works in place
        X.sum_duplicates()
    if X.data.dtype == dtype and X.indices.dtype == np.intp and X.indptr.dtype == np.intp:
        return X
    out = sp.csr_matrix(X.shape, dtype=dtype)
    # Assigned after construction: the constructor would narrow int64 indices back to int32.
    out.data = np.ascontiguousarray(X.data, dtype=dtype)
    out.indices = np.ascontiguousarray(X.indices, dtype=np.intp)
    out.indptr = np.ascontiguousarray(X.indptr, dtype=np.intp)
    out.has_canonical_format = True     # (implies sorted indices)
    return out


def _check_batch_weights(sw_in_order, batch_size):
    """Every mini-batch needs a non-zero weight sum: its loss is divided by that sum."""
    n = sw_in_order.shape[0]
    if n == 0:
        return
    sums = np.add.reduceat(sw_in_order.astype(np.float64, copy=False),
                           np.arange(0, n, batch_size))
    zero = np.flatnonzero(sums == 0)
    if zero.size:
        b = int(zero[0])
        raise ValueError(
            f"mini-batch {b} (rows {b * batch_size} to {min(n, (b + 1) * batch_size) - 1} of the "
            f"epoch order) has sample weights summing to 0, so its weighted mean loss is "
            "undefined. Use a larger batch_size, shuffle=True, or drop the zero-weight samples.")


def as_engine_input(X, dtype):
    """X as the kernels read it: C-contiguous ``dtype`` rows, or ``to_engine_csr``."""
    if sp.issparse(X):
        return to_engine_csr(X, dtype)
    return np.ascontiguousarray(X, dtype=dtype)


def _as_input(X, dtype):
    """(dense, data, indices, indptr, n_features) for the kernels."""
    X = as_engine_input(X, dtype)
    if sp.issparse(X):
        return None, X.data, X.indices, X.indptr, X.shape[1]
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; got an array of shape {X.shape}.")
    return X, None, None, None, X.shape[1]


class Network:
    """A feed-forward network of dense layers, trained by the compiled engine.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, hidden_1, ..., n_outputs]``.
    activation : str or sequence of str
        Hidden activation(s): one name for all hidden layers or one per hidden layer.
    out_activation : {'identity', 'logistic', 'softmax', 'exp'}
        Output activation; it fixes the loss (squared error, binary log-loss, log-loss, Poisson).
    dtype : numpy dtype
        float32 or float64; parameters, data and buffers all use it.
    n_threads : int or None
        OpenMP threads (None: the engine's policy, see ``cprop._openmp.effective_n_threads``).
    loss : str or None
        None: the output activation's canonical loss (``OUTPUT_LOSS``), else one of the others
        it may carry (``OTHER_LOSSES``: with an identity output 'absolute_error' or 'huber').
    loss_param : float or None
        The loss's parameter (``cprop/_loss_list.py``: Huber's delta, the cross-entropies' label
        smoothing), checked against its range; None: its default (and the only value for a loss
        without one).
    dropout : float, sequence of float or None
        Dropout rate of the hidden layers' outputs during training (one for all or one per
        hidden layer, each in [0, 1)); used by ``train_epoch`` when the optimizer state carries
        a ``dropout_seed``.
    input_block : sequence or None
        Typed per-feature layers applied, in order, to dense X before the first dense layer
        (sparse X is refused then): ``"scale"`` / ``{"kind": "scale"}`` (y_j = s_j x_j, s
        initialised to 1) and ``{"kind": "periodic", "n_frequencies": 16, "n_outputs": 3,
        "features": None, "sigma": 0.1}`` (per embedded column j: [W2_j cos(2 pi w1_j x_j +
        b1_j) + b2_j, x_j]; ``features`` lists the embedded columns of the layer's input, None:
        all; the others pass through; init w1 ~ N(0, sigma^2), b1 ~ U[-pi, pi], W2, b2 ~
        U[-1/sqrt(k), 1/sqrt(k)]) and, as the first layer only, ``{"kind": "embedding",
        "features": [j, ...], "cardinalities": [K_j, ...], "dim": 8}`` (column j of X holds a
        category code, 0..K_j-1 for known categories and K_j for missing/unknown, stored as a
        float; it becomes the d = ``dim`` values of row x_j of its table T_j, (K_j + 1) x d,
        initialised N(0, 1); the other columns pass through; codes are checked at every call
        and a code outside 0..K_j or not an integer is an error).  ``layer_sizes[0]`` stays the
        width of X; ``dense_sizes[0]`` is the block's output width.
    lr_factors, wd_factors : dict or None
        Learning-rate and weight-decay factors by parameter group: ``"weights"`` (a number, or
        one per dense layer), ``"biases"``, ``"scale"``, ``"periodic_first"`` (w1, b1),
        ``"periodic_second"`` (W2, b2), ``"embedding"`` (the tables).  Defaults: lr factors 1; wd factors 1 but 0 for biases.
        A group's wd factor scales both penalties on it: the L2 term ``alpha`` (in the loss and
        its gradient) and AdamW's decoupled decay (lr * weight_decay * lr factor * wd factor).
    parametrization : {'standard', 'ntk'}
        'ntk': the neural-tangent parametrisation in standard form: each dense layer's weights
        get lr factor 1/sqrt(fan_in) and wd factor sqrt(fan_in) (times any given factors), and
        ``init_params`` draws them from N(0, 1/fan_in) with zero biases (see
        ``cprop._train._update_segment`` for the equivalence).

    Examples
    --------
    >>> import numpy as np
    >>> net = Network([5, 16, 1], "relu", "identity", np.float64,
    ...               input_block=[{"kind": "periodic", "n_frequencies": 8, "n_outputs": 3,
    ...                             "features": [0, 1, 2]}, "scale"],
    ...               lr_factors={"scale": 6.0, "periodic_first": 0.1, "periodic_second": 0.1},
    ...               parametrization="ntk")
    >>> net.dense_sizes
    [14, 16, 1]
    >>> params = net.init_params(np.random.RandomState(0))
    >>> [sorted(p) for p in net.block_params(params)]
    [['W2', 'b1', 'b2', 'w1'], ['scale']]
    """

    def __init__(self, layer_sizes, activation, out_activation, dtype, n_threads=None, loss=None,
                 loss_param=None, dropout=None, input_block=None, lr_factors=None,
                 wd_factors=None, parametrization="standard"):
        self.layer_sizes = [int(s) for s in layer_sizes]
        if len(self.layer_sizes) < 2 or min(self.layer_sizes) < 1:
            raise ValueError(f"layer_sizes must hold >= 2 positive ints; got {layer_sizes}.")
        n_hidden = len(self.layer_sizes) - 2
        if isinstance(activation, str):
            activation = [activation] * n_hidden
        activation = list(activation)
        if len(activation) != n_hidden:
            raise ValueError(f"{len(activation)} hidden activations given for {n_hidden} hidden layers.")
        for a in activation:
            if a not in HIDDEN_ACTIVATIONS:
                raise ValueError(f"Unknown activation {a!r}; expected one of {HIDDEN_ACTIVATIONS}.")
        if out_activation not in OUTPUT_LOSS:
            raise ValueError(f"Unknown output activation {out_activation!r}; expected one of "
                             f"{sorted(OUTPUT_LOSS)}.")
        self.activations = activation
        self.out_activation = out_activation
        self.loss = OUTPUT_LOSS[out_activation] if loss is None else loss
        if self.loss not in _loss_list.losses_of(out_activation):
            raise ValueError(f"loss {loss!r} does not go with the output activation "
                             f"{out_activation!r}.")
        self.loss_param = _loss_list.check_param(self.loss, loss_param)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype}.")
        self.n_threads = effective_n_threads(n_threads)
        if dropout is not None:
            rates = np.broadcast_to(np.asarray(dropout, dtype=np.float64), (n_hidden,)) \
                if np.ndim(dropout) == 0 else np.asarray(dropout, dtype=np.float64)
            if rates.shape != (n_hidden,) or not np.all((rates >= 0) & (rates < 1)):
                raise ValueError(f"dropout must be one rate in [0, 1) or one per hidden layer "
                                 f"({n_hidden}); got {dropout!r}.")
            dropout = [float(r) for r in rates] if np.any(rates > 0) else None
        self.dropout = dropout
        self._acts = [ACTIVATION_CODES[a] for a in activation] + [ACTIVATION_CODES[out_activation]]
        self._set_block(input_block, lr_factors, wd_factors, parametrization)
        self._plans = {}
        self._plans_lock = threading.Lock()
        plan = self.plan(1)
        self.n_params = plan["n_params"]
        self._w_off = plan["w_off"]
        self._b_off = plan["b_off"]

    def _set_block(self, input_block, lr_factors, wd_factors, parametrization):
        """The input block (checked), the dense sizes and each parameter segment's factors."""
        if parametrization not in ("standard", "ntk"):
            raise ValueError(f"parametrization must be 'standard' or 'ntk'; got "
                             f"{parametrization!r}.")
        self.parametrization = parametrization
        entries = list(input_block) if input_block is not None else []
        self._sigmas = [float(e.get("sigma", 0.1)) if isinstance(e, dict) else 0.1
                        for e in entries]
        if any(not (np.isfinite(sg) and sg > 0) for sg in self._sigmas):
            raise ValueError(f"a periodic layer's sigma must be > 0; got {self._sigmas}.")
        self.input_block, width = _backprop.normalize_block(entries, self.layer_sizes[0])
        self.dense_sizes = [width] + self.layer_sizes[1:]
        # segment kinds from a plan without factors (the defaults), then the factors per segment
        base = _backprop.make_plan(self.layer_sizes, self._acts, LOSS_CODES[self.loss], 1,
                                   self.dtype, 1, block=self.input_block)
        self.seg_kind = base["seg_kind"]
        self._seg_off, self._seg_len = base["seg_off"], base["seg_len"]
        n_layers = len(self.dense_sizes) - 1
        fan_in = np.array(self.dense_sizes[:-1], dtype=np.float64)
        lr = np.array(base["seg_lr"], dtype=np.float64)
        wd = np.array(base["seg_wd"], dtype=np.float64)
        for name, given, out in (("lr_factors", lr_factors, lr), ("wd_factors", wd_factors, wd)):
            given = dict(given or {})
            unknown = set(given) - set(_backprop.GROUP_KINDS)
            if unknown:
                raise ValueError(f"{name} has unknown groups {sorted(unknown)}; expected some of "
                                 f"{list(_backprop.GROUP_KINDS)}.")
            for kind, value in given.items():
                v = np.asarray(value, dtype=np.float64)
                if kind == "weights" and v.ndim == 1:
                    if v.shape != (n_layers,):
                        raise ValueError(f"{name}['weights'] needs one factor per dense layer "
                                         f"({n_layers}); got {value!r}.")
                elif v.ndim != 0:
                    raise ValueError(f"{name}[{kind!r}] must be a number; got {value!r}.")
                if not (np.all(np.isfinite(v)) and np.all(v >= 0)):
                    raise ValueError(f"{name}[{kind!r}] must be finite and >= 0; got {value!r}.")
                idx = [i for i, k in enumerate(self.seg_kind) if k == kind]
                out[idx] = np.broadcast_to(v, (len(idx),)) if kind != "weights" else (
                    v if v.ndim else np.full(n_layers, float(v)))
        if parametrization == "ntk":
            idx = [i for i, k in enumerate(self.seg_kind) if k == "weights"]
            lr[idx] = lr[idx] / np.sqrt(fan_in)
            wd[idx] = wd[idx] * np.sqrt(fan_in)
        self.seg_lr, self.seg_wd = lr, wd

    # -- parameters ----------------------------------------------------------------------------
    def plan(self, cap):
        """The buffer layout (a dict from ``make_plan``) for passes of up to ``cap`` rows."""
        return self._checked_plan(cap).plan

    def _checked_plan(self, cap):
        """``plan(cap)`` checked once (``_train.CheckedPlan``: the engine's calls take it without
        checking it again), cached; least recently used dropped beyond ``PLAN_CACHE_SIZE``
        (predict makes one per distinct short row count)."""
        key = max(int(cap), 1)
        with self._plans_lock:        # predict may run in several Python threads at once
            plan = self._plans.pop(key, None)
            if plan is None:
                plan = _train.CheckedPlan(
                    _backprop.make_plan(self.layer_sizes, self._acts, LOSS_CODES[self.loss], key,
                                        self.dtype, self.n_threads,
                                        loss_param=self.loss_param or 0.0,
                                        dropout=self.dropout, block=self.input_block,
                                        seg_lr=self.seg_lr, seg_wd=self.seg_wd), self.dtype)
                while len(self._plans) >= PLAN_CACHE_SIZE:
                    del self._plans[next(iter(self._plans))]
            self._plans[key] = plan   # most recently used last (dicts keep insertion order)
        return plan

    def coefs(self, params):
        """Views W_l of shape (fan_in, fan_out) into the flat vector."""
        s = self.dense_sizes
        return [params[o:o + s[i] * s[i + 1]].reshape(s[i], s[i + 1])
                for i, o in enumerate(self._w_off)]

    def intercepts(self, params):
        """Views b_l of shape (fan_out,) into the flat vector."""
        s = self.dense_sizes
        return [params[o:o + s[i + 1]] for i, o in enumerate(self._b_off)]

    def pack(self, coefs, intercepts):
        """Flat vector from lists of W_l and b_l (shapes checked)."""
        params = np.empty(self.n_params, dtype=self.dtype)
        s = self.dense_sizes
        if len(coefs) != len(s) - 1 or len(intercepts) != len(s) - 1:
            raise ValueError(f"expected {len(s) - 1} coefs and intercepts; got {len(coefs)} and "
                             f"{len(intercepts)}.")
        for i, (W, b, wv, bv) in enumerate(zip(coefs, intercepts, self.coefs(params),
                                               self.intercepts(params))):
            W = np.asarray(W)
            b = np.asarray(b)
            if W.shape != wv.shape or b.shape != bv.shape:
                raise ValueError(f"layer {i}: coefs_ has shape {W.shape} and intercepts_ {b.shape}; "
                                 f"expected {wv.shape} and {bv.shape}.")
            wv[...] = W
            bv[...] = b
        for layer, view in zip(self.input_block, self.block_params(params)):
            for v in view.values():
                v[...] = 1.0 if layer[0] == "scale" else 0.0
        return params

    def block_params(self, params):
        """Views of the input block's parameters, one dict per block layer: ``{"scale": s}``
        (n_in,), or ``{"w1": (ne, k), "b1": (ne, k), "W2": (ne, k, m), "b2": (ne, m)}`` for a
        periodic layer with ``ne`` embedded columns (row e: the e-th of its ``features``), or
        ``{"table": (sum_j (K_j + 1), d)}`` for an embedding layer: the tables of its
        ``features`` (in increasing column order) one after the other, row K_j of each for
        missing/unknown (``embedding_tables`` splits it per column)."""
        views = []
        if not self.input_block:
            return views
        plan = self.plan(1)
        blk = np.asarray(plan["block"]).reshape(-1, _backprop.BLOCK_FIELDS)
        for b, layer in enumerate(self.input_block):
            o, n_in = int(blk[b, _backprop.BF_POFF_]), int(blk[b, _backprop.BF_NIN_])
            if layer[0] == "scale":
                views.append({"scale": params[o:o + n_in]})
                continue
            if layer[0] == "embedding":
                _, d, feats, cards = layer
                rows = sum(k + 1 for k in cards)
                views.append({"table": params[o:o + rows * d].reshape(rows, d)})
                continue
            _, k, m, feats = layer
            ne = len(feats)
            views.append({"w1": params[o:o + ne * k].reshape(ne, k),
                          "b1": params[o + ne * k:o + 2 * ne * k].reshape(ne, k),
                          "W2": params[o + 2 * ne * k:o + 2 * ne * k + ne * k * m].reshape(ne, k, m),
                          "b2": params[o + 2 * ne * k + ne * k * m:
                                       o + 2 * ne * k + ne * k * m + ne * m].reshape(ne, m)})
        return views

    def embedding_tables(self, params):
        """{input column j: view of its table T_j, (K_j + 1) x d} of the embedding layer (an
        empty dict without one)."""
        if not self.input_block or self.input_block[0][0] != "embedding":
            return {}
        _, d, feats, cards = self.input_block[0]
        table = self.block_params(params)[0]["table"]
        starts = np.concatenate([[0], np.cumsum([k + 1 for k in cards])])
        return {j: table[starts[e]:starts[e + 1]] for e, j in enumerate(feats)}

    def _check_codes(self, X):
        """Raise ValueError unless every category-code column of dense X holds integers in
        0..K_j (K_j: missing/unknown); the kernels trust the codes."""
        if not self.input_block or self.input_block[0][0] != "embedding" or sp.issparse(X):
            return
        _, d, feats, cards = self.input_block[0]
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            return      # the shape error comes from the compiled call's check
        for j, k in zip(feats, cards):
            c = X[:, j]
            bad = ~((c >= 0) & (c <= k) & (c == np.floor(c)))
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"column {j} of X holds category codes for an embedding with {k} known "
                    f"categories, so each value must be an integer in 0..{k} ({k}: missing or "
                    f"unknown); row {r} holds {float(c[r])!r}. Encode the column as integer codes "
                    f"(e.g. with sklearn.preprocessing.OrdinalEncoder) and map missing and "
                    f"unseen categories to {k}.")

    def segments(self):
        """The parameter segments as (group kind, slice of the flat vector, lr factor, wd
        factor): the input block's first, then W_0, b_0, W_1, ..."""
        return [(k, slice(int(o), int(o) + int(n)), float(lr), float(wd))
                for k, o, n, lr, wd in zip(self.seg_kind, self._seg_off, self._seg_len,
                                           self.seg_lr, self.seg_wd)]

    def init_params(self, random_state, factor=6.0):
        """Glorot-uniform initialisation drawn exactly as scikit-learn's MLP draws it.

        For each layer, W then b from U(-r, r), r = sqrt(factor / (fan_in + fan_out)), in float64,
        then cast (factor 2 for logistic hidden units, 6 otherwise, chosen by the caller).  With
        ``parametrization="ntk"``: W ~ N(0, 1/fan_in), b = 0.  Then the input block's layers in
        order, from the same ``random_state``: scale 1; periodic w1 ~ N(0, sigma^2), b1 ~
        U[-pi, pi], W2 ~ U[-1/sqrt(k), 1/sqrt(k)], b2 likewise (RealMLP's PBLD init; 1/4 at k=16);
        then the embedding tables ~ N(0, 1) (RealMLP's), drawn after all the others.
        """
        coefs, intercepts = [], []
        s = self.dense_sizes
        for i in range(len(s) - 1):
            if self.parametrization == "ntk":
                coefs.append(random_state.standard_normal((s[i], s[i + 1])) / np.sqrt(s[i]))
                intercepts.append(np.zeros(s[i + 1]))
                continue
            bound = np.sqrt(factor / (s[i] + s[i + 1]))
            coefs.append(random_state.uniform(-bound, bound, (s[i], s[i + 1])))
            intercepts.append(random_state.uniform(-bound, bound, s[i + 1]))
        params = self.pack(coefs, intercepts)
        self.init_block(params, random_state)
        return params

    def init_block(self, params, random_state):
        """Draw the input block's parameters in ``params`` (in place) from ``random_state``, layer
        by layer: scale 1; periodic w1 ~ N(0, sigma^2), b1 ~ U[-pi, pi], W2 and b2 ~
        U[-1/sqrt(k), 1/sqrt(k)]; then the embedding tables ~ N(0, 1), after all the others.
        Nothing is drawn without a periodic or an embedding layer."""
        for layer, sigma, view in zip(self.input_block, self._sigmas, self.block_params(params)):
            if layer[0] != "periodic":
                continue
            _, k, m, feats = layer
            ne, r = len(feats), 1.0 / np.sqrt(k)
            view["w1"][...] = random_state.normal(0.0, sigma, (ne, k))
            view["b1"][...] = random_state.uniform(-np.pi, np.pi, (ne, k))
            view["W2"][...] = random_state.uniform(-r, r, (ne, k, m))
            view["b2"][...] = random_state.uniform(-r, r, (ne, m))
        # embedding tables last, so the other layers' draws do not depend on them
        for layer, view in zip(self.input_block, self.block_params(params)):
            if layer[0] == "embedding":
                view["table"][...] = random_state.standard_normal(view["table"].shape)

    # -- compiled calls --------------------------------------------------------------------------
    def _check_params(self, params):
        if not (isinstance(params, np.ndarray) and params.dtype == self.dtype
                and params.ndim == 1 and params.shape[0] == self.n_params
                and params.flags.c_contiguous):
            raise ValueError(f"params must be a C-contiguous {self.dtype} vector of "
                             f"{self.n_params} values.")

    def predict(self, params, X):
        """Output activations for X (dense or sparse), shape (n_samples, n_outputs)."""
        self._check_params(params)
        dense, data, indices, indptr, nf = _as_input(X, self.dtype)
        self._check_codes(dense)
        n = X.shape[0]
        out = np.empty((n, self.layer_sizes[-1]), dtype=self.dtype)
        if n:
            chunk = FULL_BATCH_CHUNK if self.n_threads > 1 else PREDICT_CHUNK_SERIAL
            _train.predict(params, dense, data, indices, indptr, nf,
                           self._checked_plan(min(n, chunk)), out)
        return out

    def serve(self, params, X, out=None, labels=None, threshold=0.5, check_finite=True,
              n_threads=None):
        """``predict`` for a caller that checked X itself (the estimators' serving path).

        X must be a C-contiguous 2-D array of this network's dtype and width, ``params`` the
        flat vector (``_check_params``'s conditions), ``out`` None or a C-contiguous
        (n_samples, n_outputs) array of the dtype, ``labels`` None or an intp vector that
        receives each row's argmax (one output: 1 where it is > ``threshold``).  Passes of up
        to ``PREDICT_CHUNK_SERIAL`` rows each run on one thread and the threads (``n_threads``,
        None: this network's) share the passes: a large batch enters one parallel region, not
        one per layer and pass, and a thread the OS delays holds up no other.  Rows are
        independent, so results do not depend on the split or the thread count.  Returns -1,
        or the first row of a pass that holds an inf or NaN when ``check_finite`` (then ``out``
        and ``labels`` are incomplete).
        """
        self._check_codes(X)
        n = X.shape[0]
        nt = self.n_threads if n_threads is None else int(n_threads)
        # about 4 passes per thread for dynamic balancing, at most PREDICT_CHUNK_SERIAL rows; the
        # pass length rounded up to a power of two: a service sees many batch sizes, and each
        # distinct length is a plan to make and cache
        rows = -(-n // (4 * nt)) if nt > 1 else n
        cap = min(PREDICT_CHUNK_SERIAL, 1 << max(rows - 1, 0).bit_length())
        return _train.serve(self._checked_plan(cap), params, X, out, labels, threshold,
                            check_finite, nt)

    def serial_rows(self):
        """The most rows a prediction may have and still run on one thread (``_train``)."""
        return _train.serial_rows(self.dense_sizes)

    def loss_grad(self, params, X, Y, sample_weight=None, alpha=0.0, grad=None, dropout_seed=None,
                  dropout_epoch=0):
        """Full-batch loss and gradient (the objective L-BFGS minimises), from a one-shot
        ``runner``: a fit builds the runner once and calls its ``loss_grad`` per iteration.

        ``dropout_seed`` (a network with dropout rates): the loss with the fixed masks of
        (seed, ``dropout_epoch``, row of X), for gradient checks; None: no dropout.
        """
        run = self.runner(params, X, Y, sample_weight, alpha=alpha, grad=grad)
        loss = run.loss_grad(None, -1 if dropout_seed is None else int(dropout_seed),
                             int(dropout_epoch))
        return loss, run.grad

    def runner(self, params, X, Y, sample_weight=None, batch_size=None, alpha=0.0, grad=None):
        """A ``_train.Runner`` for one fit: X (dense or sparse), Y and the weights converted
        and checked once, the work buffers allocated once.

        ``batch_size``: the mini-batch rows of its epochs; None: full-batch passes
        (``full_batch_rows`` rows each, L-BFGS's ``loss_grad``).  ``params`` (and ``grad``, or
        None for a new one) are used in place.

        Examples
        --------
        >>> import numpy as np
        >>> net = Network([3, 4, 2], "relu", "softmax", np.float64, n_threads=1)
        >>> params = net.init_params(np.random.RandomState(0))
        >>> run = net.runner(params, np.ones((5, 3)), np.eye(2)[[0, 1, 0, 1, 0]])
        >>> loss = run.loss_grad()
        >>> bool(loss == net.loss_grad(params, np.ones((5, 3)), np.eye(2)[[0, 1, 0, 1, 0]])[0])
        True
        """
        self._check_params(params)
        dense, data, indices, indptr, nf = _as_input(X, self.dtype)
        n = X.shape[0]
        self._check_codes(dense)
        Y = self._check_targets(Y, n)
        sw = self._check_sw(sample_weight, n)
        if batch_size is None:
            cap = min(n, full_batch_rows(self.dense_sizes))
            batch_size = 0          # the runner's: its plan's cap
        else:
            cap = batch_size = int(batch_size)
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        return _train.Runner(self._checked_plan(cap), params, grad, dense, data, indices, indptr,
                             nf, Y, sw, batch_size, float(alpha))

    def train_epoch(self, params, state, X, Y, sample_weight=None, order=None, batch_size=200,
                    alpha=0.0, grad=None, hook=None, info=None):
        """One epoch of mini-batches; ``state`` is an ``OptimizerState``. Returns the mean loss.

        Inside the epoch, pending signals (Ctrl-C) are handled and ``hook(rows_done)`` is called
        every ~``_train.DEFAULT_POLL_FLOPS`` flops.  If either raises, the epoch stops after the
        batch in progress; the exception is raised here after ``state.t`` is updated, with the
        mean loss over the rows done and their count in ``info`` (a dict, when given:
        ``info["loss"]``, ``info["rows"]``), so the caller can record the partial epoch.
        """
        return self.epochs(params, state, X, Y, sample_weight, batch_size, alpha,
                           grad)(order, hook, info)

    def epochs(self, params, state, X, Y, sample_weight=None, batch_size=200, alpha=0.0,
               grad=None):
        """``train_epoch`` with its arguments checked once: returns ``run(order=None, hook=None,
        info=None)``, one epoch per call (what a fit's loop calls; a small fit's epoch is a few
        hundred microseconds, so re-checking X, Y and the weights each time would show).

        The optimizer's fixed settings (momentum, betas, epsilon, weight decay, clipping) are
        read now; its learning rate, step count, dropout epoch and per-batch schedules
        (``batch_schedule``) at every call.
        """
        return _Epochs(self, params, state, X, Y, sample_weight, batch_size, alpha, grad)

    def _dropout_key(self, state):
        """Dropout seed and epoch for ``train_epoch`` (advancing the state's epoch count)."""
        seed = state.dropout_seed
        if self.dropout is None or seed is None:
            return {}
        state.dropout_epoch = state.dropout_epoch + 1
        return {"dropout_seed": int(seed), "epoch": int(state.dropout_epoch)}

    def _check_targets(self, Y, n):
        Y = np.ascontiguousarray(Y, dtype=self.dtype)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        if Y.shape != (n, self.layer_sizes[-1]):
            raise ValueError(f"targets have shape {Y.shape}; expected ({n}, {self.layer_sizes[-1]}).")
        return Y

    def _check_sw(self, sample_weight, n):
        if sample_weight is None:
            return None
        sw = np.ascontiguousarray(sample_weight, dtype=self.dtype)
        if sw.shape != (n,):
            raise ValueError(f"sample_weight has shape {sw.shape}; expected ({n},).")
        return sw


class _Epochs:
    """``Network.epochs``: a ``_train.Runner`` (arguments checked and buffers allocated once)
    with the optimizer's state; calling it trains one epoch with the given row order."""

    def __init__(self, net, params, state, X, Y, sample_weight, batch_size, alpha, grad):
        self.net, self.params, self.state = net, params, state
        # converted here once (the runner's own check then finds it converted and copies nothing)
        self.sw = net._check_sw(sample_weight, X.shape[0])
        self.runner = net.runner(params, X, Y, self.sw, batch_size, alpha, grad)
        self.n = self.runner.n
        self.batch_size = self.runner.batch_size
        self.grad = self.runner.grad
        self.plain_order_checked = False       # the weights' batches in the order 0..n-1
        self._set_optimizer()

    def _set_optimizer(self):
        state = self.state
        self.runner.set_optimizer(
            state.s1, state.s2, state.solver, momentum=float(state.momentum),
            nesterov=bool(state.nesterov), beta_1=float(state.beta_1),
            beta_2=float(state.beta_2), epsilon=float(state.epsilon),
            weight_decay=float(state.weight_decay),
            clip_grad_norm=float(state.clip_grad_norm or 0.0),
            clip_grad_value=float(state.clip_grad_value or 0.0))

    def __call__(self, order=None, hook=None, info=None):
        n, sw, state, net, run = self.n, self.sw, self.state, self.net, self.runner
        if order is not None:
            order = np.ascontiguousarray(order, dtype=np.intp)    # its range: checked compiled
            if sw is not None:
                if order.shape != (n,) or (n and (order.min() < 0 or order.max() >= n)):
                    raise ValueError(f"order must hold {n} row indices in [0, {n}).")
                _check_batch_weights(sw[order], self.batch_size)
        elif sw is not None and not self.plain_order_checked:
            _check_batch_weights(sw, self.batch_size)
            self.plain_order_checked = True
        if state.s1 is not run.state1 or state.s2 is not run.state2:
            self._set_optimizer()               # the state's vectors were replaced
        track = state.gradient_norms
        norms = np.zeros(len(net.layer_sizes) - 1) if track is not None else None
        key = net._dropout_key(state)
        acc, t, rows, exc = run.epoch(order, float(state.learning_rate), float(state.t), hook,
                                      float(POLL_FLOPS), norms, key.get("dropout_seed", -1),
                                      key.get("epoch", 0), **(state.batch_schedule or {}))
        state.t = int(t)
        if track is not None and rows > 0:
            track.append(norms / -(-rows // self.batch_size))   # mean over the mini-batches done
        loss = acc / rows
        if info is not None:
            info["loss"] = loss
            info["rows"] = int(rows)
        if exc is not None:
            raise exc
        return loss
