"""Fixtures shared by the integration tests (tests/README.md lists every layer's)."""
import warnings

import pytest


def _quietly(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning from short fits
        return fn(*args, **kw)


@pytest.fixture
def quietly():
    """``quietly(fn, *args, **kw)``: ``fn(*args, **kw)`` with warnings silenced (the short fits
    here stop before convergence on purpose)."""
    return _quietly
