"""Multi-layer perceptron estimators with scikit-learn's API, trained by the compiled engine.

``MLPClassifier`` and ``MLPRegressor`` take the parameters of scikit-learn 1.9's
``sklearn.neural_network`` estimators (plus ``n_threads``), expose the same fitted attributes and
follow the same training procedure; the arithmetic runs in ``cprop._engine``.

Design
1. The weights live in ONE flat vector (the engine's layout W_0, b_0, W_1, b_1, ...);
   ``coefs_``/``intercepts_`` are views into it.  Before every use the estimator checks that the
   public lists still are those views (``_flat_params``); if the user assigned new arrays, the
   vector is rebuilt from them, so assigned weights are always the ones used.
2. Validation, label handling and the epoch loop stay in Python, once per epoch; one epoch of
   mini-batches is one compiled call (``Network.epochs``).  ``_fit_stochastic`` is the algorithm
   (draw the row order, train an epoch, repeat); ``cprop._training_loop.TrainingLoop`` records
   each epoch and applies the stopping rule, callbacks, progress and interrupts; the optimizer
   state, the solver registry and the schedules live in ``cprop._optimizers``.  Random draws (initialisation, validation split,
   per-epoch row order) consume ``self._random_state`` in scikit-learn's order, so the same
   ``random_state`` gives scikit-learn's trajectory.
3. L-BFGS is scipy's, on the engine's full-batch loss and gradient; scipy works in float64, the
   engine in the model's dtype (float32 models stay float32).
4. Fitted state is plain numpy arrays and small Python objects; the engine's ``Network`` is a
   cache rebuilt on demand and never pickled.
5. One private hook, ``_network_options``, lets a subclass give the engine's ``Network`` an input
   block and parameter groups (``input_block``, ``lr_factors``, ``wd_factors``,
   ``parametrization``; the tabular estimators' inner networks use it).  The block's
   parameters follow the dense ones in the same flat vector and are exposed as
   ``input_block_params_`` (views, like ``coefs_``), so early stopping's copies, ``n_init``,
   warm starts, pickling and serving carry them; ``to_sklearn``, ONNX export and sparse input
   refuse a block with a ValueError.  The public estimators return {}: scikit-learn's network.
"""
import functools
import inspect
import itertools
import operator
import textwrap
import warnings
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, get_scorer_names, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import (
    Interval, Options, StrOptions, validate_parameter_constraints)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _fast_fit, _interop, _loss_list
from . import _training_loop as _loop
from ._diagnostics import check_gradient_norms
from ._init import INITS, draw_layers
from ._engine import (
    HIDDEN_ACTIVATIONS, Network, as_engine_input, check_sparse_structure, to_engine_csr)
from ._openmp import effective_n_threads
from ._optimizers import (
    FACTOR_SCHEDULES, SCHEDULES, SOLVERS, STOCHASTIC_SOLVERS, OptimizerState, Schedule)

_STOCHASTIC_SOLVERS = STOCHASTIC_SOLVERS
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _loss_param_constraint(name):
    """The ``_parameter_constraints`` entry of a loss parameter, from its range in the list of
    losses (cprop/_loss_list.py)."""
    p = _loss_list.PARAMS[name]
    return [Interval(Real, p["low"], p["high"], closed=p["closed"])]


def _loss_params_doc(kind):
    """The numpydoc entries of the loss parameters of an estimator kind ('regressor',
    'classifier'), from the list of losses."""
    out = ""
    for name in _loss_list.ESTIMATOR_PARAMS[kind]:
        p = _loss_list.PARAMS[name]
        out += f"\n    {name} : float, default={p['default']!r}\n" + textwrap.fill(
            p["doc"], width=96, initial_indent=" " * 8, subsequent_indent=" " * 8,
            break_on_hyphens=False) + "\n"
    return out


def _regressor_loss_doc():
    """The numpydoc entry of MLPRegressor's ``loss``, from the list of losses."""
    names = _loss_list.REGRESSOR_LOSSES
    sk = [n for n in names if _loss_list.SKLEARN_LOSS[n] == n]
    intro = ("The loss. With several outputs it is summed over outputs, the function whose "
             f"gradient is applied. scikit-learn has {' and '.join(map(repr, sk))}; cprop adds "
             "the others (robust losses limit the pull of outliers):")
    lines = [f"    loss : {{{', '.join(map(repr, names))}}}, default='squared_error'",
             textwrap.fill(intro, width=96, initial_indent=" " * 8, subsequent_indent=" " * 8,
                           break_on_hyphens=False), ""]
    for n in names:
        lines.append(textwrap.fill(_loss_list.BY_NAME[n]["doc"], width=96,
                                   initial_indent=" " * 8 + "- ", subsequent_indent=" " * 10,
                                   break_on_hyphens=False))
    return "\n".join(lines) + "\n"


_IN_TRANSACTION = set()   # ids of estimators inside a _transactional call (the outermost saves)


def _transactional(fit):
    """Make a fitting method all-or-nothing: if it raises (bad input found late, MemoryError, an
    interrupt outside the epoch loop, non-finite weights), the estimator is put back exactly as it
    was before the call -- attributes, classes, weights and optimizer state.

    A shallow copy of ``__dict__`` undoes attribute assignments; a continued fit (``warm_start``,
    ``partial_fit``) also trains the existing weight vector, optimizer state and ``loss_curve_``
    in place, so their contents are copied first (one vector each, ~75 us for 80k float32
    weights).  Nested calls (``partial_fit`` -> ``_fit``) save once.  An interrupt inside the
    epoch loop is not a failure: the solvers catch it and keep the weights reached (and
    ``partial_fit`` re-raises it after that, without a rollback).
    """
    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        if id(self) in _IN_TRANSACTION:
            return fit(self, *args, **kwargs)
        saved = dict(self.__dict__)
        # set again by this call's solver when Ctrl-C ended training with a consistent model
        self.__dict__.pop("_interrupted", None)
        opt = saved.get("_optimizer")
        arrays = [(a, a.copy()) for a in (saved.get("_params"),) if isinstance(a, np.ndarray)]
        opt_state = opt.snapshot() if isinstance(opt, OptimizerState) else None
        lists = {k: list(v) for k, v in saved.items() if isinstance(v, list)}
        _IN_TRANSACTION.add(id(self))
        try:
            return fit(self, *args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and self.__dict__.get("_interrupted"):
                # the solver kept the epochs (and partial epoch) done and re-raised so that a
                # partial_fit loop stops: a consistent model, not a failure (see fit's Notes)
                raise
            for k, items in lists.items():     # lists grown in place (loss_curve_, ...)
                saved[k][:] = items
            for live, copy in arrays:          # vectors trained in place
                live[...] = copy
            if opt_state is not None:
                opt.restore(opt_state)
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        finally:
            _IN_TRANSACTION.discard(id(self))
    return wrapper


def _check_hidden_layer_sizes(hidden_layer_sizes):
    """hidden_layer_sizes as a list of positive ints (scikit-learn's checks and errors: a
    non-integer size is a TypeError, a size <= 0 a ValueError)."""
    if not hasattr(hidden_layer_sizes, "__iter__"):
        hidden_layer_sizes = [hidden_layer_sizes]
    hidden_layer_sizes = list(hidden_layer_sizes)
    for size in hidden_layer_sizes:
        if isinstance(size, bool) or not isinstance(size, Integral):
            raise TypeError(
                f"hidden_layer_sizes must hold integers (units per hidden layer); got "
                f"{size!r} of type {type(size).__name__} in {hidden_layer_sizes}.")
    if np.any(np.array(hidden_layer_sizes) <= 0):
        raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
    return [int(size) for size in hidden_layer_sizes]


def _check_sample_weight_sum(sample_weight):
    """Weights that sum to zero leave the weighted mean loss undefined (0/0)."""
    if sample_weight is not None:
        if float(np.sum(sample_weight, dtype=np.float64)) == 0:
            raise ValueError(
                "sample_weight sums to 0: the loss is a weighted mean (divided by the sum of the "
                "weights), so it is undefined. Give some samples a non-zero weight.")


class BaseMLP(BaseEstimator, ABC):
    """Base class for the cprop MLP estimators.

    Warning: this class should not be used directly; use ``MLPClassifier`` or ``MLPRegressor``.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [None, Interval(Integral, 1, None, closed="left"),
                      Interval(Integral, None, -1, closed="right")],
        # the training loop (cprop._training_loop)
        "scoring": [None, StrOptions(set(get_scorer_names()) | {"loss"}), callable, list,
                    tuple, dict],
        "callbacks": [None, list],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "warmup_iter": [Interval(Integral, 0, None, closed="left")],
        "init": [StrOptions(set(INITS))],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "clip_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "clip_grad_value": [Interval(Real, 0, None, closed="neither"), None],
        "monitor_gradients": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "weight_decay_schedule": [StrOptions(set(FACTOR_SCHEDULES))],
        "dropout_schedule": [StrOptions(set(FACTOR_SCHEDULES))],
    }

    @abstractmethod
    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                 learning_rate_init, power_t, max_iter, loss, shuffle, random_state, tol, verbose,
                 warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
                 beta_1, beta_2, epsilon, n_iter_no_change, max_fun, n_threads, scoring=None,
                 callbacks=None, n_init=1, warmup_iter=0, init="auto", weight_decay=0.01,
                 clip_grad_norm=None, clip_grad_value=None, monitor_gradients=False, dropout=0.0,
                 weight_decay_schedule="constant", dropout_schedule="constant"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.n_threads = n_threads
        self.scoring = scoring
        self.callbacks = callbacks
        self.n_init = n_init
        self.warmup_iter = warmup_iter

        self.init = init
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.monitor_gradients = monitor_gradients
        self.dropout = dropout
        self.weight_decay_schedule = weight_decay_schedule
        self.dropout_schedule = dropout_schedule

    # The HTML repr's "?" links to cprop's documentation (scikit-learn's hooks; see _interop).
    _doc_link_module = "cprop"
    _doc_link_template = _interop.DOC_LINK_TEMPLATE
    _doc_link_url_param_generator = _interop.doc_link_params

    # -- pickling: the engine objects are caches, rebuilt on demand --------------------------------
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for key in ("_nets", "_params"):
            state.pop(key, None)
        # The optimizer state as arrays and builtins: skops.io trusts those (see _interop).
        if isinstance(state.get("_optimizer"), OptimizerState):
            state["_optimizer"] = _interop.optimizer_to_builtins(state["_optimizer"])
        # history_ and the shipped callbacks as plain dicts too, so skops.io reports only the
        # estimator class itself
        from . import callbacks as _callbacks
        if state.get("history_") is not None:
            state["history_"] = [r.as_dict() for r in state["history_"]]
        if state.get("callbacks") is not None:
            state["callbacks"] = _callbacks.callbacks_to_builtins(state["callbacks"])
        return state

    def __setstate__(self, state):
        state = dict(state)
        from . import callbacks as _callbacks
        if "_optimizer" in state:
            state["_optimizer"] = _interop.optimizer_from_builtins(state["_optimizer"])
        if state.get("history_") is not None:
            state["history_"] = [r if isinstance(r, _callbacks.EpochRecord)
                                 else _callbacks.EpochRecord(**r) for r in state["history_"]]
        if state.get("callbacks") is not None:
            state["callbacks"] = _callbacks.callbacks_from_builtins(state["callbacks"])
        # parameters added since the file was written (e.g. the schedules) take their defaults
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and name not in state and p.default is not inspect.Parameter.empty:
                state[name] = p.default
        super().__setstate__(state)
        # a fitted model's meaning, not only its shape (see _interop, design 3)
        _interop.check_loaded_state(self)

    def to_sklearn(self):
        """scikit-learn's own estimator with this model's weights and training state.

        For tools that only know scikit-learn's types: returns a fitted
        ``sklearn.neural_network.MLPClassifier`` (or ``MLPRegressor``) with the same
        hyperparameters, copies of the weights, labels, loss history and optimizer state, so it
        predicts the same (to rounding) and ``partial_fit`` continues as this model would.

        cprop's training-only options are dropped (``n_threads``, ``class_weight``, ``init``,
        ``n_init``, ``callbacks``, ``scoring``, ``dropout``, gradient clipping and monitoring,
        ``warmup_iter``, ``weight_decay``, the loss parameters ``huber_delta`` and
        ``label_smoothing``, ``weight_decay_schedule``, ``dropout_schedule``), and training-only
        values scikit-learn lacks are replaced: ``solver='adamw'`` by ``'adam'`` (its moments
        carried, no weight decay), ``learning_rate='cosine'`` or ``'coslog4'`` by ``'constant'``
        (at the rate reached), a loss scikit-learn lacks by its loss of the same output activation
        (``loss='absolute_error'``/``'huber'`` by ``'squared_error'``). The network, and so every
        prediction, is unchanged; training the result further is scikit-learn's training,
        without those options. Per-layer activations that are all the same become that one
        activation. cprop-only fitted attributes (``history_``, ...) are not copied.

        Returns
        -------
        estimator : sklearn.neural_network.MLPClassifier or MLPRegressor
            A new, fitted scikit-learn estimator; this model is not changed.

        Raises
        ------
        ValueError
            If scikit-learn cannot run the network, saying why: a hidden activation it does not
            have (gelu, silu, ...: export with ``cprop.onnx`` instead), different activations per
            hidden layer, or a cprop-only parameter not known to be training-only.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_iris
        >>> from cprop import MLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0)
        >>> clf = clf.fit(X, y)
        >>> sk = clf.to_sklearn()
        >>> type(sk).__module__
        'sklearn.neural_network._multilayer_perceptron'
        >>> bool(np.allclose(sk.predict_proba(X), clf.predict_proba(X)))
        True
        """
        self._refuse_block("to_sklearn()", "scikit-learn's MLP does not have")
        return _interop.to_sklearn(self)

    # -- the engine network and the flat parameter vector ------------------------------------------
    def _network_options(self):
        """Extra ``Network`` arguments a subclass supplies (``input_block``, ``lr_factors``,
        ``wd_factors``, ``parametrization``): the one hook through which the tabular estimators'
        private inner networks get typed input layers and parameter groups.  The public MLPs
        have none: scikit-learn's network."""
        return {}

    def _has_block(self):
        return bool(self._network_options().get("input_block"))

    def _refuse_block(self, what, why):
        """Raise ValueError when this model has an input block ``what`` cannot carry."""
        if self._has_block():
            raise ValueError(
                f"{what} is not available for this model: its network starts with an input block "
                f"(per-feature scale / periodic embedding layers), which {why}.")

    def _layer_units(self):
        """[n_features, hidden..., n_outputs] read from the fitted ``coefs_`` (with an input
        block, the first entry is the width of X, ``n_features_in_``, not that of coefs_[0])."""
        units = [c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]]
        if self._has_block():
            units[0] = int(self.n_features_in_)
        return units

    def _model_dtype(self):
        dt = np.asarray(self.coefs_[0]).dtype
        return dt if dt in _FLOATS else np.dtype(np.float64)

    def _hidden_activations(self, n_hidden):
        """``activation`` as a tuple of one name per hidden layer (a single name is repeated)."""
        act = self.activation
        if isinstance(act, str):
            return (act,) * n_hidden
        act = tuple(act)
        bad = [a for a in act if not isinstance(a, str) or a not in HIDDEN_ACTIVATIONS]
        if bad:
            raise ValueError(
                f"activation={self.activation!r} holds {bad!r}, which are not activations; each "
                f"entry must be one of {sorted(HIDDEN_ACTIVATIONS)}.")
        if len(act) != n_hidden:
            raise ValueError(
                f"activation={self.activation!r} gives {len(act)} activations for {n_hidden} hidden "
                f"layers (hidden_layer_sizes={self.hidden_layer_sizes!r}). Pass one name for all "
                "hidden layers or a list with exactly one name per hidden layer.")
        return act

    def _engine_loss(self):
        """(loss, loss_param) for the engine: loss None for the output activation's canonical
        loss; loss_param this estimator's value of the loss's parameter (cprop/_loss_list.py),
        None for a loss without one."""
        entry = _loss_list.BY_NAME[self.loss]
        param = entry["param"]
        return (None if entry["canonical"] else self.loss,
                None if param is None else float(getattr(self, param["name"])))

    def _dropout_rates(self, n_hidden):
        """``dropout`` as a tuple of one rate per hidden layer, or None when every rate is 0."""
        rates = self.dropout
        if isinstance(rates, Real):
            rates = (float(rates),) * n_hidden
        else:
            rates = tuple(rates)
            if len(rates) != n_hidden or not all(
                    isinstance(r, Real) and 0 <= r < 1 for r in rates):
                raise ValueError(
                    f"dropout={self.dropout!r} must be one rate in [0, 1) or a list of "
                    f"{n_hidden} such rates, one per hidden layer (hidden_layer_sizes="
                    f"{self.hidden_layer_sizes!r}).")
            rates = tuple(float(r) for r in rates)
        return rates if any(rates) else None

    def _dropout_seed(self):
        """The seed of this fit's dropout masks, drawn from the random state (only when dropout
        is on, so that fits without it draw exactly scikit-learn's numbers)."""
        n_hidden = self.n_layers_ - 2
        if self._dropout_rates(n_hidden) is None:
            return None
        return int(self._random_state.randint(np.iinfo(np.int32).max))

    def _training_dtype(self):
        """dtype a continued fit trains in: that of the optimizer state when there is one
        (assigned ``coefs_`` of another dtype are converted into it), else the weights'."""
        opt = self.__dict__.get("_optimizer")
        if isinstance(opt, OptimizerState) and opt.s1.dtype in _FLOATS:
            return opt.s1.dtype
        return self._model_dtype()

    def _network(self, layer_units, dtype):
        # n_threads is checked here, at use, too: set_params after fit skips fit's validation.
        validate_parameter_constraints(
            {"n_threads": self._parameter_constraints["n_threads"]},
            {"n_threads": self.n_threads}, caller_name=type(self).__name__)
        acts = self._hidden_activations(len(layer_units) - 2)
        dropout = self._dropout_rates(len(layer_units) - 2)
        loss, loss_param = self._engine_loss()
        options = self._network_options()
        key = (tuple(int(u) for u in layer_units), acts, self.out_activation_, loss, loss_param,
               dropout, np.dtype(dtype).str, effective_n_threads(self.n_threads),
               repr(sorted(options.items())))
        nets = self.__dict__.setdefault("_nets", {})
        net = nets.get(key)
        if net is None:
            if len(nets) >= 4:
                nets.clear()
            net = Network(key[0], list(acts), self.out_activation_, dtype, self.n_threads,
                          loss=loss, loss_param=loss_param, dropout=dropout, **options)
            nets[key] = net
        return net

    def _flat_params(self, net):
        """The flat parameter vector for ``net``: the one ``coefs_``/``intercepts_`` view, or a
        fresh one packed from them when the user assigned other arrays (or another dtype)."""
        p = self.__dict__.get("_params")
        if p is not None and p.dtype == net.dtype and p.shape == (net.n_params,):
            base, item = p.ctypes.data, p.itemsize
            ok = len(self.coefs_) == len(net._w_off) and len(self.intercepts_) == len(net._b_off)
            if ok:
                s = net.dense_sizes
                for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
                    if not (isinstance(W, np.ndarray) and isinstance(b, np.ndarray)
                            and W.dtype == p.dtype and b.dtype == p.dtype
                            and W.shape == (s[i], s[i + 1]) and b.shape == (s[i + 1],)
                            and W.strides == (s[i + 1] * item, item) and b.strides == (item,)
                            and W.ctypes.data == base + net._w_off[i] * item
                            and b.ctypes.data == base + net._b_off[i] * item):
                        ok = False
                        break
            if ok and net.input_block:
                ok = self._block_is_view(net, p)
            if ok:
                return p
        try:
            params = net.pack(self.coefs_, self.intercepts_)
        except ValueError as exc:
            raise ValueError(
                f"coefs_/intercepts_ do not fit a network with layer sizes {net.layer_sizes} "
                f"({exc}) Assign arrays of matching shapes, or refit with warm_start=False."
            ) from None
        if net.input_block:
            self._pack_block(net, params)
        return params

    def _block_is_view(self, net, p):
        """Whether ``input_block_params_`` still holds the views of ``p`` made by ``_expose``."""
        given = self.__dict__.get("input_block_params_")
        views = net.block_params(p)
        if not isinstance(given, list) or len(given) != len(views):
            return False
        for g, v in zip(given, views):
            if not isinstance(g, dict) or set(g) != set(v):
                return False
            for name, arr in v.items():
                a = g[name]
                if not (isinstance(a, np.ndarray) and a.dtype == arr.dtype
                        and a.shape == arr.shape and a.strides == arr.strides
                        and a.ctypes.data == arr.ctypes.data):
                    return False
        return True

    def _pack_block(self, net, params):
        """Copy ``input_block_params_`` (arrays assigned or loaded) into ``params``."""
        given = self.__dict__.get("input_block_params_")
        views = net.block_params(params)
        if not isinstance(given, list) or len(given) != len(views):
            raise ValueError(
                f"input_block_params_ must be a list of {len(views)} dicts of arrays, one per "
                f"input block layer; got {type(given).__name__}. Refit with warm_start=False.")
        for i, (g, v) in enumerate(zip(given, views)):
            if not isinstance(g, dict) or set(g) != set(v):
                raise ValueError(
                    f"input_block_params_[{i}] must be a dict with keys {sorted(v)}; got "
                    f"{sorted(g) if isinstance(g, dict) else type(g).__name__}.")
            for name, arr in v.items():
                a = np.asarray(g[name])
                if a.shape != arr.shape:
                    raise ValueError(f"input_block_params_[{i}][{name!r}] has shape {a.shape}; "
                                     f"expected {arr.shape}.")
                arr[...] = a

    def _expose(self, net, params):
        """Make ``coefs_``/``intercepts_`` views of ``params`` (scikit-learn's layout)."""
        self._params = params
        self.coefs_ = net.coefs(params)
        self.intercepts_ = net.intercepts(params)
        if net.input_block:
            self.input_block_params_ = net.block_params(params)
        else:
            self.__dict__.pop("input_block_params_", None)

    def _forward(self, X):
        """Output activations for validated X, computed in the promoted dtype of X and the
        weights (as ``X @ coefs_`` would be)."""
        if sp.issparse(X):
            self._refuse_block("Sparse input", "reads dense columns")
        dtype = np.promote_types(self._model_dtype(), X.dtype)
        if dtype not in _FLOATS:
            dtype = np.dtype(np.float64)
        net = self._network(self._layer_units(), dtype)
        return net.predict(self._flat_params(net), as_engine_input(X, dtype))

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            check_sparse_structure(X)
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self._forward(X)

    def _serve(self, X, labels=False):
        """The serving path: the outputs for X, or None when X must go through
        scikit-learn's validation.  With ``labels``: (None, class index of each row) where
        ``_Serving.labels`` allows that, else (outputs, None).

        Taken only for the common case, tested in about a microsecond: a plain ``ndarray``,
        2-D, C-contiguous, of the model's dtype and width, at least one row, a model fitted
        without feature names.  Finiteness is checked inside the compiled pass; on an inf or
        NaN this returns None and the caller's validation raises scikit-learn's error.  Rows
        are independent and the passes those of ``_forward``, so results are bitwise equal.
        """
        if type(X) is not np.ndarray or X.ndim != 2:
            return None
        d = self.__dict__
        nets = d.get("_nets")
        s = nets.get("serving") if nets is not None else None
        if s is None or not s.current(d):
            s = _Serving.build(self)
            if s is None:
                return None
            d.setdefault("_nets", {})["serving"] = s   # a cache, like the networks beside it
        n = X.shape[0]
        if (X.dtype != s.dtype or X.shape[1] != s.n_features or n == 0
                or not X.flags.c_contiguous or "feature_names_in_" in d
                or d.get("n_features_in_") != s.n_features):
            return None
        # a batch too small for threads runs on one whatever the thread count, so the thread
        # policy (a system call, soon cgroup files) is asked only for larger ones
        nt = 1 if n <= s.serial_rows else effective_n_threads(self.n_threads)
        threshold = s.labels(self) if labels else None
        if threshold is not None:
            idx = np.empty(n, dtype=np.intp)
            if s.net.serve(s.params, X, None, idx, threshold=threshold, n_threads=nt) >= 0:
                return None
            return None, idx
        out = np.empty((n, s.n_outputs), dtype=s.dtype)
        if s.net.serve(s.params, X, out, None, n_threads=nt) >= 0:
            return None
        return (out, None) if labels else out

    # -- fitting -----------------------------------------------------------------------------------
    # cprop's records of a fit: a fresh fit that does not make them again removes them
    _FIT_RECORDS = ("history_", "learning_rate_curve_", "epoch_times_", "validation_loss_curve_",
                    "gradient_norms_", "restarts_", "best_restart_")

    def _initialize(self, y, layer_units, dtype):
        for key in self._FIT_RECORDS:
            self.__dict__.pop(key, None)
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = _loss_list.BY_NAME[self.loss]["output"]
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        net = self._network(layer_units, dtype)
        activation = self.activation
        if not isinstance(activation, str):
            activation = self._hidden_activations(len(layer_units) - 2)
        if net.parametrization == "ntk":
            # the neural-tangent parametrisation's own init (W ~ N(0, 1/fan_in), b = 0)
            params = net.init_params(self._random_state)
        else:
            params = net.pack(*draw_layers(self.init, net.dense_sizes, activation,
                                           self._random_state))
            net.init_block(params, self._random_state)
        self._expose(net, params)
        self._best_params = params.copy()
        if self.solver in _STOCHASTIC_SOLVERS:
            self._init_stochastic_attributes()

    def _init_stochastic_attributes(self):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    @_transactional
    def _fit(self, X, y, sample_weight=None, incremental=False, validation=None):
        hidden_layer_sizes = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        check_sparse_structure(X)
        if sp.issparse(X):
            self._refuse_block("Sparse input", "reads dense columns")
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
            _check_sample_weight_sum(sample_weight)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        sample_weight = self._with_class_weight(y, sample_weight, incremental)
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)

        if first_pass:
            dtype = X.dtype
            self._initialize(y, layer_units, dtype)
        else:
            dtype = self._training_dtype()
            if not hasattr(self, "n_layers_"):
                self.n_layers_ = len(layer_units)
            if self._layer_units() != layer_units:
                raise ValueError(
                    f"The fitted network has layer sizes {self._layer_units()} but this call needs "
                    f"{layer_units} (hidden_layer_sizes={self.hidden_layer_sizes}, "
                    f"{X.shape[1]} features, {self.n_outputs_} outputs). Fit from scratch "
                    "(warm_start=False) to change the architecture."
                )
        net = self._network(layer_units, dtype)
        params = self._flat_params(net)
        if params is not self.__dict__.get("_params"):
            self._expose(net, params)
        X = as_engine_input(X, dtype)
        Y = np.ascontiguousarray(y, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)

        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(net, params, X, Y, sample_weight, incremental, validation)
            self._report_gradients()
        else:
            self._fit_lbfgs(net, params, X, Y, sample_weight)

        if not np.isfinite(self._params).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _fit_lbfgs(self, net, params, X, Y, sample_weight):
        # One runner for the whole fit: X, Y and the weights checked once, the work buffers
        # allocated once.  It works on its own copy of the parameters (scipy's iterate is
        # copied into it, rounded as astype rounds), so a failed fit leaves ``params`` as it was.
        run = net.runner(params.copy(), X, Y, sample_weight, alpha=float(self.alpha))

        def loss_grad(x):
            loss = run.loss_grad(x)
            return loss, run.grad.astype(np.float64)    # scipy keeps what it is given: a copy

        # scipy >= 1.15 no longer prints L-BFGS-B progress (iprint is gone); report it ourselves,
        # in the format the stochastic solvers use.  The callback also remembers the last accepted
        # iterate so that an interrupt keeps it.
        last = {"x": params.astype(np.float64), "fun": None, "nit": 0}

        def callback(intermediate_result):
            last["x"] = np.array(intermediate_result.x, dtype=np.float64)
            last["fun"] = float(intermediate_result.fun)
            last["nit"] += 1
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (last["nit"], last["fun"]))

        try:
            opt_res = scipy.optimize.minimize(
                loss_grad, params.astype(np.float64), method="L-BFGS-B", jac=True,
                callback=callback,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
            self._interrupted = True     # ends n_init restarts
            params[...] = last["x"]
            self.n_iter_ = last["nit"]
            if last["fun"] is not None:
                self.loss_ = last["fun"]
            return
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = float(opt_res.fun)
        params[...] = opt_res.x
        if self.verbose:
            print("L-BFGS-B: %s (%d iterations, %d loss evaluations)"
                  % (opt_res.message, opt_res.nit, opt_res.nfev))

    def _fit_stochastic(self, net, params, X, Y, sample_weight, incremental, validation=None):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = OptimizerState(
                self.solver, net.n_params, net.dtype, learning_rate=self.learning_rate_init,
                momentum=self.momentum, nesterov=self.nesterovs_momentum, beta_1=self.beta_1,
                beta_2=self.beta_2, epsilon=self.epsilon, weight_decay=self.weight_decay,
                clip_grad_norm=self.clip_grad_norm, clip_grad_value=self.clip_grad_value,
                gradient_norms=[] if self.monitor_gradients else None,
                dropout_seed=self._dropout_seed())
        if not hasattr(self, "loss_curve_"):  # continuing a model that lbfgs trained
            self._init_stochastic_attributes()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")

        X_train, Y_train, sw_train, val = self._validation_split(net, X, Y, sample_weight,
                                                                 validation)
        n_samples = X_train.shape[0]
        batch_size = self._batch_size(n_samples)
        state = self._optimizer
        stopping = _loop.Stopping(
            self.early_stopping, self.tol, self.n_iter_no_change,
            count=self._no_improvement_count, best_params=self.__dict__.get("_best_params"),
            scored=bool(np.isfinite(self.__dict__.get("best_validation_score_") or -np.inf)))
        loop = _loop.TrainingLoop(
            self, net, params, state,
            Schedule(self.learning_rate, self.solver, self.learning_rate_init, self.power_t,
                     self.max_iter, self.warmup_iter, self.weight_decay_schedule,
                     self.dropout_schedule),
            stopping, val=val, n_samples=n_samples, incremental=incremental,
            scorers=None if val is None else _loop.make_scorers(self, self._is_multiclass()),
            max_iter=self.max_iter, verbose=self.verbose, callbacks=self.callbacks,
            score_outputs=self._score_outputs, weights_of=functools.partial(self._flat_params, net),
            expose=functools.partial(self._expose, net),
            restart=self.__dict__.get("_restart_index", 0))
        if _fast_fit.run(self, net, params, state, X_train, Y_train, sw_train, batch_size,
                         incremental, val, loop.callbacks, loop.bar):
            return      # compiled epochs: nothing in this fit needs Python per epoch
        run_epoch = net.epochs(params, state, X_train, Y_train, sw_train, batch_size,
                               float(self.alpha))
        sample_idx = np.arange(n_samples, dtype=int)
        with loop:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                order = None
                if self.shuffle:
                    # scikit-learn's utils.shuffle(sample_idx, random_state=rs) draws exactly
                    # this (a shuffled arange indexing the array), without its validation cost.
                    perm = np.arange(n_samples)
                    self._random_state.shuffle(perm)
                    sample_idx = sample_idx[perm]
                    order = sample_idx
                try:
                    stop = loop.epoch(run_epoch, order)
                finally:
                    self._no_improvement_count = stopping.count
                    self._best_params = stopping.best_params
                if stop or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning,
                    )
        self._interrupted = loop.interrupted
        if loop.interrupted and incremental:
            # a user's own partial_fit loop must stop too; the model above is consistent
            raise KeyboardInterrupt

    def _validation_split(self, net, X, Y, sample_weight, validation):
        """(X_train, Y_train, sw_train, validation set or None): the caller's validation data
        replaces the ``validation_fraction`` split of early stopping."""
        if validation is not None:
            val = _loop.prepare_validation(self, net, *validation,
                                           class_weights=self.__dict__.get("_class_weights"))
            _loop.warn_if_untransformed(X, val.X_user)
            return X, Y, sample_weight, val
        if not self.early_stopping:
            return X, Y, sample_weight, None
        stratify = self._stratify(Y)
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        split = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, Y_train, Y_val = split[:4]
        sw_train, sw_val = (split[4], split[5]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        y_val = self._validation_targets(Y_val)
        if sp.issparse(X_train):
            X_train = to_engine_csr(X_train, net.dtype)
            X_val = to_engine_csr(X_val, net.dtype)
        return X_train, Y_train, sw_train, _loop.ValidationSet(X_val, None, Y_val, y_val, sw_val)

    def _is_multiclass(self):
        return is_classifier(self) and self._label_binarizer.y_type_ == "multiclass"

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than "
                "sample size. It is going to be clipped"
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _report_gradients(self):
        """``gradient_norms_`` from the optimizer's record, and the vanishing/exploding warnings
        for the epochs of this call (see cprop._diagnostics)."""
        state = self._optimizer
        record = state.gradient_norms
        if record is None:
            return
        self.gradient_norms_ = np.array(record, dtype=np.float64).reshape(len(record), -1)
        check_gradient_norms(self.gradient_norms_, start=state.epochs_checked)
        state.epochs_checked = len(record)

    def _score_outputs(self, out, y, sample_weight):
        """Validation score from output activations (NaN when the predictions are not finite)."""
        y_pred = self._outputs_to_predictions(out)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in regression).

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        X_val : {ndarray, sparse matrix} of shape (n_val_samples, n_features), default=None
            Validation data ('sgd'/'adam'). Given, it replaces the ``validation_fraction``
            split: early stopping (``early_stopping=True``) watches it, and every epoch records
            ``validation_loss_curve_`` and ``validation_scores_`` on it (also without early
            stopping). With 'lbfgs' it is used only to choose among ``n_init`` restarts (with
            ``n_init=1`` it raises). Its columns should be on X's scale (a warning says when
            they look untransformed, e.g. passed around a Pipeline's transformers).

        y_val : array-like of shape (n_val_samples,) or (n_val_samples, n_outputs), default=None
            Targets of ``X_val``; required with it.

        sample_weight_val : array-like of shape (n_val_samples,), default=None
            Weights of the validation samples (validation loss and score).

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        validation = _loop.check_validation_args(X_val, y_val, sample_weight_val)
        with _loop.running(self):
            _loop.check_loop_params(self, X_val_given=validation is not None)
            _loop.callbacks_begin(self)
            if self.n_init > 1 and not (self.warm_start and hasattr(self, "coefs_")):
                return _loop.fit_restarts(self, X, y, sample_weight, validation,
                                          net_of=BaseMLP._fitted_network)
            return self._fit(X, y, sample_weight=sample_weight, incremental=False,
                             validation=validation)

    def _fitted_network(self):
        """The engine network of the fitted weights, in their dtype."""
        return self._network(self._layer_units(), self._model_dtype())

    def _with_class_weight(self, Y, sample_weight, incremental):
        """sample_weight combined with class weights (classifiers; see MLPClassifier)."""
        return sample_weight

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic optimizers. "
                "%s is not stochastic." % self.solver
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMS_DOC = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element represents the number of neurons in the ith hidden layer.

    activation : str or list of str, default='relu'
        Activation function for the hidden layers: one name for all of them, or a list with one
        name per hidden layer (cprop extension). scikit-learn's four: 'identity' f(x) = x,
        'logistic' f(x) = 1 / (1 + exp(-x)), 'tanh' f(x) = tanh(x), 'relu' f(x) = max(0, x).
        cprop adds 'leaky_relu' (x for x > 0, 0.01 x otherwise), 'elu' (x, or exp(x) - 1),
        'selu' (1.0507 x, or 1.0507 * 1.6733 (exp(x) - 1); pair it with ``init='lecun_normal'``),
        'softplus' log(1 + exp(x)), 'gelu' x Phi(x) (exact, with the normal CDF Phi),
        'gelu_tanh' (its tanh approximation), 'silu' x / (1 + exp(-x)) and 'mish'
        x tanh(softplus(x)).

    solver : {'lbfgs', 'sgd', 'adam', 'adamw'}, default='adam'
        The solver for weight optimization: 'lbfgs' (scipy's L-BFGS-B on the full-batch loss),
        'sgd' (stochastic gradient descent with momentum), 'adam', or 'adamw' (cprop
        extension: Adam with decoupled weight decay, see ``weight_decay``; the 'adam' settings
        apply to it). 'adam' works well on datasets with thousands of samples or more; 'lbfgs'
        often converges faster and better on small ones.

    alpha : float, default=0.0001
        Strength of the L2 regularization term, divided by the sample size when added to the
        loss.

    batch_size : int or 'auto', default='auto'
        Size of minibatches for stochastic optimizers ('auto': ``min(200, n_samples)``).
        Not used by 'lbfgs'.

    learning_rate : {'constant', 'invscaling', 'adaptive', 'cosine', 'plateau', 'coslog4'}, \
            default='constant'
        Learning rate schedule for 'sgd': 'constant' keeps ``learning_rate_init``;
        'invscaling' uses ``learning_rate_init / pow(t, power_t)`` after each epoch, t being the
        number of samples seen; 'adaptive' divides the rate by 5 each time
        ``n_iter_no_change`` consecutive epochs fail to improve the training loss (or the
        validation score with early stopping) by ``tol``. 'cosine' (cprop; stochastic solvers)
        sets epoch e's rate to ``learning_rate_init * (1 + cos(pi * e / max_iter)) / 2``, after
        ``warmup_iter`` epochs of linear warm-up (see ``warmup_iter``); the curve spans
        ``max_iter`` whatever ends training, so for early-stopped fits prefer 'plateau'.
        'plateau' (cprop; stochastic solvers) is the 'adaptive' rule for 'adam'/'adamw' too.
        'coslog4' (cprop; stochastic solvers; RealMLP's) sets each mini-batch's rate to
        ``learning_rate_init * (1 - cos(2 pi log2(1 + 15 t))) / 2``, t being the batch's index
        over all the batches of ``max_iter`` epochs (0 for the first batch; epochs after
        ``max_iter``, e.g. of ``partial_fit``, repeat the last epoch's rates);
        ``learning_rate_curve_`` records each epoch's first batch's rate.
        'adam' ignores 'invscaling' and 'adaptive', as in scikit-learn; 'cosine', 'plateau'
        and 'coslog4' with 'lbfgs' raise InvalidParameterError.

    learning_rate_init : float, default=0.001
        The initial learning rate ('sgd' and 'adam').

    power_t : float, default=0.5
        The exponent for the 'invscaling' learning rate ('sgd').

    max_iter : int, default=200
        Maximum number of iterations: epochs for 'sgd'/'adam', L-BFGS iterations for 'lbfgs'.

    shuffle : bool, default=True
        Whether to shuffle samples in each epoch ('sgd' and 'adam').

    random_state : int, RandomState instance, default=None
        Random numbers for the weight initialization, the early-stopping split and the batch
        order. Pass an int for reproducible results across calls.

    tol : float, default=1e-4
        Tolerance for the optimization: training stops when the loss or validation score does
        not improve by at least ``tol`` for ``n_iter_no_change`` consecutive epochs (unless the
        learning rate is 'adaptive'); for 'lbfgs' it is the projected-gradient tolerance.

    verbose : bool or int, default=False
        Whether to print progress messages to stdout (every solver, 'lbfgs' included).
        ``verbose >= 2`` also shows a progress bar on stderr during ``fit`` with 'sgd'/'adam'
        (rate and ETA to ``max_iter``; it advances inside long epochs), drawn by tqdm when it
        is installed and as one plain line otherwise.

    warm_start : bool, default=False
        When True, reuse the solution of the previous call to fit as initialization.

    momentum : float, default=0.9
        Momentum for gradient descent update, in [0, 1] ('sgd').

    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum ('sgd' with momentum > 0).

    early_stopping : bool, default=False
        Whether to set aside ``validation_fraction`` of the training data and stop when the
        validation score does not improve by at least ``tol`` for ``n_iter_no_change``
        consecutive epochs; the weights of the best epoch are restored. ('sgd' and 'adam'.)

    validation_fraction : float, default=0.1
        The proportion of training data set aside for early stopping, in [0, 1).

    beta_1 : float, default=0.9
        Exponential decay rate for the first-moment estimates of 'adam', in [0, 1).

    beta_2 : float, default=0.999
        Exponential decay rate for the second-moment estimates of 'adam', in [0, 1).

    epsilon : float, default=1e-8
        Value for numerical stability in 'adam'.

    n_iter_no_change : int or np.inf, default=10
        Maximum number of epochs not meeting the ``tol`` improvement ('sgd' and 'adam').

    max_fun : int, default=15000
        Maximum number of loss function calls ('lbfgs').

    n_threads : int, default=None
        Number of OpenMP threads of the compiled engine. None follows ``OMP_NUM_THREADS`` and
        threadpoolctl limits, else all usable CPUs; -1 means all CPUs, -2 all but one, ...
        Results are bitwise identical for every thread count.

    weight_decay : float, default=0.01
        Decoupled weight decay of ``solver='adamw'`` (cprop extension): each step multiplies
        every weight by ``1 - learning_rate_init * weight_decay`` besides the Adam step on the
        loss gradient (Loshchilov & Hutter); biases are not decayed. ``alpha`` remains the L2
        term of the loss. Another value with another solver raises InvalidParameterError (cprop's
        options that do not apply raise; see the README).

    clip_grad_norm : float, default=None
        Gradient clipping by global norm ('sgd', 'adam', 'adamw'; cprop extension): each
        mini-batch's gradient over all parameters (L2 term included) is scaled by
        ``clip_grad_norm / (norm + 1e-6)`` when its norm exceeds ``clip_grad_norm``, before the
        update. None: off.

    clip_grad_value : float, default=None
        Gradient clipping by value: every gradient entry is clipped to
        ``[-clip_grad_value, clip_grad_value]`` (after ``clip_grad_norm`` when both are set).
        None: off.

    monitor_gradients : bool, default=False
        Record ``gradient_norms_`` (epochs x layers: the mean over mini-batches of each
        layer's weight-gradient norm) and warn (RuntimeWarning, naming the layer) when
        gradients vanish (the first layer's norm falls below 1e-3 of the output layer's) or
        explode (a norm is not finite or grows 1000-fold). Stochastic solvers; it costs an
        extra pass over the gradients (a few percent on large layers).

    dropout : float or list of float, default=0.0
        Dropout rate of the hidden layers' outputs during training (cprop extension): one rate
        for every hidden layer or a list with one per hidden layer, each in [0, 1). Inverted
        dropout: kept units are scaled by 1 / (1 - rate) while training, so ``predict`` uses
        the network as it is (deterministic). Masks come from a counter-based generator keyed
        by (seed drawn from ``random_state``, epoch, sample, unit): the same for any thread
        count. Stochastic solvers only; 0 (the default) costs nothing.

    weight_decay_schedule : {'constant', 'flat_cos'}, default='constant'
        With ``solver='adamw'`` (cprop extension; RealMLP's): 'flat_cos' multiplies each
        mini-batch's decay by ``flat_cos(t) = (1 + cos(pi (max(1, 2 t) - 1))) / 2`` (1 for the
        first half of ``max_iter`` epochs, then a cosine to 0), t as for ``'coslog4'``.

    dropout_schedule : {'constant', 'flat_cos'}, default='constant'
        With ``dropout`` > 0 (cprop extension; RealMLP's): 'flat_cos' multiplies the dropout
        rates of each mini-batch by ``flat_cos(t)``, as ``weight_decay_schedule`` does.

    init : {'auto', 'glorot_uniform', 'glorot_normal', 'he_uniform', 'he_normal', \
            'lecun_normal', 'orthogonal'}, default='auto'
        Weight initialisation, drawn from ``random_state`` (cprop extension). 'auto' is
        scikit-learn's: W and b from U(-r, r), r = sqrt(6 / (fan_in + fan_out)) (2 instead of 6
        for logistic units), the same draws bit for bit. The others draw the weights only and
        start the biases at 0: glorot_uniform U(+-sqrt(6 / (fan_in + fan_out))), glorot_normal
        N(0, 2 / (fan_in + fan_out)), he_uniform U(+-sqrt(6 / fan_in)), he_normal
        N(0, 2 / fan_in) (for relu-like units), lecun_normal N(0, 1 / fan_in) (for 'selu'),
        orthogonal (orthonormal rows or columns, from the QR decomposition of a normal matrix).
    scoring : str, callable, list, dict or None, default=None
        Validation score for early stopping and ``validation_scores_`` (stochastic solvers;
        with 'lbfgs' it ranks ``n_init`` restarts on ``X_val``): None is the estimator's
        ``score`` (scikit-learn's behaviour), 'loss' minus the validation loss
        (``validation_loss_curve_``), else any scorer name or callable
        ``scorer(estimator, X, y)``. Greater is better; the best epoch's weights are kept. A
        NaN score counts as no improvement and is never the best (a warning says so). A list
        or dict of them records each in ``history_[i].scores``; the first is the one above.

    callbacks : list of callables or None, default=None
        Each is called after every epoch ('sgd'/'adam') as ``callback(estimator, record)``
        with a read-only ``cprop.callbacks.EpochRecord``; returning a true value stops training
        cleanly. Weights it assigns to ``coefs_``/``intercepts_`` are trained from then on;
        fitting the same estimator from a callback raises RuntimeError. Methods
        ``on_train_begin(estimator)`` and ``on_train_end(estimator)``, if present, are called
        when a fit starts and when its epochs end. ``cprop.EarlyStopping`` is Keras' rule.
        See ``cprop.callbacks`` (``ModelCheckpoint``, ``HistoryLogger``). Callback
        objects are deep-copied by ``clone`` and must be picklable to pickle the estimator.

    n_init : int, default=1
        Number of ``fit`` runs from different initialisations (seeds drawn from ``random_state``);
        the best is kept: by validation score when there is validation data (``X_val`` or
        ``early_stopping``), else by the lowest final loss. Every restart is described in
        ``restarts_``. Ignored when ``warm_start`` continues a fitted model.

    warmup_iter : int, default=0
        With ``learning_rate='cosine'``: the first ``warmup_iter`` epochs raise the rate
        linearly, ``learning_rate_init * (e + 1) / warmup_iter``, before the cosine decay over
        the remaining ``max_iter - warmup_iter`` epochs.
"""

_NOTES_DOC = """
    Notes
    -----
    Ctrl-C (KeyboardInterrupt) stops 'sgd'/'adam' within a few milliseconds, also inside a
    long epoch (the compiled loop checks for it about every 1e9 floating-point operations).
    The batches done in the interrupted epoch are kept and counted: that epoch appears in
    ``n_iter_``, ``loss_curve_`` (its loss over the rows done) and ``t_`` (the rows done), and
    the optimizer state matches the weights. ``fit`` then warns "Training interrupted by
    user." and returns, as scikit-learn does; ``partial_fit`` re-raises KeyboardInterrupt so
    that a loop of calls stops.
"""

_ATTRS_DOC = """
    loss_ : float
        The current loss computed with the loss function.

    best_loss_ : float or None
        The minimum loss reached by the solver throughout fitting ('sgd'/'adam'); None when
        ``early_stopping=True`` (see ``best_validation_score_``).

    loss_curve_ : list of shape (`n_iter_`,)
        The loss at the end of each epoch ('sgd'/'adam').

    validation_scores_ : list of shape (`n_iter_`,) or None
        The score at each epoch on the held-out validation set ({score}, or ``scoring``);
        None without validation data (``early_stopping=True`` or ``X_val``).

    best_validation_score_ : float or None
        The best validation score ({score}, or ``scoring``); None without validation data.

    validation_loss_curve_ : list of shape (`n_iter_`,) or None
        The loss on the validation data at the end of each epoch (the data loss of the
        objective, without the L2 term, weighted by ``sample_weight_val``); None without
        validation data.

    learning_rate_curve_ : list of shape (`n_iter_`,)
        The learning rate of each epoch ('sgd'/'adam'; Adam's before its bias correction).

    epoch_times_ : list of shape (`n_iter_`,)
        The wall time of each epoch in seconds, validation included ('sgd'/'adam').

    history_ : list of cprop.callbacks.EpochRecord
        One record per epoch, as handed to ``callbacks`` ('sgd'/'adam').

    restarts_ : list of dict
        With ``n_init > 1``: per restart its ``seed``, ``n_iter``, final ``loss``, the
        ``score`` it was ranked by, and copies of its ``coefs`` and ``intercepts``.

    best_restart_ : int
        With ``n_init > 1``: the index in ``restarts_`` of the kept model.

    t_ : int
        The number of training samples seen by the solver during fitting.

    coefs_ : list of shape (n_layers - 1,)
        The ith element is the weight matrix of layer i, of shape (fan_in, fan_out).
        Assigning new arrays here changes the model used by predict and further training.

    intercepts_ : list of shape (n_layers - 1,)
        The ith element is the bias vector of layer i + 1.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X` has feature names
        that are all strings.

    n_iter_ : int
        The number of iterations the solver has run.

    n_layers_ : int
        Number of layers.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Name of the output activation function.

    gradient_norms_ : ndarray of shape (n_epochs, n_layers - 1)
        With ``monitor_gradients=True`` and a stochastic solver: for each epoch of the last
        ``fit`` (with ``partial_fit``: of every call since the first), the mean over
        mini-batches of each layer's weight-gradient norm ||dL/dW_l|| (L2 term included,
        before clipping).
"""


class _Serving:
    """What the serving path (``BaseMLP._serve``) needs, looked up once per model state.

    ``current`` tells in well under a microsecond whether the model still is the one it was
    built from: the same ``coefs_``/``intercepts_`` lists holding the same arrays (views of the
    same flat vector, read live, so weights changed in place are used) and the same settings
    the network depends on (activation, n_threads, output activation, dropout, loss).  Anything
    else (assigned weights that are not views, settings of odd types) gets no cache and goes
    the validated way.
    """
    __slots__ = ("coefs", "intercepts", "block", "arrays", "params", "settings", "dtype",
                 "units", "n_features", "n_outputs", "net", "serial_rows")

    @staticmethod
    def _block_arrays(block):
        """The input block's parameter arrays in a fixed order (none without a block)."""
        if not block:
            return ()
        return tuple(a for layer in block for _, a in sorted(layer.items()))

    @staticmethod
    def _settings(d):
        return (d.get("activation"), d.get("n_threads"), d.get("out_activation_"),
                d.get("dropout"), d.get("loss"), *(d.get(name) for name in _loss_list.PARAMS))

    @classmethod
    def build(cls, est):
        """The cache for ``est`` as it is, or None (not fitted, feature names, assigned weights,
        settings the validated path rejects)."""
        d = est.__dict__
        if "coefs_" not in d or "intercepts_" not in d or "feature_names_in_" in d:
            return None
        settings = cls._settings(d)
        plain = (str, int, float, bool, type(None), np.integer, np.floating)
        for v in settings:
            if isinstance(v, (list, tuple)):
                if not all(isinstance(e, plain) for e in v):
                    return None
            elif not isinstance(v, plain):
                return None
        try:
            dtype = est._model_dtype()
            units = est._layer_units()
            net = est._network(units, dtype)     # checks n_threads, activation, dropout
            params = est._flat_params(net)
        except Exception:       # the validated path raises it with its own message
            return None
        if params is not d.get("_params"):
            return None         # weights assigned by the user: packed again at every call
        self = cls()
        self.coefs, self.intercepts = d["coefs_"], d["intercepts_"]
        self.block = d.get("input_block_params_")
        self.arrays = tuple(self.coefs) + tuple(self.intercepts) + cls._block_arrays(self.block)
        self.params = params
        self.settings = tuple(list(v) if isinstance(v, list) else v for v in settings)
        self.dtype = np.dtype(dtype)
        self.units = units
        self.n_features, self.n_outputs = units[0], units[-1]
        # one-thread plans: serve runs each pass on one thread and shares passes among threads
        self.net = net if net.n_threads == 1 else Network(
            net.layer_sizes, net.activations, net.out_activation, dtype, 1, loss=net.loss,
            loss_param=net.loss_param, dropout=net.dropout, **est._network_options())
        self.serial_rows = net.serial_rows()
        return self

    def current(self, d):
        """Whether the estimator whose ``__dict__`` is ``d`` still is the model cached."""
        coefs, intercepts = d.get("coefs_"), d.get("intercepts_")
        block = d.get("input_block_params_")
        if block is not self.block:
            return False
        extra = self._block_arrays(block) if block else ()
        return (coefs is self.coefs and intercepts is self.intercepts
                and d.get("_params") is self.params
                and len(coefs) + len(intercepts) + len(extra) == len(self.arrays)
                and all(map(operator.is_, itertools.chain(coefs, intercepts, extra),
                            self.arrays))
                and self._settings(d) == self.settings)

    def labels(self, est):
        """The threshold for ``_train.serve``'s class indices when they are what
        ``LabelBinarizer.inverse_transform`` picks (argmax over classes, or one output against
        its threshold), else None (multilabel, sparse-fitted labels, a single class)."""
        lb = est.__dict__.get("_label_binarizer")
        if lb is None or getattr(lb, "sparse_input_", True):
            return None
        n_classes = len(lb.classes_)
        if lb.y_type_ == "multiclass" and self.n_outputs == n_classes:
            return 0.5
        if lb.y_type_ == "binary" and self.n_outputs == 1 and n_classes == 2:
            return (lb.pos_label + lb.neg_label) / 2.0
        return None


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron classifier, a drop-in for scikit-learn's.

    Minimizes the log-loss with L-BFGS, SGD or Adam; backpropagation runs in cprop's compiled
    engine. Parameters, attributes and behaviour follow
    ``sklearn.neural_network.MLPClassifier`` (scikit-learn 1.9), plus ``n_threads``.

    Parameters
    ----------""" + _PARAMS_DOC + """
    class_weight : dict, list of dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight`` (and ``sample_weight_val``)
        as in scikit-learn's other classifiers: a dict ``{class: weight}`` (missing classes
        weigh 1), or 'balanced': ``n_samples / (n_classes * np.bincount(y))`` computed on the
        data passed to ``fit`` (not available to ``partial_fit``). Multilabel targets take
        'balanced' or a list of one dict ``{0: w0, 1: w1}`` per label column; a sample's
        weight is the product over its columns.
""" + _loss_params_doc("classifier") + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
""" + _ATTRS_DOC.format(score="accuracy") + _NOTES_DOC + """
    See Also
    --------
    MLPRegressor : Multi-layer perceptron regressor.

    Examples
    --------
    >>> from cprop import MLPClassifier
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.model_selection import train_test_split
    >>> X, y = make_classification(n_samples=100, random_state=1)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y,
    ...                                                     random_state=1)
    >>> clf = MLPClassifier(random_state=1, max_iter=300).fit(X_train, y_train)
    >>> clf.predict_proba(X_test[:1]).round(2)
    array([[0.04, 0.96]])
    >>> clf.predict(X_test[:5, :])
    array([1, 0, 1, 0, 1])
    >>> round(clf.score(X_test, y_test), 2)
    0.88
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 n_threads=None, class_weight=None, scoring=None, callbacks=None, n_init=1,
                 warmup_iter=0, init="auto", weight_decay=0.01, clip_grad_norm=None,
                 clip_grad_value=None, monitor_gradients=False, dropout=0.0,
                 weight_decay_schedule="constant", dropout_schedule="constant",
                 label_smoothing=0.0):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            n_threads=n_threads, scoring=scoring, callbacks=callbacks, n_init=n_init,
            warmup_iter=warmup_iter, init=init, weight_decay=weight_decay,
            clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value,
            monitor_gradients=monitor_gradients, dropout=dropout,
            weight_decay_schedule=weight_decay_schedule, dropout_schedule=dropout_schedule)
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "class_weight": [None, dict, list, StrOptions({"balanced"})],
        **{name: _loss_param_constraint(name)
           for name in _loss_list.ESTIMATOR_PARAMS["classifier"]},
    }

    def _with_class_weight(self, Y, sample_weight, incremental):
        """sample_weight times the class weights of each sample's label(s), as scikit-learn's
        linear classifiers combine them (multilabel: the product over the label columns)."""
        if self.class_weight is None:
            self.__dict__.pop("_class_weights", None)
            return sample_weight
        if not isinstance(self.class_weight, str) or not incremental:
            # from classes_ (and 'balanced': from the targets of fit), never from one batch
            self._class_weights = _loop.class_weight_table(self, Y)
        cw = _loop.class_sample_weights(self, Y, self._class_weights)
        return cw if sample_weight is None else sample_weight * cw

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        # New labels on a fresh fit; on warm_start the classes must be the same; on partial_fit
        # (classes_ set by the first call) y may only hold known classes.
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        # bool, not int: keeps float32 data from being upcast when converted.
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _stratify(self, Y):
        """Labels to stratify the early-stopping split by, or None for multilabel targets.

        Binary targets stratify by their single indicator column (as scikit-learn does, which
        keeps its split and messages); multiclass targets by their class, which scikit-learn
        1.9.1 documents but skips (it tests the width of the one-hot matrix).
        """
        if self._label_binarizer.y_type_ == "multiclass":
            return self.classes_[np.argmax(Y, axis=1)]
        if self._label_binarizer.y_type_ == "binary":
            return Y.astype(bool)
        return None

    def _validation_targets(self, Y_val):
        return self._label_binarizer.inverse_transform(Y_val.astype(bool))

    def _outputs_to_predictions(self, out):
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    def _score_function(self, y, y_pred, sample_weight=None):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        served = self._serve(X, labels=True)
        if served is None:
            check_is_fitted(self)
            return self._outputs_to_predictions(self._forward_pass_fast(X))
        out, idx = served
        if idx is None:
            return self._outputs_to_predictions(out)
        return self._label_binarizer.classes_[idx]          # inverse_transform's indexing

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    @_transactional      # the first call sets classes_ before _fit
    def partial_fit(self, X, y, sample_weight=None, classes=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """Update the model with a single epoch over the given data.

        Ctrl-C during the epoch keeps the batches done (counted in ``n_iter_``, ``t_`` and
        ``loss_curve_``) and re-raises ``KeyboardInterrupt``, so a loop of calls stops.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit (e.g. ``np.unique(y_all)``). Required on
            the first call, may be omitted afterwards; y need not contain all of them.

        X_val, y_val, sample_weight_val : default=None
            Validation data: the epoch's validation loss and score are recorded in
            ``validation_loss_curve_`` and ``validation_scores_`` (see ``fit``).

        Returns
        -------
        self : object
            Trained MLP model.
        """
        validation = _loop.check_validation_args(X_val, y_val, sample_weight_val)
        with _loop.running(self):
            _loop.check_loop_params(self, incremental=True, X_val_given=validation is not None)
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
            if not hasattr(self, "coefs_"):
                _loop.callbacks_begin(self)
            return self._fit(X, y, sample_weight=sample_weight, incremental=True,
                             validation=validation)

    def predict_log_proba(self, X):
        """Return the log of probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The log-probability of each class, ordered as in `self.classes_`; equivalent to
            ``log(predict_proba(X))``.
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The probability of each class, ordered as in `self.classes_`.
        """
        y_pred = self._serve(X)
        if y_pred is None:
            check_is_fitted(self)
            y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron regressor, a drop-in for scikit-learn's.

    Minimizes the squared error (or the Poisson deviance) with L-BFGS, SGD or Adam;
    backpropagation runs in cprop's compiled engine. Parameters, attributes and behaviour
    follow ``sklearn.neural_network.MLPRegressor`` (scikit-learn 1.9), plus ``n_threads``.

    Parameters
    ----------
""" + _regressor_loss_doc() + _loss_params_doc("regressor") + _PARAMS_DOC + """
    Attributes
    ----------""" + _ATTRS_DOC.format(score="R2") + _NOTES_DOC + """
    See Also
    --------
    MLPClassifier : Multi-layer perceptron classifier.

    Examples
    --------
    >>> from cprop import MLPRegressor
    >>> from sklearn.datasets import make_regression
    >>> from sklearn.model_selection import train_test_split
    >>> X, y = make_regression(n_samples=200, n_features=20, random_state=1)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y,
    ...                                                     random_state=1)
    >>> regr = MLPRegressor(random_state=1, max_iter=2000, tol=0.1)
    >>> regr.fit(X_train, y_train)
    MLPRegressor(max_iter=2000, random_state=1, tol=0.1)
    >>> regr.predict(X_test[:2]).round(0)
    array([  29., -291.])
    >>> round(regr.score(X_test, y_test), 2)
    0.98
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions(set(_loss_list.REGRESSOR_LOSSES))],
        **{name: _loss_param_constraint(name) for name in _loss_list.ESTIMATOR_PARAMS["regressor"]},
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 n_threads=None, scoring=None, callbacks=None, n_init=1, warmup_iter=0,
                 huber_delta=1.0, init="auto", weight_decay=0.01, clip_grad_norm=None,
                 clip_grad_value=None, monitor_gradients=False, dropout=0.0,
                 weight_decay_schedule="constant", dropout_schedule="constant"):
        self.huber_delta = huber_delta
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, n_threads=n_threads, scoring=scoring, callbacks=callbacks,
            n_init=n_init, warmup_iter=warmup_iter, init=init, weight_decay=weight_decay,
            clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value,
            monitor_gradients=monitor_gradients, dropout=dropout,
            weight_decay_schedule=weight_decay_schedule, dropout_schedule=dropout_schedule)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        bad = _loss_list.bad_targets(self.loss, y)
        if bad:
            raise ValueError(f"{bad} Use loss='squared_error' or shift y.")
        return X, y

    def _stratify(self, Y):
        return None

    def _validation_targets(self, Y_val):
        return Y_val.ravel() if Y_val.shape[1] == 1 else Y_val

    def _outputs_to_predictions(self, out):
        return out.ravel() if out.shape[1] == 1 else out

    def _score_function(self, y, y_pred, sample_weight=None):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        out = self._serve(X)
        if out is None:
            check_is_fitted(self)
            out = self._forward_pass_fast(X)
        return self._outputs_to_predictions(out)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """Update the model with a single epoch over the given data.

        Ctrl-C during the epoch keeps the batches done (counted in ``n_iter_``, ``t_`` and
        ``loss_curve_``) and re-raises ``KeyboardInterrupt``, so a loop of calls stops.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        X_val, y_val, sample_weight_val : default=None
            Validation data: the epoch's validation loss and score are recorded in
            ``validation_loss_curve_`` and ``validation_scores_`` (see ``fit``).

        Returns
        -------
        self : object
            Trained MLP model.
        """
        validation = _loop.check_validation_args(X_val, y_val, sample_weight_val)
        with _loop.running(self):
            _loop.check_loop_params(self, incremental=True, X_val_given=validation is not None)
            if not hasattr(self, "coefs_"):
                _loop.callbacks_begin(self)
            return self._fit(X, y, sample_weight=sample_weight, incremental=True,
                             validation=validation)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
