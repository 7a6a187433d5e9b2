"""Tables as columns: ``as_columns`` (a DataFrame, a mapping or a 2-D array, seen as named 1-D columns) and the cell
and config checks :mod:`fastnn.preprocessing` builds on."""
import collections.abc
import math
import numbers

import numpy as np

from fastnn._check import FINITE, NONE, POSITIVE, Items, check, meets, shown

__all__ = ["as_columns"]

# Columns a table may have (a config read from a file is checked against it).
_MAX_COLUMNS = 100_000


def as_columns(data, expect=None):
    """``(names, get)``: the column names of ``data`` (None entries: an array's unnamed columns) and
    ``get(name_or_position) -> 1-D ndarray``.

    With ``expect`` (the names a Table was adapted on): every expected column must be present, by name (a
    DataFrame or mapping) -- the error names the missing ones -- or by count (a 2-D array).
    """
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # a pandas DataFrame, without importing pandas
        columns = [str(c) for c in data.columns]
        if len(set(columns)) != len(columns):
            raise ValueError(f"column names appear more than once: {_shown(columns)}")
        data = {str(c): data[c].to_numpy() for c in data.columns}
    if isinstance(data, collections.abc.Mapping):
        present = list(data)
        if expect is not None and any(n is not None for n in expect):
            missing = [n for n in expect if n not in data]
            if missing:
                raise ValueError(f"column(s) {_shown(missing)} missing: the model was trained on "
                                 f"{_shown(expect)}; the data has {_shown(present)}")
        return present, lambda name: _column(data[name], name)
    X = np.asarray(data)
    if X.ndim != 2 or X.dtype.kind not in "biufOUS":
        raise ValueError(f"a table must be a DataFrame, a mapping of column name to 1-D array, or a 2-D array; got "
                         f"{type(data).__name__} of shape {X.shape}")
    if expect is not None:
        if any(n is not None for n in expect) and X.dtype.kind not in "biuf":
            raise ValueError("the model takes named columns: pass a DataFrame or a mapping of name to column")
        if X.shape[1] != len(expect):
            raise ValueError(f"{X.shape[1]} columns, but the model takes {len(expect)}"
                             + (f": {_shown(expect)}" if any(n is not None for n in expect) else ""))
        return list(expect), lambda key: X[:, key if isinstance(key, int) else expect.index(key)]
    return [None] * X.shape[1], lambda i: X[:, i]


def _column(values, name):
    col = np.asarray(values)
    if col.ndim != 1:
        raise ValueError(f"column {name!r} has shape {col.shape}; expected 1-D")
    return col


def _key(value):
    """The text a category or label is matched by: ``3``, ``3.0`` and ``"3"`` alike; booleans as true/false;
    None for a missing value (None, NaN, empty text)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (numbers.Integral, np.integer)):
        return str(int(value))
    if isinstance(value, (numbers.Real, np.floating)):
        v = float(value)
        return None if math.isnan(v) else str(int(v)) if v.is_integer() else repr(v)
    text = str(value)
    return text if text != "" else None


def _keys(col):
    """``_key`` of every entry of the 1-D array ``col``, as a list (vectorised for numeric dtypes)."""
    if col.dtype.kind in "iu":
        return col.astype(str).tolist()
    if col.dtype.kind == "b":
        return np.where(col, "true", "false").tolist()
    return [_key(v) for v in col.tolist()]


def _median(x):
    """``np.median(x)`` of a finite 1-D float64 ``x``, exactly, without reordering ``x``.

    One partition at the upper middle rank ``k``; for an even size the lower middle value is the largest of the
    ``k`` values before it. (NumPy's partition at the two ranks at once, as ``np.median`` does, is about six
    times slower: docs/performance.md.)
    """
    k = x.size // 2
    part = np.partition(x, k)
    return float(part[k]) if x.size % 2 else float((part[:k].max() + part[k]) / 2)


def _vector_of_labels(y):
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"class labels must be 1-D (one per sample), got shape {y.shape}")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)  # 0.0, 1.0, ... as a numeric reader gives integers: the classes 0, 1, ...
    return y


def _is_number(v):
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _shown(items, limit=8):
    items = list(items)
    text = ", ".join(repr(i) for i in items[:limit])
    return f"[{text}{', ...' if len(items) > limit else ''}]"


def _finite_array(X, name):
    X = np.asarray(X, dtype=np.float64) if not hasattr(X, "to_numpy") else X.to_numpy(dtype=np.float64)
    if X.ndim not in (1, 2) or X.shape[0] == 0:
        raise ValueError(f"{name} must be 1-D or 2-D with at least one row, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or inf; impute it first (Table(impute=True))")
    return X


def _vector(values, name, positive=False):
    """Standardize's ``mean`` or ``std``: 1 to ``_MAX_COLUMNS`` finite numbers (> 0 with ``positive``), float64."""
    vector = Items(POSITIVE if positive else FINITE, what=f"a list of 1 to {_MAX_COLUMNS:,} numbers, each "
                                                          f"{POSITIVE if positive else FINITE}")
    values = np.ravel(values) if isinstance(values, np.ndarray) else values
    if vector.accepts(values) and not 0 < len(values) <= _MAX_COLUMNS:  # its length before its items
        raise ValueError(f"{name} must be {vector}, got {shown(values, False)} ({len(values):,} numbers)")
    return np.asarray(check(name, values, vector), dtype=np.float64)


def _keys_exactly(config, keys, what):
    if not isinstance(config, dict) or set(config) != keys:
        raise ValueError(f"{what} config must have exactly the keys {sorted(keys)}, got "
                         f"{sorted(config) if isinstance(config, dict) else type(config).__name__}")


def _check_column(c, i, max_categories):
    """A column entry of a Table config read from a file: exactly the keys its kind has, values in range."""
    if not isinstance(c, dict) or c.get("kind") not in ("number", "category"):
        raise ValueError(f"Table: column {i} is not a {{'kind': 'number' | 'category', ...}} entry")
    if c["kind"] == "number":
        _keys_exactly(c, {"name", "kind", "fill", "mean", "std"}, f"Table column {i}")
        if not (meets(c["mean"], FINITE) and meets(c["std"], POSITIVE) and meets(c["fill"], NONE, FINITE)):
            raise ValueError(f"Table: column {i}: mean, std (> 0) and fill must be finite numbers")
    else:
        _keys_exactly(c, {"name", "kind", "fill", "categories"}, f"Table column {i}")
        cats = c["categories"]
        if not (isinstance(cats, list) and 0 < len(cats) <= max_categories and all(isinstance(v, str) and v
                                                                                  for v in cats)
                and len(set(cats)) == len(cats)):
            raise ValueError(f"Table: column {i}: categories must be 1 to {max_categories} distinct non-empty strings")
        if c["fill"] is not None and c["fill"] not in cats:
            raise ValueError(f"Table: column {i}: fill {c['fill']!r:.40} is not one of its categories")
