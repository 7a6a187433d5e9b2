"""scikit-learn's parameter rules for the estimators: checked in ``fit``, never in ``__init__`` (its contract)."""
import numbers

import numpy as np

from fastnn._validation import FLOAT_DTYPES
from fastnn.registry import ACTIVATIONS, LOSSES, OPTIMIZERS

# scikit-learn's names for the rows of fastnn.registry it has: the activations, the losses, the stochastic solvers.
SKLEARN_ACTIVATIONS, SKLEARN_LOSSES = ACTIVATIONS.sklearn(), LOSSES.sklearn()
STOCHASTIC = tuple(OPTIMIZERS.sklearn())
SOLVERS = (*STOCHASTIC, "lbfgs")


def _real(low, high=np.inf, low_open=False, high_open=False):
    def ok(v):
        return (isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
                and (v > low if low_open else v >= low) and (v < high if high_open else v <= high))
    return ok


def _positive_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


# name -> (predicate, what was expected)
RULES = {
    "activation": (lambda v: isinstance(v, str) and v in SKLEARN_ACTIVATIONS, f"one of {sorted(SKLEARN_ACTIVATIONS)}"),
    "solver": (lambda v: isinstance(v, str) and v in SOLVERS, f"one of {sorted(SOLVERS)}"),
    "alpha": (_real(0), "a finite number >= 0"),
    "batch_size": (lambda v: v == "auto" if isinstance(v, str) else _positive_int(v), "'auto' or an int >= 1"),
    "learning_rate": (lambda v: isinstance(v, str) and v in ("constant", "invscaling", "adaptive"),
                      "'constant', 'invscaling' or 'adaptive'"),
    "learning_rate_init": (_real(0, low_open=True), "a finite number > 0"),
    "power_t": (_real(0), "a finite number >= 0"),
    "max_iter": (_positive_int, "an int >= 1"),
    "tol": (_real(0), "a finite number >= 0"),
    "momentum": (_real(0, 1), "a number in [0, 1]"),
    "validation_fraction": (_real(0, 1, low_open=True, high_open=True), "a number in (0, 1)"),
    "beta_1": (_real(0, 1, high_open=True), "a number in [0, 1)"),
    "beta_2": (_real(0, 1, high_open=True), "a number in [0, 1)"),
    "epsilon": (_real(0, low_open=True), "a finite number > 0"),
    "n_iter_no_change": (lambda v: _positive_int(v) or (isinstance(v, float) and v == np.inf),
                         "an int >= 1 or np.inf"),
    "max_fun": (_positive_int, "an int >= 1"),
    "dtype": (lambda v: v is None or np.dtype(v) in FLOAT_DTYPES, "None, np.float32 or np.float64"),
}
REGRESSOR_RULES = {**RULES, "loss": (lambda v: isinstance(v, str) and v in SKLEARN_LOSSES,
                                     f"one of {sorted(SKLEARN_LOSSES)}")}


def check_params(est, rules):
    """Raise ValueError naming the first invalid parameter of ``est``; return the hidden widths as a list."""
    for name, (ok, expected) in rules.items():
        value = getattr(est, name)
        try:
            valid = ok(value)
        except TypeError:  # e.g. np.dtype("foo") or comparing a list with a number
            valid = False
        if not valid:
            raise ValueError(f"{name} must be {expected}, got {value!r}")
    h = est.hidden_layer_sizes
    sizes = [h] if isinstance(h, numbers.Integral) else list(h) if np.iterable(h) else None
    if sizes is None or not all(_positive_int(s) for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be an int >= 1 or a sequence of them, got {h!r}")
    return sizes
