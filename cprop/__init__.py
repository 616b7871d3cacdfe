"""cprop: multi-layer perceptrons trained by backpropagation on a typed Cython + OpenMP engine.

``MLPClassifier`` and ``MLPRegressor`` are drop-in replacements for scikit-learn's
``sklearn.neural_network`` estimators.
"""
from ._isa import available_kernels, kernel_info, set_kernel
from ._mlp import MLPClassifier, MLPRegressor

__version__ = "0.1.0"
__all__ = ["MLPClassifier", "MLPRegressor", "available_kernels", "kernel_info", "set_kernel",
           "__version__"]
