"""Input checks shared by layers, losses and the training loop.

Every check raises before anything is modified, with a message that says what
was expected and what came.
"""
import numpy as np

from fastnn._check import INT, NON_NEGATIVE, Dtype, Instance, Interval, Options, check

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


FLOAT_DTYPE = Dtype(*FLOAT_DTYPES)


def as_float_dtype(dtype):
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise ``TypeError``."""
    return check("dtype", dtype, FLOAT_DTYPE)


def as_numeric(a, name):
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}")
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"{name} must be a numeric array: {exc}") from exc
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold numbers (int or float), got dtype {arr.dtype}")
    return arr


def check_finite(arr, name):
    """Raise naming the first NaN or inf in ``arr``. Integers are always finite. A contiguous float array's sum of
    squares (one BLAS pass over its flat view: 14 against 31 ms for min and max of Fashion-MNIST as float32) is
    finite when every value is, unless it overflows (a square does from |x| > 1.8e19 in float32; many large values
    can): then min and max (which propagate NaN and reach +-inf) decide. Neither needs an n-sized boolean
    temporary (45 MiB for Fashion-MNIST); the mask is built only to report the first bad index."""
    if arr.size == 0 or arr.dtype.kind in "biu":
        return
    if arr.dtype in (np.float32, np.float64) and (arr.flags.c_contiguous or arr.flags.f_contiguous):
        flat = arr.ravel(order="K")  # a view in either order
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is not the user's problem
            total = flat.dot(flat)
        if np.isfinite(total):
            return
    if not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
        bad = np.argwhere(~np.isfinite(arr))[0]
        kind = "NaN" if np.isnan(arr[tuple(bad)]) else "inf"
        raise ValueError(f"{name} contains {kind} (first at index {tuple(int(i) for i in bad)}); "
                         "expected finite values")


def check_matrix(X, name="X", *, n_features=None, dtype=None, finite=True, convert=True):
    """Validate a 2-D numeric batch and return it C-contiguous in ``dtype``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
    n_features : int, optional
        Required column count.
    dtype : float32 or float64, optional
        Dtype of the result; default keeps a float input's dtype (ints become float64).
    finite : bool
        Reject NaN and inf.
    convert : bool or "blocks"
        With False, a C-contiguous array (a memmap too) of another int or float dtype is validated and
        returned as it is, for a caller that converts it batch by batch instead of copying it whole. With
        ``"blocks"``, an int or float array of any layout is, for a caller that converts a block of rows at a
        time.
    """
    arr = as_numeric(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_samples, n_features), got {arr.ndim}-D "
                         f"array of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {arr.shape}); expected at least one sample")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features per sample, expected {n_features} "
                         f"(shape {arr.shape})")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.float64
    if not (convert == "blocks" and arr.dtype.kind in "iuf"
            or convert is False and arr.flags.c_contiguous and arr.dtype.kind in "iuf"):
        arr = np.ascontiguousarray(arr, dtype=dtype)
    if finite and arr.dtype.kind == "f":
        check_finite(arr, name)
    return arr


def check_labels(y, n_samples, n_classes, name="y"):
    """Validate integer class labels: shape ``(n_samples,)``, values in ``[0, n_classes)``.

    Float arrays are accepted when every value is integral (``3.0``); the result is int64.
    """
    arr = as_numeric(y, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer labels of shape ({n_samples},), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} labels but the prediction has {n_samples} rows")
    if arr.dtype.kind == "f":
        check_finite(arr, name)
        if not np.array_equal(arr, np.round(arr)):
            bad = arr[arr != np.round(arr)][0]
            raise ValueError(f"{name} must hold integer class labels, found non-integer value {bad}")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0:
            raise ValueError(f"{name} has negative label {lo}; expected labels in [0, {n_classes})")
        if hi >= n_classes:
            raise ValueError(f"{name} has label {hi} out of range; expected labels in [0, {n_classes}) "
                             f"for {n_classes} outputs")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_dense_target(T, shape, dtype, name="target"):
    """Validate a dense (one-hot, probability or regression) target of exactly ``shape``."""
    arr = as_numeric(T, name)
    if arr.shape != tuple(shape):
        msg = f"{name} has shape {arr.shape}, expected {tuple(shape)} matching the prediction"
        if arr.ndim == 2 and arr.shape[0] == shape[0]:
            msg += f" (one-hot/probability width {arr.shape[1]}, expected {shape[1]})"
        raise ValueError(msg)
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, name)
    return arr


def check_sample_weight(sample_weight, n_samples, name="sample_weight"):
    """Validate per-row weights: shape (n_samples,), finite, >= 0; returned as C-contiguous float64."""
    w = as_numeric(sample_weight, name)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(f"{name} has shape {w.shape}, expected ({n_samples},): one weight per sample")
    w = np.ascontiguousarray(w, dtype=np.float64)
    check_finite(w, name)
    if w.size and w.min() < 0:
        raise ValueError(f"{name} has negative entries (first at index {int(np.argmax(w < 0))}); "
                         "expected weights >= 0")
    return w


def class_weights_for(class_weight, labels, n_classes):
    """Per-sample weights from ``class_weight``: a dict ``{class: weight}`` (absent classes weigh 1) or
    ``"balanced"``, scikit-learn's ``n_samples / (n_classes * bincount(y))`` over the classes present."""
    check("class_weight", class_weight, Instance(dict, what="a dict"), Options("balanced"))
    counts = np.bincount(labels, minlength=n_classes)
    per_class = np.ones(n_classes)
    if isinstance(class_weight, str):
        present = counts > 0
        per_class[present] = labels.shape[0] / (present.sum() * counts[present])
    else:
        for cls, weight in class_weight.items():
            cls = check("class_weight key", cls, Interval(INT, 0, n_classes, closed="left"))
            per_class[cls] = check(f"class_weight[{cls!r}]", weight, NON_NEGATIVE)
    return per_class[labels]
