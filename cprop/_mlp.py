"""Multi-layer perceptron estimators with scikit-learn's API, trained by the compiled engine.

``MLPClassifier`` and ``MLPRegressor`` take the parameters of scikit-learn 1.9's
``sklearn.neural_network`` estimators (plus ``n_threads``), expose the same fitted attributes and
follow the same training procedure; the arithmetic runs in ``cprop._engine``.

Design
1. The weights live in ONE flat vector (the engine's layout W_0, b_0, W_1, b_1, ...);
   ``coefs_``/``intercepts_`` are views into it.  Before every use the estimator checks that the
   public lists still are those views (``_flat_params``); if the user assigned new arrays, the
   vector is rebuilt from them, so assigned weights are always the ones used.
2. Validation, label handling, the epoch loop, early stopping, the no-improvement counter and the
   learning-rate schedules stay in Python, once per epoch; one epoch of mini-batches is one
   compiled call (``Network.train_epoch``).  Random draws (initialisation, validation split,
   per-epoch row order) consume ``self._random_state`` in scikit-learn's order, so the same
   ``random_state`` gives scikit-learn's trajectory.
3. L-BFGS is scipy's, on the engine's full-batch loss and gradient; scipy works in float64, the
   engine in the model's dtype (float32 models stay float32).
4. Fitted state is plain numpy arrays and small Python objects; the engine's ``Network`` is a
   cache rebuilt on demand and never pickled.
"""
import functools
import warnings
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import (
    Interval, Options, StrOptions, validate_parameter_constraints)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._engine import (
    Network, OptimizerState, as_engine_input, check_sparse_structure, to_engine_csr)
from ._openmp import effective_n_threads

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


_IN_TRANSACTION = set()   # ids of estimators inside a _transactional call (the outermost saves)


def _transactional(fit):
    """Make a fitting method all-or-nothing: if it raises (bad input found late, MemoryError, an
    interrupt outside the epoch loop, non-finite weights), the estimator is put back exactly as it
    was before the call -- attributes, classes, weights and optimizer state.

    A shallow copy of ``__dict__`` undoes attribute assignments; a continued fit (``warm_start``,
    ``partial_fit``) also trains the existing weight vector, optimizer state and ``loss_curve_``
    in place, so their contents are copied first (one vector each, ~75 us for 80k float32
    weights).  Nested calls (``partial_fit`` -> ``_fit``) save once.  An interrupt inside the
    epoch loop is not a failure: the solvers catch it and keep the weights reached.
    """
    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        if id(self) in _IN_TRANSACTION:
            return fit(self, *args, **kwargs)
        saved = dict(self.__dict__)
        opt = saved.get("_optimizer")
        arrays = [(a, a.copy()) for a in (saved.get("_params"), getattr(opt, "s1", None),
                                          getattr(opt, "s2", None))
                  if isinstance(a, np.ndarray)]
        opt_state = dict(opt.__dict__) if opt is not None else None
        lists = {k: list(v) for k, v in saved.items() if isinstance(v, list)}
        _IN_TRANSACTION.add(id(self))
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            for k, items in lists.items():     # lists grown in place (loss_curve_, ...)
                saved[k][:] = items
            for live, copy in arrays:          # vectors trained in place
                live[...] = copy
            if opt is not None:
                opt.__dict__.clear()
                opt.__dict__.update(opt_state)
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
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
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
    }

    @abstractmethod
    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                 learning_rate_init, power_t, max_iter, loss, shuffle, random_state, tol, verbose,
                 warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
                 beta_1, beta_2, epsilon, n_iter_no_change, max_fun, n_threads):
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

    # -- pickling: the engine objects are caches, rebuilt on demand --------------------------------
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for key in ("_nets", "_params"):
            state.pop(key, None)
        return state

    # -- the engine network and the flat parameter vector ------------------------------------------
    def _layer_units(self):
        """[n_features, hidden..., n_outputs] read from the fitted ``coefs_``."""
        return [c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]]

    def _model_dtype(self):
        dt = np.asarray(self.coefs_[0]).dtype
        return dt if dt in _FLOATS else np.dtype(np.float64)

    def _training_dtype(self):
        """dtype a continued fit trains in: that of the optimizer state when there is one
        (assigned ``coefs_`` of another dtype are converted into it), else the weights'."""
        opt = self.__dict__.get("_optimizer")
        if opt is not None and getattr(opt, "s1", None) is not None and opt.s1.dtype in _FLOATS:
            return opt.s1.dtype
        return self._model_dtype()

    def _network(self, layer_units, dtype):
        # n_threads is checked here, at use, too: set_params after fit skips fit's validation.
        validate_parameter_constraints(
            {"n_threads": self._parameter_constraints["n_threads"]},
            {"n_threads": self.n_threads}, caller_name=type(self).__name__)
        key = (tuple(int(u) for u in layer_units), self.activation, self.out_activation_,
               np.dtype(dtype).str, effective_n_threads(self.n_threads))
        nets = self.__dict__.setdefault("_nets", {})
        net = nets.get(key)
        if net is None:
            if len(nets) >= 4:
                nets.clear()
            net = Network(key[0], self.activation, self.out_activation_, dtype, self.n_threads)
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
                s = net.layer_sizes
                for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
                    if not (isinstance(W, np.ndarray) and isinstance(b, np.ndarray)
                            and W.dtype == p.dtype and b.dtype == p.dtype
                            and W.shape == (s[i], s[i + 1]) and b.shape == (s[i + 1],)
                            and W.strides == (s[i + 1] * item, item) and b.strides == (item,)
                            and W.ctypes.data == base + net._w_off[i] * item
                            and b.ctypes.data == base + net._b_off[i] * item):
                        ok = False
                        break
            if ok:
                return p
        try:
            return net.pack(self.coefs_, self.intercepts_)
        except ValueError as exc:
            raise ValueError(
                f"coefs_/intercepts_ do not fit a network with layer sizes {net.layer_sizes} "
                f"({exc}) Assign arrays of matching shapes, or refit with warm_start=False."
            ) from None

    def _expose(self, net, params):
        """Make ``coefs_``/``intercepts_`` views of ``params`` (scikit-learn's layout)."""
        self._params = params
        self.coefs_ = net.coefs(params)
        self.intercepts_ = net.intercepts(params)

    def _forward(self, X):
        """Output activations for validated X, computed in the promoted dtype of X and the
        weights (as ``X @ coefs_`` would be)."""
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

    # -- fitting -----------------------------------------------------------------------------------
    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        net = self._network(layer_units, dtype)
        factor = 2.0 if self.activation == "logistic" else 6.0
        params = net.init_params(self._random_state, factor)
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
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        check_sparse_structure(X)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
            _check_sample_weight_sum(sample_weight)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
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
            self._fit_stochastic(net, params, X, Y, sample_weight, incremental)
        else:
            self._fit_lbfgs(net, params, X, Y, sample_weight)

        if not np.isfinite(self._params).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _fit_lbfgs(self, net, params, X, Y, sample_weight):
        alpha = float(self.alpha)
        dtype = net.dtype

        def loss_grad(x):
            p = x if dtype == np.float64 else x.astype(dtype)
            loss, grad = net.loss_grad(np.ascontiguousarray(p), X, Y, sample_weight, alpha)
            return loss, grad.astype(np.float64)

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

    def _fit_stochastic(self, net, params, X, Y, sample_weight, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = OptimizerState(
                self.solver, net.n_params, net.dtype, learning_rate=self.learning_rate_init,
                momentum=self.momentum, nesterov=self.nesterovs_momentum, beta_1=self.beta_1,
                beta_2=self.beta_2, epsilon=self.epsilon)
        if not hasattr(self, "loss_curve_"):  # continuing a model that lbfgs trained
            self._init_stochastic_attributes()

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
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
        else:
            X_train, Y_train, sw_train = X, Y, sample_weight
            X_val = y_val = sw_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        state = self._optimizer
        alpha = float(self.alpha)
        try:
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
                self.loss_ = net.train_epoch(params, state, X_train, Y_train, sw_train, order,
                                             batch_size, alpha)
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                self._update_no_improvement_count(early_stopping, net, params, X_val, y_val,
                                                  sw_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    state.learning_rate = (float(self.learning_rate_init)
                                           / (self.t_ + 1) ** self.power_t)

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if early_stopping:
            params[...] = self._best_params

    def _trigger_stopping(self, msg):
        """scikit-learn's rule: stop, unless SGD with the 'adaptive' schedule can divide its
        learning rate by 5 (it stops once the rate is <= 1e-6)."""
        state = self._optimizer
        if not (self.solver == "sgd" and self.learning_rate == "adaptive"):
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if state.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        state.learning_rate /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % state.learning_rate)
        return False

    def _update_no_improvement_count(self, early_stopping, net, params, X_val, y_val, sw_val):
        if early_stopping:
            val_score = self._score_outputs(net.predict(params, X_val), y_val, sw_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_params = params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _score_outputs(self, out, y, sample_weight):
        """Validation score from output activations (NaN when the predictions are not finite)."""
        y_pred = self._outputs_to_predictions(out)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in regression).

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

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

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation function for the hidden layers: 'identity' f(x) = x, 'logistic'
        f(x) = 1 / (1 + exp(-x)), 'tanh' f(x) = tanh(x), 'relu' f(x) = max(0, x).

    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        The solver for weight optimization: 'lbfgs' (scipy's L-BFGS-B on the full-batch loss),
        'sgd' (stochastic gradient descent with momentum) or 'adam'. 'adam' works well on
        datasets with thousands of samples or more; 'lbfgs' often converges faster and better
        on small ones.

    alpha : float, default=0.0001
        Strength of the L2 regularization term, divided by the sample size when added to the
        loss.

    batch_size : int or 'auto', default='auto'
        Size of minibatches for stochastic optimizers ('auto': ``min(200, n_samples)``).
        Not used by 'lbfgs'.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning rate schedule for 'sgd': 'constant' keeps ``learning_rate_init``;
        'invscaling' uses ``learning_rate_init / pow(t, power_t)`` after each epoch, t being the
        number of samples seen; 'adaptive' divides the rate by 5 each time
        ``n_iter_no_change`` consecutive epochs fail to improve the training loss (or the
        validation score with early stopping) by ``tol``.

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

    verbose : bool, default=False
        Whether to print progress messages to stdout (every solver, 'lbfgs' included).

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
        The score at each epoch on the held-out validation set ({score}); None unless
        ``early_stopping=True``.

    best_validation_score_ : float or None
        The best validation score ({score}); None unless ``early_stopping=True``.

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
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron classifier, a drop-in for scikit-learn's.

    Minimizes the log-loss with L-BFGS, SGD or Adam; backpropagation runs in cprop's compiled
    engine. Parameters, attributes and behaviour follow
    ``sklearn.neural_network.MLPClassifier`` (scikit-learn 1.9), plus ``n_threads``.

    Parameters
    ----------""" + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
""" + _ATTRS_DOC.format(score="accuracy") + """
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
                 n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            n_threads=n_threads)

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
        check_is_fitted(self)
        return self._outputs_to_predictions(self._forward_pass_fast(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    @_transactional      # the first call sets classes_ before _fit
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single epoch over the given data.

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

        Returns
        -------
        self : object
            Trained MLP model.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

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
    loss : {'squared_error', 'poisson'}, default='squared_error'
        The loss: half the squared error (identity output) or half the Poisson deviance
        (exponential output, requires ``y >= 0``). With several outputs the squared error is
        summed over outputs, the function whose gradient is applied.
""" + _PARAMS_DOC + """
    Attributes
    ----------""" + _ATTRS_DOC.format(score="R2") + """
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
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, n_threads=n_threads)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative, which is not allowed with loss='poisson' "
                "(the Poisson deviance needs y >= 0). Use loss='squared_error' or shift y."
            )
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
        check_is_fitted(self)
        return self._outputs_to_predictions(self._forward_pass_fast(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
