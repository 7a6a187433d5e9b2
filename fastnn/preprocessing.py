"""Preprocessing that lives in the model: fitted from data (``adapt``, as Keras' ``Normalization.adapt``), saved in
the model file, applied by ``predict`` and by the ONNX export.

* :class:`Standardize` -- ``(x - mean) / std`` per column, and back (``inverse``): numeric features, or a regression
  target (``Sequential(..., target=Standardize())``: trained on the standardized target, predicting in its units).
* :class:`Table` -- a table's columns by name: missing cells imputed (median of a numeric column, most frequent
  value of a categorical one) or refused, text/categorical columns one-hot encoded (a value not seen by ``adapt``
  becomes all zeros, as scikit-learn's ``handle_unknown="ignore"``), numeric columns standardized.
* :class:`Labels` -- class labels as the user wrote them (text, integers, booleans) to class indices and back.

A table is a ``pandas.DataFrame``, a mapping of column name to 1-D array, or a 2-D numeric array whose columns are
in the order ``adapt`` saw. Each class's state is its ``get_config()`` (JSON), checked again by ``from_config`` when a
model file is read: a model file may come from anyone.
"""
import math

import numpy as np

from fastnn._check import BOOL, NONE, POSITIVE_INT, Instance, Items, check
from fastnn.columns import (_MAX_COLUMNS, _check_column, _finite_array, _is_number, _key, _keys, _keys_exactly,
                            _median, _shown, _vector, _vector_of_labels, as_columns)

__all__ = ["Standardize", "Table", "Labels", "DataError", "PREPROCESSING", "as_columns", "from_config"]

# One-hot width a categorical column may have: a column of near-unique text (names, ids) would otherwise make a
# dense matrix of n_rows x n_rows.
MAX_CATEGORIES = 1000


class DataError(ValueError):
    """A fault in one cell of the data: ``column`` (its name, or position for an unnamed array; None for a
    target), ``row`` (0-based sample index, or None) and ``reason``, so a caller can name the file's line."""

    def __init__(self, column, row, reason):
        self.column, self.row, self.reason = column, row, reason
        where = [] if column is None else [f"column {column!r}" if isinstance(column, str) else f"column {column}"]
        where += [] if row is None else [f"sample {row}"]
        super().__init__(f"{', '.join(where) or 'target'}: {reason}")


def _not_adapted(obj):
    return ValueError(f"this {type(obj).__name__} has not been adapted: call .adapt(data) first")


class Standardize:
    """Per-column ``(x - mean) / std``; Keras' ``Normalization``.

    .. math:: z = (x - \\mu) / \\sigma,\\quad \\sigma = 1 \\text{ where a column is constant}

    Parameters
    ----------
    mean, std : array_like of shape (n_columns,), optional
        Given: no ``adapt`` needed. ``std`` must be positive.

    Attributes
    ----------
    mean_, std_ : ndarray of shape (n_columns,), float64
    """

    def __init__(self, mean=None, std=None):
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither (then call adapt)")
        self.mean_ = self.std_ = None
        if mean is not None:
            self.mean_, self.std_ = _vector(mean, "mean"), _vector(std, "std", positive=True)
            if self.mean_.shape != self.std_.shape:
                raise ValueError(f"mean has {self.mean_.size} entries and std {self.std_.size}")

    def adapt(self, X):
        """Learn the mean and standard deviation (ddof 0) of each column of ``X`` (n_samples, n_columns) or of
        a 1-D ``X``; returns ``self``."""
        X = _finite_array(X, "X")
        self.mean_ = X.mean(axis=0).reshape(-1)
        std = X.std(axis=0).reshape(-1)
        self.std_ = np.where(std > 0, std, 1.0)
        return self

    @property
    def n_columns(self):
        return None if self.mean_ is None else self.mean_.size

    def _check(self, X):
        if self.mean_ is None:
            raise _not_adapted(self)
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"Standardize needs numbers, got dtype {X.dtype}")
        if (X.shape[-1] if X.ndim == 2 else 1 if X.ndim == 1 else -1) != self.mean_.size:
            raise ValueError(f"expected {self.mean_.size} column(s), got an array of shape {X.shape}")
        return X

    def __call__(self, X, dtype=None):
        """``(X - mean) / std``, computed in float64, returned in ``dtype`` (default float64)."""
        X = self._check(X)
        mean, std = (self.mean_, self.std_) if X.ndim == 2 else (self.mean_[0], self.std_[0])
        return ((X - mean) / std).astype(dtype or np.float64, copy=False)

    transform = __call__

    def inverse(self, Z, dtype=None):
        """``Z * std + mean``: standardized values back in the units ``adapt`` saw."""
        Z = self._check(Z)
        mean, std = (self.mean_, self.std_) if Z.ndim == 2 else (self.mean_[0], self.std_[0])
        return (Z * std + mean).astype(dtype or Z.dtype, copy=False)

    def get_config(self):
        if self.mean_ is None:
            raise _not_adapted(self)
        return {"mean": self.mean_.tolist(), "std": self.std_.tolist()}

    @classmethod
    def from_config(cls, config):
        _keys_exactly(config, {"mean", "std"}, cls.__name__)
        return cls(config["mean"], config["std"])

    def __repr__(self):
        return f"Standardize({'not adapted' if self.mean_ is None else f'{self.mean_.size} columns'})"


class Labels:
    """Class labels as written (text, integers, booleans) <-> class indices 0 .. k-1 (the classes sorted).

    Parameters
    ----------
    classes : list, optional
        The classes, in index order; given, no ``adapt`` is needed.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        int64, bool or object (str) dtype.
    """

    def __init__(self, classes=None):
        self.classes_ = None
        check("classes", classes, NONE, Instance(list, tuple, np.ndarray, what="a list of class labels"))
        if classes is not None:
            self._set(list(classes))

    def _set(self, classes):
        if len(classes) < 2:
            raise ValueError(f"classification needs at least two classes, got {classes!r:.80}")
        kinds = {type(c) for c in classes}
        if not (kinds <= {str} or kinds <= {bool} or (kinds <= {int} and bool not in kinds)):
            raise ValueError(f"classes must be all text, all integers or all booleans, got {classes!r:.80}")
        keys = [_key(c) for c in classes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"classes appear more than once: {classes!r:.80}")
        self.classes_ = np.array(classes, dtype=object if str in kinds else bool if bool in kinds else np.int64)
        self._index = {k: i for i, k in enumerate(keys)}

    def adapt(self, y):
        """Learn the classes of ``y`` (1-D); returns ``self``."""
        y = _vector_of_labels(y)
        if y.dtype.kind in "iub":  # integers and booleans: no text needed to find the classes
            classes = np.unique(y).tolist()
            if len(classes) < 2:
                raise ValueError(f"every target is {classes[0]!r}; classification needs at least two classes")
            self._set(classes)
            return self
        keys = _keys(y)
        if None in keys:
            raise DataError(None, keys.index(None), "empty: every sample needs its class")
        if y.dtype.kind == "f":
            bad = np.flatnonzero(y != np.round(y))
            if bad.size:
                raise DataError(None, int(bad[0]), f"{y[bad[0]]:g} is not a class label (classes are text, integers "
                                                   "or true/false); a numeric target needs regression")
        values = {}
        for k, v in zip(keys, y.tolist()):
            values.setdefault(k, v)
        classes = [int(v) if isinstance(v, float) else v for v in values.values()]
        if len(classes) < 2:
            raise ValueError(f"every target is {classes[0]!r}; classification needs at least two classes")
        try:
            classes.sort()
        except TypeError:  # mixed kinds in an object column: as text
            classes = sorted(map(str, classes))
        self._set(classes)
        return self

    @property
    def n_classes(self):
        return None if self.classes_ is None else len(self.classes_)

    def encode(self, y):
        """Class indices (int64) of the labels ``y``; a label ``adapt`` did not see is an error naming it."""
        if self.classes_ is None:
            raise _not_adapted(self)
        y = _vector_of_labels(y)
        if y.dtype.kind in "iub" and self.classes_.dtype.kind in "ib":  # no text needed
            codes = np.searchsorted(self.classes_, y).clip(0, len(self.classes_) - 1)
            bad = np.flatnonzero(self.classes_[codes] != y)
            if bad.size:
                raise DataError(None, int(bad[0]), f"{y.tolist()[bad[0]]!r} is not one of the model's classes "
                                                   f"{_shown(self.classes_.tolist())}")
            return codes.astype(np.int64)
        keys = _keys(y)
        index = self._index
        out = np.fromiter((index.get(k, -1) for k in keys), np.int64, len(keys))
        bad = np.flatnonzero(out < 0)
        if bad.size:
            what = "empty" if keys[bad[0]] is None else f"{y.tolist()[bad[0]]!r} is not one of the model's classes " \
                                                         f"{_shown(self.classes_.tolist())}"
            raise DataError(None, int(bad[0]), what)
        return out

    def decode(self, indices):
        """The labels of class ``indices``."""
        if self.classes_ is None:
            raise _not_adapted(self)
        return self.classes_[np.asarray(indices, dtype=np.int64)]

    def get_config(self):
        if self.classes_ is None:
            raise _not_adapted(self)
        return {"classes": self.classes_.tolist()}

    @classmethod
    def from_config(cls, config):
        _keys_exactly(config, {"classes"}, cls.__name__)
        if not isinstance(config["classes"], list) or len(config["classes"]) > _MAX_COLUMNS:
            raise ValueError("Labels: classes must be a list of at most 100,000 labels")
        return cls(config["classes"])

    def __repr__(self):
        return f"Labels({'not adapted' if self.classes_ is None else _shown(self.classes_.tolist())})"


class Table:
    """A table's columns, by name, to the network's input matrix.

    Parameters
    ----------
    categorical : list of str, optional
        Columns to one-hot encode even though they hold numbers (codes). Text and boolean columns always are.
    standardize : bool, default True
        Standardize numeric columns (mean and std of the training data, after imputation).
    impute : bool, default True
        Fill missing cells (NaN, None, empty text) with the training median (numeric) or most frequent value
        (categorical). False: a missing cell is an error naming its column and row.
    max_categories : int, default 1000
        A categorical column with more distinct values is refused (an identifier, most likely).

    Attributes
    ----------
    columns_ : list of dict
        One per input column, in order: ``name`` (None for a column of an unnamed array), ``kind``
        (``"number"`` or ``"category"``), ``fill`` (the imputed value, None when not imputing), ``mean``/``std``
        (numbers) or ``categories`` (their one-hot order, as text).
    n_features_out : int
        Width of the matrix ``transform`` returns: one per numeric column plus one per category.
    """

    def __init__(self, *, categorical=None, standardize=True, impute=True, max_categories=MAX_CATEGORIES):
        categorical = check("categorical", categorical, NONE,
                            Items(Instance(str, what="a column name (str)"), what="a list of column names"))
        self.categorical = None if categorical is None else list(categorical)
        self.standardize, self.impute = check("standardize", standardize, BOOL), check("impute", impute, BOOL)
        self.max_categories = check("max_categories", max_categories, POSITIVE_INT)
        self.columns_ = self.target_ = None

    # -- state -------------------------------------------------------------------------------------------
    @property
    def names(self):
        """The input column names in order (None for an array's unnamed columns)."""
        return None if self.columns_ is None else [c["name"] for c in self.columns_]

    @property
    def n_features_out(self):
        if self.columns_ is None:
            return None
        return sum(1 if c["kind"] == "number" else len(c["categories"]) for c in self.columns_)

    @property
    def feature_names_out(self):
        """``name`` for a numeric column, ``name=category`` for each one-hot output."""
        out = []
        for i, c in enumerate(self.columns_ or []):
            name = c["name"] if c["name"] is not None else f"x{i}"
            out += [name] if c["kind"] == "number" else [f"{name}={v}" for v in c["categories"]]
        return out

    def adapt(self, data, target=None):
        """Learn each column's kind, fill value, categories and scale from ``data``; returns ``self``.

        ``target`` names the target column (the label): left out of the features if ``data`` has it, its name
        kept as ``target_`` (``transform`` ignores it, as any column the table was not adapted on).
        """
        names, get = as_columns(data)
        if target is not None:
            names = [n for n in names if n != target]
            if not names:
                raise ValueError(f"no feature columns: the only column is the target {target!r}")
        unknown = sorted(set(self.categorical or ()) - set(n for n in names if n is not None))
        if unknown:
            raise ValueError(f"categorical column(s) {unknown} are not in the table (columns: {_shown(names)})")
        columns = []
        for i, name in enumerate(names):
            col, label = get(name if name is not None else i), (name if name is not None else i)
            if name in (self.categorical or ()) or col.dtype.kind not in "iuf":
                columns.append(self._adapt_category(col, name, label))
            else:
                columns.append(self._adapt_number(col, name, label))
        self.columns_, self.target_ = columns, target
        return self

    def _adapt_number(self, col, name, label):
        x = np.array(col, dtype=np.float64)  # its own contiguous copy, centred in place below
        if np.isfinite(x.sum()):  # no NaN or inf: no masks (the common case)
            fill = _median(x) if self.impute else None
            if not self.standardize:
                return {"name": name, "kind": "number", "fill": fill, "mean": 0.0, "std": 1.0}
            mean = float(x.mean())
            x -= mean
            std = math.sqrt(float(np.dot(x, x)) / x.size)
            return {"name": name, "kind": "number", "fill": fill, "mean": mean, "std": std if std > 0 else 1.0}
        missing = np.isnan(x)
        if missing.all():
            raise DataError(label, None, "no values (every cell is empty)")
        if np.isinf(x).any():
            raise DataError(label, int(np.flatnonzero(np.isinf(x))[0]), "inf is not a finite number")
        fill = None
        if missing.any():
            if not self.impute:
                raise DataError(label, int(np.flatnonzero(missing)[0]), "empty, and imputation is off")
            fill = _median(x[~missing])
            x = np.where(missing, fill, x)
        elif self.impute:
            fill = _median(x)
        mean, std = (float(x.mean()), float(x.std())) if self.standardize else (0.0, 1.0)
        return {"name": name, "kind": "number", "fill": fill, "mean": mean, "std": std if std > 0 else 1.0}

    def _adapt_category(self, col, name, label):
        keys = _keys(col)
        counts = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        missing = counts.pop(None, 0)
        if not counts:
            raise DataError(label, None, "no values (every cell is empty)")
        if missing and not self.impute:
            raise DataError(label, keys.index(None), "empty, and imputation is off")
        if len(counts) > self.max_categories:
            raise DataError(label, None, f"{len(counts):,} distinct values, more than the {self.max_categories:,} "
                                         "one-hot encoding takes (an identifier?); drop the column")
        categories = sorted(counts)
        fill = min(categories, key=lambda k: (-counts[k], k)) if self.impute else None  # most frequent, then first
        return {"name": name, "kind": "category", "fill": fill, "categories": categories}

    # -- use ---------------------------------------------------------------------------------------------
    def transform(self, data, dtype=np.float64, rows=None):
        """The network's input: ndarray of shape (n_samples, n_features_out) in ``dtype``.

        Columns are taken by name (any order; columns the table was not adapted on are ignored), or, for a
        2-D array, by position. ``rows`` (an index array) picks and orders the samples.
        """
        if self.columns_ is None:
            raise _not_adapted(self)
        _, get = as_columns(data, expect=self.names)
        first = self.columns_[0]["name"]
        n = len(get(first if first is not None else 0)) if rows is None else len(rows)
        out = np.empty((n, self.n_features_out), dtype)
        o = 0
        for i, c in enumerate(self.columns_):
            col = get(c["name"] if c["name"] is not None else i)
            if rows is not None:
                col = col[rows]
            label = c["name"] if c["name"] is not None else i
            if c["kind"] == "number":
                out[:, o] = self._number(col, c, label)
                o += 1
            else:
                k = len(c["categories"])
                out[:, o:o + k] = self._one_hot(col, c, label, dtype)
                o += k
        return out

    __call__ = transform

    def _number(self, col, c, label):
        if col.dtype.kind not in "biuf":
            try:
                col = np.array([np.nan if v is None or v == "" else float(v) for v in col.tolist()])
            except (TypeError, ValueError):
                row = next(r for r, v in enumerate(col.tolist()) if not _is_number(v))
                raise DataError(label, row, f"{col[row]!r} is not a number, and the model was trained on numbers "
                                            "there") from None
        x = col.astype(np.float64, copy=False)
        if np.isfinite(x.sum()):
            return (x - c["mean"]) / c["std"]
        missing = np.isnan(x)
        if missing.any():
            if c["fill"] is None:
                raise DataError(label, int(np.flatnonzero(missing)[0]), "empty, and the model was trained without "
                                                                         "imputation")
            x = np.where(missing, c["fill"], x)
        if np.isinf(x).any():
            raise DataError(label, int(np.flatnonzero(np.isinf(x))[0]), "inf is not a finite number")
        return (x - c["mean"]) / c["std"]

    def _one_hot(self, col, c, label, dtype):
        keys = _keys(col)
        index = {k: j for j, k in enumerate(c["categories"])}
        if c["fill"] is not None:
            index[None] = index[c["fill"]]
        idx = np.fromiter((index.get(k, -1) for k in keys), np.int64, len(keys))
        if c["fill"] is None and None in keys:
            raise DataError(label, keys.index(None), "empty, and the model was trained without imputation")
        block = np.zeros((len(keys), len(c["categories"])), dtype)
        known = np.flatnonzero(idx >= 0)
        block[known, idx[known]] = 1  # an unseen category stays all zeros
        return block

    def get_config(self):
        if self.columns_ is None:
            raise _not_adapted(self)
        return {"categorical": self.categorical, "standardize": self.standardize, "impute": self.impute,
                "max_categories": self.max_categories, "columns": self.columns_, "target": self.target_}

    @classmethod
    def from_config(cls, config):
        _keys_exactly(config, {"categorical", "standardize", "impute", "max_categories", "columns", "target"},
                      cls.__name__)
        if config["target"] is not None and not isinstance(config["target"], str):
            raise ValueError("Table: target must be a column name or null")
        if not isinstance(config["standardize"], bool) or not isinstance(config["impute"], bool):
            raise ValueError("Table: standardize and impute must be true or false")
        table = cls(categorical=config["categorical"], standardize=config["standardize"], impute=config["impute"],
                    max_categories=config["max_categories"])
        columns = config["columns"]
        if not isinstance(columns, list) or not 0 < len(columns) <= _MAX_COLUMNS:
            raise ValueError("Table: columns must be a non-empty list")
        names = [c.get("name") if isinstance(c, dict) else None for c in columns]
        if any(n is not None for n in names) and (len(set(names)) != len(names)
                                                  or not all(isinstance(n, str) for n in names)):
            raise ValueError("Table: column names must be distinct strings (or all null)")
        for i, c in enumerate(columns):
            _check_column(c, i, table.max_categories)
        if config["target"] is not None and config["target"] in names:
            raise ValueError("Table: the target is also a feature column")
        table.columns_, table.target_ = columns, config["target"]
        return table

    def __repr__(self):
        if self.columns_ is None:
            return "Table(not adapted)"
        kinds = [c["kind"] for c in self.columns_]
        return (f"Table({kinds.count('number')} numeric, {kinds.count('category')} categorical columns -> "
                f"{self.n_features_out} features)")


PREPROCESSING = {cls.__name__: cls for cls in (Standardize, Table, Labels)}


def from_config(entry, what):
    """The object ``{"class": ..., "config": ...}`` describes (from a model file), checked; ``what`` names it."""
    if not (isinstance(entry, dict) and set(entry) == {"class", "config"} and entry["class"] in PREPROCESSING
            and isinstance(entry["config"], dict)):
        raise ValueError(f"{what}: expected {{'class': one of {sorted(PREPROCESSING)}, 'config': {{...}}}}, got "
                         f"{entry!r:.80}")
    try:
        return PREPROCESSING[entry["class"]].from_config(entry["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {exc}") from None
