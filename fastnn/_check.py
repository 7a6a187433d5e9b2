"""The one argument checker: declarative constraints, modelled on scikit-learn's ``Interval``/``StrOptions``.

``check(name, value, *constraints)`` returns the value (normalized: ``int``, ``float``, ``np.dtype``, ``bool``) if
any one constraint accepts it, and otherwise raises with one rule, everywhere in fastnn:

- no constraint accepts the value's *type* -> ``TypeError``;
- the type is right but the value is out of range, not finite or not among the options -> ``ValueError``.

The message names the argument, what was expected and what came::

    lr must be a finite number >= 0, got 'fast' (str)
    p must be a number in [0, 1), got 1.5
    anneal_strategy must be 'cos' or 'linear', got 'exp'
    loss must be a fastnn Loss or one of 'BCELoss', 'BCEWithLogitsLoss', 'MSELoss', ..., got 'hinge'

``bool`` is never a number, and a number never a bool.
"""
import math
import numbers
import os
from collections.abc import Sequence

import numpy as np

__all__ = ["Interval", "Options", "Instance", "Items", "Dtype", "BOOL", "PATH", "CALLABLE", "NONE", "NUMBER", "SEED",
           "INT", "REAL", "FINITE", "NON_NEGATIVE", "POSITIVE", "FRACTION", "COUNT", "POSITIVE_INT",
           "check", "meets", "parse", "problem", "expected", "shown"]

INT, REAL = "int", "real"


class Constraint:
    """``accepts(value)``: is the type right; ``valid(value)``: is a value of that type in range;
    ``normalize(value)``: the value returned; ``str(constraint)``: what is expected, as a noun phrase."""

    def accepts(self, value):
        raise NotImplementedError

    def valid(self, value):
        return True

    def normalize(self, value):
        return value


def _is_number(value):
    # exact float and int first: the ABC check costs a per-batch hyper-parameter read more than the rest
    return type(value) in (float, int) or (isinstance(value, numbers.Real)
                                           and not isinstance(value, (bool, np.bool_)))


def _is_int(value):
    return type(value) is int or isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _num(x):
    return f"{x:g}" if isinstance(x, float) else str(x)


class Interval(Constraint):
    """A number of ``kind`` (``"int"`` or ``"real"``) between ``low`` and ``high`` (None: unbounded).

    ``closed`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"`` as in scikit-learn. A real is always
    finite: NaN and inf are out of range (``ValueError``). An int never accepts a float (``2.0``): ``TypeError``.
    """

    def __init__(self, kind, low=None, high=None, *, closed="both"):
        assert kind in (INT, REAL) and closed in ("both", "left", "right", "neither")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def accepts(self, value):
        return _is_int(value) if self.kind == INT else _is_number(value)

    def valid(self, value):
        try:
            v = int(value) if self.kind == INT else float(value)
        except OverflowError:
            return False
        low_ok = self.low is None or (v >= self.low if self.closed in ("both", "left") else v > self.low)
        high_ok = self.high is None or (v <= self.high if self.closed in ("both", "right") else v < self.high)
        return (self.kind == INT or math.isfinite(v)) and low_ok and high_ok

    def normalize(self, value):
        return int(value) if self.kind == INT else float(value)

    def __str__(self):
        noun = "an integer" if self.kind == INT else "a number"
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return f"{noun} in {'[' if left else '('}{_num(self.low)}, {_num(self.high)}{']' if right else ')'}"
        noun = noun if self.kind == INT else "a finite number"
        if self.low is not None:
            return f"{noun} {'>=' if left else '>'} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {'<=' if right else '<'} {_num(self.high)}"
        return noun


class Options(Constraint):
    """One of ``choices`` (compared with ``==``); the type is ``kind`` (default ``str``)."""

    def __init__(self, *choices, kind=str):
        self.choices, self.kind = choices, kind

    def accepts(self, value):
        return isinstance(value, self.kind) and not (self.kind is not bool and isinstance(value, (bool, np.bool_)))

    def valid(self, value):
        return any(value == c for c in self.choices)

    def __str__(self):
        shown_choices = [repr(c) if isinstance(c, str) else _num(c) for c in self.choices]
        if len(shown_choices) <= 2:
            return " or ".join(shown_choices)
        return "one of " + ", ".join(shown_choices)


class Instance(Constraint):
    """An instance of one of ``types``; ``what`` says it in words (default: the class names)."""

    def __init__(self, *types, what=None):
        self.types = types
        self.what = what or " or ".join(("an " if t.__name__[0] in "AEIOUaeiou" else "a ") + t.__name__ for t in types)

    def accepts(self, value):
        return isinstance(value, self.types)

    def __str__(self):
        return self.what


class Items(Constraint):
    """A sequence (list, tuple, range, 1-D array; ``length`` items if given) whose every item meets ``item``;
    returns a tuple."""

    def __init__(self, item, *, length=None, what=None):
        self.item, self.length = item, length
        count = "" if length is None else f"{length} "
        self.what = what or f"a sequence of {count}items, each {item}"

    def accepts(self, value):
        return (isinstance(value, Sequence) and not isinstance(value, (str, bytes))
                or isinstance(value, np.ndarray) and value.ndim == 1)

    def valid(self, value):
        return self.length is None or len(value) == self.length

    def normalize(self, value, name="value"):
        return tuple(check(f"{name}[{i}]", v, self.item) for i, v in enumerate(value))

    def __str__(self):
        return self.what


class Dtype(Constraint):
    """A NumPy dtype among ``dtypes`` (anything ``np.dtype`` takes, except None); returns the ``np.dtype``.

    A dtype is a type: another one (``np.int32``) is a ``TypeError``, as NumPy's own are.
    """

    def __init__(self, *dtypes):
        self.dtypes = tuple(np.dtype(d) for d in dtypes)

    def accepts(self, value):
        if value is None:
            return False
        try:
            return np.dtype(value) in self.dtypes
        except (TypeError, ValueError):
            return False

    def normalize(self, value):
        return np.dtype(value)

    def __str__(self):
        return " or ".join(d.name for d in self.dtypes)


class _Predicate(Constraint):
    def __init__(self, what, accepts, normalize=lambda v: v):
        self.what, self.accepts, self.normalize = what, accepts, normalize

    def __str__(self):
        return self.what


BOOL = _Predicate("True or False", lambda v: isinstance(v, (bool, np.bool_)), bool)
PATH = _Predicate("a path (str or os.PathLike)", lambda v: isinstance(v, (str, os.PathLike)))
CALLABLE = _Predicate("callable", callable)
NONE = _Predicate("None", lambda v: v is None)
NUMBER = _Predicate("a number", _is_number, float)  # NaN and inf too: a metric, not a setting
SEED = (NONE, Interval(INT, 0, None),
        Instance(np.random.Generator, np.random.SeedSequence, np.random.BitGenerator, what="a numpy Generator"))


# The ranges most arguments share.
FINITE = Interval(REAL)
NON_NEGATIVE, POSITIVE = Interval(REAL, 0, None), Interval(REAL, 0, None, closed="neither")
FRACTION = Interval(REAL, 0, 1, closed="left")  # [0, 1): a momentum, a beta, a dropout or validation fraction
COUNT, POSITIVE_INT = Interval(INT, 0, None), Interval(INT, 1, None)


def shown(value, with_type):
    """``value`` as a message shows it: its repr, cut at 60 characters, then its type on a ``TypeError``; only
    the type's name where the repr is long or an ``<object at ...>``."""
    r = value.__name__ if isinstance(value, type) else str(value) if isinstance(value, np.dtype) else repr(value)
    if with_type and (len(r) > 60 or "\n" in r or r.startswith("<")):
        return type(value).__name__
    r = r if len(r) <= 60 else r[:57] + "..."
    return f"{r} ({type(value).__name__})" if with_type else r


def expected(constraints):
    return " or ".join(str(c) for c in constraints)


def _flat(constraints):
    return [c for group in constraints for c in (group if isinstance(group, tuple) else (group,))]


def meets(value, *constraints):
    """Whether :func:`check` would accept ``value``: for the checks of a file's contents, which are a
    ``ValueError`` whatever the type found."""
    return any(c.accepts(value) and c.valid(value) for c in _flat(constraints))


def problem(value, *constraints):
    """None if some constraint accepts ``value``, else ``(error class, what was expected, what came)``: the
    pieces of :func:`check`'s message, for a caller that words it its own way (the scikit-learn estimators)."""
    flat = _flat(constraints)
    typed = [c for c in flat if c.accepts(value)]
    if any(c.valid(value) for c in typed):
        return None
    return (ValueError if typed else TypeError), expected(flat), shown(value, not typed)


def check(name, value, *constraints):
    """Return ``value`` (normalized by the first constraint that takes it) or raise ``TypeError``/``ValueError``.

    A constraint may be a tuple of constraints (``SEED``); several constraints mean that any one may match.
    """
    for group in constraints:
        for c in group if type(group) is tuple else (group,):
            if c.accepts(value) and c.valid(value):
                return c.normalize(value, name) if type(c) is Items else c.normalize(value)
    error, wanted, came = problem(value, *constraints)
    raise error(f"{name} must be {wanted}, got {came}")


def parse(text, *constraints, name=None):
    """The value a text (a command-line argument, an environment variable) spells, checked: an ``Interval``
    reads it as an int or a float, an ``Options`` as it is. Any fault is a ``ValueError`` (the text is the
    right type), worded as :func:`check`'s with the text as typed; without ``name`` the message starts at
    "must be" (argparse names the option)."""
    for c in constraints:
        try:
            value = (int(text) if c.kind == INT else float(text)) if isinstance(c, Interval) else text
        except ValueError:
            continue
        if c.accepts(value) and c.valid(value):
            return c.normalize(value)
    raise ValueError(f"{name + ' ' if name else ''}must be {expected(constraints)}, got {text!r}")
