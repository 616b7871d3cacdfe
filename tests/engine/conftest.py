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


@pytest.fixture
def block_thread_runs(threaded_passes, perturbed_params):
    """``block_thread_runs(make_net, X, Y, order, dtype)`` -> (teams, results): for 1, 2 and 3
    threads (``make_net(n_threads)``), the loss and gradient, a prediction and an AdamW epoch
    over ``order`` (batches of 300) from the same perturbed parameters, under
    ``threaded_passes``; ``teams`` holds per thread count the input block's (forward, backward)
    OpenMP team sizes and the update's team size, ``results`` what each run produced."""
    from cprop._backprop import _block_teams
    from cprop._optimizers import OptimizerState

    def runs(make_net, X, Y, order, dtype):
        teams, results = [], []
        for nt in (1, 2, 3):
            net = make_net(nt)
            params = perturbed_params(net)
            _block_teams(reset=True)
            with threaded_passes() as t:
                loss, grad = net.loss_grad(params, X, Y, None, alpha=1e-3)
                P = net.predict(params, X)
                st = OptimizerState("adamw", net.n_params, dtype, learning_rate=1e-2,
                                    weight_decay=0.05)
                ep = net.train_epoch(params, st, X, Y, None, order=order, batch_size=300,
                                     alpha=1e-3)
            teams.append((_block_teams(reset=True), t["update"]))
            results.append((loss, ep, grad, P, params, st.s1, st.s2))
        return teams, results
    return runs
