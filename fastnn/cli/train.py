"""``fastnn train``: build an MLP for the data, train it (unless --epochs is given: cross-validated on a small
table, early-stopped on a validation split otherwise), report its metrics, and keep it (--save, --checkpoint,
--plot), also when interrupted."""
import argparse
import os
import signal
import sys
import time

import numpy as np

import fastnn as fn
from fastnn import preprocessing, selection
from fastnn import train as fit_loop
from fastnn.cli.common import (N_CLASSES, Failure, UsageError, cells, check_data_options, check_out_path, check_table,
                               check_target, compute_metrics, load_dataset, loss_for, read_data)
from fastnn.preprocessing import DataError
from fastnn.registry import ACTIVATIONS, OPTIMIZERS

__all__ = ["run"]

# --optimizer's choices are the rows of fastnn.registry.OPTIMIZERS, each with its own default learning rate; SGD has
# none, and takes this one (what `fastnn train --help` states).
_DEFAULT_LR = {"sgd": 0.1}

# --epochs not given, a table of selection.MAX_ROWS rows or more: early stopping on a validation split (smaller
# tables are cross-validated, selection.py), the rule `fastnn train --help` states.
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
        (X, y), test = load_dataset(args)
        features = preprocessing = target = None
        n_outputs, name = N_CLASSES, args.dataset
        y_train = y
    else:
        features, y = read_data(args.data, args.target, say=say)
        preprocessing, target, y_train, y = _fit_preprocessing(args, features, y)
        n_outputs = target.n_classes if classification else (1 if y_train.ndim == 1 else y_train.shape[1])
        test, name = None, args.data
        if args.test_data is not None:
            Xt, yt = read_data(args.test_data, args.target, say=say)
            with cells(args.test_data, args.target):
                check_table(preprocessing, Xt, args.test_data, say)
                check_target(args, yt, n_outputs, args.test_data, target)
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
        raise UsageError("--categorical names .csv columns; a .npz's X has none")
    table = preprocessing.Table(categorical=args.categorical, standardize=args.standardize, impute=args.impute)
    with cells(path, args.target):
        try:
            table.adapt(features, target=args.target)
            y = check_target(args, y, None, path, None)
            if args.task == "classification":
                target = preprocessing.Labels().adapt(y)
                return table, target, target.encode(y), y
            target = preprocessing.Standardize().adapt(y) if args.standardize else None
            return table, target, y if target is None else target.transform(y, args.dtype), y
        except DataError:
            raise
        except ValueError as exc:
            raise ValueError(exc if str(exc).startswith(f"{path}: ") else f"{path}: {exc}") from None




# -- commands --------------------------------------------------------------------------------------------
def _build_model(args, seeds, n_features, n_outputs):
    act = ACTIVATIONS[args.activation]
    widths = [n_features, *args.hidden, n_outputs]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(fn.Linear(n_in, n_out, init=act.init, seed=np.random.default_rng(seeds[i]), dtype=args.dtype))
        if i < len(widths) - 2 and act.cls is not None:
            layers.append(act.cls())
    return fn.Sequential(*layers)


def _build_optimizer(args, params):
    lr = _DEFAULT_LR.get(args.optimizer) if args.lr is None else args.lr
    kwargs = {} if lr is None else {"lr": lr}
    if args.momentum is not None:
        kwargs["momentum"] = args.momentum
    if args.weight_decay is not None:
        kwargs["weight_decay"] = args.weight_decay
    return OPTIMIZERS[args.optimizer].cls(params, **kwargs)


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file (the same path spelled two ways, or links to one file)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)




def _allowed_changes(args):
    fields = [f.strip() for given in args.allow_changes or () for f in given.split(",") if f.strip()]
    if fields and not args.resume:
        raise UsageError("--allow-change applies to --resume: the fields a resumed run may change")
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


def run(args, say):
    if args.momentum is not None and args.optimizer != "sgd":
        raise UsageError(f"--momentum applies only to --optimizer sgd, not {args.optimizer}")
    check_data_options(args)
    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH (the file an earlier --checkpoint run wrote)")
    allow_changes = _allowed_changes(args)
    if args.seed is None:  # fresh entropy, but named: an interrupted run is resumed with it (see _keep_interrupted)
        args.seed, args.seed_drawn = int(np.random.SeedSequence().entropy) % 2**63, True
    if args.save is not None and args.checkpoint is not None and _same_file(args.save, args.checkpoint):
        raise UsageError(f"--save and --checkpoint name the same file ({args.save}): the saved model would replace "
                          "the checkpoint that --resume continues from; give them different paths")
    for option, path in (("--save", args.save), ("--plot", args.plot), ("--checkpoint", args.checkpoint)):
        if path is not None:
            check_out_path(path, option)
    if args.plot is not None:
        from fastnn.plot import _matplotlib  # noqa: PLC0415  (fail now, not after training, without matplotlib)

        try:
            _matplotlib()
        except ImportError as exc:
            raise Failure(f"--plot: {exc}") from None
    # One independent stream per Linear layer plus one for the shuffling (and one for the validation split),
    # all from --seed.
    seeds = np.random.SeedSequence(args.seed).spawn(len(args.hidden) + 3)
    data = _train_data(args, say, seeds[-2])
    X_train, y_train, test, n_features, n_outputs, name = (data.X, data.y, data.test, data.n_features,
                                                           data.n_outputs, data.name)
    loss = loss_for(args.task)
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
        raise Failure(f"training diverged: {exc}" + ("; nothing was saved" if args.save else "")) from None
    except ValueError as exc:
        if getattr(args, "seed_drawn", False) and "a checkpoint of another run" in str(exc):
            raise Failure(f"{exc}. This run has no --seed: resume with the --seed of the run that wrote the "
                           "checkpoint (its interruption message names it)") from None
        raise
    seconds = time.perf_counter() - start
    del X_train, y_train, data.X, data.y, data.validation
    if test is None:  # the network's matrix of all training rows: the bare network, the target's units
        split, (X_eval, y_eval) = "train", data.all
        scored = fn.Sequential(*model.layers, target=model.target if args.task == "regression" else None)
    else:
        split, (X_eval, y_eval), scored = "test", test, model
    metrics = compute_metrics(scored, X_eval, y_eval, args.task, name if test is None else args.test_data)
    del data.all
    if args.save is not None:
        model.save(args.save)
        say(f"saved model to {args.save}")
    if args.plot is not None:
        history.plot(args.plot)
        say(f"drew the learning curves to {args.plot}")
    return {"dataset": name, **{f"{split}_{k}": v for k, v in metrics.items()},
            "epochs": len(history.epoch), "train_seconds": round(seconds, 3), "history": history.history,
            "model": args.save, "plot": args.plot, **({} if choice is None else {"cross_validation": choice})}


def _cross_validate(args, seeds, data, loss, say):
    """Choose a small table's epochs (and weight decay, unless --weight-decay is given) by k-fold
    cross-validation on all its rows; set ``data.epochs`` and ``args.weight_decay`` to the choice."""
    decays = selection.WEIGHT_DECAYS if args.weight_decay is None else (args.weight_decay,)
    if len(data.y) < 2 * selection.FOLDS:
        raise Failure(f"{data.name}: {len(data.y)} rows are too few to choose the epochs by {selection.FOLDS}-fold "
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
        raise Failure(f"training diverged in cross-validation: {exc}; nothing was saved") from None
    seconds = time.perf_counter() - start
    say(f"  chose weight decay {choice.weight_decay:g} and {choice.epochs} epochs; training on all {len(data.y)} "
        "rows")
    data.epochs, args.weight_decay = choice.epochs, choice.weight_decay
    return {"folds": selection.FOLDS, "weight_decay": choice.weight_decay, "epochs": choice.epochs,
            "val_loss": choice.loss, "seconds": round(seconds, 3)}


def _preprocessing_note(data):
    table = data.preprocessing
    if table is None:
        return ""
    kinds = [c["kind"] for c in table.columns_]
    parts = [f"{kinds.count('number')} numeric" + (" (standardized)" if table.standardize else ""),
             f"{kinds.count('category')} one-hot ({table.n_features_out - kinds.count('number')} features)"]
    return ", ".join(parts) + " columns; "

