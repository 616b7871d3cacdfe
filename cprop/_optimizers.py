"""The optimizers: the solver registry, the optimizer state and the learning-rate schedules.

Design
1. ``SOLVERS`` is the one list of solvers: a new solver is one entry here (its name, whether it
   is stochastic and which schedules it follows) plus its update rule in the compiled epoch
   (``src/cprop/_optim.pxd``).  Everything else (parameter constraints, ``partial_fit``'s
   availability, which options apply) is derived from it.
2. ``OptimizerState`` holds what a stochastic solver carries from one epoch to the next (the
   current learning rate, Adam's step count, the moment or velocity vectors, the clipping and
   monitoring settings).  Every field has an explicit default; ``__setstate__`` fills the fields
   an older pickle lacks, so readers never need ``getattr`` defaults.
3. A ``Schedule`` sets the learning rate around each epoch: 'constant', 'invscaling' (after each
   epoch, from the samples seen), 'adaptive' and 'plateau' (divide by 5 when the no-improvement
   counter runs out, stop once the rate is <= 1e-6; scikit-learn's 'adaptive' rule, which 'plateau'
   offers to every stochastic solver) and 'cosine' (before each epoch, with linear warm-up).
   scikit-learn's schedules keep its behaviour: 'adam' ignores 'invscaling' and 'adaptive'.
4. Per-batch schedules (RealMLP's, Holzmueller et al. 2024): 'coslog4' learning rates, and the
   'flat_cos' factor on AdamW's weight decay (``weight_decay_schedule``) and on the dropout rates
   (``dropout_schedule``).  t is the batch's index over all the batches of ``max_iter`` epochs,
   so they run inside the compiled epoch (``_train._batch_rates``, the same code for the
   estimator's loop and the compiled fit loop); ``Schedule.before_epoch`` hands the compiled
   epoch its settings (``OptimizerState.batch_schedule``) and records the epoch's first batch's
   rate.  ``coslog4`` and ``flat_cos`` below are the compiled formulas operation for operation.
"""
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Solver:
    """One registry entry: the solver's name, whether it trains by epochs of mini-batches, and
    the learning-rate schedules it follows (others are ignored, as scikit-learn's 'adam' ignores
    'invscaling')."""
    name: str
    stochastic: bool
    schedules: frozenset = frozenset()
    decoupled_weight_decay: bool = False


SCHEDULES = ("constant", "invscaling", "adaptive", "cosine", "plateau", "coslog4")
# cprop's own schedules: with a solver that does not follow them they are an error (the option
# rule of cprop._training_loop.check_options), while scikit-learn's are ignored as there.
CPROP_SCHEDULES = frozenset({"cosine", "plateau", "coslog4"})
# the factor schedules of weight decay and dropout (design note 4)
FACTOR_SCHEDULES = ("constant", "flat_cos")

SOLVERS = {
    "lbfgs": Solver("lbfgs", stochastic=False),
    "sgd": Solver("sgd", stochastic=True, schedules=frozenset(SCHEDULES)),
    "adam": Solver("adam", stochastic=True,
                   schedules=frozenset({"constant", "cosine", "plateau", "coslog4"})),
    "adamw": Solver("adamw", stochastic=True,
                    schedules=frozenset({"constant", "cosine", "plateau", "coslog4"}),
                    decoupled_weight_decay=True),
}
STOCHASTIC_SOLVERS = frozenset(name for name, s in SOLVERS.items() if s.stochastic)


class OptimizerState:
    """State of SGD (velocity) or Adam/AdamW (moments and step count) for a flat parameter vector.

    ``learning_rate`` is the *current* rate (schedules change it between epochs); Adam's bias
    correction uses ``t``.  ``clip_grad_norm`` / ``clip_grad_value`` (None: off) clip each
    mini-batch's gradient; ``gradient_norms`` (None: off, or a list) receives, per epoch, each
    layer's weight-gradient norm averaged over the mini-batches, and ``epochs_checked`` counts
    the epochs already checked for vanishing/exploding gradients.  ``dropout_seed`` (None: no
    dropout) keys the dropout masks of a network with dropout rates; each epoch uses the next
    epoch number (``dropout_epoch``).  ``batch_schedule`` (None: none) holds the per-batch
    schedules' arguments of the coming epoch for ``_train.train_epoch`` (design note 4).

    Examples
    --------
    >>> import numpy as np
    >>> st = OptimizerState("adam", 3, np.float64, learning_rate=0.01)
    >>> st.t, st.s1.shape, st.weight_decay
    (0, (3,), 0.0)
    """

    # The fields and their defaults (design note 2); s1/s2 depend on the parameter count.
    DEFAULTS = dict(learning_rate=0.001, momentum=0.9, nesterov=True, beta_1=0.9, beta_2=0.999,
                    epsilon=1e-8, weight_decay=0.0, clip_grad_norm=None, clip_grad_value=None,
                    gradient_norms=None, epochs_checked=0, dropout_seed=None, dropout_epoch=-1,
                    t=0, batch_schedule=None)

    def __init__(self, solver, n_params, dtype, learning_rate=0.001, momentum=0.9,
                 nesterov=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                 clip_grad_norm=None, clip_grad_value=None, gradient_norms=None,
                 dropout_seed=None):
        if solver not in STOCHASTIC_SOLVERS:
            raise ValueError(f"solver must be one of {sorted(STOCHASTIC_SOLVERS)}; got "
                             f"{solver!r}.")
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.gradient_norms = gradient_norms
        self.epochs_checked = 0
        self.dropout_seed = dropout_seed     # masks of epoch e: (dropout_seed, e, sample, unit)
        self.dropout_epoch = -1
        self.t = 0
        self.batch_schedule = None
        # SGD uses s1 (velocity) only; the kernel takes both vectors for either solver.
        self.s1 = np.zeros(n_params, dtype=dtype)
        self.s2 = np.zeros(n_params, dtype=dtype)

    def __setstate__(self, state):
        """Load a pickled state; fields added since it was written take their defaults."""
        full = {k: (list(v) if isinstance(v, list) else v) for k, v in self.DEFAULTS.items()}
        full.update(state)
        self.__dict__.update(full)

    def snapshot(self):
        """A copy of the state (vectors and the gradient-norm record copied), for ``restore``."""
        saved = dict(self.__dict__)
        for key in ("s1", "s2"):
            if isinstance(saved.get(key), np.ndarray):
                saved[key] = saved[key].copy()
        if saved.get("gradient_norms") is not None:
            saved["gradient_norms"] = list(saved["gradient_norms"])
        return saved

    def restore(self, saved):
        """Put the state back as ``snapshot`` found it (in place: vectors keep their identity)."""
        for key in ("s1", "s2"):
            live, copy = self.__dict__.get(key), saved.get(key)
            if isinstance(live, np.ndarray) and isinstance(copy, np.ndarray) \
                    and live.shape == copy.shape and live.dtype == copy.dtype:
                live[...] = copy
                saved = {**saved, key: live}
        norms = self.__dict__.get("gradient_norms")
        if isinstance(norms, list) and saved.get("gradient_norms") is not None:
            norms[:] = saved["gradient_norms"]
            saved = {**saved, "gradient_norms": norms}
        self.__dict__.clear()
        self.__dict__.update(saved)


# ---- learning-rate schedules (design note 3) ----------------------------------------------------
def cosine_rate(lr0, epoch, max_iter, warmup_iter=0):
    """Learning rate of 0-based ``epoch`` under linear warm-up then cosine decay.

    lr = lr0 (e + 1) / warmup_iter for e < warmup_iter, then
    lr = lr0 / 2 (1 + cos(pi (e - warmup_iter) / (max_iter - warmup_iter))), e capped at
    max_iter - 1 (so later epochs, e.g. of a partial_fit loop, keep the last rate).

    Examples
    --------
    >>> cosine_rate(1.0, 0, 10), cosine_rate(1.0, 5, 10), cosine_rate(1.0, 0, 10, warmup_iter=4)
    (1.0, 0.5, 0.25)
    """
    if epoch < warmup_iter:
        return lr0 * (epoch + 1) / warmup_iter
    span = max_iter - warmup_iter
    if span <= 0:
        return lr0
    e = min(epoch, max_iter - 1) - warmup_iter
    return 0.5 * lr0 * (1.0 + math.cos(math.pi * e / span))


def coslog4(t):
    """RealMLP's learning-rate factor at training fraction t: (1 - cos(2 pi log2(1 + 15 t))) / 2
    (0 at t = 0, then four cycles whose peaks fall at t = (2^(k + 1/2) - 1) / 15).

    Examples
    --------
    >>> coslog4(0.0), round(coslog4((2 ** 0.5 - 1) / 15), 12), round(coslog4(1.0), 12)
    (0.0, 1.0, 0.0)
    """
    return 0.5 * (1.0 - math.cos(2.0 * math.pi * math.log2(1.0 + 15.0 * t)))


def flat_cos(t):
    """RealMLP's weight-decay and dropout factor: 1 for t <= 1/2, then (1 + cos(pi (2t - 1))) / 2.

    Examples
    --------
    >>> flat_cos(0.25), flat_cos(0.75), flat_cos(1.0)
    (1.0, 0.5, 0.0)
    """
    return 0.5 * (1.0 + math.cos(math.pi * ((2.0 * t if 2.0 * t > 1.0 else 1.0) - 1.0)))


_FACTOR_CODES = {"constant": 0, "flat_cos": 1}


class Schedule:
    """The learning-rate schedule of one fit: ``before_epoch`` (cosine), ``after_epoch``
    (invscaling) and ``on_plateau`` (adaptive/plateau: True means stop).

    Examples
    --------
    >>> import numpy as np
    >>> st = OptimizerState("adam", 2, np.float64, learning_rate=0.01)
    >>> s = Schedule("plateau", "adam", 0.01, power_t=0.5, max_iter=10)
    >>> s.on_plateau(st), round(st.learning_rate, 6)
    (False, 0.002)
    """

    def __init__(self, name, solver, learning_rate_init, power_t=0.5, max_iter=200,
                 warmup_iter=0, weight_decay_schedule="constant", dropout_schedule="constant"):
        followed = SOLVERS[solver].schedules
        self.name = name if name in followed else "constant"
        self.lr0 = float(learning_rate_init)
        self.power_t = power_t
        self.max_iter = max_iter
        self.warmup_iter = warmup_iter
        self.weight_decay_schedule = weight_decay_schedule
        self.dropout_schedule = dropout_schedule

    @property
    def per_batch(self):
        """True when some factor changes from batch to batch (design note 4)."""
        return (self.name == "coslog4" or self.weight_decay_schedule != "constant"
                or self.dropout_schedule != "constant")

    def before_epoch(self, state, epoch):
        """Set the rate of 0-based ``epoch`` (cosine; coslog4: its first batch's rate, the
        epoch capped at max_iter - 1 as in the compiled epoch) and the compiled epoch's
        per-batch schedule arguments."""
        if self.name == "cosine":
            state.learning_rate = cosine_rate(self.lr0, epoch, self.max_iter, self.warmup_iter)
        if not self.per_batch:
            state.batch_schedule = None
            return
        if self.name == "coslog4":
            e = min(epoch, self.max_iter - 1)
            state.learning_rate = self.lr0 * coslog4(e / self.max_iter)
        state.batch_schedule = dict(
            lr_schedule=int(self.name == "coslog4"),
            wd_schedule=_FACTOR_CODES[self.weight_decay_schedule],
            dropout_schedule=_FACTOR_CODES[self.dropout_schedule],
            learning_rate_init=self.lr0, schedule_epoch=int(epoch), max_iter=int(self.max_iter))

    def after_epoch(self, state, samples_seen):
        """scikit-learn's 'invscaling': lr0 / (t + 1) ** power_t after each epoch."""
        if self.name == "invscaling":
            state.learning_rate = self.lr0 / (samples_seen + 1) ** self.power_t

    @property
    def reduces_on_plateau(self):
        return self.name in ("adaptive", "plateau")

    def on_plateau(self, state):
        """The no-improvement counter ran out: True to stop, False after dividing the rate by 5
        ('adaptive', 'plateau'; they stop once the rate is <= 1e-6)."""
        if not self.reduces_on_plateau or state.learning_rate <= 1e-6:
            return True
        state.learning_rate /= 5.0
        return False
