"""``python -m cprop demo``: cprop and scikit-learn side by side on the digits data set.

Design
1. The data is scikit-learn's digits (1797 8x8 images, 10 classes), which ships inside
   scikit-learn: the demo needs no download. Pixels are scaled to [0, 1]; a stratified 75/25
   split is drawn with the demo's seed.
2. Both estimators get the *same* hyperparameters (scikit-learn's defaults unless overridden on
   the command line, ``random_state`` fixed) and the same float dtype, and by default the same
   thread budget: N = ``--n-threads N``, or else cprop's default policy (``OMP_NUM_THREADS``,
   threadpoolctl limits, usable CPUs); cprop gets ``n_threads=N`` and scikit-learn's BLAS is
   limited to N threads through threadpoolctl (its MLP has no other threads). Unequal budgets
   made the ratio meaningless: on a loaded 2-core machine scikit-learn's default BLAS threads
   fought for the cores and two runs of the same fit reported 9.6x and 34.6x; with equal budgets
   2.0-2.1x. ``--own-threads`` lets each library use its own default (the output says so).
   Each fit is timed once with
   ``time.perf_counter``, after a tiny warm-up fit of each library so that one-off import and
   thread-pool start-up costs are not charged to either.
3. The report is a fixed-format table: one row per library with test accuracy, fit time,
   epochs and final training loss, then the speed-up. ``tests/integration/test_demo.py`` parses it.
4. ``--plot FILE.png`` needs matplotlib (the ``plot`` extra). It is imported lazily and checked
   *before* training: without it the demo prints how to install it and exits with status 2,
   having trained nothing. The figure is drawn on an Agg canvas (no display, no global pyplot
   state).
"""
import argparse
import contextlib
import sys
import time
import warnings

import numpy as np

DESCRIPTION = ("Train cprop's and scikit-learn's MLPClassifier on the digits data set with the "
               "same settings; print test accuracy and fit time side by side.")
# Exit status for "an optional dependency is missing".
EXIT_MISSING_EXTRA = 2


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _hidden_layers(text):
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes such as '100' or '128,64', got {text!r}"
        )
    return sizes


def add_arguments(parser):
    """Add the demo's options to an ``argparse`` (sub)parser."""
    parser.add_argument("--hidden-layer-sizes", type=_hidden_layers, default=(100,),
                        metavar="N[,N...]", help="hidden layer sizes (default: 100)")
    parser.add_argument("--activation", default="relu",
                        choices=["identity", "logistic", "tanh", "relu"],
                        help="hidden activation (default: relu)")
    parser.add_argument("--solver", default="adam", choices=["adam", "sgd", "lbfgs"],
                        help="solver (default: adam)")
    parser.add_argument("--max-iter", type=_positive_int, default=200,
                        help="maximum epochs (default: 200, scikit-learn's default)")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="minibatch size (default: min(200, n_samples), as scikit-learn)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="dtype of X, and so of both models (default: float64)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the split and of both models (default: 0)")
    parser.add_argument("--n-threads", type=_positive_int, default=None,
                        help="threads for both: cprop's n_threads, and a threadpoolctl limit on "
                             "scikit-learn's BLAS (default: cprop's default thread count, "
                             "OMP_NUM_THREADS or the usable CPUs, for both)")
    parser.add_argument("--own-threads", action="store_true",
                        help="let each library use its own default thread policy instead of "
                             "one shared budget (not a like-for-like comparison)")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="save both loss curves to FILE.png (needs matplotlib: "
                             "pip install 'cprop[plot]')")
    return parser


def load_data(seed, dtype):
    """Digits scaled to [0, 1], split 75/25 (stratified): X_train, X_test, y_train, y_test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)


def make_estimators(args):
    """(cprop MLPClassifier, sklearn MLPClassifier) with identical hyperparameters."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from cprop import MLPClassifier

    params = dict(
        hidden_layer_sizes=args.hidden_layer_sizes,
        activation=args.activation,
        solver=args.solver,
        max_iter=args.max_iter,
        batch_size="auto" if args.batch_size is None else args.batch_size,
        random_state=args.seed,
    )
    return MLPClassifier(**params, n_threads=args.n_threads), SkMLPClassifier(**params)


def _fit_timed(est, X, y):
    with warnings.catch_warnings():
        # Stopping at max_iter is expected with short demo runs; the epochs column shows it.
        warnings.filterwarnings("ignore", message=".*Maximum iterations.*")
        warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")
        t0 = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t0


def _warm_up(est, X, y):
    """One short fit on a few rows, so import/thread start-up is not part of the timing."""
    from sklearn.base import clone

    warm = clone(est).set_params(max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm.fit(X[:200], y[:200])


def _check_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def save_plot(path, curves, title):
    """Save {label: loss_curve} as a PNG at ``path`` (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (label, curve), style in zip(curves.items(), ["-", "--"]):
        ax.plot(np.arange(1, len(curve) + 1), curve, style, linewidth=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (log-loss + L2 penalty)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def run(args, out=sys.stdout):
    """Train both models, print the comparison table; return the process exit status."""
    if args.plot is not None and not _check_matplotlib():
        print("cprop demo: --plot needs matplotlib, which is not installed.\n"
              "Install it with:  pip install 'cprop[plot]'   (or: pip install matplotlib)\n"
              "or run the demo without --plot.", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    own_threads = getattr(args, "own_threads", False)
    if own_threads and args.n_threads is not None:
        print("cprop demo: --own-threads and --n-threads exclude each other: --n-threads gives "
              "both libraries the same budget, --own-threads gives each its own default.",
              file=sys.stderr)
        return 2
    budget_note = "the same budget for both, from --n-threads"
    if args.n_threads is None and not own_threads:
        # One budget for both: cprop's default thread count (its policy: OMP_NUM_THREADS,
        # threadpoolctl limits, usable CPUs), imposed on scikit-learn's BLAS too.
        from cprop._openmp import effective_n_threads as _default_threads

        args = argparse.Namespace(**vars(args))
        args.n_threads = _default_threads(None)
        budget_note = ("the same budget for both: cprop's default thread count "
                       "(OMP_NUM_THREADS, else the usable CPUs)")
    try:
        cp_est, sk_est = make_estimators(args)
    except ImportError as exc:
        print(f"cprop demo: cannot import the estimators: {exc}", file=sys.stderr)
        return 1

    import sklearn

    import cprop

    X_train, X_test, y_train, y_test = load_data(args.seed, args.dtype)
    n_classes = len(np.unique(y_train))
    from cprop._openmp import effective_n_threads
    threads = effective_n_threads(args.n_threads)

    p = sk_est.get_params()
    print(f"cprop {cprop.__version__} vs scikit-learn {sklearn.__version__}: MLPClassifier on "
          f"the digits data set", file=out)
    print(f"  data: {len(X_train) + len(X_test)} images of 8x8 pixels, {n_classes} classes; "
          f"train {len(X_train)}, test {len(X_test)}; {args.dtype}", file=out)
    print(f"  settings (both): hidden_layer_sizes={p['hidden_layer_sizes']}, "
          f"activation={p['activation']!r}, solver={p['solver']!r}, alpha={p['alpha']},\n"
          f"                   batch_size={p['batch_size']!r}, "
          f"learning_rate_init={p['learning_rate_init']}, max_iter={p['max_iter']}, "
          f"random_state={p['random_state']}", file=out)
    if args.n_threads is not None:
        print(f"  threads: cprop {threads}; scikit-learn BLAS limited to {args.n_threads}\n"
              f"           ({budget_note})", file=out)
    else:
        print(f"  threads: cprop {threads}; scikit-learn BLAS default\n"
              "           (--own-threads: each library's own default policy; budgets may differ)",
              file=out)
    print(file=out)

    results = {}
    for label, est in (("cprop", cp_est), ("scikit-learn", sk_est)):
        limits = contextlib.nullcontext()
        if label == "scikit-learn" and args.n_threads is not None:
            # scikit-learn's MLP threads only through BLAS: give it the same thread budget.
            from threadpoolctl import threadpool_limits
            limits = threadpool_limits(limits=args.n_threads, user_api="blas")
        with limits:
            _warm_up(est, X_train, y_train)
            seconds = _fit_timed(est, X_train, y_train)
        accuracy = float(est.score(X_test, y_test))
        curve = list(getattr(est, "loss_curve_", []))
        results[label] = dict(accuracy=accuracy, seconds=seconds, epochs=int(est.n_iter_),
                              loss=float(est.loss_), curve=curve)

    print(f"  {'':<14}{'test accuracy':>14}{'fit time (s)':>14}{'epochs':>8}{'final loss':>12}",
          file=out)
    for label, r in results.items():
        print(f"  {label:<14}{r['accuracy']:>14.4f}{r['seconds']:>14.3f}{r['epochs']:>8d}"
              f"{r['loss']:>12.5f}", file=out)
    speedup = results["scikit-learn"]["seconds"] / max(results["cprop"]["seconds"], 1e-9)
    print(file=out)
    diff = results["cprop"]["accuracy"] - results["scikit-learn"]["accuracy"]
    print(f"  cprop fit is {speedup:.1f}x the speed of scikit-learn's "
          f"(accuracy difference {diff:+.4f})", file=out)

    if args.plot is not None:
        curves = {f"{label} ({r['seconds']:.2f} s)": r["curve"]
                  for label, r in results.items() if r["curve"]}
        if not curves:
            print(f"  no loss curves to plot (solver {args.solver!r} records none)", file=out)
        else:
            save_plot(args.plot, curves,
                      f"MLPClassifier on digits: hidden={p['hidden_layer_sizes']}, "
                      f"{p['solver']}, {args.dtype}")
            print(f"  loss curves saved to {args.plot}", file=out)
    return 0


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m cprop demo", description=DESCRIPTION))
    return run(parser.parse_args(argv))
