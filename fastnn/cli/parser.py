"""The ``fastnn`` argument parser: one ``_add_<name>(subparsers, common)`` function per command.

Each builds its parser and binds ``set_defaults(run=<the command's run>, parser=<its parser>, text=<result ->
plain-text output>)``; listing the function in ``_SUBCOMMANDS`` adds the command.
"""
import argparse

import fastnn as fn
from fastnn._check import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, parse
from fastnn import selection
from fastnn import bench as bench_report
from fastnn.cli import bench, evaluate, export, predict, train
from fastnn.cli.common import DATASETS, TASKS, metrics_line
from fastnn.export import OPSET  # export.py imports onnx only when exporting
from fastnn.registry import ACTIVATIONS, OPTIMIZERS

__all__ = ["build_parser"]


# -- argument types: raise ArgumentTypeError so argparse names the option and exits 2 ----------------------
def _arg(*constraints):
    """An argparse ``type=``: the text read and checked by :func:`fastnn._check.parse`, worded as fastnn's
    argument errors (argparse puts the option's name in front)."""
    def read(text):
        try:
            return parse(text, *constraints)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return read


def _widths(text):
    """``"128,64"`` -> ``[128, 64]``; ``""`` -> ``[]`` (no hidden layer: softmax regression)."""
    if not text.strip():
        return []
    widths = []
    for part in text.split(","):
        try:
            widths.append(parse(part.strip(), POSITIVE_INT))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated widths like 128,64, each {POSITIVE_INT}, "
                                             f"got {part.strip()!r} in {text!r}") from None
    return widths


_positive_int, _count = _arg(POSITIVE_INT), _arg(COUNT)
_positive, _non_negative, _fraction = _arg(POSITIVE), _arg(NON_NEGATIVE), _arg(FRACTION)


# -- parser ----------------------------------------------------------------------------------------------
def _common_options():
    """Options every data-using subcommand shares: where the data comes from, how results are printed."""
    common = argparse.ArgumentParser(add_help=False)
    data = common.add_argument_group(
        "data", "Either a built-in dataset (--dataset, default fashion-mnist) or your own file (--data).")
    data.add_argument("--dataset", choices=sorted(DATASETS),
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
    data.add_argument("--task", choices=TASKS, default="classification",
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
    model.add_argument("--activation", choices=ACTIVATIONS.names(), default="relu",
                       help="hidden activation ('identity': none); the Linear layers start He-initialised before "
                            f"{'/'.join(a.names[0] for a in ACTIVATIONS if a.init == 'he')}, Glorot otherwise "
                            "(default: %(default)s)")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="parameter and compute dtype (default: %(default)s)")
    model.add_argument("--seed", type=_count, help="seeds the initial weights and the shuffling; "
                                                   "same seed, backend and BLAS threads, same result "
                                                   "(default: fresh entropy)")
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
    opt.add_argument("--optimizer", choices=OPTIMIZERS.names(), default="adam", help="(default: %(default)s)")
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
    p.set_defaults(run=train.run, parser=p, text=metrics_line)
    return p


def _add_evaluate(subparsers, common):
    p = subparsers.add_parser(
        "evaluate", parents=[common], help="report a saved model's loss and accuracy on test data",
        description="Load a model written by 'fastnn train --save' (or Sequential.save) and print its loss (and, "
                    "for classification, accuracy) on the dataset's test split or on all of --data. A classifier "
                    "may output logits or, if it ends with Softmax, probabilities.")
    p.add_argument("model", metavar="MODEL", help="model file (.npz)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="(default: %(default)s)")
    p.set_defaults(run=evaluate.run, parser=p, text=metrics_line)
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
    p.set_defaults(run=predict.run, parser=p, text=lambda r: f"wrote {r['n_samples']} predictions to {r['out']}")
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
    p.set_defaults(run=export.run, parser=p, text=lambda r: f"wrote {r['out']} ({r['nodes']} ONNX nodes, opset "
                                                         f"{r['opset']})")
    return p


def _add_bench(subparsers, common):
    # Not built on `common`: the benchmarks choose their own data and time both backends.
    p = subparsers.add_parser(
        "bench", help="time the Numba kernels against their NumPy twins, and epochs against NumPy, PyTorch and JAX",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run fastnn's pytest-benchmark suite (fastnn/benchmarks/, installed with fastnn) and print\n"
                    "markdown tables of the median times; optionally draw them as a PNG chart. The suites:\n\n"
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
                    "  all      everything in fastnn/benchmarks/ (also the scikit-learn-API fits, if Fashion-MNIST\n"
                    "           is installed)\n\n"
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
    what.add_argument("--suite", choices=list(bench_report.SUITES), help="(default: kernels)")
    what.add_argument("-k", metavar="EXPR", help="only the benchmarks whose ids match this pytest -k expression")
    what.add_argument("--threads", type=_positive_int, metavar="N",
                      help="BLAS threads per benchmark, via FASTNN_BENCH_THREADS (default: the libraries' own)")
    what.add_argument("--bench-dir", metavar="DIR",
                      help="the benchmarks directory (default: fastnn/benchmarks/ of the fastnn imported)")
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
    p.set_defaults(run=bench.run, parser=p, text=lambda result: result["markdown"].rstrip("\n"))
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

