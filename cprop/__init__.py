"""cprop: multi-layer perceptrons trained by backpropagation on a typed Cython + OpenMP engine."""
__version__ = "0.1.0"
