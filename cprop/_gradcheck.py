"""``check_gradients``: the engine's backward pass against central differences of its own loss.

Design
1. The estimator is copied (fitted: deep copy; unfitted: ``clone``, then initialised from its
   ``random_state`` exactly as ``fit`` would), so the caller's estimator is never changed.
2. Everything runs in float64 whatever the model's dtype: the engine's full-batch loss and gradient
   (``Network.loss_grad``, the same forward/backward passes and fused epilogues that train the
   model, on the active kernel path) against (L(p + h e_i) - L(p - h e_i)) / 2h for every
   parameter i.  The loss includes the L2 term (``alpha``) and the sample weights.
3. With dropout the loss is that of one fixed set of masks (seed 0, epoch 0, keyed by the row of
   X as in training), so the check covers the masked forward and backward passes.
4. The error of layer l (its weights and bias together) is ||g - g_fd|| / max(||g||, ||g_fd||),
   a norm-wise relative error, 0 when both vanish; element-wise ratios would blow up on gradient
   entries that are zero up to rounding.
5. The check costs two full-batch loss evaluations per parameter, so on real data it runs on a
   subsample: ``n_samples`` rows drawn without replacement by ``random_state`` (kept in their
   order, with their sample weights).  ``progress`` (a callable, or ``verbose``) reports the
   parameters done, so a long check shows how far it is.
6. ``check_network_gradients`` runs the same comparison on a ``cprop._engine.Network`` and its
   flat parameters directly, one error per parameter segment (the input block's layers and
   each dense layer's weights and biases): the check for networks no estimator builds yet.
"""
import copy
import sys
import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import _check_sample_weight, _num_samples

from ._engine import as_engine_input


@validate_params(
    {"estimator": [object], "X": ["array-like", "sparse matrix"], "y": ["array-like"],
     "sample_weight": ["array-like", None],
     "eps": [Interval(Real, 0, None, closed="neither"), None],
     "n_samples": [Interval(Integral, 1, None, closed="left"), None],
     "random_state": ["random_state"], "progress": [callable, None], "verbose": ["verbose"]},
    prefer_skip_nested_validation=True,
)
def check_gradients(estimator, X, y, sample_weight=None, eps=None, *, n_samples=None,
                    random_state=None, progress=None, verbose=False):
    """Relative error, per layer, between backpropagation and central differences of the loss.

    The way to see that backpropagation is right for a configuration (activations, loss, L2
    term, sample weights, dropout with one fixed set of masks, data): the gradient the engine computes and trains with is compared
    with central differences of the loss it reports, parameter by parameter, in float64.
    Errors near 1e-8 or below mean the two agree; a wrong derivative gives errors near 1.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        Fitted (its weights are checked) or not (checked at the weights ``fit`` would start
        from, drawn from its ``random_state``). It is not modified.

    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Input data. The check costs two full-batch loss evaluations per parameter: use a few
        dozen rows and a small network.

    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets, as for ``fit``.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights, as for ``fit``.

    eps : float, default=None
        Step h of the central differences (None: 1e-6).

    n_samples : int, default=None
        Check on this many rows of ``X`` (with their targets and weights), drawn without
        replacement by ``random_state``; None (or a number >= the rows of ``X``) uses every row.

    random_state : int, RandomState instance or None, default=None
        Draws the ``n_samples`` rows. (An unfitted estimator's starting weights come from its
        own ``random_state``, as in ``fit``.)

    progress : callable, default=None
        Called as ``progress(n_done, n_total)`` after each parameter's pair of loss
        evaluations (``n_total`` is the number of parameters).

    verbose : bool or int, default=False
        Print the progress to stderr about once a second (and at the end).

    Returns
    -------
    errors : ndarray of shape (n_layers - 1,)
        For each weight layer l (``coefs_[l]`` and ``intercepts_[l]`` together),
        ``||g - g_fd|| / max(||g||, ||g_fd||)`` (0 when both are 0).

    Examples
    --------
    >>> import numpy as np
    >>> from cprop import MLPClassifier, check_gradients
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(20, 4), rng.randint(0, 3, 20)
    >>> clf = MLPClassifier(hidden_layer_sizes=(6, 5), activation=["gelu", "tanh"],
    ...                     random_state=0)
    >>> errors = check_gradients(clf, X, y)
    >>> errors.shape, bool(errors.max() < 1e-6)
    ((3,), True)

    On more data, a subsample of rows keeps the check short:

    >>> X, y = rng.randn(2000, 4), rng.randint(0, 3, 2000)
    >>> errors = check_gradients(clf, X, y, n_samples=30, random_state=0)
    >>> bool(errors.max() < 1e-6)
    True
    """
    from ._mlp import BaseMLP
    if not isinstance(estimator, BaseMLP):
        raise TypeError(f"check_gradients needs a cprop MLPClassifier or MLPRegressor; got "
                        f"{type(estimator).__name__}.")
    h = 1e-6 if eps is None else float(eps)
    X, y, sample_weight = _subsample(X, y, sample_weight, n_samples, random_state)
    report = _reporter(progress, verbose)
    fitted = hasattr(estimator, "coefs_")
    est = copy.deepcopy(estimator) if fitted else clone(estimator)
    if not fitted:
        est._validate_params()
    X, y = est._validate_input(X, y, incremental=fitted, reset=not fitted)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
    if fitted:
        layer_units = est._layer_units()
        if layer_units[0] != X.shape[1] or layer_units[-1] != y.shape[1]:
            raise ValueError(f"X and y give {X.shape[1]} features and {y.shape[1]} outputs; the "
                             f"fitted network has layer sizes {layer_units}.")
    else:
        hidden = est.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        layer_units = [X.shape[1]] + [int(u) for u in hidden] + [y.shape[1]]
        est._random_state = check_random_state(est.random_state)
        est._initialize(y, layer_units, np.float64)
    net = est._network(layer_units, np.float64)
    params = np.array(est._flat_params(net), dtype=np.float64)
    X = as_engine_input(X, np.float64)
    Y = np.ascontiguousarray(y, dtype=np.float64)
    alpha = float(est.alpha)
    seed = None if net.dropout is None else 0      # design note 3
    grad, fd = _backprop_and_differences(net, params, X, Y, sample_weight, alpha, h, seed,
                                         report)
    s = net.dense_sizes
    errors = np.empty(len(s) - 1)
    for l, (w0, b0) in enumerate(zip(net._w_off, net._b_off)):
        # W_l then b_l, contiguous in the flat vector
        errors[l] = _relative_error(grad, fd, slice(int(w0), int(b0) + s[l + 1]))
    return errors


def _backprop_and_differences(net, params, X, Y, sample_weight, alpha, h, seed, report):
    """The engine's gradient and the central differences of its loss, parameter by parameter."""
    _, grad = net.loss_grad(params, X, Y, sample_weight, alpha, dropout_seed=seed)
    fd = np.empty_like(params)
    p = params.copy()
    for i in range(params.size):
        p[i] = params[i] + h
        up = net.loss_grad(p, X, Y, sample_weight, alpha, dropout_seed=seed)[0]
        p[i] = params[i] - h
        down = net.loss_grad(p, X, Y, sample_weight, alpha, dropout_seed=seed)[0]
        p[i] = params[i]
        fd[i] = (up - down) / (2 * h)
        if report is not None:
            report(i + 1, params.size)
    return grad, fd


def _relative_error(grad, fd, sl):
    """||g - g_fd|| / max(||g||, ||g_fd||) over a slice (design note 4)."""
    num = np.linalg.norm(grad[sl] - fd[sl])
    den = max(np.linalg.norm(grad[sl]), np.linalg.norm(fd[sl]))
    return num / den if den > 0 else 0.0


def check_network_gradients(net, params, X, Y, sample_weight=None, alpha=0.0, eps=None):
    """Relative error, per parameter segment, between a Network's backpropagation and central
    differences of its loss (design note 6).

    Parameters
    ----------
    net : cprop._engine.Network
        A float64 network (input block and parameter groups included).
    params : ndarray of shape (net.n_params,)
        Its flat parameters (float64).
    X, Y : arrays
        Inputs (n_samples, net.layer_sizes[0]) and targets (n_samples, n_outputs).
    sample_weight : array or None
    alpha : float
        The L2 term (each group's share scaled by its weight-decay factor).
    eps : float or None
        Step of the central differences (None: 1e-6).

    Returns
    -------
    errors : list of (str, float)
        ``(group kind, error)`` per segment, in ``net.segments()`` order: the input block's
        segments first, then each dense layer's weights and biases.

    Examples
    --------
    >>> import numpy as np
    >>> from cprop._engine import Network
    >>> from cprop._gradcheck import check_network_gradients
    >>> net = Network([3, 4, 1], "tanh", "identity", np.float64,
    ...               input_block=[{"kind": "periodic", "n_frequencies": 4, "n_outputs": 2},
    ...                            "scale"])
    >>> params = net.init_params(np.random.RandomState(0))
    >>> rng = np.random.RandomState(1)
    >>> errors = check_network_gradients(net, params, rng.randn(20, 3), rng.randn(20, 1))
    >>> [k for k, _ in errors][:3], max(e for _, e in errors) < 1e-6
    (['periodic_first', 'periodic_second', 'scale'], True)
    """
    if np.dtype(net.dtype) != np.float64:
        raise ValueError(f"check_network_gradients needs a float64 network; got {net.dtype}.")
    h = 1e-6 if eps is None else float(eps)
    X = as_engine_input(X, np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    Y = np.ascontiguousarray(Y.reshape(-1, 1) if Y.ndim == 1 else Y)
    grad, fd = _backprop_and_differences(net, np.ascontiguousarray(params, dtype=np.float64), X,
                                         Y, sample_weight, float(alpha), h, None, None)
    return [(kind, float(_relative_error(grad, fd, sl))) for kind, sl, _, _ in net.segments()]


def _subsample(X, y, sample_weight, n_samples, random_state):
    """``n_samples`` rows drawn without replacement, in their order (design note 5)."""
    n = _num_samples(X)
    if n_samples is None or n_samples >= n:
        return X, y, sample_weight
    rows = np.sort(check_random_state(random_state).choice(n, n_samples, replace=False))
    if sp.issparse(X):
        X = X.tocsr()                   # COO and the like cannot be indexed by rows
    pick = [None if a is None else _safe_indexing(a, rows) for a in (X, y, sample_weight)]
    return tuple(pick)


def _reporter(progress, verbose):
    """One ``report(n_done, n_total)``: the caller's callable and/or a stderr line a second."""
    if not verbose:
        return progress
    last = [0.0]

    def report(done, total):
        if progress is not None:
            progress(done, total)
        now = time.perf_counter()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            stream = sys.stderr
            if stream is not None:
                try:
                    stream.write(f"check_gradients: {done}/{total} parameters\n")
                    stream.flush()
                except Exception:  # noqa: BLE001 (a broken stderr never stops the check)
                    pass
    return report
