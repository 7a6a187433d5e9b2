"""What the commands share: their errors, reading and checking the data they are given, and the metrics."""
import contextlib
import os
import re

import numpy as np

import fastnn as fn
from fastnn import io, preprocessing, tables
from fastnn.datasets import load_fashion_mnist, load_mnist
from fastnn.preprocessing import DataError

DATASETS = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist}
N_FEATURES, N_CLASSES = 28 * 28, 10
TASKS = ("classification", "regression")


class Failure(Exception):
    """An error found while running a command: reported as ``fastnn: error: ...``, exit status 1."""


class UsageError(Exception):
    """Options that parse alone but not together: reported by the subcommand's parser, exit status 2."""


def read_data(path, target, need_y=True, say=None):
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
        raise UsageError("--target names a .csv column; a .npz holds its target as the array y")
    if kind == ".npz":
        return io.read_arrays(path, need_y)
    frame = io.read_frame(path, note=say)
    if target is None and need_y:
        raise UsageError(f"--target COLUMN is required with a .csv --data or --test-data (columns: "
                         f"{', '.join(frame.names)})")
    if target is not None and target not in frame and need_y:
        raise ValueError(f"{path}: --target {target!r} is not a column; the header has: {', '.join(frame.names)}")
    y = frame[target] if target in frame else None
    features = frame.without(target)
    if not len(features):
        raise ValueError(f"{path}: no feature columns: the only column is the target {target!r}")
    return features, y


@contextlib.contextmanager
def cells(path, target=None):
    """Report a :class:`fastnn.preprocessing.DataError` as ``PATH: line L, column C: reason``."""
    try:
        yield
    except DataError as exc:
        line = None if exc.row is None else tables.line_of_row(path, exc.row)
        column = target if exc.column is None else exc.column
        where = [f"line {line}" if line is not None else f"sample {exc.row}" if exc.row is not None else None,
                 None if column is None else f"column {column!r}" if isinstance(column, str) else f"column {column}"]
        raise ValueError(f"{path}: {', '.join(w for w in where if w)}: {exc.reason}") from None


def check_target(args, y, n_outputs, path, target):
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


def check_table(table, features, path, say):
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
        check_table(table, features, path, say)
        if table.names[0] is not None or isinstance(features, np.ndarray):
            return features
    if isinstance(features, np.ndarray):
        return features
    text = [n for n in features if features[n].dtype.kind not in "biuf"]
    if text:
        raise ValueError(f"{path}: column {text[0]!r} holds text or empty cells, but the model takes numbers only "
                         "(it was saved without preprocessing)")
    return np.column_stack([features[n] for n in features])


def check_data_options(args):
    """--data excludes the built-in dataset's options; fill in --dataset's default."""
    if args.data is None:
        for option, value in (("--target", args.target), ("--test-data", getattr(args, "test_data", None))):
            if value is not None:
                raise UsageError(f"{option} applies to --data files only")
        if args.task != "classification":
            raise UsageError(f"the built-in datasets are classification tasks; --task {args.task} needs --data")
        args.dataset = args.dataset or "fashion-mnist"
        return
    given = [option for option, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                                          ("--download/--no-download", args.download)) if value is not None]
    if given:
        raise UsageError(f"--data replaces the built-in dataset; drop {', '.join(given)}")


def load_dataset(args):
    try:
        return DATASETS[args.dataset](args.data_dir, download=args.download is not False)
    except FileNotFoundError as exc:
        raise Failure(cli_words(str(exc))) from None


def cli_words(message):
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


def loss_for(task, model=None):
    if task == "regression":
        return fn.MSELoss()
    return fn.NLLLoss() if model is not None and isinstance(model.layers[-1], fn.Softmax) else fn.SoftmaxCrossEntropy()


def check_out_path(path, option):
    """Fail before the long part of a command, not after it, if ``path`` (given as ``option``) cannot be written."""
    folder = os.path.dirname(path) or os.curdir
    if os.path.isdir(path):
        raise Failure(f"{option} {path}: is a directory")
    if not os.path.isdir(folder):
        raise Failure(f"{option} {path}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Failure(f"{option} {path}: directory {folder!r} is not writable")


def eval_data(args, model, say):
    """The data evaluate/predict use, checked against ``model``: ``(X, y or None, name)``; ``X`` as
    ``model.predict`` takes it (a table for a model with a Table, else a matrix)."""
    check_data_options(args)
    if args.data is None:
        if model.n_features_in != N_FEATURES or model.n_outputs != N_CLASSES:
            raise Failure(f"{args.model}: the model maps {model.n_features_in} inputs to {model.n_outputs} "
                           f"outputs, but {args.dataset} needs {N_FEATURES} inputs and {N_CLASSES} outputs")
        _, (X, y) = load_dataset(args)
        return X, y, args.dataset
    if args.task == "classification" and model.n_outputs < 2:
        raise Failure(f"{args.model}: the model has {model.n_outputs} output, but a classifier has one per class; "
                       "for a model trained with --task regression, pass --task regression")
    if args.task == "regression" and isinstance(model.target, preprocessing.Labels):
        raise Failure(f"{args.model}: a classifier (its classes: {', '.join(label_texts(model.target))}); "
                       "drop --task regression")
    table = model.preprocessing if isinstance(model.preprocessing, preprocessing.Table) else None
    target = args.target
    if target is None and table is not None and not args.data.lower().endswith(".npz"):
        target = table.target_  # the training target's column: ignored by predict, the labels of evaluate
    X, y = read_data(args.data, target, need_y=args.command == "evaluate", say=say)
    with cells(args.data, target):
        X = _model_input(model, X, args.data, say)
        if model.preprocessing is None and X.shape[1] != model.n_features_in:
            raise Failure(f"{args.data}: {X.shape[1]} features per sample, but {args.model} takes "
                           f"{model.n_features_in} inputs")
        if y is not None and args.command == "evaluate":
            if model.target is None and args.task == "classification":
                y, _ = _targets(y, args.task, args.data)
            else:
                y = check_target(args, y, None, args.data, model.target)
    return X, y, args.data


def compute_metrics(model, X, y, task, path, batch_size=1024):
    """``{"loss", "accuracy"}`` (classification) or ``{"loss", "r2"}`` (regression, in the target's units)."""
    with cells(path):
        metrics = model.evaluate(X, y, loss_for(task, model), batch_size=batch_size)
        if task == "regression":
            pred = model.predict(X, batch_size).astype(np.float64).reshape(len(y), -1)
            y = np.asarray(y, np.float64).reshape(len(y), -1)
            total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
            score = 1 - ((y - pred) ** 2).sum(axis=0) / np.where(total > 0, total, 1)
            metrics["r2"] = float(score.mean())
    return metrics


def label_texts(labels):
    return [preprocessing._key(c) for c in labels.classes_.tolist()]



def metrics_line(result):
    keys = [f"{split}_{m}" for split in ("test", "train") for m in ("loss", "accuracy", "r2")]
    return " - ".join(f"{k}: {result[k]:.4f}" for k in keys if k in result)

