"""The training core: what trains a fit's batches, built once per fit and driven epoch by epoch.

:class:`TrainingCore` owns the compiled step of :mod:`fastnn.fused` (its plan, workspace and buffers) when the
model, loss and optimizer allow it, else the layer-by-layer path on the layers', loss's and optimizer's own
kernels, and says why (:attr:`TrainingCore.fallback`). :func:`fastnn.train.fit` (``Sequential.fit``) and the
scikit-learn estimators' ``fit`` and ``partial_fit`` all train through it: the data is not checked again, the
buffers not made again and no optimizer state translated between epochs (the optimizer and the parameter arrays
still describe themselves to the step at every call, so a changed rate or a replaced array takes effect).
"""
import math
import sys

import numpy as np

from fastnn import fused
from fastnn.kernels import codes
from fastnn.layers import Dropout, Linear
from fastnn.optim import clip_grad_norm as _clip_grad_norm

# A sparse X goes to the compiled step densified a run of whole batches at a time, into a buffer of about this
# size: one call (and one toarray) per run instead of per batch.
SPARSE_BYTES = 32 << 20

__all__ = ["TrainingCore", "linears", "dropouts", "hits", "accuracy_units", "labels_for_accuracy"]


def _issparse(X):
    """``scipy.sparse.issparse`` without importing SciPy (``import fastnn`` stays light, and ``setup.py``'s
    build environment has none): a SciPy sparse matrix can only exist once SciPy is imported."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def dropouts(model):
    """``[(Dropout layer, number of Linear layers before it)]``: the index the step keys its masks by."""
    found, linears = [], 0
    for layer in model.layers:
        if isinstance(layer, Dropout):
            found.append((layer, linears))
        linears += isinstance(layer, Linear)
    return found


def linears(model):
    """The model's ``Linear`` layers, in order."""
    return [layer for layer in model.layers if isinstance(layer, Linear)]


def _rows(X, idx, out):
    """``out[:] = X[idx]`` in ``out``'s dtype; a sparse ``X`` densified here, a batch at a time."""
    if _issparse(X) and X.dtype == out.dtype:
        out[...] = 0
        X[idx].toarray(out=out)  # adds into out
    elif _issparse(X):
        out[...] = X[idx].toarray()
    elif X.dtype == out.dtype:
        np.take(X, idx, axis=0, out=out)
    else:
        out[...] = X[idx]  # a batch at a time, converted to the model's dtype


class TrainingCore:
    """The batches of one fit: the compiled step, or layer by layer.

    Parameters
    ----------
    model : Sequential
    loss : Loss
    optimizer : Optimizer or None
        None: no training, only :meth:`loss_and_gradient` (the full-batch L-BFGS of the estimators).
    X : ndarray or scipy sparse matrix of shape (n_samples, n_features), checked by the caller
        A sparse ``X`` (CSR) is densified a run of whole batches at a time (:data:`SPARSE_BYTES`) and handed to
        the compiled step a run per call.
    T : ndarray of shape (n_samples,) int labels or (n_samples, n_outputs), as ``loss.check_target`` gives it
    sample_weight : float64 ndarray of shape (n_samples,) or None
    batch_size : int
    clip_norm : float or None
    nonfinite : {"stop", "continue"}
        On a non-finite batch loss, stop before that batch's update (fastnn's ``fit``) or, layer by layer,
        go on updating as scikit-learn does.

    Attributes
    ----------
    fast_path : bool
        Whether the compiled step trains the batches.
    fallback : str or None
        Why it does not (None when it does).
    compiled_by : str or None
        ``"aot"``, ``"jit"`` or ``"numpy"``: which code ran the compiled step's last call.
    n_batches : int
    batch_rows : int64 ndarray of shape (n_batches,)
        The rows of each batch (the last may be smaller).
    """

    def __init__(self, model, loss, optimizer, X, T, sample_weight, batch_size, clip_norm=None, nonfinite="stop"):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.X, self.T, self.sw, self.batch_size, self.clip_norm = X, T, sample_weight, batch_size, clip_norm
        self.nonfinite = nonfinite
        self.n_samples = X.shape[0]
        self.n_batches = -(-self.n_samples // batch_size)
        self.batch_rows = np.minimum(batch_size, self.n_samples - batch_size * np.arange(self.n_batches))
        self.labels = labels_for_accuracy(T) if loss.accuracy == "argmax" else None  # what the step counts hits by
        self.dropouts = dropouts(model)
        self._general = None
        self.compiled_by = None
        if optimizer is None:
            self._compiled, self.fallback = None, "no optimizer: full-batch gradients only"
        else:
            self._compiled = fused.make_runner(model, loss, optimizer, X, T, self.labels, sample_weight,
                                               batch_size, clip_norm)
            self.fallback = None if self._compiled is not None else (
                fused.refusal(model, loss, optimizer, T) or "the compiled step is not available")
        if self._compiled is not None and _issparse(X):
            itemsize = np.dtype(model.dtype).itemsize
            rows = max(1, SPARSE_BYTES // (itemsize * max(X.shape[1], 1)) // batch_size) * batch_size
            self._batch = np.empty((min(rows, self.n_samples), X.shape[1]), model.dtype)
            self._order = np.arange(self._batch.shape[0])
            self._sums, self._weights = np.empty(self.n_batches), np.empty(self.n_batches)

    @property
    def fast_path(self):
        return self._compiled is not None

    def fall_back(self, reason):
        """Train layer by layer from now on (e.g. to go on, as scikit-learn does, past a diverged loss)."""
        self._compiled, self.fallback = None, reason

    def run(self, order, b0, b1, after_step=None, seed=0):
        """Train batches ``b0 .. b1-1`` of ``order``: ``(loss_sums, weight_sums, n_correct, n_done)``.

        ``loss_sums[i]`` is batch ``b0 + i``'s ``sum w_j l_j``, ``weight_sums[i]`` its ``sum w_j``; both hold
        ``n_done`` batches plus the failing one when ``n_done < b1 - b0`` (a non-finite loss, its update not
        applied). ``after_step()`` runs after each batch (a per-batch schedule); ``seed`` keys the dropout masks.
        The arrays are valid until the next call.
        """
        if self._compiled is None:
            if self._general is None:
                self._general = self._general_runner()
            return self._general(order, b0, b1, after_step, seed)
        if _issparse(self.X):
            return self._run_sparse(order, b0, b1, after_step, seed)
        out = self._compiled(order, b0, b1, after_step, seed)
        self.compiled_by = self._compiled.compiled_by
        return out

    def _run_sparse(self, order, b0, b1, after_step, seed):
        """The compiled step over runs of batches densified from the sparse rows into one buffer (about
        ``SPARSE_BYTES``): the step takes dense rows only (CSR arrays would widen its one signature)."""
        correct, bs, done_all = 0, self.batch_size, 0
        per_call = max(1, self._batch.shape[0] // bs)
        for c0 in range(b0, b1, per_call):
            c1 = min(c0 + per_call, b1)
            idx = order[c0 * bs:c1 * bs]
            m = idx.shape[0]
            _rows(self.X, idx, self._batch[:m])
            data = fused.step_data(self._batch[:m], self.T[idx], None if self.labels is None else self.labels[idx],
                                   None if self.sw is None else self.sw[idx], self.model.dtype)
            sums, weights, c, done = self._compiled(self._order[:m], 0, c1 - c0, after_step, seed, data)
            k = sums.shape[0]
            self._sums[done_all:done_all + k], self._weights[done_all:done_all + k] = sums, weights
            correct += c
            done_all += done
            if done < c1 - c0:
                return self._sums[:done_all + 1], self._weights[:done_all + 1], correct, done_all
        self.compiled_by = self._compiled.compiled_by
        return self._sums[:done_all], self._weights[:done_all], correct, done_all

    def _general_runner(self):
        """Layer-by-layer ``run`` with the compiled runner's contract, on buffers made once."""
        model, loss, optimizer, X, T, sw, bs = self.model, self.loss, self.optimizer, self.X, self.T, self.sw, \
            self.batch_size
        rows = min(bs, X.shape[0])
        xbuf = np.empty((rows, X.shape[1]), model.dtype)
        tbuf = np.empty((rows,) + T.shape[1:], T.dtype)
        sums, weights = np.empty(self.n_batches), np.empty(self.n_batches)
        keep_going = self.nonfinite == "continue"

        def run(order, b0, b1, after_step=None, seed=0):
            correct = 0
            for b in range(b0, b1):
                idx = order[b * bs:(b + 1) * bs]
                m = idx.shape[0]
                Xb, Tb = xbuf[:m], np.take(T, idx, axis=0, out=tbuf[:m])
                _rows(X, idx, Xb)
                wb = None if sw is None else sw[idx]
                for layer, l in self.dropouts:  # the compiled step's masks: the same key and row offset
                    layer.set_mask_key(Dropout.stream_key(seed, l), b * bs)
                out = model._forward(Xb)
                value = loss._forward(out, Tb, wb)
                weights[b - b0] = m if wb is None else float(wb.sum())
                sums[b - b0] = value * weights[b - b0]
                if not math.isfinite(value) and not keep_going:
                    return sums[:b - b0 + 1], weights[:b - b0 + 1], correct, b - b0
                model._backward(loss.backward())
                if self.clip_norm:
                    _clip_grad_norm(optimizer.params, self.clip_norm)
                optimizer.step(batch_weight=weights[b - b0])
                if after_step is not None:
                    after_step()
                correct += hits(loss, out, Tb)
            return sums[:b1 - b0], weights[:b1 - b0], correct, b1 - b0

        return run

    def loss_and_gradient(self, weight_decays=(), block_rows=2048):
        """``(loss, penalty)`` of the full data, layer by layer; their gradient left in every parameter's ``grad``.

        ``loss`` is the weighted mean loss; ``penalty`` scikit-learn's L2 term ``sum wd ||p||^2 / 2`` over the
        data's total weight, for ``weight_decays`` (one per parameter of ``model.parameters()``, or empty).
        Dense ``X`` is one block (as scikit-learn computes it); a sparse one is densified ``block_rows`` rows at a time, the
        gradients summed over the blocks.
        """
        model, X, n = self.model, self.X, self.n_samples
        params = model.parameters()
        total_weight = n if self.sw is None else float(self.sw.sum())
        step = block_rows if _issparse(X) else max(n, 1)
        acc = [np.zeros_like(p.grad) for p in params] if step < n else None
        total = 0.0
        for start in range(0, n, step):
            idx = slice(start, min(start + step, n))
            Xb = X[idx].toarray() if _issparse(X) else np.ascontiguousarray(X[idx], model.dtype)
            wb = None if self.sw is None else self.sw[idx]
            block_weight = Xb.shape[0] if wb is None else float(wb.sum())
            value = self.loss._forward(model._forward(Xb.astype(model.dtype, copy=False)), self.T[idx], wb)
            total += value * block_weight
            grad = self.loss.backward()
            if block_weight != total_weight:  # the block's mean -> its share of the whole
                grad *= grad.dtype.type(block_weight / total_weight)
            model._backward(grad)
            if acc is not None:
                for a, p in zip(acc, params):
                    a += p.grad
        if acc is not None:
            for a, p in zip(acc, params):
                p.grad[...] = a
        penalty = 0.0
        for p, wd in zip(params, weight_decays):
            if wd:
                penalty += 0.5 * wd * float(np.vdot(p.data, p.data)) / total_weight
                p.grad += p.grad.dtype.type(wd / total_weight) * p.data
        return total / total_weight, penalty



def labels_for_accuracy(T):
    return T if T.ndim == 1 else T.argmax(axis=1)


def hits(loss, out, T):
    """Right answers in a batch: rows whose argmax is the label, or binary outputs on the right side of 1/2."""
    if loss.accuracy == "argmax":
        return int((out.argmax(axis=1) == labels_for_accuracy(T)).sum())
    if loss.accuracy == "binary":
        cut = 0.0 if loss.describe(T, out.shape[1]).kind == codes.LOSS_BCE_LOGITS else 0.5
        return int(((out > cut) == (T > 0.5)).sum())
    return 0


def accuracy_units(loss, T):
    """What :func:`hits` counts out of: one decision per row, or per output for binary losses."""
    return T.shape[0] * (T.shape[1] if loss.accuracy == "binary" else 1)
