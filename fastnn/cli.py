"""The ``fastnn`` command: train an MLP on (Fashion-)MNIST, evaluate a saved one, or benchmark the kernels.

Each subcommand is one ``_add_<name>(subparsers, common)`` function that builds its parser and binds
``set_defaults(run=<runner>, parser=<its parser>, text=<result -> plain-text output>)``; a runner takes
``(args, say)`` and returns the result dict, printed by ``text`` (or as JSON with ``--json``). Listing the function
in ``_SUBCOMMANDS`` adds it.

Exit status: 0 on success, 2 for a malformed command line (argparse's own errors), 1 for an error found while
running (missing or corrupt files, a model that does not fit the data, a diverging run), 130 on Ctrl-C.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

import fastnn as fn
from fastnn import bench
from fastnn.datasets import load_fashion_mnist, load_mnist
from fastnn.layers import ACTIVATIONS as _ACTIVATIONS

__all__ = ["main"]

_DATASETS = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist}
_N_FEATURES, _N_CLASSES = 28 * 28, 10
_OPTIMIZERS = {"sgd": (fn.SGD, 0.1), "adam": (fn.Adam, 1e-3), "adamw": (fn.AdamW, 1e-3)}


class _Failure(Exception):
    """An error found while running a command: reported as ``fastnn: error: ...``, exit status 1."""


class _UsageError(Exception):
    """Options that parse alone but not together: reported by the subcommand's parser, exit status 2."""


# -- argument types: raise ArgumentTypeError so argparse names the option and exits 2 ----------------------
def _widths(text):
    """``"128,64"`` -> ``[128, 64]``; ``""`` -> ``[]`` (no hidden layer: softmax regression)."""
    if not text.strip():
        return []
    widths = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or int(part) < 1:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 128,64, "
                                             f"got {part!r} in {text!r}")
        widths.append(int(part))
    return widths


def _number(low, *, integer=False, open_low=False, high=None):
    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if open_low else value >= low) and (high is None or value < high)
        if not ok:
            kind = "an integer" if integer else "a number"
            bound = f"{'>' if open_low else '>='} {low:g}" + ("" if high is None else f" and < {high:g}")
            raise argparse.ArgumentTypeError(f"expected {kind} {bound}, got {text!r}")
        return value
    return parse


_positive_int, _count = _number(0, integer=True, open_low=True), _number(0, integer=True)
_positive, _non_negative, _fraction = _number(0, open_low=True), _number(0), _number(0, high=1)


# -- parser ----------------------------------------------------------------------------------------------
def _common_options():
    """Options every subcommand shares: where the data comes from, how results are printed."""
    common = argparse.ArgumentParser(add_help=False)
    data = common.add_argument_group("data")
    data.add_argument("--dataset", choices=sorted(_DATASETS), default="fashion-mnist",
                      help="dataset to use (default: %(default)s)")
    data.add_argument("--data-dir", metavar="DIR",
                      help="directory searched first for the four IDX files, and the download target; then "
                           "$FASTNN_DATA, ~/.cache/fastnn and system directories are searched")
    data.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    run = common.add_argument_group("computation and output")
    run.add_argument("--backend", choices=["numba", "numpy"], default="numba",
                     help="kernel backend (default: %(default)s)")
    run.add_argument("--json", action="store_true",
                     help="print the final result as one JSON object on stdout (progress goes to stderr)")
    return common


def _add_train(subparsers, common):
    p = subparsers.add_parser(
        "train", parents=[common], help="train an MLP and report test-set loss and accuracy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train Linear(784, h1) -> act -> ... -> Linear(h_last, 10) with softmax cross-entropy,\n"
                    "print one line per epoch, then the test-set loss and accuracy.",
        epilog="example:\n  fastnn train --hidden 128,64 --epochs 10 --optimizer adam --seed 0 --save model.npz")
    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=_widths, default=[128, 64], metavar="W1,W2,...",
                       help="hidden-layer widths; '' for none (default: 128,64)")
    model.add_argument("--activation", choices=sorted(_ACTIVATIONS), default="relu",
                       help="hidden activation; relu layers start He-initialised, tanh/sigmoid Glorot "
                            "(default: %(default)s)")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="parameter and compute dtype (default: %(default)s)")
    model.add_argument("--seed", type=_count, help="seeds the initial weights and the shuffling; "
                                                   "same seed and backend, same result (default: fresh entropy)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_positive_int, default=10, help="(default: %(default)s)")
    opt.add_argument("--batch-size", type=_positive_int, default=64, help="(default: %(default)s)")
    opt.add_argument("--optimizer", choices=sorted(_OPTIMIZERS), default="adam", help="(default: %(default)s)")
    opt.add_argument("--lr", type=_positive, help="learning rate (default: 0.1 for sgd, 1e-3 for adam/adamw)")
    opt.add_argument("--momentum", type=_non_negative, help="sgd only (default: 0)")
    opt.add_argument("--weight-decay", type=_non_negative,
                     help="L2 for sgd/adam, decoupled for adamw (default: 0, 1e-2 for adamw)")
    opt.add_argument("--validation-split", type=_fraction, default=0.0, metavar="FRACTION",
                     help="hold out this last fraction of the training set for val_loss/val_accuracy "
                          "(default: 0)")
    opt.add_argument("--early-stopping", type=_count, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without improvement of val_loss (loss without a "
                          "validation split) and keep the best epoch's weights")
    out = p.add_argument_group("output")
    out.add_argument("--save", metavar="PATH",
                     help="write the trained model here (.npz, atomically; nothing is written if training fails)")
    talk = out.add_mutually_exclusive_group()
    talk.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                      help="0: final result only, 1: a line per epoch, 2: also a per-batch bar on a terminal "
                           "(default: %(default)s)")
    talk.add_argument("-q", "--quiet", action="store_const", dest="verbose", const=0, help="same as --verbose 0")
    p.set_defaults(run=_train, parser=p, text=_metrics_line)
    return p


def _add_evaluate(subparsers, common):
    p = subparsers.add_parser(
        "evaluate", parents=[common], help="report a saved model's test-set loss and accuracy",
        description="Load a model written by 'fastnn train --save' (or Sequential.save) and print its loss and "
                    "accuracy on the dataset's test split. The model must map 784 inputs to 10 logits "
                    "(or to probabilities, if it ends with Softmax).")
    p.add_argument("model", metavar="MODEL", help="model file (.npz)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="(default: %(default)s)")
    p.set_defaults(run=_evaluate, parser=p, text=_metrics_line)
    return p


def _add_bench(subparsers, common):
    # Not built on `common`: the benchmarks choose their own data and time both backends.
    p = subparsers.add_parser(
        "bench", help="time the Numba kernels against their NumPy twins, and one epoch against NumPy and PyTorch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run fastnn's pytest-benchmark suite (benchmarks/ of the source repository) and print markdown\n"
                    "tables of the median times; optionally draw them as a PNG chart. The suites:\n\n"
                    "  kernels  every kernel of fastnn.kernels, the Numba twin beside the NumPy twin, at the float32\n"
                    "           shapes of a 784-128-64-10 MLP with batch 16, 64 and 256: median ms of each and\n"
                    "           the ratio Numba/NumPy (< 1: Numba is faster)\n"
                    "  epoch    one training epoch of that MLP (ReLU, SGD lr 0.1, 60,000 synthetic samples) with\n"
                    "           fastnn, a plain NumPy reference and PyTorch (if installed): median s/epoch, the\n"
                    "           ratios fastnn/NumPy and fastnn/PyTorch, peak extra memory, and fastnn's\n"
                    "           GFLOP/s as a fraction of a 2048^3 sgemm timed in the same run\n"
                    "  all      everything in benchmarks/ (also the scikit-learn-API fits, if Fashion-MNIST is\n"
                    "           installed)\n\n"
                    "Every time is a median over rounds, taken after the kernels are compiled, and every ratio\n"
                    "divides two medians from the same run: ratios carry over between machines, absolute times do\n"
                    "not. A whole suite takes minutes; -k narrows it to the benchmarks whose ids match, e.g.\n"
                    "test_kernel[relu_backward-bs16-128-numba].",
        epilog="examples:\n"
               "  fastnn bench --suite kernels --out-md kernels.md --out-png kernels.png\n"
               "  fastnn bench --suite all --threads 1 --json bench.json\n"
               "  fastnn bench -k 'relu_backward and bs64' -- --benchmark-max-time=0.2\n"
               "  fastnn bench --from-json bench.json --out-png chart.png")
    what = p.add_argument_group("what to run")
    what.add_argument("--suite", choices=list(bench.SUITES), help="(default: kernels)")
    what.add_argument("-k", metavar="EXPR", help="only the benchmarks whose ids match this pytest -k expression")
    what.add_argument("--threads", type=_positive_int, metavar="N",
                      help="BLAS threads per benchmark, via FASTNN_BENCH_THREADS (default: the libraries' own)")
    what.add_argument("--bench-dir", metavar="DIR",
                      help="the benchmarks directory (default: benchmarks/ of the checkout fastnn is installed from)")
    what.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARG",
                      help="further pytest options, after --, e.g. -- --benchmark-max-time=0.2")
    out = p.add_argument_group("output")
    out.add_argument("--from-json", metavar="PATH",
                     help="run nothing: report this pytest-benchmark JSON (from --json or --benchmark-json)")
    out.add_argument("--json", dest="json_path", metavar="PATH",
                     help="keep pytest-benchmark's JSON of the run here (default: a temporary file)")
    out.add_argument("--out-md", metavar="PATH", help="also write the markdown here (it is always printed)")
    out.add_argument("--out-png", metavar="PATH", help="draw the chart here (needs matplotlib)")
    out.add_argument("-q", "--quiet", action="store_const", dest="verbose", const=0, default=1,
                     help="print only the markdown, not pytest's progress (shown anyway if the run fails)")
    p.set_defaults(run=_bench, parser=p, text=lambda result: result["markdown"].rstrip("\n"))
    return p


_SUBCOMMANDS = (_add_train, _add_evaluate, _add_bench)


def build_parser():
    """The ``fastnn`` argument parser, one subparser per entry of ``_SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="fastnn", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train multilayer perceptrons on (Fashion-)MNIST with fastnn, evaluate saved ones, or "
                    "benchmark fastnn's kernels.",
        epilog="Run 'fastnn COMMAND --help' for a command's options.\n"
               "Exit status: 0 success, 1 error while running, 2 bad command line, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {fn.__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    for add in _SUBCOMMANDS:
        add(subparsers, common)
    return parser


# -- commands --------------------------------------------------------------------------------------------
def _load_data(args):
    return _DATASETS[args.dataset](args.data_dir, download=not args.no_download)


def _build_model(args, seeds):
    act, init = _ACTIVATIONS[args.activation]
    widths = [_N_FEATURES, *args.hidden, _N_CLASSES]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(fn.Linear(n_in, n_out, init=init, seed=np.random.default_rng(seeds[i]), dtype=args.dtype))
        if i < len(widths) - 2:
            layers.append(act())
    return fn.Sequential(*layers)


def _build_optimizer(args, params):
    cls, default_lr = _OPTIMIZERS[args.optimizer]
    kwargs = {"lr": default_lr if args.lr is None else args.lr}
    if args.momentum is not None:
        kwargs["momentum"] = args.momentum
    if args.weight_decay is not None:
        kwargs["weight_decay"] = args.weight_decay
    return cls(params, **kwargs)


def _check_out_path(path, option):
    """Fail before the long part of a command, not after it, if ``path`` (given as ``option``) cannot be written."""
    folder = os.path.dirname(path) or os.curdir
    if os.path.isdir(path):
        raise _Failure(f"{option} {path}: is a directory")
    if not os.path.isdir(folder):
        raise _Failure(f"{option} {path}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _Failure(f"{option} {path}: directory {folder!r} is not writable")


def _train(args, say):
    if args.momentum is not None and args.optimizer != "sgd":
        raise _UsageError(f"--momentum applies only to --optimizer sgd, not {args.optimizer}")
    if args.save is not None:
        _check_out_path(args.save, "--save")
    # One independent stream per Linear layer plus one for the shuffling, all from --seed.
    seeds = np.random.SeedSequence(args.seed).spawn(len(args.hidden) + 2)
    model = _build_model(args, seeds)
    optimizer = _build_optimizer(args, model.parameters())
    (X_train, y_train), (X_test, y_test) = _load_data(args)
    n_params = sum(p.data.size for p in model.parameters())
    say(f"{args.dataset}: {len(X_train)} train / {len(X_test)} test samples; MLP "
        f"{'-'.join(str(w) for w in [_N_FEATURES, *args.hidden, _N_CLASSES])} ({args.activation}, {args.dtype}, "
        f"{n_params:,} parameters); {optimizer!r}")
    loss = fn.SoftmaxCrossEntropy()
    start = time.perf_counter()
    # fit checks every batch's loss and raises on NaN/inf; the NumPy twins' overflow warnings on the way there
    # would only be noise ahead of that message.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            history = model.fit(X_train, y_train, loss=loss, optimizer=optimizer, epochs=args.epochs,
                                batch_size=args.batch_size, validation_split=args.validation_split,
                                early_stopping=args.early_stopping, seed=int(seeds[-1].generate_state(1)[0]),
                                verbose=args.verbose)
    except FloatingPointError as exc:
        raise _Failure(f"training diverged: {exc}" + ("; nothing was saved" if args.save else "")) from None
    seconds = time.perf_counter() - start
    metrics = model.evaluate(X_test, y_test, loss)
    if args.save is not None:
        model.save(args.save)
        say(f"saved model to {args.save}")
    return {"dataset": args.dataset, "test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"],
            "epochs": len(history.epoch), "train_seconds": round(seconds, 3), "history": history.history,
            "model": args.save}


def _evaluate(args, say):
    model = fn.load(args.model)
    if model.n_features_in != _N_FEATURES or model.n_outputs != _N_CLASSES:
        raise _Failure(f"{args.model}: the model maps {model.n_features_in} inputs to {model.n_outputs} "
                       f"outputs, but {args.dataset} needs {_N_FEATURES} inputs and {_N_CLASSES} outputs")
    _, (X_test, y_test) = _load_data(args)
    loss = fn.NLLLoss() if isinstance(model.layers[-1], fn.Softmax) else fn.SoftmaxCrossEntropy()
    metrics = model.evaluate(X_test, y_test, loss, batch_size=args.batch_size)
    return {"model": args.model, "dataset": args.dataset, "n_samples": len(X_test),
            "test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"]}


def _bench(args, say):
    run_options = [name for name, value in (("--suite", args.suite), ("-k", args.k), ("--threads", args.threads),
                                            ("--bench-dir", args.bench_dir), ("--json", args.json_path),
                                            ("pytest arguments", args.pytest_args)) if value]
    if args.from_json is not None and run_options:
        raise _UsageError(f"--from-json reports an existing run and runs nothing; it takes no {', '.join(run_options)}")
    outputs = {"--json": args.json_path, "--out-md": args.out_md, "--out-png": args.out_png}
    for option, path in outputs.items():
        if path is not None:
            _check_out_path(path, option)
    bench.check_dependencies(run=args.from_json is None, png=args.out_png is not None)
    if args.from_json is not None:
        text = bench.render(args.from_json, args.out_md, args.out_png)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            json_path = args.json_path or os.path.join(tmp, "bench.json")
            bench.run(json_path, args.suite or "kernels", args.bench_dir, k=args.k, threads=args.threads,
                      pytest_args=args.pytest_args, stream=None if args.verbose == 0 else sys.stderr)
            text = bench.render(json_path, args.out_md, args.out_png)
    for path in outputs.values():
        if path is not None:
            say(f"wrote {path}")
    return {"markdown": text, "json": args.json_path, "out_md": args.out_md, "out_png": args.out_png}


def _metrics_line(result):
    return f"test_loss: {result['test_loss']:.4f} - test_accuracy: {result['test_accuracy']:.4f}"


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
    except _UsageError as exc:
        args.parser.error(str(exc))
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130
    except (_Failure, bench.BenchError, OSError, ValueError) as exc:  # files, data, rejected arguments: no traceback
        print(f"fastnn: error: {_describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result) if as_json else args.text(result))
    return 0
