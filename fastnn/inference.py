"""Inference: ``predict`` through the compiled forward pass (``mlp_forward``) when the layers allow it, else layer by
layer; the plan of a model cached between calls and checked against what its layers describe at every call.

Inference is a function of its inputs: it never touches the model (no cache, no mode flipped), so another thread
may train or predict with the same model meanwhile.
"""
import threading
import weakref
from typing import NamedTuple

import numpy as np

from fastnn import fused
from fastnn import layers as _layers
from fastnn._config import blas_threads, limit_blas
from fastnn._check import POSITIVE_INT, check
from fastnn._validation import check_matrix
from fastnn.kernels import get_backend, layout
from fastnn.layers import INFERENCE

__all__ = ["probabilities", "predict", "predict_checked"]


def probabilities(outputs, kind):
    """Softmax (rows) or sigmoid (each entry) of logits, in place, with the kernels of the active backend."""
    K = get_backend()
    if kind == "softmax":
        return K.softmax_forward(outputs, outputs)
    return K.sigmoid_forward(outputs, outputs)


def predict(model, X, batch_size=1024):
    """Model outputs for ``X`` in batches; no layer keeps a reference to ``X`` afterwards."""
    plan = _forward_plan(model)
    if not (plan is not None and type(X) is np.ndarray and X.ndim == 2
            and (X.dtype is plan.dtype or X.dtype == plan.dtype)
            and X.shape[0] and X.shape[1] == plan.n_in and X.flags.c_contiguous
            and type(batch_size) is int and batch_size > 0):
        # Any other dtype or layout is converted a batch at a time: never a second copy of X.
        X = check_matrix(X, "X", n_features=model.n_features_in, dtype=model.dtype, convert="blocks")
        batch_size = check("batch_size", batch_size, POSITIVE_INT)
        return predict_checked(model, X, batch_size, plan)
    # An array already in the model's dtype and layout goes to the compiled forward before its finiteness is
    # checked: the forward says whether the first layer's pre-activations were all finite, which they are
    # whenever X is (mlp_forward), so X is read a second time, to check it, only when they were not. Checking it
    # first (the dot of the flat view) took 1.5 ms of a 10,000-row predict of 784-128-64-10 (16 ms).
    if X.shape[0] == 1 and plan.export is not None and get_backend().mlp_forward is plan.forward:
        # One row: the prebuilt export without its wrapper's checks (a third of the call), into this thread's
        # own work rows (each thread its own: another may predict with the same model meanwhile).
        work = getattr(_rows, "work", None)
        if work is None or work.dtype is not plan.dtype or work.shape[1] < plan.hidden:  # `is`: cheaper
            work = _rows.work = np.empty((2, max(plan.hidden, 64)), plan.dtype)
        out = np.empty((1, plan.n_out), plan.dtype)
        finite = plan.export(X, plan.dims, plan.acts, plan.alphas, plan.params, work, out)
    else:
        out, finite = _predict_limited(model, X, batch_size, plan)
    if not finite:  # a NaN or inf in X (raised here), else an overflow or a non-finite parameter: out stands
        check_matrix(X, "X", n_features=model.n_features_in, dtype=model.dtype, convert="blocks")
    return out


_rows = threading.local()  # .work: this thread's work rows for single-row predicts


class _Plan(NamedTuple):
    """What ``mlp_forward`` needs for a model, and what tells whether it is still the model's: the layers'
    specs (:meth:`fastnn.layers.Layer.describe`, the same objects while unchanged) and each parameter with the
    array it held. The widths are Python ints: read from ``dims`` at every call they cost a single row's predict
    more than the check does."""

    specs: tuple
    arrays: tuple  # ((Parameter, its data array), ...)
    dtype: np.dtype
    n_in: int
    n_out: int
    hidden: int  # the widest hidden layer (0: none)
    weights: int  # the largest layer's inputs x outputs (the BLAS thread rule's GEMM size)
    acts: np.ndarray
    alphas: np.ndarray
    dims: np.ndarray
    params: np.ndarray
    forward: object  # the mlp_forward of the backend active when the plan was made
    export: object  # its prebuilt export for the plan's dtype, taken without checks (None: none)


_PLANS = weakref.WeakKeyDictionary()  # model -> (_Plan, layers.CHANGES when last checked, the layers checked)


def _forward_plan(model):
    """The model's :class:`_Plan`, cached and rebuilt when a layer describes itself otherwise (a layer replaced,
    an ``alpha`` changed) or a parameter array was replaced; None when the layers are not
    ([Dropout] Linear [activation])* (see :func:`fastnn.fused.plan`).

    The full check (every layer's spec, every parameter's array: 1.5 µs, a sixth of a single row's predict) is
    skipped while nothing it looks at can have changed since it last passed: no layer dropped its spec and no
    parameter's array was replaced anywhere (:data:`fastnn.layers.CHANGES`), and the layer list holds the same
    layers."""
    changes = _layers.CHANGES  # read before any check: a change made meanwhile sends the next call here again
    entry = _PLANS.get(model)
    if entry is not None:
        plan, checked_at, layers = entry
        if checked_at == changes and model.layers == layers:
            return plan
        if fused.still(model, plan.specs):
            for p, a in plan.arrays:  # a loop, not all(...): this runs at every predict, a single row's too
                if p.data is not a:
                    break
            else:
                _PLANS[model] = (plan, changes, list(model.layers))  # one tuple: threads see it whole
                return plan
    found = fused.plan(model)
    if found is None:
        return None
    Ws = [lin.params[0].data for lin in found.linears]  # Dropout is the identity in inference
    bs = [lin.params[1].data for lin in found.linears]
    try:
        dims, params = layout.param_table(Ws, bs)
    except (TypeError, ValueError):  # e.g. a parameter array made read-only or non-contiguous by its owner
        return None
    arrays = tuple((p, p.data) for lin in found.linears for p in lin.params)
    widths = [int(d) for d in dims]
    forward = get_backend().mlp_forward
    plan = _Plan(found.specs, arrays, Ws[0].dtype, widths[0], widths[-1], max(widths[1:-1], default=0),
                 max(a * b for a, b in zip(widths, widths[1:])), found.acts, found.alphas, dims, params, forward,
                 getattr(forward, "unchecked", {}).get(Ws[0].dtype))
    _PLANS[model] = (plan, changes, list(model.layers))
    return plan


def predict_checked(model, X, batch_size, plan=False):
    """``predict`` on a checked ``X``; ``plan`` is ``_forward_plan(model)`` if the caller has it. Under the
    training step's BLAS thread rule for the machine (:func:`fastnn._config.blas_threads`), except for a single
    row, which the BLAS runs on one thread anyway and which should not pay for asking. Not lowered while other
    processes are busy, as ``fit``'s is (:func:`fastnn._cpu.threads_now`): OpenBLAS sums in another order on
    another thread count, and the same model must give the same predictions of the same rows from call to
    call (docs/performance.md, "Predictions that do not depend on the load")."""
    return _predict_limited(model, X, batch_size, _forward_plan(model) if plan is False else plan)[0]


def _predict_limited(model, X, batch_size, plan):
    """``(outputs, whether the first layer's pre-activations were all finite)`` (see :func:`_predict_on`)."""
    if X.shape[0] < 2:
        return _predict_on(model, X, batch_size, plan)
    with limit_blas(blas_threads(min(batch_size, X.shape[0]), None if plan is None else plan.weights)):
        return _predict_on(model, X, batch_size, plan)


def _predict_on(model, X, batch_size, plan):
    """``(outputs, finite)``: ``finite`` is what the compiled forward says of the first layer's pre-activations
    when ``X`` went through it in one call, else True (``X`` was checked: converted in batches, or the layers one
    by one)."""
    if plan is not None:  # compiled calls through every layer
        dims, dtype, forward = plan.dims, plan.dtype, get_backend().mlp_forward
        work = np.empty((2, min(batch_size, X.shape[0]) * plan.hidden), dtype)
        out = np.empty((X.shape[0], plan.n_out), dtype)
        if X.dtype == dtype and X.flags.c_contiguous:  # one call
            # Every array here is the plan's or made just above, X checked by the caller: the prebuilt export
            # can be called without its wrapper's checks.
            if plan.export is not None and forward is plan.forward and X.ndim == 2:
                return out, plan.export(X, dims, plan.acts, plan.alphas, plan.params, work, out)
            return out, forward(X, dims, plan.acts, plan.alphas, plan.params, work, out)
        for s in range(0, X.shape[0], batch_size):  # a batch converted at a time
            forward(np.ascontiguousarray(X[s:s + batch_size], dtype), dims, plan.acts, plan.alphas, plan.params,
                    work, out[s:s + batch_size])
        return out, True
    # Inference: Dropout is the identity whatever mode the model is in, and no layer caches anything; said to
    # the layers through a context variable, so the model itself (maybe training in another thread) is not touched.
    token = INFERENCE.set(True)
    try:
        return _predict_batches(model, X, batch_size), True
    finally:
        INFERENCE.reset(token)


def _predict_batches(model, X, batch_size):
    out = None
    dtype = model.dtype or (X.dtype if X.dtype.kind == "f" else np.float64)  # a model without parameters
    for s in range(0, X.shape[0], batch_size):
        o = model._forward(np.ascontiguousarray(X[s:s + batch_size], dtype))
        if out is None:
            out = np.empty((X.shape[0], o.shape[1]), o.dtype)
        out[s:s + batch_size] = o
    return out
