"""Fixtures shared by the engine tests (see tests/README.md)."""
import numpy as np
import pytest


@pytest.fixture
def perturbed_params():
    """``perturbed_params(net, seed=0)``: ``net.init_params``, with the input block's
    parameters moved off their init (a scale of 1 would hide a scale-gradient bug that
    multiplies by s instead of x, and similar)."""
    def make(net, seed=0):
        p = net.init_params(np.random.RandomState(seed))
        rng = np.random.default_rng(seed + 1)
        for view in net.block_params(p):
            for a in view.values():
                a += (0.3 * rng.standard_normal(a.shape)).astype(a.dtype)
        return p
    return make


@pytest.fixture
def segment_fd_errors():
    """``segment_fd_errors(net, params, X, Y, sw, alpha, h=1e-6)`` -> (errors, grad): the
    norm-wise relative error of the engine's gradient against central differences of its loss,
    per parameter segment ``(group kind, index)``, and the engine's gradient."""
    def errors(net, params, X, Y, sw, alpha, h=1e-6):
        _, grad = net.loss_grad(params, X, Y, sw, alpha)
        fd = np.empty_like(params)
        q = params.copy()
        for i in range(params.size):
            q[i] = params[i] + h
            up = net.loss_grad(q, X, Y, sw, alpha)[0]
            q[i] = params[i] - h
            down = net.loss_grad(q, X, Y, sw, alpha)[0]
            q[i] = params[i]
            fd[i] = (up - down) / (2 * h)
        out = {}
        for s, (kind, sl, _, _) in enumerate(net.segments()):
            den = max(np.linalg.norm(grad[sl]), np.linalg.norm(fd[sl]))
            assert den > 0, kind
            out[(kind, s)] = np.linalg.norm(grad[sl] - fd[sl]) / den
        return out, grad
    return errors
