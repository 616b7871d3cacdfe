"""MLP estimators for tables: ``TabularMLPClassifier`` and ``TabularMLPRegressor``.

Each owns its preprocessing (``cprop._tabular_prep.TabularPreprocessor``: median imputation with
missing indicators, one-hot or code columns for categories, robust scaling, smooth clipping;
fitted on the training rows only) and trains a ``cprop.MLPClassifier`` / ``MLPRegressor`` on the
transformed matrix.

Design
1. Composition, not a copy of the training loop: the fitted inner estimator is ``mlp_`` and the
   fitted preprocessing ``preprocessor_``; validation data, early stopping, callbacks, Ctrl-C,
   threads and determinism are the inner estimator's.
2. The defaults are a recipe chosen by measurement on issue 18's seven tables with
   benchmarks/tabular.py (see the README's "Tables" section; the held-out tables were not used
   to choose): 3 hidden layers of 256 units, SELU (classification) / Mish (regression), AdamW
   (weight decay 0.02), cosine learning-rate decay from 2e-3, dropout 0.15, batches of 256,
   early stopping on a 20% validation split (patience 20 epochs), at most 150 epochs, with an
   embedding of the categories with more than 8 levels, a periodic embedding of the numeric
   columns and a learnable input scale (note 5).  RealMLP-TD's label smoothing, parametric
   activations and per-batch schedules (the engine has the first and the last) are not used:
   not measured here yet.
5. The engine's input block and parameter groups reach the network through private inner
   subclasses (``_TabularInnerClassifier`` / ``_TabularInnerRegressor``, BaseMLP's
   ``_network_options`` hook), in this order: ``categorical_encoding='embedding'`` embeds each
   code column (a category with more than 8 levels) in 8 learnable values per level (RealMLP's
   rule; it reads the raw codes, so it comes first); ``numeric_embedding='periodic'`` puts
   RealMLP's PBLD embedding (16 frequencies, 3 outputs plus the value) on the numeric columns
   only (``preprocessor_.numeric_columns_``, at their positions after the embedding);
   ``scale_layer`` a learnable scale per input after it; ``parametrization='ntk'`` the
   neural-tangent parametrisation.  Learning-rate factors as RealMLP's: scale 6, periodic 0.1,
   biases 0.1 under 'ntk'; weight-decay factor 0.1 on the periodic layer (RealMLP's effective
   0.01 with its lr factor).  The block's parameters live in the inner model's flat vector
   (``mlp_.input_block_params_``).
3. Regression targets are standardised with the training mean and standard deviation; predictions
   are de-standardised and clamped to the training range (per output).
4. All or nothing: everything is fitted into locals and assigned at the end, so a failed ``fit``
   leaves a fitted model unchanged.
"""
from numbers import Integral, Real

import numpy as np

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_feature_names, _check_n_features, _get_feature_names, _num_samples, check_array,
    check_is_fitted, column_or_1d)

from ._mlp import MLPClassifier, MLPRegressor
from ._tabular_prep import TabularPreprocessor, _is_dataframe

# RealMLP-TD's PBLD embedding ([R] Table A.1): frequencies, outputs besides the value, init std
PERIODIC_FREQUENCIES = 16
PERIODIC_OUTPUTS = 3
PERIODIC_SIGMA = 0.1
# RealMLP-TD's learning-rate factors per parameter group ([R] §3)
LR_FACTORS = {"scale": 6.0, "periodic_first": 0.1, "periodic_second": 0.1}
NTK_BIAS_LR_FACTOR = 0.1
WD_FACTORS = {"periodic_first": 0.1, "periodic_second": 0.1}
# RealMLP-TD's categorical embeddings: columns with more than 8 levels, 8 values per level
EMBEDDING_DIM = 8


class _InnerNetworkOptions:
    """The inner network's extra ``Network`` arguments, set by the tabular estimator's fit as
    ``_net_options`` (they depend on which transformed columns are numeric); kept by clone
    (``n_init`` restarts clone the inner model) and by pickling."""

    def _network_options(self):
        return self.__dict__.get("_net_options") or {}

    def __sklearn_clone__(self):
        new = super().__sklearn_clone__()
        if "_net_options" in self.__dict__:
            new._net_options = self._net_options
        return new


class _TabularInnerClassifier(_InnerNetworkOptions, MLPClassifier):
    """``cprop.MLPClassifier`` with the tabular input block and parameter groups (private)."""


class _TabularInnerRegressor(_InnerNetworkOptions, MLPRegressor):
    """``cprop.MLPRegressor`` with the tabular input block and parameter groups (private)."""


def network_options(prep, numeric_embedding, scale_layer, parametrization):
    """The inner network's ``Network`` arguments for these settings and the fitted
    preprocessor ``prep`` ({} for a plain MLP): the code columns' embedding first (it reads the
    raw codes), then the periodic embedding of the numeric columns (their positions after the
    embedding), then the scale layer."""
    block = []
    embedding = prep.embedding_block(EMBEDDING_DIM)
    numeric_columns = prep.numeric_columns_
    if embedding is not None:
        block.append(embedding)
        numeric_columns = prep.columns_after_embedding(numeric_columns, EMBEDDING_DIM)
    if numeric_embedding == "periodic" and len(numeric_columns):
        block.append({"kind": "periodic", "n_frequencies": PERIODIC_FREQUENCIES,
                      "n_outputs": PERIODIC_OUTPUTS, "sigma": PERIODIC_SIGMA,
                      "features": [int(j) for j in numeric_columns]})
    if scale_layer:
        block.append({"kind": "scale"})
    options = {}
    lr = {}
    if block:
        options["input_block"] = block
        lr.update(LR_FACTORS)
        options["wd_factors"] = dict(WD_FACTORS)
    if parametrization == "ntk":
        options["parametrization"] = "ntk"
        lr["biases"] = NTK_BIAS_LR_FACTOR
    if lr:
        options["lr_factors"] = lr
    return options


class _BaseTabularMLP(BaseEstimator):
    """Shared parameters, fit and transform of the tabular estimators (not public)."""

    _parameter_constraints: dict = {
        "categorical_features": [StrOptions({"from_dtype"}), "array-like", None],
        "numeric_encoding": [StrOptions({"scale", "ple", "scale+ple"})],
        "categorical_encoding": [StrOptions({"onehot", "embedding"})],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "numeric_embedding": [StrOptions({"none", "periodic"})],
        "scale_layer": ["boolean"],
        "parametrization": [StrOptions({"standard", "ntk"})],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [str, list, tuple],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "init": [str],
        "dtype": [StrOptions({"float32", "float64"})],
        "random_state": ["random_state"],
        "n_threads": [None, Integral],
        "callbacks": [None, list],
        "scoring": [None, str, callable],
        "verbose": ["verbose"],
    }

    def __init__(self, *, categorical_features, numeric_encoding, n_bins, categorical_encoding,
                 numeric_embedding, scale_layer, parametrization, hidden_layer_sizes, activation,
                 learning_rate_init, weight_decay, dropout, batch_size, max_iter, early_stopping,
                 validation_fraction, n_iter_no_change, tol, beta_1, beta_2, init, dtype,
                 random_state, n_threads, callbacks, scoring, verbose):
        self.categorical_features = categorical_features
        self.numeric_encoding = numeric_encoding
        self.n_bins = n_bins
        self.categorical_encoding = categorical_encoding
        self.numeric_embedding = numeric_embedding
        self.scale_layer = scale_layer
        self.parametrization = parametrization
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.init = init
        self.dtype = dtype
        self.random_state = random_state
        self.n_threads = n_threads
        self.callbacks = callbacks
        self.scoring = scoring
        self.verbose = verbose

    def _mlp_params(self):
        return dict(
            hidden_layer_sizes=self.hidden_layer_sizes, activation=self.activation,
            solver="adamw", alpha=0.0, batch_size=self.batch_size, learning_rate="cosine",
            learning_rate_init=self.learning_rate_init, weight_decay=self.weight_decay,
            dropout=self.dropout, max_iter=self.max_iter, early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction, n_iter_no_change=self.n_iter_no_change,
            tol=self.tol, beta_1=self.beta_1, beta_2=self.beta_2, init=self.init,
            random_state=self.random_state, n_threads=self.n_threads, callbacks=self.callbacks,
            scoring=self.scoring, verbose=self.verbose)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Fit the preprocessing and the network on (X, y).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            The table: numeric, categorical, object/string and bool columns, NaN anywhere.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier) or real targets (regressor).

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the training rows in the loss (the preprocessing statistics are not
            weighted).

        X_val, y_val : validation table and targets, default=None
            Given, they replace the ``validation_fraction`` split: early stopping watches them.
            ``X_val`` goes through the preprocessing fitted on ``X``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val go together: give both or neither.")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        names = _get_feature_names(X)
        yt, target = self._fit_target(y, _num_samples(X))
        prep = TabularPreprocessor(self.categorical_features, dtype=np.dtype(self.dtype),
                                   numeric_encoding=self.numeric_encoding,
                                   n_bins=self.n_bins,
                                   categorical_encoding=self.categorical_encoding).fit(X)
        Xt = prep.transform(X)
        Xv = yv = None
        if X_val is not None:
            Xv = prep.transform(X_val)
            yv = self._transform_target(np.asarray(y_val), target)
        mlp = self._make_mlp()
        mlp._net_options = network_options(prep, self.numeric_embedding, self.scale_layer,
                                           self.parametrization)
        # batches of min(batch_size, training rows), as RealMLP-TD (the engine would warn)
        n_train = len(Xt)
        if self.early_stopping and Xv is None:
            n_train -= int(np.ceil(self.validation_fraction * n_train))
        mlp.set_params(batch_size=max(1, min(self.batch_size, n_train)))
        mlp.fit(Xt, yt, sample_weight=sample_weight, X_val=Xv, y_val=yv)
        # all checks passed and the network trained: only now touch the fitted state
        self.preprocessor_ = prep
        self.mlp_ = mlp
        self.n_features_in_ = prep.n_features_in_
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_iter_ = mlp.n_iter_
        self.loss_curve_ = mlp.loss_curve_
        self.best_validation_score_ = getattr(mlp, "best_validation_score_", None)
        self._set_target(target)
        return self

    def _transform(self, X):
        check_is_fitted(self, "mlp_")
        if not _is_dataframe(X):
            X = check_array(X, dtype=None, ensure_all_finite=False, accept_sparse=True)
        _check_feature_names(self, X, reset=False)
        _check_n_features(self, X, reset=False)
        return self.preprocessor_.transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.non_deterministic = False
        return tags


class TabularMLPClassifier(ClassifierMixin, _BaseTabularMLP):
    """MLP classifier for tables, with its own preprocessing.

    Imputes missing numbers by the training median (with a missing-indicator column),
    one-hot encodes categories (two levels as one +-1 column; missing and unseen levels as the
    all-zero slot), robust-scales and smooth-clips every column, then trains a
    ``cprop.MLPClassifier`` (``mlp_``) with a recipe chosen on benchmarks/tabular.py.

    Parameters
    ----------
    categorical_features : 'from_dtype', array-like of str or int, bool mask or None, \
            default='from_dtype'
        Categorical columns. 'from_dtype': category dtype (as HistGradientBoosting's
        ``categorical_features='from_dtype'``), plus object, string and bool columns. Or a
        list of names (DataFrame) or indices, or a boolean mask; None: no categorical column.

    numeric_encoding : {'scale', 'ple', 'scale+ple'}, default='scale'
        Numeric columns: robust scaling and smooth clip ('scale'); a piecewise-linear encoding
        over quantile bins of the training values instead ('ple', Gorishniy et al. 2022), one
        input per bin, which gives the network thresholds; or both side by side
        (see ``cprop._tabular_prep``).

    n_bins : int, default=16
        Most quantile bins per numeric column under 'ple' and 'scale+ple'.

    categorical_encoding : {'onehot', 'embedding'}, default='embedding'
        Categorical columns with more than 8 training levels: one-hot columns ('onehot'), or one
        code column each that the network embeds in 8 learnable values per level (a table
        drawn from N(0, 1) with a row for missing and unseen levels; RealMLP's rule). Columns
        with at most 8 levels are one-hot either way.

    numeric_embedding : {'none', 'periodic'}, default='periodic'
        'periodic': RealMLP's PBLD embedding of each numeric column (not of missing
        indicators, PLE bins or one-hot columns): [W2 cos(2 pi w1 x + b1) + b2, x] with 16
        learnable frequencies and 3 outputs per column, learning-rate factor 0.1 (see
        ``cprop._engine.Network``'s ``input_block``).

    scale_layer : bool, default=True
        A learnable scale per network input (after the embedding), initialised to 1, with
        learning-rate factor 6 (RealMLP's scaling layer).

    parametrization : {'standard', 'ntk'}, default='standard'
        'ntk': the neural-tangent parametrisation (each dense layer's learning rate divided by
        the square root of its fan-in, weights drawn from N(0, 1/fan_in), zero biases with
        learning-rate factor 0.1). Its learning rates are larger than the standard ones
        (RealMLP uses 0.04 for classification): set ``learning_rate_init`` with it.

    hidden_layer_sizes : array-like of int, default=(256, 256, 256)
        Units per hidden layer.

    activation : str or list of str, default='selu'
        Hidden activation (any of ``cprop.MLPClassifier``'s).

    learning_rate_init : float, default=2e-3
        Initial AdamW learning rate, decayed by a cosine over ``max_iter`` epochs.

    weight_decay : float, default=0.02
        Decoupled weight decay (AdamW).

    dropout : float or list of float, default=0.15
        Dropout rate of the hidden layers while training.

    batch_size : int, default=256
        Rows per mini-batch (the data size when smaller).

    max_iter : int, default=150
        Maximum number of epochs.

    early_stopping : bool, default=True
        Stop when the validation score (a ``validation_fraction`` split of the training data, or
        ``X_val``) has not improved by ``tol`` for ``n_iter_no_change`` epochs; the best
        epoch's weights are kept.

    validation_fraction : float, default=0.2
    n_iter_no_change : int, default=20
    tol : float, default=1e-4
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates.

    init : str, default='auto'
        Weight initialisation (see ``cprop.MLPClassifier``).

    dtype : {'float32', 'float64'}, default='float32'
        Precision of the network and of the transformed table.

    random_state : int, RandomState or None, default=None
        Seeds the initialisation, the validation split, the batches and dropout.

    n_threads : int or None, default=None
        Threads of the engine (None: all allowed). Results do not depend on it.

    callbacks, scoring, verbose :
        Passed to the inner ``cprop.MLPClassifier`` (callbacks receive it).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    preprocessor_ : TabularPreprocessor
    mlp_ : cprop.MLPClassifier
        The trained network on the transformed table.
    n_iter_ : int
    loss_curve_ : list of float
    best_validation_score_ : float or None
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from cprop import TabularMLPClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = pd.DataFrame({"size": rng.normal(size=400),
    ...                   "colour": pd.Categorical(rng.choice(["red", "blue"], 400))})
    >>> X.loc[::10, "size"] = np.nan
    >>> y = (X["size"].fillna(0) + (X["colour"] == "red") > 0.5).astype(int)
    >>> clf = TabularMLPClassifier(random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def __init__(self, *, categorical_features="from_dtype", numeric_encoding="scale", n_bins=16,
                 categorical_encoding="embedding", numeric_embedding="periodic", scale_layer=True,
                 parametrization="standard",
                 hidden_layer_sizes=(256, 256, 256),
                 activation="selu", learning_rate_init=2e-3, weight_decay=0.02, dropout=0.15,
                 batch_size=256, max_iter=150, early_stopping=True, validation_fraction=0.2,
                 n_iter_no_change=20, tol=1e-4, beta_1=0.9, beta_2=0.999, init="auto",
                 dtype="float32", random_state=None, n_threads=None, callbacks=None,
                 scoring=None, verbose=False):
        super().__init__(
            categorical_features=categorical_features, numeric_encoding=numeric_encoding,
            n_bins=n_bins, categorical_encoding=categorical_encoding,
            numeric_embedding=numeric_embedding, scale_layer=scale_layer,
            parametrization=parametrization, hidden_layer_sizes=hidden_layer_sizes,
            activation=activation, learning_rate_init=learning_rate_init,
            weight_decay=weight_decay, dropout=dropout, batch_size=batch_size, max_iter=max_iter,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, beta_1=beta_1, beta_2=beta_2, init=init,
            dtype=dtype, random_state=random_state, n_threads=n_threads, callbacks=callbacks,
            scoring=scoring, verbose=verbose)

    def _make_mlp(self):
        return _TabularInnerClassifier(**self._mlp_params())

    def _fit_target(self, y, n):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return y, None

    def _transform_target(self, y, target):
        return y

    def _set_target(self, target):
        self.classes_ = self.mlp_.classes_

    def predict(self, X):
        """Predicted class of each row of X."""
        Xt = self._transform(X)
        return self.mlp_.predict(Xt)

    def predict_proba(self, X):
        """Class probabilities of each row of X, columns in the order of ``classes_``."""
        Xt = self._transform(X)
        return self.mlp_.predict_proba(Xt)

    def predict_log_proba(self, X):
        """Logarithm of ``predict_proba``."""
        Xt = self._transform(X)
        return self.mlp_.predict_log_proba(Xt)


class TabularMLPRegressor(RegressorMixin, _BaseTabularMLP):
    """MLP regressor for tables, with its own preprocessing and target standardisation.

    Preprocesses X as ``TabularMLPClassifier`` does, standardises each target column with the
    training mean and standard deviation, trains a ``cprop.MLPRegressor`` (``mlp_``) on it, and
    predicts de-standardised values clamped to the range of the training targets.

    Parameters
    ----------
    The same as ``TabularMLPClassifier``'s, except:

    activation : str or list of str, default='mish'

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Mean and standard deviation (1 where it is 0) of the training targets.
    y_min_, y_max_ : ndarray of shape (n_outputs,)
        Range of the training targets; predictions are clamped to it.
    preprocessor_, mlp_, n_iter_, loss_curve_, best_validation_score_, n_features_in_,
    feature_names_in_ : as ``TabularMLPClassifier``'s.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from cprop import TabularMLPRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = pd.DataFrame({"area": rng.uniform(20, 200, 400),
    ...                   "city": rng.choice(["a", "b", "c"], 400)})
    >>> y = 1000 * X["area"] * X["city"].map({"a": 1.0, "b": 1.5, "c": 2.0})
    >>> reg = TabularMLPRegressor(random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.95
    True
    """

    def __init__(self, *, categorical_features="from_dtype", numeric_encoding="scale", n_bins=16,
                 categorical_encoding="embedding", numeric_embedding="periodic", scale_layer=True,
                 parametrization="standard",
                 hidden_layer_sizes=(256, 256, 256),
                 activation="mish", learning_rate_init=2e-3, weight_decay=0.02, dropout=0.15,
                 batch_size=256, max_iter=150, early_stopping=True, validation_fraction=0.2,
                 n_iter_no_change=20, tol=1e-4, beta_1=0.9, beta_2=0.999, init="auto",
                 dtype="float32", random_state=None, n_threads=None, callbacks=None,
                 scoring=None, verbose=False):
        super().__init__(
            categorical_features=categorical_features, numeric_encoding=numeric_encoding,
            n_bins=n_bins, categorical_encoding=categorical_encoding,
            numeric_embedding=numeric_embedding, scale_layer=scale_layer,
            parametrization=parametrization, hidden_layer_sizes=hidden_layer_sizes,
            activation=activation, learning_rate_init=learning_rate_init,
            weight_decay=weight_decay, dropout=dropout, batch_size=batch_size, max_iter=max_iter,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, beta_1=beta_1, beta_2=beta_2, init=init,
            dtype=dtype, random_state=random_state, n_threads=n_threads, callbacks=callbacks,
            scoring=scoring, verbose=verbose)

    def _make_mlp(self):
        return _TabularInnerRegressor(**self._mlp_params())

    def _fit_target(self, y, n):
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"y must be numeric for {type(self).__name__}; got dtype "
                                 f"{y.dtype}.") from None
        y = y.astype(np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim not in (1, 2) or y.shape[0] != n:
            raise ValueError(f"y has shape {y.shape}, but X has {n} rows: y must have shape "
                             "(n_samples,) or (n_samples, n_outputs).")
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity: regression targets must be "
                             "finite.")
        mean = y.mean(axis=0)
        scale = y.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        target = (np.atleast_1d(mean), np.atleast_1d(scale), np.atleast_1d(y.min(axis=0)),
                  np.atleast_1d(y.max(axis=0)), y.ndim)
        return self._transform_target(y, target), target

    def _transform_target(self, y, target):
        mean, scale = target[0], target[1]
        y = np.asarray(y, dtype=np.float64)
        if target[4] == 1:
            return (y - mean[0]) / scale[0]
        return (y - mean) / scale

    def _set_target(self, target):
        self.y_mean_, self.y_scale_, self.y_min_, self.y_max_, self._y_ndim = target

    def predict(self, X):
        """Predicted targets of the rows of X, in the units of the training targets."""
        Xt = self._transform(X)
        out = np.asarray(self.mlp_.predict(Xt), dtype=np.float64)
        if self._y_ndim == 1:
            return np.clip(out * self.y_scale_[0] + self.y_mean_[0], self.y_min_[0],
                           self.y_max_[0])
        return np.clip(out * self.y_scale_ + self.y_mean_, self.y_min_, self.y_max_)
