"""Preprocessing of tables for the tabular MLPs: columns in, one float matrix out.

``TabularPreprocessor`` turns a pandas DataFrame (numeric, categorical, object/string and bool
columns, missing values anywhere) or a numeric array into the matrix the MLP trains on, with
statistics of the training data only.

Design
1. Column kinds. With ``categorical_features='from_dtype'`` a column is categorical when its
   dtype is ``category`` (as HistGradientBoosting's ``categorical_features='from_dtype'``
   finds them), object or string, or bool (pandas ``bool``/``boolean``: two levels, encoded
   as one +-1 column); every other column must be numeric. A list of names or indices, or a
   boolean mask, names the categorical columns instead; the others must then be numeric.
2. Raw encoding (RealMLP-TD's order, Holzmueller et al. 2024: one-hot first, then the
   numeric transforms on every column):
   - a numeric column: missing values imputed by the median of the observed training values,
     plus a missing-indicator column (1 where missing) when the training data had a missing
     value in that column;
   - a categorical column, over the levels observed in training (missing values are no level):
     two levels give one column of -1 / +1; one level or more than two give one 0/1 column per
     level. A missing value, or a level not seen in training, is the all-zero slot (0 in the
     +-1 column). With ``categorical_encoding='onehot'`` (the default) more than 8 levels are
     one-hot as well; with ``'embedding'`` (RealMLP-TD's rule) a column of more than 8 levels
     becomes one *code* column instead: the level's index 0..K-1 among its K training levels,
     K for a missing value or an unseen level. Code columns skip notes 3-4 (they are row
     indices into the engine's embedding tables: ``code_columns_``, ``code_cardinalities_``,
     ``embedding_block``).
3. Robust scaling of every raw column j, with statistics of the training rows (for a numeric
   column: of its observed values, so imputed values land on exactly 0):
   x <- s_j (x - median_j), s_j = 1 / (q75_j - q25_j); if that IQR is 0, s_j = 2 / (max_j - min_j);
   if that is 0 too, s_j = 0 (a constant column becomes 0).
4. Smooth clipping of outliers: x <- x / sqrt(1 + (x / 3)^2) (|x| stays below 3).
5. Numeric encoding. ``numeric_encoding='scale'`` (the default) is notes 3-4 on the imputed value.
   ``'ple'`` replaces it by a piecewise-linear encoding (Gorishniy et al., "On Embeddings for
   Numerical Features in Tabular Deep Learning", NeurIPS 2022), which hands the network
   thresholds on that feature: bin edges b_0 < ... < b_T are the distinct quantiles at
   0, 1/n_bins, ..., 1 of the observed training values (T <= n_bins: ties merge edges), and
   the value becomes T columns e_t = clip((x - b_{t-1}) / (b_t - b_{t-1}), 0, 1), except that
   the first bin is not clipped below 0 and the last one not above 1 (one bin: not clipped at
   all). A constant column (T = 0) keeps the scaled encoding (a column of zeros). The PLE
   columns skip robust scaling (centre 0, scale 1) and go through the same smooth clip, so a
   value far outside the training range stays bounded. ``'scale+ple'`` emits both: the scaled
   column, then its PLE columns. Missing values are imputed by the median first, as above;
   missing-indicator and categorical columns are unaffected.
6. Fitted state is plain numpy arrays and lists, so the estimators pickle.
"""
import numbers

import numpy as np

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

# levels above which RealMLP-TD uses an embedding (categorical_encoding='embedding'); one-hot
# up to this many
MAX_ONEHOT_LEVELS = 8

# marks a PLE output column in _encode's per-column statistics list (centre 0, scale 1)
_FIXED = "fixed"
# marks a category-code column (no robust scaling, no smooth clip)
_CODE = "code"


def _is_dataframe(X):
    return (type(X).__module__.split(".")[0] == "pandas" and hasattr(X, "columns")
            and hasattr(X, "iloc"))


def _is_missing(values):
    """Boolean mask of missing entries (None, NaN, pandas NA/NaT) in an object array."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas absent: None and float NaN only
        return np.array([v is None or (isinstance(v, float) and v != v) for v in values],
                        dtype=bool)
    return np.asarray(pd.isna(values), dtype=bool)


def _sort_key(v):
    return (type(v).__name__, v)


def smooth_clip(x):
    """x / sqrt(1 + (x / 3)^2): identity near 0, bounded by +-3."""
    return x / np.sqrt(1.0 + (x / 3.0) ** 2)


def ple_edges(values, n_bins):
    """Bin edges of the piecewise-linear encoding (note 5): the distinct quantiles at
    0, 1/n_bins, ..., 1 of a 1-D float array of training values (empty when there are none)."""
    if values.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))


def ple_encode(x, edges):
    """Piecewise-linear encoding of a 1-D float array over ``edges`` (at least two): one column
    per bin, e_t = clip((x - b_{t-1}) / (b_t - b_{t-1}), 0, 1), the first bin unclipped below
    and the last unclipped above (note 5)."""
    lo, width = edges[:-1], np.diff(edges)
    e = (x[:, None] - lo) / width
    n = len(width)
    if n > 1:
        e[:, 0] = np.minimum(e[:, 0], 1.0)
        e[:, -1] = np.maximum(e[:, -1], 0.0)
        e[:, 1:-1] = np.clip(e[:, 1:-1], 0.0, 1.0)
    return e


def robust_scale_params(values):
    """(median, s) of a 1-D float array of training values, s as in the module's note 3."""
    if values.size == 0:
        return 0.0, 0.0
    median = float(np.median(values))
    q25, q75 = np.quantile(values, [0.25, 0.75])
    iqr = float(q75 - q25)
    if iqr > 0:
        return median, 1.0 / iqr
    span = float(np.max(values) - np.min(values))
    return median, (2.0 / span if span > 0 else 0.0)


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Impute, one-hot, robust-scale and smooth-clip a table (see the module's note).

    Parameters
    ----------
    categorical_features : 'from_dtype', array-like of str or int, bool mask or None, \
            default='from_dtype'
        Which columns are categorical. 'from_dtype': category, object, string and bool columns
        of a DataFrame (none of a plain array, as HistGradientBoosting's). A list of column
        names (DataFrame) or indices,
        or a boolean mask over the columns: exactly those. None: no column.

    dtype : {np.float32, np.float64}, default=np.float32
        Dtype of the transformed matrix.

    numeric_encoding : {'scale', 'ple', 'scale+ple'}, default='scale'
        How a numeric column is encoded (the module's note 5): robust scaling and smooth clip;
        a piecewise-linear encoding over quantile bins instead; or both side by side.

    n_bins : int, default=16
        Most quantile bins per numeric column of the piecewise-linear encoding (fewer where
        quantiles tie).

    categorical_encoding : {'onehot', 'embedding'}, default='onehot'
        'onehot': every categorical column one-hot (+-1 for two levels). 'embedding': a column
        with more than 8 training levels becomes one code column (the module's note 2) for
        the engine's embedding layer; the others stay one-hot.

    Attributes
    ----------
    columns_ : list of dict
        One entry per input column: ``{"kind": "numeric", "median", "indicator", "edges",
        "scaled"}`` (``edges``: the PLE bin edges, None under 'scale' and for a constant column;
        ``scaled``: whether the robust-scaled column is emitted) or
        ``{"kind": "categorical", "levels"}``.
    center_, scale_ : ndarray of shape (n_outputs,)
        Median and scale factor of each raw encoded column (robust scaling; 0 and 1 for PLE
        columns and code columns).
    numeric_columns_ : ndarray of int
        Output columns holding a numeric input's robust-scaled, clipped value (where the
        tabular estimators' periodic embedding applies); missing indicators, PLE bins, one-hot
        and code columns are not among them.
    code_columns_ : ndarray of int
        Output columns that hold category codes (increasing; empty under 'onehot').
    code_cardinalities_ : ndarray of int
        K_j, the training levels of each code column (codes 0..K_j-1; K_j: missing/unseen).
    n_features_in_ : int
    feature_names_in_ : ndarray of str (DataFrame input only)
    """

    def __init__(self, categorical_features="from_dtype", dtype=np.float32,
                 numeric_encoding="scale", n_bins=16, categorical_encoding="onehot"):
        self.categorical_features = categorical_features
        self.dtype = dtype
        self.numeric_encoding = numeric_encoding
        self.n_bins = n_bins
        self.categorical_encoding = categorical_encoding

    # -- input as a list of 1-D columns -----------------------------------------------------------
    def _columns(self, X, reset):
        """X as (list of 1-D columns, column names or None, whether X is a DataFrame)."""
        if _is_dataframe(X):
            if reset:
                names = np.asarray([str(c) for c in X.columns], dtype=object)
                if not all(isinstance(c, str) for c in X.columns):
                    names = None
            else:
                names = None
            if X.shape[0] == 0:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a "
                                 "minimum of 1 is required.")
            if X.shape[1] == 0:
                raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a "
                                 "minimum of 1 is required.")
            return [X.iloc[:, j] for j in range(X.shape[1])], names, True
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            raise TypeError(
                "Sparse input is not supported by the tabular estimators (they impute and "
                "one-hot dense columns). Pass a dense array or a DataFrame, or use "
                "cprop.MLPClassifier / MLPRegressor, which take sparse matrices.")
        X = check_array(X, dtype=None, ensure_all_finite=False, ensure_2d=True)
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported: the tabular estimators take real "
                             "numbers and categories.")
        return [X[:, j] for j in range(X.shape[1])], None, False

    def _categorical_mask(self, cols, names, is_frame):
        n = len(cols)
        spec = self.categorical_features
        if isinstance(spec, str):
            if spec != "from_dtype":
                raise ValueError(
                    f"categorical_features={spec!r} is not understood: expected 'from_dtype', "
                    "a list of column names or indices, a boolean mask, or None.")
            # a plain array has no column dtypes: no categorical column (HistGradientBoosting's
            # rule); an object array must then hold numbers
            return [is_frame and _categorical_dtype(c) for c in cols]
        if spec is None:
            return [False] * n
        spec = list(spec) if not isinstance(spec, np.ndarray) else spec.tolist()
        if len(spec) == n and all(isinstance(s, (bool, np.bool_)) for s in spec):
            return [bool(s) for s in spec]
        mask = [False] * n
        for s in spec:
            if isinstance(s, str):
                if names is None or s not in list(names):
                    raise ValueError(
                        f"categorical_features names the column {s!r}, which X does not have "
                        f"(its columns: {None if names is None else list(names)}). Name "
                        "columns of a DataFrame, or give integer indices.")
                mask[list(names).index(s)] = True
            elif isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)):
                if not -n <= s < n:
                    raise ValueError(f"categorical_features holds the index {s}, outside the "
                                     f"{n} columns of X.")
                mask[int(s)] = True
            else:
                raise ValueError(
                    f"categorical_features holds {s!r}: expected column names, integer "
                    f"indices or a boolean mask of length {n}.")
        return mask

    # -- fit / transform -------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn the column kinds, imputation values, levels and scaling from X."""
        if self.numeric_encoding not in ("scale", "ple", "scale+ple"):
            raise ValueError(f"numeric_encoding={self.numeric_encoding!r} is not understood: "
                             "expected 'scale', 'ple' or 'scale+ple'.")
        if (not isinstance(self.n_bins, numbers.Integral) or isinstance(self.n_bins, bool)
                or self.n_bins < 1):
            raise ValueError(f"n_bins={self.n_bins!r} must be an integer >= 1.")
        if self.categorical_encoding not in ("onehot", "embedding"):
            raise ValueError(f"categorical_encoding={self.categorical_encoding!r} is not "
                             "understood: expected 'onehot' or 'embedding'.")
        codes = self.categorical_encoding == "embedding"
        use_ple = self.numeric_encoding != "scale"
        cols, names, is_frame = self._columns(X, reset=True)
        mask = self._categorical_mask(cols, names, is_frame)
        columns = []
        for j, (col, is_cat) in enumerate(zip(cols, mask)):
            label = names[j] if names is not None else str(j)
            if is_cat:
                values = _as_object(col)
                present = values[~_is_missing(values)]
                levels = sorted(set(present.tolist()), key=_sort_key)
                columns.append({"kind": "categorical", "levels": levels,
                                "code": codes and len(levels) > MAX_ONEHOT_LEVELS})
            else:
                x = _as_float(col, label)
                observed = x[~np.isnan(x)]
                median = float(np.median(observed)) if observed.size else 0.0
                edges = ple_edges(observed, int(self.n_bins)) if use_ple else None
                if edges is not None and len(edges) < 2:   # constant column: scaled (zeros)
                    edges = None
                columns.append({"kind": "numeric", "median": median,
                                "indicator": bool(observed.size < x.size), "edges": edges,
                                "scaled": edges is None or self.numeric_encoding == "scale+ple"})
        self.columns_ = columns
        self.n_features_in_ = len(cols)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        # robust-scaling statistics of every raw column, on the training rows
        raw, observed_masks = self._encode(cols, with_observed=True)
        center = np.empty(raw.shape[1])
        scale = np.empty(raw.shape[1])
        code_cols = [k for k in range(raw.shape[1]) if observed_masks[k] is _CODE]
        self.code_columns_ = np.array(code_cols, dtype=np.intp)
        self.code_cardinalities_ = np.array(
            [len(c["levels"]) for c in columns if c.get("code")], dtype=np.intp)
        for k in range(raw.shape[1]):
            if observed_masks[k] is _FIXED or observed_masks[k] is _CODE:
                # a PLE or code column: no robust scaling
                center[k], scale[k] = 0.0, 1.0
                continue
            values = raw[:, k] if observed_masks[k] is None else raw[observed_masks[k], k]
            center[k], scale[k] = robust_scale_params(values)
        self.center_, self.scale_ = center, scale
        self.numeric_columns_ = self._numeric_columns()
        return self

    def _numeric_columns(self):
        """Indices of the output columns that hold a numeric input's robust-scaled value (not
        its missing indicator, PLE bins or any one-hot column), in the order of
        ``get_feature_names_out``."""
        out, k = [], 0
        for spec in self.columns_:
            if spec["kind"] == "numeric":
                edges = spec.get("edges")
                if spec.get("scaled", True):
                    out.append(k)
                    k += 1
                if edges is not None:
                    k += len(edges) - 1
                k += 1 if spec["indicator"] else 0
            elif spec.get("code"):
                k += 1          # one code column (categorical_encoding='embedding')
            else:
                k += 1 if len(spec["levels"]) == 2 else len(spec["levels"])
        return np.asarray(out, dtype=np.intp)

    def transform(self, X):
        """The scaled, clipped matrix of shape (n_samples, n_outputs)."""
        check_is_fitted(self, "columns_")
        cols, _, _ = self._columns(X, reset=False)
        if len(cols) != self.n_features_in_:
            raise ValueError(f"X has {len(cols)} features, but TabularPreprocessor is expecting "
                             f"{self.n_features_in_} features as input.")
        raw, _ = self._encode(cols, with_observed=False)
        raw -= self.center_
        raw *= self.scale_
        out = smooth_clip(raw)
        codes = getattr(self, "code_columns_", None)
        if codes is not None and codes.size:
            out[:, codes] = raw[:, codes]     # codes stay row indices (centre 0, scale 1)
        return out.astype(self.dtype, copy=False)

    def embedding_block(self, dim=8):
        """The engine's input-block entry for the code columns (``cprop._engine.Network``'s
        ``input_block``, first layer), or None when there are none.

        Examples
        --------
        >>> import numpy as np
        >>> from cprop._tabular_prep import TabularPreprocessor
        >>> X = np.array([[float(i % 10), i * 0.5] for i in range(40)])
        >>> prep = TabularPreprocessor([0], np.float64, categorical_encoding="embedding").fit(X)
        >>> prep.embedding_block()
        {'kind': 'embedding', 'features': [0], 'cardinalities': [10], 'dim': 8}
        >>> prep.transform(X)[:3, 0]
        array([0., 1., 2.])
        """
        check_is_fitted(self, "columns_")
        codes = getattr(self, "code_columns_", None)
        if codes is None or codes.size == 0:
            return None
        return {"kind": "embedding", "features": [int(c) for c in codes],
                "cardinalities": [int(k) for k in self.code_cardinalities_], "dim": int(dim)}

    def columns_after_embedding(self, columns, dim=8):
        """Where output columns of this preprocessor (not code columns) sit in the output of
        ``embedding_block(dim)``: each code column before them widens to ``dim`` columns.
        (E.g. to name the numeric columns of a periodic layer placed after the embedding.)"""
        check_is_fitted(self, "columns_")
        codes = getattr(self, "code_columns_", np.zeros(0, np.intp))
        cols = np.asarray(columns, dtype=np.intp)
        if np.isin(cols, codes).any():
            raise ValueError("columns_after_embedding maps non-code columns; got a code column.")
        return cols + (dim - 1) * np.searchsorted(codes, cols)

    def _encode(self, cols, with_observed):
        """Raw encoded matrix (notes 2 and 5) and, per output column, the mask of observed rows
        (numeric columns with missing values), None (all rows), or _FIXED (a PLE column, not
        robust-scaled)."""
        n = len(cols[0])
        blocks, observed = [], []
        for j, (col, spec) in enumerate(zip(cols, self.columns_)):
            if spec["kind"] == "numeric":
                x = _as_float(col, str(j))
                miss = np.isnan(x)
                x = np.where(miss, spec["median"], x)
                edges = spec.get("edges")
                if spec.get("scaled", True):
                    blocks.append(x[:, None])
                    observed.append(~miss if miss.any() else None)
                if edges is not None:
                    block = ple_encode(x, edges)
                    blocks.append(block)
                    observed.extend([_FIXED] * block.shape[1])
                if spec["indicator"]:
                    blocks.append(miss.astype(np.float64)[:, None])
                    observed.append(None)
            else:
                levels = spec["levels"]
                idx = _level_index(col, levels)
                if spec.get("code"):
                    blocks.append(np.where(idx < 0, len(levels), idx).astype(np.float64)[:, None])
                    observed.append(_CODE)
                    continue
                if len(levels) == 2:
                    block = np.where(idx < 0, 0.0, np.where(idx == 0, -1.0, 1.0))[:, None]
                else:
                    block = np.zeros((n, len(levels)))
                    rows = np.flatnonzero(idx >= 0)
                    block[rows, idx[rows]] = 1.0
                blocks.append(block)
                observed.extend([None] * block.shape[1])
        raw = np.hstack(blocks) if blocks else np.zeros((n, 0))
        return raw, (observed if with_observed else None)

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``name``, ``name_missing``, ``name=level``."""
        check_is_fitted(self, "columns_")
        names = (list(self.feature_names_in_) if hasattr(self, "feature_names_in_")
                 else [f"x{j}" for j in range(self.n_features_in_)])
        out = []
        for name, spec in zip(names, self.columns_):
            if spec["kind"] == "numeric":
                edges = spec.get("edges")
                if spec.get("scaled", True):
                    out.append(name)
                if edges is not None:
                    out.extend(f"{name}_bin{t}" for t in range(len(edges) - 1))
                if spec["indicator"]:
                    out.append(f"{name}_missing")
            elif spec.get("code"):
                out.append(name)
            elif len(spec["levels"]) == 2:
                out.append(f"{name}={spec['levels'][1]}")
            else:
                out.extend(f"{name}={lev}" for lev in spec["levels"])
        return np.asarray(out, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


def _categorical_dtype(col):
    """Whether a column is categorical under 'from_dtype' (note 1)."""
    dtype = getattr(col, "dtype", None)
    if dtype is None:
        return False
    if type(dtype).__name__ in ("CategoricalDtype", "StringDtype", "BooleanDtype"):
        return True
    dtype = np.dtype(dtype) if isinstance(dtype, np.dtype) else dtype
    kind = getattr(dtype, "kind", None)
    return kind in ("O", "U", "S", "b")


def _as_object(col):
    if hasattr(col, "to_numpy"):
        return col.to_numpy(dtype=object, na_value=None) if hasattr(col, "array") else \
            np.asarray(col, dtype=object)
    return np.asarray(col, dtype=object)


def _as_float(col, label):
    """A numeric column as float64 with NaN for missing values; clear errors otherwise."""
    try:
        if hasattr(col, "to_numpy"):
            x = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            x = np.asarray(col)
            if x.dtype == object:
                x = np.array([np.nan if m else v for v, m in zip(x, _is_missing(x))],
                             dtype=np.float64)
            else:
                x = x.astype(np.float64)
    except TypeError as exc:   # an object that is no number (a dict, ...)
        raise TypeError(
            f"Column {label!r}: {exc}. Numeric columns must hold numbers; categorical columns "
            "can hold strings and numbers (see categorical_features).") from None
    except ValueError as exc:
        raise ValueError(
            f"Column {label!r} is not numeric and not categorical ({exc}). Give it a category, "
            "object or string dtype, or name it in categorical_features.") from None
    if np.isinf(x).any():
        raise ValueError(f"Input X contains infinity in column {label!r}: the tabular "
                         "estimators accept NaN (missing) but not infinite values.")
    return x


def _level_index(col, levels):
    """Index of each value among ``levels``; -1 for missing and unseen values."""
    dtype = getattr(col, "dtype", None)
    if type(dtype).__name__ == "CategoricalDtype":
        # fast path: map the dtype's categories once, then index by the codes (-1 = missing)
        lookup = {lev: i for i, lev in enumerate(levels)}
        cat_map = np.array([lookup.get(c, -1) for c in dtype.categories.tolist()] + [-1],
                           dtype=np.intp)
        return cat_map[np.asarray(col.cat.codes, dtype=np.intp)]
    lookup = {lev: i for i, lev in enumerate(levels)}
    values = _as_object(col).tolist()
    try:
        return np.fromiter((lookup.get(v, -1) for v in values), dtype=np.intp,
                           count=len(values))
    except TypeError:  # an unhashable value (a list, ...) is no level seen in training
        return np.array([lookup.get(v, -1) if isinstance(v, (str, numbers.Number)) else -1
                         for v in values], dtype=np.intp)
