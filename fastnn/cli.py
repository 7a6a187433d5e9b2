"""The ``fastnn`` command: train an MLP on (Fashion-)MNIST or your own data, evaluate or apply a saved one, export
it to ONNX, or benchmark the kernels.

Each subcommand is one ``_add_<name>(subparsers, common)`` function that builds its parser and binds
``set_defaults(run=<runner>, parser=<its parser>, text=<result -> plain-text output>)``; a runner takes
``(args, say)`` and returns the result dict, printed by ``text`` (or as JSON with ``--json``). Listing the function
in ``_SUBCOMMANDS`` adds it.

Exit status: 0 on success, 2 for a malformed command line (argparse's own errors), 1 for an error found while
running (missing or corrupt files, a model that does not fit the data, a diverging run), 130 on Ctrl-C.
"""
import argparse
import contextlib
import csv
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings

import numpy as np

import fastnn as fn
from fastnn import bench
from fastnn.datasets import load_fashion_mnist, load_mnist
from fastnn.export import OPSET  # export.py imports onnx only when exporting
from fastnn.layers import ACTIVATIONS as _ACTIVATIONS

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
                           "y, or a .csv with a header row, numeric features and the --target column")
    data.add_argument("--target", metavar="COLUMN",
                      help="the .csv column holding the target (class indices 0, 1, ... or, with --task "
                           "regression, numbers); every other column is a feature")
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
                    "per class (labels 0 .. k-1, k from the largest label); regression the mean squared error with\n"
                    "one output per column of y.",
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
    p.add_argument_group("test data").add_argument(
        "--test-data", metavar="PATH", help="with --data: report the final loss (and accuracy) on this file, in "
                                            "the same format and with the same --target")
    out = p.add_argument_group("output")
    out.add_argument("--save", metavar="PATH",
                     help="write the trained model here (.npz, atomically; nothing is written if training fails)")
    out.add_argument("--checkpoint", metavar="PATH",
                     help="after every epoch, write everything needed to continue here (atomically); Ctrl-C "
                          "keeps the last completed epoch")
    out.add_argument("--resume", action="store_true",
                     help="continue from --checkpoint if it exists, ending exactly where an uninterrupted run "
                          "would (same command, same --seed)")
    out.add_argument("--plot", metavar="PATH",
                     help="draw the learning curves here (.png, .svg or .pdf; needs matplotlib: "
                          "pip install 'fastnn[plot]')")
    talk = out.add_mutually_exclusive_group()
    talk.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                      help="0: final result only, 1: a line per epoch, 2: also a per-batch bar on a terminal "
                           "(default: %(default)s)")
    talk.add_argument("-q", "--quiet", action="store_const", dest="verbose", const=0, help="same as --verbose 0")
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
                    "  classification  label,prob_0,...,prob_{k-1}: the predicted class index and the class\n"
                    "                  probabilities (softmax of the logits, or the outputs of a final Softmax)\n"
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
               "Exit status: 0 success, 1 error while running, 2 bad command line, 130 interrupted.")
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


def _csv_problem(path, header):
    """Scan ``path`` row by row for the first ragged row or non-numeric cell; return a message naming it."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        try:
            return _first_bad_row(reader, header)
        except csv.Error as exc:  # an oversized field, a stray quote under strict rules
            return f"line {reader.line_num}: not readable as CSV: {exc}"
        except UnicodeDecodeError as exc:  # decoded a block at a time: the line is not known
            return f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} after line {reader.line_num}"


def _first_bad_row(reader, header):
    """The message for the first ragged row or non-numeric cell ``reader`` yields, else None."""
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            return (f"line {reader.line_num}: {len(row)} fields, but the header has {len(header)} columns "
                    "(a ragged row)")
        for column, cell in zip(header, row):
            try:
                value = float(cell)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value):
                kind = "empty" if not cell.strip() else f"{cell!r} is not a finite number"
                return f"line {reader.line_num}, column {column!r}: {kind}"
    return None


def _read_csv(path, target, need_y):
    """``(X, y)`` from a CSV with a header row and numeric cells; ``y`` is the ``target`` column (None if not given
    and not needed). Every other column is a feature."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
        try:
            header = next(csv.reader(f), None)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}") from None
        except csv.Error as exc:
            raise ValueError(f"line 1: not a readable CSV header: {exc}") from None
    if not header:
        raise ValueError("empty file; expected a header row naming the columns, then one row per sample")
    header = [name.strip() for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"line 1: column names {duplicates} appear more than once")
    if target is None and need_y:
        raise _UsageError(f"--target COLUMN is required with a .csv --data or --test-data (columns: "
                          f"{', '.join(header)})")
    if target is not None and target not in header and need_y:
        raise ValueError(f"--target {target!r} is not a column; the header has: {', '.join(header)}")
    target_index = header.index(target) if target in header else None
    if len(header) - (target_index is not None) < 1:
        raise ValueError(f"no feature columns: the only column is the target {target!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64, comments=None,
                               quotechar='"', encoding="utf-8-sig")
    except ValueError:  # also UnicodeDecodeError
        table = None
    if table is not None and table.size == 0:
        raise ValueError("no data rows after the header")
    if table is None or table.shape[1] != len(header) or not np.isfinite(table).all():
        # The fast parser found a fault; find it again, row by row, to name its line and column.
        raise ValueError(_csv_problem(path, header) or "not a table of numbers with the header's columns")
    if target_index is None:
        return table, None
    return np.delete(table, target_index, axis=1), table[:, target_index]


def _read_data(path, target, need_y=True):
    """Your own data: ``(X, y)`` from ``path`` (.npz or .csv); errors name the file."""
    kind = os.path.splitext(path)[1].lower()
    if kind not in (".npz", ".csv"):
        raise ValueError(f"{path}: expected a .npz (arrays X and y) or a .csv (header row, numeric columns) file")
    if kind == ".npz" and target is not None:
        raise _UsageError("--target names a .csv column; a .npz holds its target as the array y")
    try:
        return _read_npz(path, need_y) if kind == ".npz" else _read_csv(path, target, need_y)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


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


def _check_out_path(path, option):
    """Fail before the long part of a command, not after it, if ``path`` (given as ``option``) cannot be written."""
    folder = os.path.dirname(path) or os.curdir
    if os.path.isdir(path):
        raise _Failure(f"{option} {path}: is a directory")
    if not os.path.isdir(folder):
        raise _Failure(f"{option} {path}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _Failure(f"{option} {path}: directory {folder!r} is not writable")


def _train_data(args):
    """``(X_train, y_train), (X_test, y_test) or None, n_features, n_outputs, name``."""
    if args.data is None:
        train, test = _load_dataset(args)
        return train, test, _N_FEATURES, _N_CLASSES, args.dataset
    X, y = _read_data(args.data, args.target)
    y, n_outputs = _targets(y, args.task, args.data)
    test = None
    if args.test_data is not None:
        Xt, yt = _read_data(args.test_data, args.target)
        if Xt.shape[1] != X.shape[1]:
            raise _Failure(f"{args.test_data}: {Xt.shape[1]} features, but {args.data} has {X.shape[1]}")
        yt, n_test = _targets(yt, args.task, args.test_data)
        if args.task == "regression" and n_test != n_outputs:
            raise _Failure(f"{args.test_data}: {n_test} targets per sample, but {args.data} has {n_outputs}")
        if args.task == "classification" and n_test > n_outputs:
            raise _Failure(f"{args.test_data}: class {n_test - 1} does not occur in {args.data}, whose classes "
                           f"are 0..{n_outputs - 1}")
        test = (Xt, yt)
    return (X, y), test, X.shape[1], n_outputs, args.data


def _train(args, say):
    if args.momentum is not None and args.optimizer != "sgd":
        raise _UsageError(f"--momentum applies only to --optimizer sgd, not {args.optimizer}")
    _check_data_options(args)
    if args.resume and args.checkpoint is None:
        raise _UsageError("--resume needs --checkpoint PATH (the file an earlier --checkpoint run wrote)")
    for option, path in (("--save", args.save), ("--plot", args.plot), ("--checkpoint", args.checkpoint)):
        if path is not None:
            _check_out_path(path, option)
    if args.plot is not None:
        from fastnn.plot import _matplotlib  # noqa: PLC0415  (fail now, not after training, without matplotlib)

        try:
            _matplotlib()
        except ImportError as exc:
            raise _Failure(f"--plot: {exc}") from None
    (X_train, y_train), test, n_features, n_outputs, name = _train_data(args)
    # One independent stream per Linear layer plus one for the shuffling, all from --seed.
    seeds = np.random.SeedSequence(args.seed).spawn(len(args.hidden) + 2)
    model = _build_model(args, seeds, n_features, n_outputs)
    optimizer = _build_optimizer(args, model.parameters())
    n_params = sum(p.data.size for p in model.parameters())
    say(f"{name}: {len(X_train)} train / {'no' if test is None else len(test[0])} test samples; MLP "
        f"{'-'.join(str(w) for w in [n_features, *args.hidden, n_outputs])} ({args.activation}, {args.dtype}, "
        f"{n_params:,} parameters); {optimizer!r}")
    loss = _loss_for(args.task)
    start = time.perf_counter()
    # fit checks every batch's loss and raises on NaN/inf; the NumPy twins' overflow warnings on the way there
    # would only be noise ahead of that message.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            history = model.fit(X_train, y_train, loss=loss, optimizer=optimizer, epochs=args.epochs,
                                batch_size=args.batch_size, validation_split=args.validation_split,
                                early_stopping=args.early_stopping, seed=int(seeds[-1].generate_state(1)[0]),
                                verbose=args.verbose, checkpoint=args.checkpoint, resume=args.resume)
    except KeyboardInterrupt as exc:
        # fit put the model back to its last completed epoch, which the checkpoint (if any) holds too.
        history = getattr(exc, "history", None)
        done = len(history.epoch) if history is not None else 0
        if args.save is not None and done:
            model.save(args.save)
            say(f"interrupted: saved the model after {done} completed epoch{'s' * (done != 1)} to {args.save}")
        if args.checkpoint is not None and done:
            say(f"interrupted: the checkpoint {args.checkpoint} holds epoch {done}; continue with the same "
                "command and --resume")
        raise
    except FloatingPointError as exc:
        raise _Failure(f"training diverged: {exc}" + ("; nothing was saved" if args.save else "")) from None
    seconds = time.perf_counter() - start
    split, (X_eval, y_eval) = ("train", (X_train, y_train)) if test is None else ("test", test)
    metrics = model.evaluate(X_eval, y_eval, loss)
    if args.save is not None:
        model.save(args.save)
        say(f"saved model to {args.save}")
    if args.plot is not None:
        history.plot(args.plot)
        say(f"drew the learning curves to {args.plot}")
    return {"dataset": name, **{f"{split}_{k}": v for k, v in metrics.items()},
            "epochs": len(history.epoch), "train_seconds": round(seconds, 3), "history": history.history,
            "model": args.save, "plot": args.plot}


def _eval_data(args, model):
    """The data evaluate/predict use, checked against ``model``: ``(X, y or None, name)``."""
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
    X, y = _read_data(args.data, args.target, need_y=args.command == "evaluate")
    if X.shape[1] != model.n_features_in:
        raise _Failure(f"{args.data}: {X.shape[1]} features per sample, but {args.model} takes "
                       f"{model.n_features_in} inputs")
    if y is not None and args.command == "evaluate":
        y, _ = _targets(y, args.task, args.data)
    return X, y, args.data


def _evaluate(args, say):
    model = fn.load(args.model)
    X, y, name = _eval_data(args, model)
    metrics = model.evaluate(X, y, _loss_for(args.task, model), batch_size=args.batch_size)
    return {"model": args.model, "dataset": name, "n_samples": len(X), **{f"test_{k}": v for k, v in metrics.items()}}


def _predict(args, say):
    _check_out_path(args.out, "--out")
    model = fn.load(args.model)
    X, _, name = _eval_data(args, model)
    out = model.predict(X, batch_size=args.batch_size).astype(np.float64)
    if args.task == "classification":
        if not isinstance(model.layers[-1], fn.Softmax):
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        header = ["label", *(f"prob_{k}" for k in range(out.shape[1]))]
        rows = zip(out.argmax(axis=1).tolist(), *(out[:, k] for k in range(out.shape[1])))
    else:
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{k}" for k in range(out.shape[1])]
        rows = out
    folder, base = os.path.split(args.out)
    tmp = os.path.join(folder or os.curdir, f".{base}.{os.urandom(6).hex()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([v if isinstance(v, int) else f"{v:.9g}" for v in row] for row in rows)
        os.replace(tmp, args.out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    say(f"{name}: {len(X)} samples through {args.model}")
    return {"model": args.model, "dataset": name, "n_samples": len(X), "out": args.out, "columns": header}


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
    keys = [f"{split}_{m}" for split in ("test", "train") for m in ("loss", "accuracy")]
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
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130
    except (_Failure, bench.BenchError, OSError, ValueError) as exc:  # files, data, rejected arguments: no traceback
        print(f"fastnn: error: {_describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result) if as_json else args.text(result))
    return 0
