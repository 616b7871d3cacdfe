"""Stochastic fits whose epochs need no Python: many epochs per compiled call.

``BaseMLP._fit_stochastic`` hands its fit here (one dispatch line) when nothing in an epoch needs
Python: no validation data (early stopping, ``X_val``), callbacks, verbose output or progress
bar, sample weights, dropout or gradient monitoring.  ``cprop._train.fit_epochs`` then runs the
epochs in one call: the row order, the mini-batches, the loss's tol / n_iter_no_change count, the
learning-rate schedule and the stopping rule, and this module writes the fitted attributes and
the history from what it returns.

Design
1. Bitwise today's loop: the same arithmetic (the compiled loop runs train_epoch's batch loop),
   the same random draws (numpy's legacy shuffle, driven from C through the RandomState's own bit
   generator, whose lock is held meanwhile, so the RandomState ends in the same state), the same
   per-epoch bookkeeping in doubles (``loss_curve_``, ``best_loss_``, ``_no_improvement_count``,
   ``t_``, the invscaling/adaptive/cosine rates; the per-batch coslog4 rates and flat_cos
   weight decay come from the one batch loop both use) and the same warnings.  The estimator's own loop
   stays the reference: ``FORCE_PYTHON = True`` sends every fit there (tests compare the two).
2. A call runs at most CHUNK_EPOCHS epochs (the per-epoch records it returns are that long);
   Ctrl-C is handled inside it every ``_engine.POLL_FLOPS`` GEMM flops, between batches as
   before and at epoch ends, with the partial-epoch semantics of the estimator's loop (README,
   Ctrl-C).
3. One ``_train.Runner`` per fit: the data checked and the work buffers allocated once, however
   many calls of CHUNK_EPOCHS epochs the fit takes.
"""
import numbers
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _engine, _train
from .callbacks import EpochRecord

# True: every fit takes the estimator's Python loop (a private switch for tests and benchmarks).
FORCE_PYTHON = False
# Epochs per compiled call (design note 2).
CHUNK_EPOCHS = 1024


def _schedule(est):
    """fit_epochs' schedule code for the estimator (None: the Python loop must run it)."""
    if est.learning_rate not in _train.SCHEDULE_CODES:
        return None         # e.g. 'plateau': cprop._optimizers' schedule, run per epoch
    if est.learning_rate in ("cosine", "coslog4"):
        return _train.SCHEDULE_CODES[est.learning_rate]
    if est.solver == "sgd" and est.learning_rate in ("invscaling", "adaptive"):
        if est.learning_rate == "invscaling" and isinstance(est.power_t, numbers.Integral):
            return None     # int ** int is exact in Python; keep its arithmetic there
        return _train.SCHEDULE_CODES[est.learning_rate]
    return _train.SCHEDULE_CODES["constant"]


def _eligible(est, net, state, X, sw, val, callbacks, bar):
    """True when no epoch of this fit needs Python (design, first paragraph)."""
    if FORCE_PYTHON or val is not None or est.early_stopping or callbacks or bar is not None:
        return False
    if est.verbose or sw is not None or net.dropout is not None:
        return False
    if state.gradient_norms is not None or state.solver not in _train.SOLVER_CODES:
        return False
    if not isinstance(getattr(est, "best_loss_", None), numbers.Real):
        return False        # e.g. None after an early-stopping fit: the Python loop's error
    if est.shuffle and not hasattr(getattr(est._random_state, "_bit_generator", None), "capsule"):
        return False
    if est.learning_rate in ("cosine", "coslog4") and est.max_iter < 1:
        return False
    return _schedule(est) is not None


def run(est, net, params, state, X, Y, sw, batch_size, incremental, val, callbacks, bar):
    """Train ``est`` as ``_fit_stochastic``'s epoch loop would, in compiled calls; returns False
    (having done nothing) when some epoch needs Python, True when the fit is done."""
    if not _eligible(est, net, state, X, sw, val, callbacks, bar):
        return False
    n = X.shape[0]
    runner = net.runner(params, X, Y, None, batch_size, float(est.alpha))
    runner.set_optimizer(
        state.s1, state.s2, state.solver, momentum=float(state.momentum),
        nesterov=bool(state.nesterov), beta_1=float(state.beta_1), beta_2=float(state.beta_2),
        epsilon=float(state.epsilon), weight_decay=float(state.weight_decay),
        clip_grad_norm=float(state.clip_grad_norm or 0.0),
        clip_grad_value=float(state.clip_grad_value or 0.0))
    sample_idx = np.arange(n, dtype=np.intp)
    bitgen = est._random_state._bit_generator if est.shuffle else None
    schedule = _schedule(est)
    wd_schedule = int(est.weight_decay_schedule == "flat_cos")     # per batch, as coslog4
    todo = 1 if incremental else int(est.max_iter)
    k_max = min(CHUNK_EPOCHS, todo)
    out_loss, out_lr, out_time = np.empty(k_max), np.empty(k_max), np.empty(k_max)
    out_rows = np.empty(k_max, dtype=np.intp)
    restart = getattr(est, "_restart_index", 0)
    interrupted = stopped = False
    est.n_iter_ = 0
    try:
        with (bitgen.lock if bitgen is not None else _NoLock()):
            while est.n_iter_ < todo and not stopped:
                k = min(k_max, todo - est.n_iter_)
                epoch0 = len(est.loss_curve_) if incremental else est.n_iter_
                (done, t, n_seen, lr, count, best, stopped, partial, exc) = runner.fit_epochs(
                    sample_idx, bitgen, t=float(state.t), schedule=schedule,
                    learning_rate=float(state.learning_rate),
                    learning_rate_init=float(est.learning_rate_init),
                    power_t=float(est.power_t), warmup_iter=int(est.warmup_iter),
                    max_iter=int(est.max_iter), epoch0=epoch0, n_seen=int(est.t_),
                    tol=float(est.tol), n_iter_no_change=float(est.n_iter_no_change),
                    no_improvement=int(est._no_improvement_count),
                    best_loss=float(est.best_loss_), poll_flops=float(_engine.POLL_FLOPS),
                    out_loss=out_loss[:k], out_lr=out_lr[:k], out_time=out_time[:k],
                    out_rows=out_rows[:k], wd_schedule=wd_schedule)
                _record(est, state, done, t, n_seen, lr, count, best, partial, restart,
                        out_loss, out_lr, out_time, out_rows)
                if exc is not None:
                    raise exc
        if not stopped and not incremental and est.n_iter_ == est.max_iter:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                "optimization hasn't converged yet." % est.max_iter,
                ConvergenceWarning,
            )
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn("Training interrupted by user.")
    est._interrupted = interrupted
    if interrupted and incremental:
        # a user's own partial_fit loop must stop too; the model above is consistent
        raise KeyboardInterrupt
    return True


def _record(est, state, done, t, n_seen, lr, count, best, partial, restart, out_loss, out_lr,
            out_time, out_rows):
    """The fitted attributes and history after ``done`` compiled epochs (what the estimator's
    loop and ``_training_loop.record_epoch`` write per epoch)."""
    losses = out_loss[:done].tolist()
    rates = out_lr[:done].tolist()
    times = out_time[:done].tolist()
    rows = out_rows[:done].tolist()
    state.t = int(t)
    state.learning_rate = lr
    est.t_ = int(n_seen)
    est._no_improvement_count = int(count)
    if est.best_loss_ != best:
        est.best_loss_ = best
    est.n_iter_ += done
    base = len(est.loss_curve_)
    est.loss_curve_.extend(losses)
    est.learning_rate_curve_.extend(rates)
    est.epoch_times_.extend(times)
    est.history_.extend(
        EpochRecord(epoch=base + i + 1, loss=losses[i], validation_loss=None,
                    validation_score=None, learning_rate=rates[i], time=times[i],
                    n_samples=rows[i], partial=partial and i == done - 1, restart=restart)
        for i in range(done))
    if done:
        est.loss_ = losses[-1]


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
