"""Command line: ``python -m cprop demo [options]``.

Commands
--------
demo    train cprop's and scikit-learn's MLPClassifier on the digits data set with the same
        settings and print accuracy and fit time side by side (``--plot FILE.png`` saves the
        loss curves; needs the ``plot`` extra). ``python -m cprop demo --help`` lists options.
"""
import argparse
import sys


def main(argv=None):
    from . import _demo

    parser = argparse.ArgumentParser(
        prog="python -m cprop",
        description="cprop: multi-layer perceptrons on a compiled Cython + OpenMP engine.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="cprop vs scikit-learn on the digits data set (accuracy, time, loss curves)",
        description=_demo.DESCRIPTION,
    )
    _demo.add_arguments(demo)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo.run(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
