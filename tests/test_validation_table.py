"""One rule for every public argument: a wrong type is a ``TypeError``; the right type out of range, not finite or not
among the options is a ``ValueError``; the message names the argument, what was expected and what came.

The table feeds bad values to every public constructor, ``fit``/``predict``/``evaluate`` keyword, the estimators
(scikit-learn's ``InvalidParameterError``) and the command line; a walk of the public signatures checks that no
argument is missing from it. Then the checker itself, and that no module keeps a number validator of its own.
"""
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn import _check as C
from fastnn import lr_scheduler as ls
from fastnn import preprocessing as pre

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


def _params():
    return [fn.Parameter(np.zeros((2, 2)), "W")]


def _sgd(**kw):
    return fn.SGD(_params(), **{"lr": 0.1, **kw})


def _model():
    return fn.Sequential(fn.Linear(3, 2, seed=0))


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype(np.float32), np.arange(8) % 2


def _fit(**kw):
    model = _model()
    X, y = _data()
    args = {"X": X, "y": y, "loss": fn.SoftmaxCrossEntropy(), "optimizer": fn.SGD(model.parameters(), lr=0.1),
            "verbose": 0, **kw}
    return model.fit(**args)


def _one_cycle(**kw):
    steps = {"epochs": 2, "steps_per_epoch": 5} if {"epochs", "steps_per_epoch"} & set(kw) else {"total_steps": 10}
    return ls.OneCycleLR(**{"optimizer": _sgd(momentum=0.9), "max_lr": 1.0, **steps, **kw})


# owner name -> a function taking the argument under test as a keyword
CALLS = {
    "Linear": lambda **kw: fn.Linear(**{"in_features": 2, "out_features": 2, **kw}),
    "Parameter": lambda **kw: fn.Parameter(**{"data": np.zeros(2), **kw}),
    "LeakyReLU": fn.LeakyReLU, "ELU": fn.ELU, "GELU": fn.GELU, "Dropout": fn.Dropout,
    "Loss": fn.Loss, "MSELoss": fn.MSELoss, "NLLLoss": fn.NLLLoss, "BCEWithLogitsLoss": fn.BCEWithLogitsLoss,
    "BCELoss": fn.BCELoss, "PoissonLoss": fn.PoissonLoss,
    "Sequential": lambda **kw: fn.Sequential(fn.Linear(2, 2), **kw),
    "SGD": _sgd,
    "Adam": lambda **kw: fn.Adam(_params(), **kw),
    "AdamW": lambda **kw: fn.AdamW(_params(), **kw),
    "clip_grad_norm": lambda **kw: fn.clip_grad_norm(_params(), **kw),
    "EarlyStopping": fn.EarlyStopping,
    "set_backend": fn.set_backend,
    "backend": lambda **kw: fn.backend(**kw).__enter__(),
    "get_backend": fn.get_backend,
    "gradcheck": lambda **kw: fn.gradcheck(**{"model": _model(), "loss": fn.SoftmaxCrossEntropy(),
                                              "X": _data()[0], "y": _data()[1], **kw}),
    "export_onnx": lambda **kw: fn.export_onnx(**{"model": _model(), "path": "unused.onnx", **kw}),
    "load": lambda **kw: fn.load(**{"path": "no-such-file.npz", **kw}),
    "Standardize": lambda **kw: pre.Standardize(**{"mean": [0.0], "std": [1.0], **kw}),
    "Table": pre.Table,
    "Labels": pre.Labels,
    "LRScheduler": lambda **kw: ls.LRScheduler(**{"optimizer": _sgd(), **kw}),
    "StepLR": lambda **kw: ls.StepLR(**{"optimizer": _sgd(), "step_size": 2, **kw}),
    "MultiStepLR": lambda **kw: ls.MultiStepLR(**{"optimizer": _sgd(), "milestones": [1, 2], **kw}),
    "ExponentialLR": lambda **kw: ls.ExponentialLR(**{"optimizer": _sgd(), "gamma": 0.9, **kw}),
    "CosineAnnealingLR": lambda **kw: ls.CosineAnnealingLR(**{"optimizer": _sgd(), "T_max": 5, **kw}),
    "LinearLR": lambda **kw: ls.LinearLR(**{"optimizer": _sgd(), **kw}),
    "OneCycleLR": _one_cycle,
    "ReduceLROnPlateau": lambda **kw: ls.ReduceLROnPlateau(**{"optimizer": _sgd(), **kw}),
    "LearningRateScheduler": lambda **kw: ls.LearningRateScheduler(**{"schedule": lambda e: 0.1, **kw}),
    "Sequential.fit": _fit,
    "Sequential.predict": lambda **kw: _model().predict(**{"X": _data()[0], **kw}),
    "Sequential.predict_proba": lambda **kw: _model().predict_proba(**{"X": _data()[0],
                                                                       "loss": fn.SoftmaxCrossEntropy(), **kw}),
    "Sequential.evaluate": lambda **kw: _model().evaluate(**{"X": _data()[0], "y": _data()[1],
                                                             "loss": fn.SoftmaxCrossEntropy(), **kw}),
    "Sequential.summary": lambda **kw: _model().summary(**kw),
    "Sequential.save": lambda **kw: _model().save(**kw),
    "Sequential.astype": lambda **kw: _model().astype(**kw),
    "Sequential.train": lambda **kw: _model().train(**kw),
}

T, V = TypeError, ValueError
# (owner, argument, bad value, exception); the message must say "<argument> must be" and show the value
TABLE = [
    ("Linear", "in_features", 0, V), ("Linear", "in_features", 2.0, T), ("Linear", "in_features", True, T),
    ("Linear", "out_features", -1, V), ("Linear", "out_features", "2", T),
    ("Linear", "init", "orthogonal", V), ("Linear", "init", 3, T),
    ("Linear", "seed", -1, V), ("Linear", "seed", "0", T), ("Linear", "seed", 1.5, T),
    ("Linear", "dtype", np.int32, T), ("Linear", "dtype", "float16", T), ("Linear", "dtype", None, T),
    ("Parameter", "name", 3, T),
    ("LeakyReLU", "negative_slope", -0.1, V), ("LeakyReLU", "negative_slope", NAN, V),
    ("LeakyReLU", "negative_slope", "0.1", T), ("LeakyReLU", "negative_slope", True, T),
    ("ELU", "alpha", INF, V), ("ELU", "alpha", -1, V), ("ELU", "alpha", None, T),
    ("GELU", "approximate", "none", V), ("GELU", "approximate", True, T),
    ("Dropout", "p", 1.0, V), ("Dropout", "p", -0.1, V), ("Dropout", "p", NAN, V), ("Dropout", "p", "0.5", T),
    ("Dropout", "p", True, T), ("Dropout", "seed", -2, V), ("Dropout", "seed", "x", T),
    ("Loss", "outputs", "max", V), ("Loss", "outputs", 1, T),
    ("MSELoss", "outputs", "median", V), ("MSELoss", "half", 1, T), ("MSELoss", "half", "yes", T),
    ("NLLLoss", "eps", 0, V), ("NLLLoss", "eps", 1.0, V), ("NLLLoss", "eps", NAN, V), ("NLLLoss", "eps", "1e-7", T),
    ("BCEWithLogitsLoss", "outputs", "avg", V), ("BCEWithLogitsLoss", "outputs", None, T),
    ("BCELoss", "outputs", "avg", V), ("PoissonLoss", "outputs", 0, T),
    ("Sequential", "preprocessing", "standardize", T), ("Sequential", "target", 3, T),
    ("SGD", "lr", -0.5, V), ("SGD", "lr", NAN, V), ("SGD", "lr", INF, V), ("SGD", "lr", "fast", T),
    ("SGD", "lr", None, T), ("SGD", "lr", True, T),
    ("SGD", "momentum", -0.1, V), ("SGD", "momentum", "0.9", T),
    ("SGD", "weight_decay", -1, V), ("SGD", "weight_decay", [0.1], T),
    ("SGD", "nesterov", 1, T), ("SGD", "velocity", "no", T), ("SGD", "sample_decay", None, T),
    ("Adam", "lr", -1e-3, V), ("Adam", "lr", "1e-3", T),
    ("Adam", "betas", 0.9, T), ("Adam", "betas", (0.9,), V), ("Adam", "betas", "ab", T),
    ("Adam", "eps", 0.0, V), ("Adam", "eps", INF, V), ("Adam", "eps", None, T),
    ("Adam", "weight_decay", -0.1, V), ("Adam", "eps_hat", 0, T), ("Adam", "sample_decay", "on", T),
    ("AdamW", "lr", NAN, V), ("AdamW", "betas", [0.9, 0.999, 0.9], V), ("AdamW", "eps", "0", T),
    ("AdamW", "weight_decay", -0.01, V), ("AdamW", "eps_hat", 1.0, T), ("AdamW", "sample_decay", 0, T),
    ("clip_grad_norm", "max_norm", 0, V), ("clip_grad_norm", "max_norm", NAN, V),
    ("clip_grad_norm", "max_norm", "1", T),
    ("EarlyStopping", "monitor", 3, T), ("EarlyStopping", "patience", -1, V), ("EarlyStopping", "patience", 1.5, T),
    ("EarlyStopping", "min_delta", -1e-3, V), ("EarlyStopping", "min_delta", NAN, V),
    ("EarlyStopping", "min_delta", "0", T), ("EarlyStopping", "mode", "low", V), ("EarlyStopping", "mode", 1, T),
    ("EarlyStopping", "restore_best_weights", 1, T),
    ("set_backend", "name", "cuda", V), ("set_backend", "name", 3, T),
    ("backend", "name", "gpu", V), ("get_backend", "name", 1, T),
    ("gradcheck", "model", "model", T), ("gradcheck", "loss", "mse", T),
    ("gradcheck", "eps", 0.0, V), ("gradcheck", "eps", "1e-6", T),
    ("export_onnx", "path", 3, T),
    ("load", "path", 3, T), ("load", "allow_nonfinite", "yes", T),
    ("Standardize", "mean", "abc", T), ("Standardize", "mean", [], V), ("Standardize", "std", [0.0], V),
    ("Table", "categorical", "city", T), ("Table", "standardize", 1, T), ("Table", "impute", "yes", T),
    ("Table", "max_categories", 0, V), ("Table", "max_categories", 2.5, T),
    ("Labels", "classes", "ab", T),
    ("LRScheduler", "optimizer", "sgd", T), ("LRScheduler", "interval", "step", V),
    ("LRScheduler", "interval", 1, T),
    ("StepLR", "step_size", 0, V), ("StepLR", "step_size", 2.5, T), ("StepLR", "gamma", 0.0, V),
    ("StepLR", "gamma", "0.1", T),
    ("MultiStepLR", "milestones", 5, T), ("MultiStepLR", "milestones", [-1, 2], V),
    ("MultiStepLR", "milestones", [1, 2.5], T), ("MultiStepLR", "gamma", NAN, V),
    ("ExponentialLR", "gamma", -0.5, V), ("ExponentialLR", "gamma", None, T),
    ("CosineAnnealingLR", "T_max", 0, V), ("CosineAnnealingLR", "T_max", "10", T),
    ("CosineAnnealingLR", "eta_min", -1e-3, V),
    ("LinearLR", "start_factor", 0.0, V), ("LinearLR", "start_factor", "1", T), ("LinearLR", "end_factor", 1.5, V),
    ("LinearLR", "total_iters", 0, V), ("LinearLR", "total_iters", 2.0, T),
    ("OneCycleLR", "max_lr", 0.0, V), ("OneCycleLR", "max_lr", "1", T), ("OneCycleLR", "total_steps", 0, V),
    ("OneCycleLR", "epochs", 0, V), ("OneCycleLR", "steps_per_epoch", 1.5, T),
    ("OneCycleLR", "pct_start", 1.2, V), ("OneCycleLR", "anneal_strategy", "exp", V),
    ("OneCycleLR", "anneal_strategy", None, T), ("OneCycleLR", "cycle_momentum", 1, T),
    ("OneCycleLR", "base_momentum", 1.0, V), ("OneCycleLR", "max_momentum", -0.1, V),
    ("OneCycleLR", "div_factor", 0, V), ("OneCycleLR", "final_div_factor", "1e4", T),
    ("OneCycleLR", "three_phase", "no", T),
    ("ReduceLROnPlateau", "mode", "low", V), ("ReduceLROnPlateau", "factor", 1.0, V),
    ("ReduceLROnPlateau", "factor", "0.5", T), ("ReduceLROnPlateau", "patience", -1, V),
    ("ReduceLROnPlateau", "threshold", -1e-4, V), ("ReduceLROnPlateau", "threshold_mode", "pct", V),
    ("ReduceLROnPlateau", "cooldown", 1.0, T), ("ReduceLROnPlateau", "min_lr", [0.0], T),
    ("ReduceLROnPlateau", "eps", INF, V), ("ReduceLROnPlateau", "monitor", 3, T),
    ("LearningRateScheduler", "schedule", 0.1, T), ("LearningRateScheduler", "verbose", -1, V),
    ("LearningRateScheduler", "verbose", True, T),
    ("Sequential.fit", "X", "abc", T), ("Sequential.fit", "loss", "hinge", V), ("Sequential.fit", "loss", 3, T),
    ("Sequential.fit", "optimizer", "adam", T),
    ("Sequential.fit", "epochs", 0, V), ("Sequential.fit", "epochs", 2.0, T), ("Sequential.fit", "epochs", True, T),
    ("Sequential.fit", "batch_size", -1, V), ("Sequential.fit", "batch_size", "32", T),
    ("Sequential.fit", "shuffle", "yes", T), ("Sequential.fit", "validation_split", 1.0, V),
    ("Sequential.fit", "validation_split", NAN, V), ("Sequential.fit", "validation_split", "0.1", T),
    ("Sequential.fit", "early_stopping", -1, V), ("Sequential.fit", "early_stopping", "yes", T),
    ("Sequential.fit", "seed", -1, V), ("Sequential.fit", "seed", 0.5, T),
    ("Sequential.fit", "verbose", 3, V), ("Sequential.fit", "verbose", True, T),
    ("Sequential.fit", "clip_grad_norm", 0.0, V), ("Sequential.fit", "clip_grad_norm", INF, V),
    ("Sequential.fit", "clip_grad_norm", "1", T), ("Sequential.fit", "checkpoint", 3, T),
    ("Sequential.fit", "resume", "yes", T),
    ("Sequential.fit", "class_weight", "heavy", V), ("Sequential.fit", "class_weight", 3, T),
    ("Sequential.predict", "batch_size", 0, V), ("Sequential.predict", "batch_size", 1.5, T),
    ("Sequential.predict_proba", "loss", "hinge", V), ("Sequential.predict_proba", "batch_size", -5, V),
    ("Sequential.evaluate", "batch_size", 0, V), ("Sequential.evaluate", "loss", 3, T),
    ("Sequential.summary", "print_fn", "stdout", T),
    ("Sequential.save", "path", 3, T), ("Sequential.astype", "dtype", "int8", T),
    ("Sequential.train", "mode", 1, T),
]
# every scheduler: its optimizer and its interval (ReduceLROnPlateau and LearningRateScheduler step per epoch only)
TABLE += [(owner, "optimizer", "sgd", T) for owner in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
                                                       "LinearLR", "OneCycleLR", "ReduceLROnPlateau")]
TABLE += [(owner, "interval", interval, error) for owner in ("StepLR", "MultiStepLR", "ExponentialLR",
                                                             "CosineAnnealingLR", "LinearLR", "OneCycleLR")
          for interval, error in (("step", V), (None, T))]

# Arguments the table leaves to the array checks (tests/test_validation.py) or that take anything
NOT_IN_TABLE = {
    ("Parameter", "data"), ("Sequential", "layers"), ("Optimizer", "params"), ("SGD", "params"), ("Adam", "params"),
    ("AdamW", "params"), ("clip_grad_norm", "parameters"), ("gradcheck", "X"), ("gradcheck", "y"),
    ("export_onnx", "model"), ("TrainingTerminated", "signum"), ("TrainingTerminated", "message"),
    ("TrainingTerminated", "history"), ("Sequential.fit", "y"), ("Sequential.fit", "validation_data"),
    ("Sequential.fit", "callbacks"), ("Sequential.fit", "sample_weight"), ("Sequential.fit", "allow_changes"),
    ("Sequential.predict", "X"), ("Sequential.predict_proba", "X"), ("Sequential.evaluate", "X"),
    ("Sequential.evaluate", "y"), ("Sequential.evaluate", "sample_weight"), ("ReduceLROnPlateau", "interval"),
}


# where the message calls the argument by what it is rather than by its parameter name
ALIASES = {("set_backend", "name"): "backend", ("backend", "name"): "backend", ("get_backend", "name"): "backend"}


def _id(row):
    owner, name, bad, error = row
    return f"{owner}-{name}={bad!r}-{error.__name__}"


@pytest.mark.parametrize("row", TABLE, ids=_id)
def test_bad_argument_raises_by_the_rule(row, tmp_path, monkeypatch):
    owner, name, bad, error = row
    monkeypatch.chdir(tmp_path)  # export_onnx/save/load of a bad path write or read nothing elsewhere
    try:
        with pytest.raises((TypeError, ValueError)) as info:
            CALLS[owner](**{name: bad})
    finally:
        fn.set_backend("numba")
    assert type(info.value) in (error,), f"{owner}({name}={bad!r}): {type(info.value).__name__}: {info.value}"
    message, said = str(info.value), ALIASES.get((owner, name), name)
    item = re.search(rf"\b{re.escape(said)}\[\d+\] must be ", message)  # an item's fault shows the item
    assert item or re.search(rf"\b{re.escape(said)} (must be|must hold|contains) ", message), message
    if name == "X":  # the array checks name the type of a non-array
        assert type(bad).__name__ in message, message
    elif not item:
        assert C.shown(bad, error is TypeError).split(" (")[0] in message, message


def _public_signatures():
    """(owner, parameter) for every public class and function of fastnn and fastnn.lr_scheduler, and
    Sequential's methods."""
    owners = {n: getattr(fn, n) for n in fn.__all__ if n not in ("MLPClassifier", "MLPRegressor")}
    owners.update({n: getattr(ls, n) for n in ls.__all__})
    owners.update({f"Sequential.{m}": getattr(fn.Sequential, m) for m in
                   ("fit", "predict", "predict_proba", "evaluate", "summary", "save", "astype", "train")})
    for owner, obj in owners.items():
        if not callable(obj) or inspect.ismodule(obj):
            continue
        for p in inspect.signature(obj).parameters.values():
            if p.name != "self":
                yield owner, p.name


def test_the_table_covers_every_public_argument():
    covered = {(owner, name) for owner, name, _, _ in TABLE}
    missing = sorted(set(_public_signatures()) - covered - NOT_IN_TABLE)
    assert not missing, f"no bad value in TABLE for {missing}"


def test_bad_fit_arguments_leave_the_model_untouched():
    for owner, name, bad, _ in TABLE:
        if owner != "Sequential.fit" or name == "X":
            continue
        model = _model()
        before = [p.data.copy() for p in model.parameters()]
        X, y = _data()
        with pytest.raises((TypeError, ValueError)):
            model.fit(X, y, **{"loss": fn.SoftmaxCrossEntropy(), "optimizer": fn.SGD(model.parameters(), lr=0.1),
                               "verbose": 0, name: bad})
        assert all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters())), name


# -- the estimators: scikit-learn's InvalidParameterError, in its wording ----------------------------------
ESTIMATOR_BAD = [
    ("hidden_layer_sizes", (10, 0)), ("hidden_layer_sizes", "10"), ("activation", "softplus"), ("activation", 1),
    ("solver", "newton"), ("alpha", -1), ("alpha", "x"), ("alpha", NAN), ("batch_size", 0), ("batch_size", "all"),
    ("learning_rate", "cosine"), ("learning_rate_init", 0), ("power_t", -0.5), ("max_iter", 2.5), ("max_iter", 0),
    ("tol", -1e-4), ("momentum", 1.5), ("validation_fraction", 1.0), ("beta_1", 1.0), ("beta_2", -0.1),
    ("epsilon", 0.0), ("n_iter_no_change", 0), ("n_iter_no_change", -INF), ("max_fun", 0), ("dtype", np.int32),
]


@pytest.mark.parametrize("name, bad", ESTIMATOR_BAD, ids=[f"{n}={b!r}" for n, b in ESTIMATOR_BAD])
@pytest.mark.parametrize("estimator", ["MLPClassifier", "MLPRegressor"])
def test_estimator_parameters_raise_sklearns_error(estimator, name, bad):
    pytest.importorskip("sklearn")
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = _data()
    est = getattr(fn, estimator)(**{name: bad})  # scikit-learn's contract: __init__ only stores
    with pytest.raises(InvalidParameterError) as info:
        est.fit(X, y)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    message = str(info.value)
    assert message.startswith(f"The {name!r} parameter of {estimator} must be "), message
    assert f"Got {C.shown(bad, False)} instead." in message, message


def test_regressor_loss_is_checked():
    pytest.importorskip("sklearn")
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="The 'loss' parameter of MLPRegressor must be 'squared_error' "
                                                    "or 'poisson'. Got 'hinge' instead."):
        fn.MLPRegressor(loss="hinge").fit(*_data())


# -- the command line: argparse's error, exit 2, the same wording -----------------------------------------
CLI_BAD = [
    ("train", "--epochs", "0"), ("train", "--epochs", "2.5"), ("train", "--batch-size", "-1"),
    ("train", "--lr", "-1"), ("train", "--lr", "nan"), ("train", "--lr", "inf"), ("train", "--lr", "fast"),
    ("train", "--momentum", "-0.5"), ("train", "--weight-decay", "x"), ("train", "--validation-split", "1"),
    ("train", "--early-stopping", "-1"), ("train", "--seed", "-3"), ("train", "--seed", "0.5"),
    ("evaluate", "--batch-size", "0"), ("predict", "--batch-size", "1e3"), ("bench", "--threads", "0"),
]


@pytest.mark.parametrize("command, option, text", CLI_BAD)
def test_cli_numbers_are_checked_by_the_same_constraints(capsys, command, option, text):
    from fastnn.cli.parser import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, option, text])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(rf"argument {re.escape(option)}: must be (a|an) .*, got {re.escape(repr(text))}", err), err


# -- the checker itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("constraints, value, error, message", [
    ((C.NON_NEGATIVE,), "fast", TypeError, "lr must be a finite number >= 0, got 'fast' (str)"),
    ((C.NON_NEGATIVE,), -1, ValueError, "lr must be a finite number >= 0, got -1"),
    ((C.NON_NEGATIVE,), NAN, ValueError, "lr must be a finite number >= 0, got nan"),
    ((C.NON_NEGATIVE,), INF, ValueError, "lr must be a finite number >= 0, got inf"),
    ((C.NON_NEGATIVE,), True, TypeError, "lr must be a finite number >= 0, got True (bool)"),
    ((C.FRACTION,), 1.5, ValueError, "lr must be a number in [0, 1), got 1.5"),
    ((C.Interval(C.REAL, 0, 1, closed="neither"),), 0, ValueError, "lr must be a number in (0, 1), got 0"),
    ((C.Interval(C.REAL, None, 1, closed="neither"),), 2, ValueError, "lr must be a finite number < 1, got 2"),
    ((C.Interval(C.REAL),), INF, ValueError, "lr must be a finite number, got inf"),
    ((C.POSITIVE_INT,), 2.0, TypeError, "lr must be an integer >= 1, got 2.0 (float)"),
    ((C.Interval(C.INT, 0, 2),), 3, ValueError, "lr must be an integer in [0, 2], got 3"),
    ((C.Options("mse", "cross_entropy", "bce"),), "hinge", ValueError,
     "lr must be one of 'mse', 'cross_entropy', 'bce', got 'hinge'"),
    ((C.Options("min", "max"),), b"min", TypeError, "lr must be 'min' or 'max', got b'min' (bytes)"),
    ((C.Options("auto"), C.POSITIVE_INT), 0, ValueError, "lr must be 'auto' or an integer >= 1, got 0"),
    ((C.Options("auto"), C.POSITIVE_INT), 1.5, TypeError, "lr must be 'auto' or an integer >= 1, got 1.5 (float)"),
    ((C.Instance(int, str),), [], TypeError, "lr must be an int or a str, got [] (list)"),
    ((C.BOOL,), 1, TypeError, "lr must be True or False, got 1 (int)"),
    ((C.Dtype(np.float32),), np.float64, TypeError, "lr must be float32, got float64 (type)"),
    ((C.SEED,), -1, ValueError, "lr must be None or an integer >= 0 or a numpy Generator, got -1"),
    ((C.PATH,), 3, TypeError, "lr must be a path (str or os.PathLike), got 3 (int)"),
    ((C.Items(C.FRACTION, length=2),), (0.5, 1.0), ValueError, "lr[1] must be a number in [0, 1), got 1.0"),
    ((C.Items(C.FRACTION, length=2),), (0.5,), ValueError,
     "lr must be a sequence of 2 items, each a number in [0, 1), got (0.5,)"),
    ((C.Items(C.FRACTION),), "ab", TypeError, "lr must be a sequence of items, each a number in [0, 1), got 'ab'"),
    ((C.Instance(int),), object(), TypeError, "lr must be an int, got object"),
])
def test_check_messages(constraints, value, error, message):
    with pytest.raises(error) as info:
        C.check("lr", value, *constraints)
    assert str(info.value).startswith(message), str(info.value)
    assert not (error is ValueError and isinstance(info.value, TypeError))


@pytest.mark.parametrize("constraints, value, expected", [
    ((C.NON_NEGATIVE,), np.float32(0.5), 0.5), ((C.POSITIVE_INT,), np.int64(3), 3), ((C.BOOL,), np.bool_(True), True),
    ((C.Dtype(np.float32, np.float64),), "float64", np.dtype(np.float64)),
    ((C.Items(C.COUNT),), np.array([1, 2]), (1, 2)), ((C.Items(C.COUNT),), range(3), (0, 1, 2)),
    ((C.NONE, C.POSITIVE), None, None), ((C.Options(math.inf, kind=float),), math.inf, math.inf),
])
def test_check_returns_the_normalized_value(constraints, value, expected):
    out = C.check("x", value, *constraints)
    assert out == expected and type(out) is type(expected)


def test_seed_takes_a_generator_and_bool_is_never_a_number():
    rng = np.random.default_rng(0)
    assert C.check("seed", rng, C.SEED) is rng
    for c in (C.NON_NEGATIVE, C.COUNT, C.NUMBER, C.Options(1, kind=int)):
        with pytest.raises(TypeError):
            C.check("x", True, c)


def test_meets_problem_and_parse():
    assert C.meets(3, C.POSITIVE_INT) and not C.meets(0, C.POSITIVE_INT) and not C.meets("3", C.POSITIVE_INT)
    assert C.problem(0.5, C.FRACTION) is None
    assert C.problem(2, C.FRACTION) == (ValueError, "a number in [0, 1)", "2")
    assert C.problem("a", C.FRACTION) == (TypeError, "a number in [0, 1)", "'a' (str)")
    assert C.parse("3", C.POSITIVE_INT) == 3 and C.parse("0.25", C.FRACTION) == 0.25
    assert C.parse("auto", C.Options("auto"), C.POSITIVE_INT) == "auto"
    for text in ("0", "2.5", "x", ""):
        with pytest.raises(ValueError, match=f"^N must be an integer >= 1, got {re.escape(repr(text))}$"):
            C.parse(text, C.POSITIVE_INT, name="N")
    with pytest.raises(ValueError, match="^must be a number in"):
        C.parse("nan", C.FRACTION)


def test_long_values_are_cut_in_messages():
    with pytest.raises(TypeError) as info:
        C.check("x", list(range(1000)), C.NON_NEGATIVE)
    assert str(info.value) == "x must be a finite number >= 0, got list"
    with pytest.raises(ValueError) as info:
        C.check("x", "y" * 1000, C.Options("a", "b"))
    assert len(str(info.value)) < 100


# -- one checker: no module keeps its own number validator -------------------------------------------------
def test_no_number_validator_outside_check():
    """``isinstance(v, numbers.Real)``, ``(int, float)`` and friends belong to ``fastnn/_check.py``; the one
    exception maps a cell to its text key (3, 3.0 and "3" alike), which checks nothing."""
    pattern = re.compile(r"numbers\.(Real|Integral|Number)|isinstance\([^)]*\((int, float|float, int)")
    allowed = {("columns.py", "_key")}
    found = []
    for path in sorted((ROOT / "fastnn").rglob("*.py")):
        rel = path.relative_to(ROOT / "fastnn")
        if rel.parts[0] in ("kernels", "benchmarks") or rel.name == "_check.py":
            continue
        function = None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if m := re.match(r"\s*def (\w+)", line):
                function = m.group(1)
            if pattern.search(line) and (rel.name, function) not in allowed:
                found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
