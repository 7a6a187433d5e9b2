"""scikit-learn's parameter rules for the estimators: checked in ``fit``, never in ``__init__`` (its contract).

The rules are :mod:`fastnn._check` constraints, as everywhere in fastnn; a fault is raised as scikit-learn raises
it, an ``InvalidParameterError`` (both a ``ValueError`` and a ``TypeError``) worded as scikit-learn words it.
"""
import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

from fastnn._check import (NON_NEGATIVE, NONE, POSITIVE, POSITIVE_INT, REAL, Interval, Items, Options, check,
                           expected, meets, problem, shown)
from fastnn._validation import FLOAT_DTYPE
from fastnn.registry import ACTIVATIONS, LOSSES, OPTIMIZERS

# scikit-learn's names for the rows of fastnn.registry it has: the activations, the losses, the stochastic solvers.
SKLEARN_ACTIVATIONS, SKLEARN_LOSSES = ACTIVATIONS.sklearn(), LOSSES.sklearn()
STOCHASTIC = tuple(OPTIMIZERS.sklearn())
SOLVERS = (*STOCHASTIC, "lbfgs")
_BETA = Interval(REAL, 0, 1, closed="left")

# name -> the constraints one of which the value must meet (scikit-learn's _parameter_constraints, in fastnn's terms)
RULES = {
    "hidden_layer_sizes": (POSITIVE_INT, Items(POSITIVE_INT, what="a sequence of integers >= 1")),
    "activation": (Options(*sorted(SKLEARN_ACTIVATIONS)),),
    "solver": (Options(*sorted(SOLVERS)),),
    "alpha": (NON_NEGATIVE,),
    "batch_size": (Options("auto"), POSITIVE_INT),
    "learning_rate": (Options("constant", "invscaling", "adaptive"),),
    "learning_rate_init": (POSITIVE,),
    "power_t": (NON_NEGATIVE,),
    "max_iter": (POSITIVE_INT,),
    "tol": (NON_NEGATIVE,),
    "momentum": (Interval(REAL, 0, 1),),
    "validation_fraction": (Interval(REAL, 0, 1, closed="neither"),),
    "beta_1": (_BETA,),
    "beta_2": (_BETA,),
    "epsilon": (POSITIVE,),
    "n_iter_no_change": (POSITIVE_INT, Options(np.inf, kind=float)),
    "max_fun": (POSITIVE_INT,),
    "dtype": (NONE, FLOAT_DTYPE),
}
REGRESSOR_RULES = {**RULES, "loss": (Options(*SKLEARN_LOSSES),)}


def check_params(est, rules):
    """Raise scikit-learn's ``InvalidParameterError`` naming the first invalid parameter of ``est``; return the
    hidden widths as a list."""
    for name, constraints in rules.items():
        value = getattr(est, name)
        try:
            check(name, value, *constraints)
        except (TypeError, ValueError):
            # problem() is None when only an item is wrong (hidden_layer_sizes=(10, 0)): the whole value is shown
            wanted = (problem(value, *constraints) or (None, expected(constraints)))[1]
            raise InvalidParameterError(f"The {name!r} parameter of {type(est).__name__} must be {wanted}. "
                                        f"Got {shown(value, False)} instead.") from None
    h = est.hidden_layer_sizes
    return [int(h)] if meets(h, POSITIVE_INT) else [int(s) for s in h]
