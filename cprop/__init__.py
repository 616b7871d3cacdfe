"""cprop: multi-layer perceptrons trained by backpropagation on a typed Cython + OpenMP engine.

``MLPClassifier`` and ``MLPRegressor`` are drop-in replacements for scikit-learn's
``sklearn.neural_network`` estimators.
"""
from ._gradcheck import check_gradients
from ._mlp import MLPClassifier, MLPRegressor

__version__ = "0.1.0"
__all__ = ["MLPClassifier", "MLPRegressor", "check_gradients", "__version__"]
