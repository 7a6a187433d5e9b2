"""The ``fastnn`` command: train an MLP on (Fashion-)MNIST or your own data, evaluate or apply a saved one, export
it to ONNX, or benchmark the kernels.

The parser is :mod:`fastnn.cli.parser`; each command is a module (:mod:`~fastnn.cli.train`, ``evaluate``,
``predict``, ``export``, ``bench``) whose ``run(args, say)`` returns the result dict, printed by the parser's
``text`` for it (or as JSON with ``--json``); what they share is :mod:`fastnn.cli.common`.

Exit status: 0 on success, 2 for a malformed command line (argparse's own errors), 1 for an error found while
running (missing or corrupt files, a model that does not fit the data, a diverging run), 130 on Ctrl-C, 143 on
SIGTERM and 129 on SIGHUP (``train`` keeps the last completed epoch in ``--save`` and ``--checkpoint`` first).
"""
import contextlib
import json
import sys

import fastnn as fn
from fastnn.bench import BenchError
from fastnn.cli.common import Failure, UsageError, cli_words
from fastnn.cli.parser import build_parser

__all__ = ["main", "build_parser"]
_cli_words = cli_words  # the name tests/test_cli.py imports


def _describe(exc):
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv=None):
    """Run the ``fastnn`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    A malformed command line raises ``SystemExit(2)`` from argparse, as does ``--help`` with status 0.
    """
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "verbose", 1) == 0
    as_json = getattr(args, "json", False)  # bench has no --json flag: its --json names a file
    # When stdout carries a result meant for a program or a file (--json's object, bench's markdown), fit's
    # epoch lines, pytest's output and our notes go to stderr.
    progress = sys.stderr if as_json or args.command == "bench" else sys.stdout

    def say(line):
        if not quiet:
            print(line, file=progress, flush=True)

    try:
        with fn.backend(getattr(args, "backend", "numba")), contextlib.redirect_stdout(progress):
            result = args.run(args, say)
    except UsageError as exc:
        args.parser.error(str(exc))
    except KeyboardInterrupt as exc:
        if not getattr(exc, "reported", False):
            print("fastnn: interrupted", file=sys.stderr)
        return 130
    except fn.TrainingTerminated as exc:  # SIGTERM, SIGHUP: fit and cli.train have said what was kept
        return exc.code
    except (Failure, BenchError, OSError, ValueError) as exc:  # files, data, rejected arguments: no traceback
        print(f"fastnn: error: {_describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result) if as_json else args.text(result))
    return 0
