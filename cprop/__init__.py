"""cprop: multi-layer perceptrons trained by backpropagation on a typed Cython + OpenMP engine.

``MLPClassifier`` and ``MLPRegressor`` are drop-in replacements for scikit-learn's
``sklearn.neural_network`` estimators; ``TabularMLPClassifier`` and ``TabularMLPRegressor`` add
their own preprocessing of tables (DataFrames with categories and missing values).
"""
try:
    from ._gradcheck import check_gradients
    from ._isa import available_kernels, kernel_info, set_kernel
    from ._mlp import MLPClassifier, MLPRegressor
    from ._stopping import EarlyStopping
    from ._tabular import TabularMLPClassifier, TabularMLPRegressor
except ImportError as _exc:  # a source tree without its compiled engine: say what to do
    import importlib.machinery as _machinery
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if not any(_os.path.exists(_os.path.join(_here, "_openmp" + _suffix))
               for _suffix in _machinery.EXTENSION_SUFFIXES):
        raise ImportError(
            f"cprop's compiled engine is missing: {_here} is a source tree that was not built "
            "(this happens when Python runs from a clone, e.g. `python -m pytest`, and finds "
            "its cprop/ folder first). Install cprop (pip install '.[test]') and run from "
            "another directory or with plain `pytest`, or build in place (python setup.py "
            "build_ext --inplace).",
            # name=__name__: `python -m cprop` (runpy) then prints this message alone, and
            # "from None" drops the circular-import error that only says the engine is absent
            name=__name__,
        ) from None
    raise

__version__ = "0.1.0"
__all__ = ["EarlyStopping", "MLPClassifier", "MLPRegressor", "TabularMLPClassifier",
           "TabularMLPRegressor", "available_kernels", "check_gradients", "kernel_info",
           "set_kernel", "__version__"]
