"""The ``fastnn`` command: train an MLP on (Fashion-)MNIST or your own data, evaluate or apply a saved one, export
it to ONNX, or benchmark the kernels.

Each subcommand is one ``_add_<name>(subparsers, common)`` function that builds its parser and binds
``set_defaults(run=<runner>, parser=<its parser>, text=<result -> plain-text output>)``; a runner takes
``(args, say)`` and returns the result dict, printed by ``text`` (or as JSON with ``--json``). Listing the function
in ``_SUBCOMMANDS`` adds it.

Exit status: 0 on success, 2 for a malformed command line (argparse's own errors), 1 for an error found while
running (missing or corrupt files, a model that does not fit the data, a diverging run), 130 on Ctrl-C, 143 on
SIGTERM and 129 on SIGHUP (``train`` keeps the last completed epoch in ``--save`` and ``--checkpoint`` first).
"""
import argparse
import contextlib
import csv
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
import warnings

import numpy as np

import fastnn as fn
from fastnn import bench, preprocessing, selection, tables
from fastnn import train as fit_loop
from fastnn.datasets import load_fashion_mnist, load_mnist
from fastnn.export import OPSET  # export.py imports onnx only when exporting
from fastnn.layers import ACTIVATIONS as _ACTIVATIONS
from fastnn.preprocessing import DataError

__all__ = ["main"]

_DATASETS = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist}
_N_FEATURES, _N_CLASSES = 28 * 28, 10
_TASKS = ("classification", "regression")
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
    """Options every data-using subcommand shares: where the data comes from, how results are printed."""
    common = argparse.ArgumentParser(add_help=False)
    data = common.add_argument_group(
        "data", "Either a built-in dataset (--dataset, default fashion-mnist) or your own file (--data).")
    data.add_argument("--dataset", choices=sorted(_DATASETS),
                      help="built-in dataset to use (default: fashion-mnist, unless --data is given)")
    data.add_argument("--data-dir", metavar="DIR",
                      help="directory searched first for the dataset's four IDX files, and the download target; "
                           "then $FASTNN_DATA, ~/.cache/fastnn and system directories are searched")
    data.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                      help="download the dataset's missing files (default); --no-download fails instead")
    data.add_argument("--data", metavar="PATH",
                      help="your own data instead of --dataset: a .npz with arrays X (n_samples, n_features) and "
                           "y, or a table with the --target column: a .csv with a header row (numbers, text, "
                           "true/false, empty cells) or a .parquet file")
    data.add_argument("--target", metavar="COLUMN",
                      help="the table's target column (class labels: text, integers or true/false; with --task "
                           "regression, numbers); every other column is a feature. evaluate and predict default "
                           "to the column the model was trained on")
    data.add_argument("--task", choices=_TASKS, default="classification",
                      help="what y / the target column holds, for --data (default: %(default)s)")
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
        description="Train Linear(n_features, h1) -> act -> ... -> Linear(h_last, n_outputs), print one line per\n"
                    "epoch, then the loss (and accuracy) on the test data: the dataset's test split, or --test-data\n"
                    "(without it, on the training data). Classification uses softmax cross-entropy with one output\n"
                    "per class (the distinct labels of --data, sorted); regression the mean squared error with\n"
                    "one output per column of y. Without --epochs, a small table's epochs and weight decay are\n"
                    "chosen by cross-validation, a larger one's by early stopping (the rule: --epochs below).",
        epilog="examples:\n"
               "  fastnn train --hidden 128,64 --epochs 10 --optimizer adam --seed 0 --save model.npz\n"
               "  fastnn train --data train.csv --target label --test-data test.csv --plot curves.png\n"
               "  fastnn train --data houses.npz --task regression --validation-split 0.2 --save model.npz")
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
    opt.add_argument("--epochs", type=_positive_int,
                     help="train exactly this many epochs (no validation split or early stopping unless asked "
                          f"for). Without --epochs, a --data table of fewer than {selection.MAX_ROWS:,} rows: "
                          "choose the epochs (at most 1000 or 100,000 batches' worth over all fits) and the weight "
                          f"decay ({', '.join(f'{d:g}' for d in selection.WEIGHT_DECAYS)}; only the epochs with "
                          f"--weight-decay) by {selection.FOLDS}-fold cross-validation on all its rows, then "
                          "train on all of them. Without --epochs otherwise (or with --validation-split or "
                          "--early-stopping): train until the validation loss stops improving -- 10%% of "
                          "the training rows held out (shuffled, stratified by class; --validation-split to "
                          "change), stop after 10 epochs (--early-stopping) without an improvement of 1e-4, "
                          "keep the best epoch's weights; at most 1000 epochs or 100,000 batches' worth, "
                          "whichever is fewer, but at least 10 epochs")
    opt.add_argument("--batch-size", type=_positive_int, default=64, help="(default: %(default)s)")
    opt.add_argument("--optimizer", choices=sorted(_OPTIMIZERS), default="adam", help="(default: %(default)s)")
    opt.add_argument("--lr", type=_positive, help="learning rate (default: 0.1 for sgd, 1e-3 for adam/adamw)")
    opt.add_argument("--momentum", type=_non_negative, help="sgd only (default: 0)")
    opt.add_argument("--weight-decay", type=_non_negative,
                     help="L2 for sgd/adam, decoupled for adamw (default: 0, 1e-2 for adamw)")
    opt.add_argument("--validation-split", type=_fraction, default=None, metavar="FRACTION",
                     help="hold out this fraction of the training set for val_loss/val_accuracy, chosen by "
                          "--seed and stratified by class (default: 0.1 without --epochs, else none)")
    opt.add_argument("--early-stopping", type=_count, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without improvement of val_loss (loss without a "
                          "validation split) and keep the best epoch's weights")
    p.add_argument_group("test data").add_argument(
        "--test-data", metavar="PATH", help="with --data: report the final loss (and accuracy) on this file, in "
                                            "the same format and with the same --target")
    out = p.add_argument_group("output")
    out.add_argument("--save", metavar="PATH",
                     help="write the trained model here (.npz, atomically; nothing is written if training fails)")
    out.add_argument("--checkpoint", metavar="PATH",
                     help="after every epoch, write everything needed to continue here (atomically); Ctrl-C, "
                          "SIGTERM or SIGHUP keep the last completed epoch (and --save it)")
    out.add_argument("--resume", action="store_true",
                     help="continue from --checkpoint if it exists, ending exactly where an uninterrupted run "
                          "would (same command, same --seed); a checkpoint of another run (other data, seed, "
                          "batch size, optimizer settings, ...) is refused, naming what differs")
    out.add_argument("--allow-change", metavar="FIELD", action="append", dest="allow_changes",
                     help="with --resume, let this fingerprint field differ from the checkpoint's, e.g. "
                          "optimizer.lr for a new --lr, batch_size, or data.shape,data.hash,targets.hash for "
                          "more data (repeatable or comma-separated; the error for a mismatch names the fields)")
    out.add_argument("--plot", metavar="PATH",
                     help="draw the learning curves here (.png, .svg or .pdf; needs matplotlib: "
                          "pip install 'fastnn[plot]')")
    talk = out.add_mutually_exclusive_group()
    talk.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                      help="0: final result only, 1: a line per epoch, 2: also a per-batch bar on a terminal "
                           "(default: %(default)s)")
    talk.add_argument("-q", "--quiet", action="store_const", dest="verbose", const=0, help="same as --verbose 0")
    _table_options(p)
    p.set_defaults(run=_train, parser=p, text=_metrics_line)
    return p


def _add_evaluate(subparsers, common):
    p = subparsers.add_parser(
        "evaluate", parents=[common], help="report a saved model's loss and accuracy on test data",
        description="Load a model written by 'fastnn train --save' (or Sequential.save) and print its loss (and, "
                    "for classification, accuracy) on the dataset's test split or on all of --data. A classifier "
                    "may output logits or, if it ends with Softmax, probabilities.")
    p.add_argument("model", metavar="MODEL", help="model file (.npz)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="(default: %(default)s)")
    p.set_defaults(run=_evaluate, parser=p, text=_metrics_line)
    return p


def _add_predict(subparsers, common):
    p = subparsers.add_parser(
        "predict", parents=[common], help="write a saved model's predictions to a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Apply a saved model to --data (all rows; a .csv's --target column, or a .npz's y, is\n"
                    "ignored if present) or to the dataset's test split, and write one CSV row per sample:\n\n"
                    "  classification  label,prob_<class>,...: the predicted label as the training data wrote it\n"
                    "                  and one probability per class, named after it (softmax of the logits, or\n"
                    "                  the outputs of a final Softmax; prob_0,... for a model without labels)\n"
                    "  regression      prediction (one output) or prediction_0,...: the model's outputs\n\n"
                    "Numbers are written with 9 significant digits (float32 round-trips).",
        epilog="example:\n  fastnn predict model.npz --data new.csv --out predictions.csv")
    p.add_argument("model", metavar="MODEL", help="model file (.npz)")
    p.add_argument("--out", metavar="PATH", required=True, help="the CSV file to write (atomically)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="(default: %(default)s)")
    p.set_defaults(run=_predict, parser=p, text=lambda r: f"wrote {r['n_samples']} predictions to {r['out']}")
    return p


def _add_export(subparsers, common):
    # Not built on `common`: no data is involved.
    p = subparsers.add_parser(
        "export", help="convert a saved model to ONNX",
        description=f"Write MODEL (a fastnn .npz) as an ONNX graph (opset {OPSET}) with input 'X' of shape "
                    "(batch, n_features) and output 'Y': the model's outputs (logits for a classifier trained by "
                    "'fastnn train'). Needs the onnx package: pip install 'fastnn[onnx]'.",
        epilog="example:\n  fastnn export model.npz model.onnx")
    p.add_argument("model", metavar="MODEL", help="model file (.npz)")
    p.add_argument("out", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(run=_export, parser=p, text=lambda r: f"wrote {r['out']} ({r['nodes']} ONNX nodes, opset "
                                                         f"{r['opset']})")
    return p


def _add_bench(subparsers, common):
    # Not built on `common`: the benchmarks choose their own data and time both backends.
    p = subparsers.add_parser(
        "bench", help="time the Numba kernels against their NumPy twins, and epochs against NumPy, PyTorch and JAX",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run fastnn's pytest-benchmark suite (benchmarks/ of the source repository) and print markdown\n"
                    "tables of the median times; optionally draw them as a PNG chart. The suites:\n\n"
                    "  kernels  every kernel of fastnn.kernels, the Numba twin beside the NumPy twin, at the float32\n"
                    "           shapes of a 784-128-64-10 MLP with batch 16, 64 and 256: median ms of each and\n"
                    "           the ratio Numba/NumPy (< 1: Numba is faster)\n"
                    "  epoch    one training epoch of that MLP (ReLU, SGD lr 0.1, 60,000 synthetic samples) with\n"
                    "           fastnn, a plain NumPy reference, PyTorch and the peers JAX (whole epoch under\n"
                    "           jit + lax.scan, and per-step jit) and torch.compile (each if installed; the\n"
                    "           'peers' extra): median s/epoch, the ratios NumPy/fastnn, PyTorch/fastnn, ...\n"
                    "           (> 1: fastnn is faster), the peers' compile times, peak extra memory, and\n"
                    "           fastnn's GFLOP/s as a fraction of a 2048^3 sgemm timed in the same run\n"
                    "  workloads  the speed issue's shapes (Fashion-MNIST at batch 16/64/256 shuffled and in\n"
                    "           order, wide 784-1024-1024-10, tabular 32-64-64-1, deep 64-(64x7)-10), predict of\n"
                    "           one row (p50/p90) and of 10,000 rows, and the first fit with an empty and a warm\n"
                    "           Numba cache: fastnn, its NumPy twin, JAX (jit + lax.scan, per-step jit), PyTorch,\n"
                    "           torch.compile and scikit-learn beside the sgemm floor of the same run (ratios\n"
                    "           fastnn/floor, JAX/fastnn, PyTorch/fastnn, ..., the fastest peer/fastnn)\n"
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


_SUBCOMMANDS = (_add_train, _add_evaluate, _add_predict, _add_export, _add_bench)


def build_parser():
    """The ``fastnn`` argument parser, one subparser per entry of ``_SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="fastnn", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train multilayer perceptrons with fastnn on (Fashion-)MNIST or your own .csv/.npz data, "
                    "evaluate saved ones, write their predictions, export them to ONNX, or benchmark fastnn's "
                    "kernels.",
        epilog="Run 'fastnn COMMAND --help' for a command's options.\n"
               "Exit status: 0 success, 1 error while running, 2 bad command line, 130 interrupted (Ctrl-C), 143 "
               "SIGTERM, 129 SIGHUP.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {fn.__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    for add in _SUBCOMMANDS:
        add(subparsers, common)
    return parser


# -- data ------------------------------------------------------------------------------------------------
def _read_npz(path, need_y):
    """``(X, y)`` from the arrays ``X`` and ``y`` of a .npz (``y`` is None if absent and not needed)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array; expected a .npz archive with arrays X and y")
        with data:
            missing = [k for k in ("X", "y") if k not in data.files and (k == "X" or need_y)]
            if missing:
                raise ValueError(f"no array {' or '.join(map(repr, missing))}; expected X (n_samples, n_features) "
                                 f"and y, found {sorted(data.files) or 'no arrays'} (np.savez(path, X=X, y=y))")
            X, y = data["X"], data["y"] if "y" in data.files else None
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise ValueError(f"not a readable .npz file: {exc}") from None
    except Exception as exc:  # a corrupt archive: BadZipFile, EOFError, an object array (pickle refused)
        detail = exc if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(str(detail)) from None
    for name, a in (("X", X), ("y", y)):
        if a is not None and a.dtype.kind not in "biuf":
            raise ValueError(f"array {name} has dtype {a.dtype}; expected numbers")
    if X.ndim != 2:
        raise ValueError(f"array X has shape {X.shape}; expected 2-D (n_samples, n_features)")
    if y is not None and (y.ndim not in (1, 2) or y.shape[0] != X.shape[0]):
        raise ValueError(f"array y has shape {y.shape}; expected ({X.shape[0]},) or ({X.shape[0]}, n_targets), "
                         f"one row per row of X {X.shape}")
    return X, y


def _read_data(path, target, need_y=True, say=None):
    """Your own data: ``(features, y)`` from ``path``; errors name the file.

    A .npz gives its arrays ``X`` and ``y``; a .csv or .parquet a :class:`fastnn.tables.Frame` of the feature
    columns (every column but ``target``; a leading pandas index is dropped, with a note) and the ``target``
    column (None when not there and not needed).
    """
    kind = os.path.splitext(path)[1].lower()
    if kind not in (".npz", ".csv", ".parquet"):
        raise ValueError(f"{path}: expected a .npz (arrays X and y), a .csv (header row, then one row per sample) "
                         "or a .parquet file")
    if kind == ".npz" and target is not None:
        raise _UsageError("--target names a .csv column; a .npz holds its target as the array y")
    try:
        if kind == ".npz":
            return _read_npz(path, need_y)
        frame = tables.read_table(path)
        index = tables.index_column(frame)
        if index is not None:
            frame = frame.without(index)
            if say is not None:
                say(f"{path}: left out the leading column {index!r} of distinct integers without a name: a pandas "
                    "index (to_csv(index=False) writes none)")
        elif frame.names[0] in ("", "Unnamed: 0"):
            raise ValueError("line 1: column 1 has no name, and it is not a pandas index (distinct integers); "
                             "name it in the header")
        if target is None and need_y:
            raise _UsageError(f"--target COLUMN is required with a .csv --data or --test-data (columns: "
                              f"{', '.join(frame.names)})")
        if target is not None and target not in frame and need_y:
            raise ValueError(f"--target {target!r} is not a column; the header has: {', '.join(frame.names)}")
        y = frame[target] if target in frame else None
        features = frame.without(target)
        if not len(features):
            raise ValueError(f"no feature columns: the only column is the target {target!r}")
        return features, y
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@contextlib.contextmanager
def _cells(path, target=None):
    """Report a :class:`fastnn.preprocessing.DataError` as ``PATH: line L, column C: reason``."""
    try:
        yield
    except DataError as exc:
        line = None if exc.row is None else tables.line_of_row(path, exc.row)
        column = target if exc.column is None else exc.column
        where = [f"line {line}" if line is not None else f"sample {exc.row}" if exc.row is not None else None,
                 None if column is None else f"column {column!r}" if isinstance(column, str) else f"column {column}"]
        raise ValueError(f"{path}: {', '.join(w for w in where if w)}: {exc.reason}") from None


def _table_options(p):
    """``fastnn train``'s options for a --data table's preprocessing."""
    table = p.add_argument_group(
        "preprocessing (--data)",
        "Fitted on the training data and saved in the model; predict, evaluate and the ONNX export apply it. "
        "Columns are matched by name: a model's files may list them in any order.")
    table.add_argument("--categorical", type=lambda t: [c.strip() for c in t.split(",") if c.strip()],
                       metavar="COL1,COL2,...", default=None,
                       help="also one-hot encode these numeric columns (codes); text and true/false columns always "
                            "are. A category not seen in training becomes all zeros")
    table.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                       help="standardize the numeric features and a regression target (mean 0, std 1 on the "
                            "training data; predictions come back in the target's units) (default: on)")
    table.add_argument("--impute", action=argparse.BooleanOptionalAction, default=True,
                       help="fill empty cells (and NA, NaN, null, ...) with the training median of a numeric column "
                            "or the most frequent value of a categorical one; --no-impute refuses them (default: on)")


# --epochs not given: early stopping on a validation split, the rule `fastnn train --help` states.
_AUTO_VALIDATION, _AUTO_PATIENCE, _AUTO_MIN_DELTA = 0.1, 10, 1e-4
_AUTO_MAX_EPOCHS, _AUTO_MAX_BATCHES, _AUTO_MIN_EPOCHS = 1000, 100_000, 10


def _auto_epochs(n_train, batch_size, fits=1):
    """The most epochs an early-stopped run may take: 1000, or 100,000 batches' worth (shared by ``fits`` fits),
    but at least 10."""
    per_epoch = -(-n_train // batch_size)
    return max(_AUTO_MIN_EPOCHS, min(_AUTO_MAX_EPOCHS, _AUTO_MAX_BATCHES // (per_epoch * fits)))


def _validation_order(y, fraction, seed, classification):
    """A permutation of the rows whose last ``round(fraction * n)`` are the validation split, stratified by class."""
    rng = np.random.default_rng(seed)
    n = len(y)
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise ValueError(f"--validation-split {fraction} leaves {n_val} of {n} samples for validation; "
                         "expected at least one on each side")
    if not classification:
        return rng.permutation(n), n_val
    val, train = [], []
    for k in np.unique(y):  # each class in proportion
        rows = rng.permutation(np.flatnonzero(y == k))
        take = int(round(len(rows) * n_val / n))
        val.append(rows[:take])
        train.append(rows[take:])
    val, train = rng.permutation(np.concatenate(val)), rng.permutation(np.concatenate(train))
    short = n_val - len(val)  # what the rounding per class left over, one way or the other
    if short > 0:
        val, train = np.concatenate([val, train[:short]]), train[short:]
    elif short < 0:
        val, train = val[:n_val], np.concatenate([train, val[n_val:]])
    return np.concatenate([train, val]), n_val


class _Data:
    """What ``fastnn train`` trains on: the network's matrices (all rows, in the order the split left them, and the
    training and validation parts as views of them), the targets the final metrics take, the test table."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def _train_data(args, say, seed):
    """The training and test data of ``fastnn train``, preprocessed, and the run's plan (epochs, validation)."""
    auto = args.epochs is None
    classification = args.task == "classification"
    if args.data is None:
        (X, y), test = _load_dataset(args)
        features = preprocessing = target = None
        n_outputs, name = _N_CLASSES, args.dataset
        y_train = y
    else:
        features, y = _read_data(args.data, args.target, say=say)
        preprocessing, target, y_train, y = _fit_preprocessing(args, features, y)
        n_outputs = target.n_classes if classification else (1 if y_train.ndim == 1 else y_train.shape[1])
        test, name = None, args.data
        if args.test_data is not None:
            Xt, yt = _read_data(args.test_data, args.target, say=say)
            with _cells(args.test_data, args.target):
                _check_table(preprocessing, Xt, args.test_data, say)
                _check_target(args, yt, n_outputs, args.test_data, target)
            test = (Xt, yt)
        X = features
    order = n_val = None
    # A small table without --epochs/--validation-split/--early-stopping: cross-validated on all its rows instead.
    cross = (auto and args.data is not None and args.validation_split is None and args.early_stopping is None
             and len(y_train) < selection.MAX_ROWS)
    fraction = args.validation_split or (_AUTO_VALIDATION if auto and not cross else 0.0)
    if fraction:  # shuffled, stratified: the tail of a table sorted by class would hold one class
        try:
            order, n_val = _validation_order(y_train, fraction, seed, classification)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if preprocessing is not None:
        X_net = preprocessing.transform(X, args.dtype, rows=order)
    else:
        X_net = X if order is None else X[order]
    y_net = y_train if order is None else y_train[order]
    # The final metrics on the training data take the network's own matrix: the table is not transformed twice,
    # and it can go (with the reader's buffers) once the matrix is made. Classes as indices, values in units.
    X_all = X_net
    y_all = y_net if args.task == "classification" or target is None else y if order is None else y[order]
    del X, features
    validation = None
    if n_val:
        validation = (X_net[-n_val:], y_net[-n_val:])
        X_net, y_net = X_net[:-n_val], y_net[:-n_val]
    epochs = _auto_epochs(len(X_net), args.batch_size) if auto else args.epochs
    if cross:  # each of the cross-validation's fits gets an equal share of the batch budget
        fits = selection.FOLDS * (1 if args.weight_decay is not None else len(selection.WEIGHT_DECAYS))
        epochs = _auto_epochs(len(X_net) - len(X_net) // selection.FOLDS, args.batch_size, fits)
    patience = args.early_stopping if args.early_stopping is not None else _AUTO_PATIENCE if auto and not cross \
        else None
    stopping = None if patience is None else fn.EarlyStopping(patience=patience, min_delta=_AUTO_MIN_DELTA if auto
                                                              else 0.0, restore_best_weights=True)
    return _Data(X=X_net, y=y_net, validation=validation, all=(X_all, y_all), test=test, n_features=X_net.shape[1],
                 n_outputs=n_outputs, name=name, preprocessing=preprocessing, target=target, epochs=epochs,
                 early_stopping=stopping, cross_validate=cross)


def _fit_preprocessing(args, features, y):
    """Adapt the feature table and the target encoding on the training data; return them and the encoded y."""
    path = args.data
    if isinstance(features, np.ndarray) and features.dtype.kind not in "biuf":
        raise ValueError(f"{path}: array X has dtype {features.dtype}; expected numbers")
    if isinstance(features, np.ndarray) and args.categorical:
        raise _UsageError("--categorical names .csv columns; a .npz's X has none")
    table = preprocessing.Table(categorical=args.categorical, standardize=args.standardize, impute=args.impute)
    with _cells(path, args.target):
        try:
            table.adapt(features, target=args.target)
            y = _check_target(args, y, None, path, None)
            if args.task == "classification":
                target = preprocessing.Labels().adapt(y)
                return table, target, target.encode(y), y
            target = preprocessing.Standardize().adapt(y) if args.standardize else None
            return table, target, y if target is None else target.transform(y, args.dtype), y
        except DataError:
            raise
        except ValueError as exc:
            raise ValueError(exc if str(exc).startswith(f"{path}: ") else f"{path}: {exc}") from None


def _check_target(args, y, n_outputs, path, target):
    """The target column as the task needs it: 1-D for classes; finite numbers for regression."""
    if args.task == "classification":
        if y.ndim != 1:
            raise ValueError(f"{path}: y has shape {y.shape}; classification needs one class label per sample "
                             "(1-D), or use --task regression")
        if target is not None:
            target.encode(y)  # names a label the training data did not have
        return y
    if y.dtype.kind not in "biuf":
        row = next(i for i, v in enumerate(y.tolist()) if not preprocessing._is_number(v))
        raise DataError(None, row, f"{y[row]!r} is not a number; regression needs numbers (or use --task "
                                   "classification)")
    y = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
    if bad.size:
        raise DataError(None, int(bad[0]), "empty or not finite: every sample needs its target")
    if n_outputs is not None and (1 if y.ndim == 1 else y.shape[1]) != n_outputs:
        raise ValueError(f"{path}: {1 if y.ndim == 1 else y.shape[1]} targets per sample, but {args.data} has "
                         f"{n_outputs}")
    return y


def _check_table(table, features, path, say):
    """``features`` must hold every column of ``table`` (by name; others are ignored, with a note)."""
    if isinstance(features, np.ndarray) or table.names[0] is None:
        width = len(features) if not isinstance(features, np.ndarray) else features.shape[1]
        if width != len(table.names):
            raise ValueError(f"{path}: {width} features, but the training data has {len(table.names)}")
        return
    missing = [n for n in table.names if n not in features]
    if missing:
        raise ValueError(f"{path}: column(s) {', '.join(map(repr, missing))} missing: the model was trained on "
                         f"{', '.join(table.names)}")
    extra = [n for n in features if n not in table.names]
    if extra and say is not None:
        say(f"{path}: ignored column(s) the model was not trained on: {', '.join(map(repr, extra))}")


def _model_input(model, features, path, say):
    """``features`` as ``model.predict`` takes them: a table for a model with a named Table, else a matrix."""
    table = model.preprocessing
    if isinstance(table, preprocessing.Table):
        _check_table(table, features, path, say)
        if table.names[0] is not None or isinstance(features, np.ndarray):
            return features
    if isinstance(features, np.ndarray):
        return features
    text = [n for n in features if features[n].dtype.kind not in "biuf"]
    if text:
        raise ValueError(f"{path}: column {text[0]!r} holds text or empty cells, but the model takes numbers only "
                         "(it was saved without preprocessing)")
    return np.column_stack([features[n] for n in features])


def _check_data_options(args):
    """--data excludes the built-in dataset's options; fill in --dataset's default."""
    if args.data is None:
        for option, value in (("--target", args.target), ("--test-data", getattr(args, "test_data", None))):
            if value is not None:
                raise _UsageError(f"{option} applies to --data files only")
        if args.task != "classification":
            raise _UsageError(f"the built-in datasets are classification tasks; --task {args.task} needs --data")
        args.dataset = args.dataset or "fashion-mnist"
        return
    given = [option for option, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                                          ("--download/--no-download", args.download)) if value is not None]
    if given:
        raise _UsageError(f"--data replaces the built-in dataset; drop {', '.join(given)}")


def _load_dataset(args):
    try:
        return _DATASETS[args.dataset](args.data_dir, download=args.download is not False)
    except FileNotFoundError as exc:
        raise _Failure(_cli_words(str(exc))) from None


def _cli_words(message):
    """fastnn.datasets speaks Python ("Pass download=True"); a command-line user reads the options instead."""
    message = re.sub(r"\b[Pp]ass download=True\b", "Pass --download (the default; drop --no-download)", message)
    return message.replace("download=True", "--download").replace("download=False", "--no-download")


def _targets(y, task, path):
    """Check ``y`` for ``task`` and return ``(y, n_outputs)``; classification labels are class indices."""
    if task == "regression":
        return y, (1 if y.ndim == 1 else y.shape[1])
    if y.ndim != 1:
        raise ValueError(f"{path}: y has shape {y.shape}; classification needs one class index per sample "
                         "(1-D), or use --task regression")
    bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)) | (y < 0) if y.dtype.kind == "f" else y < 0)
    if bad.size:
        raise ValueError(f"{path}: target {y[bad[0]]:g} of sample {bad[0]} is not a class index 0, 1, ...; "
                         "encode the classes as integers from 0, or use --task regression for a numeric target")
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        raise ValueError(f"{path}: every target is class 0; classification needs at least two classes")
    return y.astype(np.int64), n_classes


def _loss_for(task, model=None):
    if task == "regression":
        return fn.MSELoss()
    return fn.NLLLoss() if model is not None and isinstance(model.layers[-1], fn.Softmax) else fn.SoftmaxCrossEntropy()


# -- commands --------------------------------------------------------------------------------------------
def _build_model(args, seeds, n_features, n_outputs):
    act, init = _ACTIVATIONS[args.activation]
    widths = [n_features, *args.hidden, n_outputs]
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


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file (the same path spelled two ways, or links to one file)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _check_out_path(path, option):
    """Fail before the long part of a command, not after it, if ``path`` (given as ``option``) cannot be written."""
    folder = os.path.dirname(path) or os.curdir
    if os.path.isdir(path):
        raise _Failure(f"{option} {path}: is a directory")
    if not os.path.isdir(folder):
        raise _Failure(f"{option} {path}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _Failure(f"{option} {path}: directory {folder!r} is not writable")


def _allowed_changes(args):
    fields = [f.strip() for given in args.allow_changes or () for f in given.split(",") if f.strip()]
    if fields and not args.resume:
        raise _UsageError("--allow-change applies to --resume: the fields a resumed run may change")
    if args.resume and args.seed is None and "seed" not in fields:
        fields.append("seed")  # no --seed: a seed of its own each run, and none asked for; the checkpoint's holds
    return fields


def _keep_interrupted(args, model, exc):
    """After Ctrl-C, SIGTERM or SIGHUP: fit put the model back to its last completed epoch, which the checkpoint
    (if any) holds too; save it to ``--save`` and say where both are, on stderr even with ``--quiet``."""
    history = getattr(exc, "history", None)
    done = len(history.epoch) if history is not None else 0
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by {signal.Signals(exc.signum).name}"
    kept = []
    if args.save is not None and done:
        model.save(args.save)
        kept.append(f"saved the model after {done} completed epoch{'s' * (done != 1)} to {args.save}")
    if args.checkpoint is not None and done:
        same = "the same command" + (f" with --seed {args.seed}" if getattr(args, "seed_drawn", False) else "")
        kept.append(f"the checkpoint {args.checkpoint} holds epoch {done}; continue with {same} and --resume")
    if kept:
        print(f"fastnn: {why}: " + "; ".join(kept), file=sys.stderr, flush=True)
        exc.reported = True


def _train(args, say):
    if args.momentum is not None and args.optimizer != "sgd":
        raise _UsageError(f"--momentum applies only to --optimizer sgd, not {args.optimizer}")
    _check_data_options(args)
    if args.resume and args.checkpoint is None:
        raise _UsageError("--resume needs --checkpoint PATH (the file an earlier --checkpoint run wrote)")
    allow_changes = _allowed_changes(args)
    if args.seed is None:  # fresh entropy, but named: an interrupted run is resumed with it (see _keep_interrupted)
        args.seed, args.seed_drawn = int(np.random.SeedSequence().entropy) % 2**63, True
    if args.save is not None and args.checkpoint is not None and _same_file(args.save, args.checkpoint):
        raise _UsageError(f"--save and --checkpoint name the same file ({args.save}): the saved model would replace "
                          "the checkpoint that --resume continues from; give them different paths")
    for option, path in (("--save", args.save), ("--plot", args.plot), ("--checkpoint", args.checkpoint)):
        if path is not None:
            _check_out_path(path, option)
    if args.plot is not None:
        from fastnn.plot import _matplotlib  # noqa: PLC0415  (fail now, not after training, without matplotlib)

        try:
            _matplotlib()
        except ImportError as exc:
            raise _Failure(f"--plot: {exc}") from None
    # One independent stream per Linear layer plus one for the shuffling (and one for the validation split),
    # all from --seed.
    seeds = np.random.SeedSequence(args.seed).spawn(len(args.hidden) + 3)
    data = _train_data(args, say, seeds[-2])
    X_train, y_train, test, n_features, n_outputs, name = (data.X, data.y, data.test, data.n_features,
                                                           data.n_outputs, data.name)
    loss = _loss_for(args.task)
    choice = _cross_validate(args, seeds, data, loss, say) if data.cross_validate else None  # a small table
    model = _build_model(args, seeds, n_features, n_outputs)
    model.preprocessing, model.target = data.preprocessing, data.target
    optimizer = _build_optimizer(args, model.parameters())
    n_params = sum(p.data.size for p in model.parameters())
    say(f"{name}: {len(X_train)} train / {'no' if data.validation is None else len(data.validation[0])} "
        f"validation / {'no' if test is None else len(test[1])} test samples; {_preprocessing_note(data)}MLP "
        f"{'-'.join(str(w) for w in [n_features, *args.hidden, n_outputs])} ({args.activation}, {args.dtype}, "
        f"{n_params:,} parameters); {optimizer!r}")
    start = time.perf_counter()
    # fit checks every batch's loss and raises on NaN/inf; the NumPy twins' overflow warnings on the way there
    # would only be noise ahead of that message.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            # The loop itself: X_train is the network's matrix already, and the model carries its preprocessing
            # (for a save on Ctrl-C) from the start.
            history = fit_loop.fit(model, X_train, y_train, loss=loss, optimizer=optimizer, epochs=data.epochs,
                                batch_size=args.batch_size, validation_data=data.validation,
                                early_stopping=data.early_stopping, seed=int(seeds[-1].generate_state(1)[0]),
                                verbose=args.verbose, checkpoint=args.checkpoint, resume=args.resume,
                                allow_changes=allow_changes)
    except (KeyboardInterrupt, fn.TrainingTerminated) as exc:
        _keep_interrupted(args, model, exc)
        raise
    except FloatingPointError as exc:
        raise _Failure(f"training diverged: {exc}" + ("; nothing was saved" if args.save else "")) from None
    except ValueError as exc:
        if getattr(args, "seed_drawn", False) and "a checkpoint of another run" in str(exc):
            raise _Failure(f"{exc}. This run has no --seed: resume with the --seed of the run that wrote the "
                           "checkpoint (its interruption message names it)") from None
        raise
    seconds = time.perf_counter() - start
    del X_train, y_train, data.X, data.y, data.validation
    if test is None:  # the network's matrix of all training rows: the bare network, the target's units
        split, (X_eval, y_eval) = "train", data.all
        scored = fn.Sequential(*model.layers, target=model.target if args.task == "regression" else None)
    else:
        split, (X_eval, y_eval), scored = "test", test, model
    metrics = _metrics(scored, X_eval, y_eval, args.task, name if test is None else args.test_data)
    del data.all
    if args.save is not None:
        model.save(args.save)
        say(f"saved model to {args.save}")
    if args.plot is not None:
        history.plot(args.plot)
        say(f"drew the learning curves to {args.plot}")
    return {"dataset": name, **{f"{split}_{k}": v for k, v in metrics.items()},
            "epochs": len(history.epoch), "train_seconds": round(seconds, 3), "history": history.history,
            "model": args.save, "plot": args.plot,
            **({} if choice is None else {"cross_validation": choice})}


def _cross_validate(args, seeds, data, loss, say):
    """Choose a small table's epochs (and weight decay, unless --weight-decay is given) by k-fold
    cross-validation on all its rows; set ``data.epochs`` and ``args.weight_decay`` to the choice."""
    decays = selection.WEIGHT_DECAYS if args.weight_decay is None else (args.weight_decay,)
    if len(data.y) < 2 * selection.FOLDS:
        raise _Failure(f"{data.name}: {len(data.y)} rows are too few to choose the epochs by {selection.FOLDS}-fold "
                       "cross-validation; give --epochs")
    say(f"{data.name}: {len(data.y)} rows, fewer than {selection.MAX_ROWS:,}: choosing the epochs"
        f"{'' if len(decays) == 1 else ' and the weight decay'} by {selection.FOLDS}-fold cross-validation "
        f"(up to {data.epochs} epochs each)")

    def build(decay):
        model = _build_model(args, seeds, data.n_features, data.n_outputs)
        return model, _build_optimizer(argparse.Namespace(**{**vars(args), "weight_decay": decay}),
                                       model.parameters())

    def report(decay, epochs, val_loss):
        say(f"  weight decay {decay:g}: mean val_loss {val_loss:.4f} after {epochs} epochs")

    start = time.perf_counter()
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            choice = selection.cross_validate(build, data.X, data.y, loss, epochs=data.epochs,
                                              batch_size=args.batch_size, seed=int(seeds[-1].generate_state(1)[0]),
                                              stratify=args.task == "classification", weight_decays=decays,
                                              on_result=report)
    except (KeyboardInterrupt, fn.TrainingTerminated) as exc:
        exc.reported = True  # nothing trained yet that could be kept
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by {signal.Signals(exc.signum).name}"
        print(f"fastnn: {why} during the cross-validation, before the final fit: nothing was saved",
              file=sys.stderr, flush=True)
        raise
    except FloatingPointError as exc:
        raise _Failure(f"training diverged in cross-validation: {exc}; nothing was saved") from None
    seconds = time.perf_counter() - start
    say(f"  chose weight decay {choice.weight_decay:g} and {choice.epochs} epochs; training on all {len(data.y)} "
        "rows")
    data.epochs, args.weight_decay = choice.epochs, choice.weight_decay
    return {"folds": selection.FOLDS, "weight_decay": choice.weight_decay, "epochs": choice.epochs,
            "val_loss": choice.loss, "seconds": round(seconds, 3)}


def _eval_data(args, model, say):
    """The data evaluate/predict use, checked against ``model``: ``(X, y or None, name)``; ``X`` as
    ``model.predict`` takes it (a table for a model with a Table, else a matrix)."""
    _check_data_options(args)
    if args.data is None:
        if model.n_features_in != _N_FEATURES or model.n_outputs != _N_CLASSES:
            raise _Failure(f"{args.model}: the model maps {model.n_features_in} inputs to {model.n_outputs} "
                           f"outputs, but {args.dataset} needs {_N_FEATURES} inputs and {_N_CLASSES} outputs")
        _, (X, y) = _load_dataset(args)
        return X, y, args.dataset
    if args.task == "classification" and model.n_outputs < 2:
        raise _Failure(f"{args.model}: the model has {model.n_outputs} output, but a classifier has one per class; "
                       "for a model trained with --task regression, pass --task regression")
    if args.task == "regression" and isinstance(model.target, preprocessing.Labels):
        raise _Failure(f"{args.model}: a classifier (its classes: {', '.join(_label_texts(model.target))}); "
                       "drop --task regression")
    table = model.preprocessing if isinstance(model.preprocessing, preprocessing.Table) else None
    target = args.target
    if target is None and table is not None and not args.data.lower().endswith(".npz"):
        target = table.target_  # the training target's column: ignored by predict, the labels of evaluate
    X, y = _read_data(args.data, target, need_y=args.command == "evaluate", say=say)
    with _cells(args.data, target):
        X = _model_input(model, X, args.data, say)
        if model.preprocessing is None and X.shape[1] != model.n_features_in:
            raise _Failure(f"{args.data}: {X.shape[1]} features per sample, but {args.model} takes "
                           f"{model.n_features_in} inputs")
        if y is not None and args.command == "evaluate":
            if model.target is None and args.task == "classification":
                y, _ = _targets(y, args.task, args.data)
            else:
                y = _check_target(args, y, None, args.data, model.target)
    return X, y, args.data


def _metrics(model, X, y, task, path, batch_size=1024):
    """``{"loss", "accuracy"}`` (classification) or ``{"loss", "r2"}`` (regression, in the target's units)."""
    with _cells(path):
        metrics = model.evaluate(X, y, _loss_for(task, model), batch_size=batch_size)
        if task == "regression":
            pred = model.predict(X, batch_size).astype(np.float64).reshape(len(y), -1)
            y = np.asarray(y, np.float64).reshape(len(y), -1)
            total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
            score = 1 - ((y - pred) ** 2).sum(axis=0) / np.where(total > 0, total, 1)
            metrics["r2"] = float(score.mean())
    return metrics


def _label_texts(labels):
    return [preprocessing._key(c) for c in labels.classes_.tolist()]


def _evaluate(args, say):
    model = fn.load(args.model)
    X, y, name = _eval_data(args, model, say)
    metrics = _metrics(model, X, y, args.task, args.data, args.batch_size)
    return {"model": args.model, "dataset": name, "n_samples": len(y), **{f"test_{k}": v for k, v in metrics.items()}}


def _predict(args, say):
    _check_out_path(args.out, "--out")
    model = fn.load(args.model)
    X, _, name = _eval_data(args, model, say)
    with _cells(args.data):
        out = model.predict(X, batch_size=args.batch_size).astype(np.float64)
    out = out.reshape(len(out), -1)
    if args.task == "classification":
        if not isinstance(model.layers[-1], fn.Softmax):
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        if isinstance(model.target, preprocessing.Labels) and model.target.n_classes == out.shape[1]:
            names = _label_texts(model.target)  # the labels as the training data wrote them
            labels = np.array(names, dtype=object)[out.argmax(axis=1)].tolist()
        else:
            names, labels = [str(k) for k in range(out.shape[1])], out.argmax(axis=1).tolist()
        header = ["label", *(f"prob_{k}" for k in names)]
        rows = zip(labels, *(out[:, k] for k in range(out.shape[1])))
    else:
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{k}" for k in range(out.shape[1])]
        rows = out
    folder, base = os.path.split(args.out)
    tmp = os.path.join(folder or os.curdir, f".{base}.{os.urandom(6).hex()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([v if isinstance(v, (int, str)) else f"{v:.9g}" for v in row] for row in rows)
        os.replace(tmp, args.out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    say(f"{name}: {len(out)} samples through {args.model}")
    return {"model": args.model, "dataset": name, "n_samples": len(out), "out": args.out, "columns": header}


def _preprocessing_note(data):
    table = data.preprocessing
    if table is None:
        return ""
    kinds = [c["kind"] for c in table.columns_]
    parts = [f"{kinds.count('number')} numeric" + (" (standardized)" if table.standardize else ""),
             f"{kinds.count('category')} one-hot ({table.n_features_out - kinds.count('number')} features)"]
    return ", ".join(parts) + " columns; "


def _export(args, say):
    from fastnn import export  # noqa: PLC0415  (onnx is an optional extra)

    _check_out_path(args.out, "OUT")
    model = fn.load(args.model)
    try:
        graph = export.export_onnx(model, args.out)
    except ImportError as exc:
        raise _Failure(str(exc)) from None
    return {"model": args.model, "out": args.out, "opset": export.OPSET, "nodes": len(graph.graph.node)}


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
    keys = [f"{split}_{m}" for split in ("test", "train") for m in ("loss", "accuracy", "r2")]
    return " - ".join(f"{k}: {result[k]:.4f}" for k in keys if k in result)


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
    except KeyboardInterrupt as exc:
        if not getattr(exc, "reported", False):
            print("fastnn: interrupted", file=sys.stderr)
        return 130
    except fn.TrainingTerminated as exc:  # SIGTERM, SIGHUP: fit and _train have said what was kept
        return exc.code
    except (_Failure, bench.BenchError, OSError, ValueError) as exc:  # files, data, rejected arguments: no traceback
        print(f"fastnn: error: {_describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result) if as_json else args.text(result))
    return 0
