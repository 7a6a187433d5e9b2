"""The compiled training step: workspaces for ``train_batches`` and the runner ``fit`` calls.

Each object describes itself: layers by their type and activation ``code`` (and ``alpha``), the loss by
:meth:`fastnn.losses.Loss.step_code`, the optimizer by :meth:`fastnn.optim.Optimizer.describe`, asked
afresh at every call.

Eligible: ``Linear`` layers, each optionally preceded by a ``Dropout`` and followed by one activation of
``layers.ACTIVATIONS``, the last ``Linear`` producing logits for ``SoftmaxCrossEntropy``, ``BCEWithLogitsLoss``
or ``MSELoss`` (or followed by a ``Sigmoid`` for ``BCELoss``); ``SGD``, ``Adam`` or ``AdamW`` over exactly the
model's parameters (in any order of parameter groups); sample weights, per-batch schedules, gradient clipping,
and data of another dtype (converted batch by batch). Anything else trains through the layer-by-layer path in
:mod:`fastnn.train`.
"""
import contextlib
import sys

import numpy as np

from fastnn._config import blas_threads, limit_blas
from fastnn.kernels import codes, get_step, layout
from fastnn.layers import ACTIVATIONS, Dropout, Linear
from fastnn.losses import LOSSES
from fastnn.optim import OPTIMIZERS

__all__ = ["make_runner"]

# Exact types: a subclass may compute something else.
_FUSABLE_ACTIVATIONS = tuple(cls for cls, _ in ACTIVATIONS.values())


_NOTICE = []


def _compile_notice():
    """A context in which the first Numba compilation of the process is announced on stderr, once. Numba's
    ``numba:compile`` event starts only after a miss in its on-disk cache, so a cached step stays silent;
    the ahead-of-time step (Numba not even imported) has nothing to announce."""
    if "numba" not in sys.modules:
        return contextlib.nullcontext()
    from numba.core import event  # noqa: PLC0415  (only where the JIT is in use)

    if not _NOTICE:
        class Notice(event.Listener):
            said = False

            def on_start(self, ev):
                if not self.said:
                    self.said = True
                    print("fastnn: compiling the training step for this model (first run only: Numba caches it "
                          "on disk)...", file=sys.stderr, flush=True)

            def on_end(self, ev):
                pass

        _NOTICE.append(Notice())
    return event.install_listener("numba:compile", _NOTICE[0])


def _plan(model):
    """``(linears, acts, alphas, drops)`` when the layers are ([Dropout] Linear [activation])*, else None."""
    linears, acts, alphas, drops = [], [], [], []
    drop = None
    for layer in model.layers:
        if type(layer) is Linear:
            linears.append(layer)
            acts.append(codes.IDENTITY)
            alphas.append(0.0)
            drops.append(drop)
            drop = None
        elif type(layer) in _FUSABLE_ACTIVATIONS and linears and acts[-1] == codes.IDENTITY and drop is None:
            acts[-1], alphas[-1] = layer.code, layer.alpha
        elif type(layer) is Dropout and drop is None:
            drop = layer
        else:
            return None
    if not linears or drop is not None:  # a dropout on the output: layer by layer
        return None
    return linears, np.array(acts, np.int64), np.array(alphas, np.float64), drops


def make_runner(model, loss, optimizer, X, T, labels, sw, batch_size, clip_norm=None):
    """Return ``run(order, b0, b1, after_step=None, seed=0) -> (loss_sums, n_correct, n_done)`` for the
    compiled step, or None.

    ``loss_sums`` and ``n_correct`` are per-batch arrays of length ``n_done``
    (plus the failing batch when ``n_done < b1 - b0``). The optimizer describes itself for every
    batch, so hyper-parameters changed between calls apply; ``after_step()`` (a per-batch schedule)
    is called after describing each batch, ahead of the compiled call that trains them all. ``seed``
    keys the dropout masks of the epoch (:meth:`fastnn.layers.Dropout.stream_key`).
    """
    plan = _plan(model)
    loss_kind = loss.step_code(T) if type(loss) in LOSSES.values() else None  # exact types, as for layers
    if plan is None or loss_kind is None:
        return None
    if type(optimizer) not in OPTIMIZERS.values():  # a subclass may override step()
        return None
    # The step takes optimizer state in the model's parameter order; parameter groups may list them otherwise.
    position = {id(p): i for i, p in enumerate(optimizer.params)}
    if len(position) != len(model.parameters()) or any(id(p) not in position for p in model.parameters()):
        return None
    by_model = [position[id(p)] for p in model.parameters()]
    linears, acts, alphas, dropouts = plan
    dtype = model.dtype
    n_samples, widths = X.shape[0], [X.shape[1]] + [lin.out_features for lin in linears]
    # X of another dtype (float64 data, uint8 pixels) is gathered and converted batch by batch by the step.
    if X.dtype == dtype:
        Xraw, raw_kind = np.zeros((0, 0), np.uint8), 0
    elif X.dtype in codes.RAW_DTYPES:  # its bytes: the step views them in their dtype
        Xraw, raw_kind = X.view(np.uint8), codes.RAW_DTYPES.index(X.dtype)
        X = np.zeros((0, 0), dtype)
    else:  # a rarer dtype (float16, int16, ...) is converted once
        X, Xraw, raw_kind = np.ascontiguousarray(X, dtype), np.zeros((0, 0), np.uint8), 0
    if acts[-1] != (codes.SIGMOID if loss_kind == codes.LOSS_BCE else codes.IDENTITY):
        return None  # the loss takes logits; BCELoss the output of a last Sigmoid, whose backward it folds in
    labels = labels if labels is not None else np.zeros(0, np.int64)
    # Dense targets in float64 whatever their dtype: exact for every input type, and one compiled step.
    dense = np.ascontiguousarray(T, np.float64) if T.ndim == 2 else np.zeros((0, 0))
    sw = sw if sw is not None else np.zeros(0)
    step = get_step()
    rows = min(batch_size, n_samples)  # a batch larger than the data is the whole data
    drops = np.array([0.0 if d is None else d.p for d in dropouts])
    work, woff = layout.workspace(widths, acts, drops, rows, dtype)
    keys = np.zeros(len(linears), np.uint64)
    n_batches = -(-n_samples // batch_size)
    losses, weights, correct = np.empty(n_batches), np.empty(n_batches), np.empty(n_batches, np.int64)
    hyper = np.empty((n_batches, len(codes.HYPER)))
    threads = blas_threads(batch_size)

    def run(order, b0, b1, after_step=None, seed=0):
        spec = optimizer.describe()
        rows = hyper[:b1 - b0]
        if after_step is None:
            rows[:] = codes.pack_hyper(spec.hyper)
        else:
            for i in range(b1 - b0):
                codes.pack_hyper(optimizer.hyper(), rows[i])
                after_step()
        rows[:, codes.H_CLIP_NORM] = clip_norm or 0.0
        keys[:] = [Dropout.stream_key(seed, l) for l in range(len(keys))]
        # The table is rebuilt (and every array checked) at each call: a parameter or state array replaced
        # between calls is read where it now is.
        S1, S2 = ([state[k] for k in by_model] for state in spec.state)
        dims, params = layout.param_table([lin.W.data for lin in linears], [lin.b.data for lin in linears],
                                          [lin.W.grad for lin in linears], [lin.b.grad for lin in linears], S1, S2)
        decays = np.array([spec.weight_decays[k] for k in by_model], np.float64)
        train = step.train_batches  # before the notice: looking it up may import Numba
        with limit_blas(threads), _compile_notice():
            done = train(X, Xraw, raw_kind, labels, dense, sw, order, batch_size, b0, b1, dims, acts, alphas, drops,
                         keys, params, work, woff, loss_kind, spec.kind, rows, decays, spec.steps, losses, weights,
                         correct)
        run.compiled_by = getattr(train, "last", "numpy" if step is get_step("numpy") else "jit")
        k = min(done + 1, b1 - b0)
        return losses[:k], int(correct[:done].sum()), done

    run.compiled_by = None

    return run
