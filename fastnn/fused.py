"""The compiled training step: workspaces for ``train_batches`` and the runner :class:`fastnn.core.TrainingCore` calls.

Each object describes itself in one method, asked afresh at every call: the layers by
:meth:`fastnn.layers.Layer.describe` (:func:`plan` reads them), the loss by :meth:`fastnn.losses.Loss.describe`,
the optimizer by :meth:`fastnn.optim.Optimizer.describe`. A slope, dropout rate or learning rate changed between
calls takes effect on the next.

Eligible: ``Linear`` layers, each optionally preceded by a ``Dropout`` and followed by one activation of
``registry.ACTIVATIONS``, the last ``Linear`` producing logits for ``SoftmaxCrossEntropy``, ``BCEWithLogitsLoss``,
``MSELoss`` or ``PoissonLoss`` (or followed by a ``Sigmoid`` for ``BCELoss``); ``SGD``, ``Adam`` or ``AdamW`` over
exactly the model's parameters (in any order of parameter groups); sample weights, per-batch schedules, gradient
clipping, and data of another dtype (converted batch by batch). Anything else trains through the layer-by-layer path of
:mod:`fastnn.core`, and :func:`refusal` says why.
"""
import contextlib
import sys
import time
from typing import NamedTuple

import numpy as np

from fastnn._config import limit_blas
from fastnn._cpu import Pace
from fastnn.kernels import codes, get_step, layout
from fastnn.layers import Dropout, Linear
from fastnn.registry import ACTIVATIONS, LOSSES, OPTIMIZERS

__all__ = ["Plan", "plan", "still", "make_runner", "refusal", "step_data"]

# Exact types: a subclass may compute something else.
_FUSABLE = (Linear, Dropout, *ACTIVATIONS.classes())


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


class Plan(NamedTuple):
    """The layers as the compiled step and the compiled predict take them, from their :meth:`describe`.

    Attributes
    ----------
    specs : tuple of LayerSpec
        Every layer's, in order: the same objects while nothing in them changed (compared by identity).
    linears : tuple of LayerSpec
        The ``Linear`` layers'; ``params`` holds their ``(W, b)``.
    acts : int64 ndarray of shape (n_linear,)
        The activation code after each ``Linear`` (``codes.IDENTITY``: none).
    alphas : float64 ndarray of shape (n_linear,)
    drops : float64 ndarray of shape (n_linear,)
        The dropout probability before each ``Linear`` (0: none).
    """

    specs: tuple
    linears: tuple
    acts: np.ndarray
    alphas: np.ndarray
    drops: np.ndarray


def plan(model):
    """The model's :class:`Plan` when its layers are ([Dropout] Linear [activation])*, else None; read from the
    layers' :meth:`fastnn.layers.Layer.describe` at every call, so a changed ``alpha`` or ``p`` is honoured."""
    specs, linears, acts, alphas, drops = [], [], [], [], []
    drop = None
    for layer in model.layers:
        spec = layer.describe() if type(layer) in _FUSABLE else None
        if spec is None:
            return None
        specs.append(spec)
        if spec.kind == "linear":
            linears.append(spec)
            acts.append(codes.IDENTITY)
            alphas.append(0.0)
            drops.append(0.0 if drop is None else drop)
            drop = None
        elif spec.kind == "activation" and linears and acts[-1] == codes.IDENTITY and drop is None:
            acts[-1], alphas[-1] = spec.code, spec.alpha
        elif spec.kind == "dropout" and drop is None:
            drop = spec.p
        else:
            return None
    if not linears or drop is not None:  # a dropout on the output: layer by layer
        return None
    return Plan(tuple(specs), tuple(linears), np.array(acts, np.int64), np.array(alphas, np.float64),
                np.array(drops, np.float64))


def still(model, specs):
    """Whether every layer of ``model`` still describes itself with ``specs`` (a plan's): a layer returns the same
    spec object until something in it changes, so this is a few identity checks, cheap enough for every predict.
    A layer still keeping that spec is not asked (setting what ``describe`` reads drops it: ``Layer._DESCRIBED``)."""
    layers = model.layers
    if len(layers) != len(specs):
        return False
    for layer, spec in zip(layers, specs):  # a loop, not all(...): this runs at every call
        if layer._spec is not spec and layer.describe() is not spec:
            return False
    return True


def refusal(model, loss, optimizer, T, found=False):
    """Why the compiled step cannot train this fit (None when it can): what ``History.fallback`` shows.
    ``found`` is ``plan(model)`` when the caller has it."""
    found = plan(model) if found is False else found
    if found is None:
        bad = next((f"layer {i} ({type(layer).__name__})" for i, layer in enumerate(model.layers)
                    if type(layer) not in _FUSABLE), "the order of the layers")
        return (f"{bad} has no form on the compiled step, which takes ([Dropout] Linear [an activation of "
                "registry.ACTIVATIONS])*")
    row = LOSSES.of(loss)  # exact types, as for layers: a subclass may compute something else
    if row is None:
        return f"the loss {type(loss).__name__} is not one of fastnn's own ({_classes(LOSSES)})"
    if OPTIMIZERS.of(optimizer) is None:  # a subclass may override step()
        return f"the optimizer {type(optimizer).__name__} is not one of fastnn's own ({_classes(OPTIMIZERS)})"
    position = {id(p) for p in optimizer.params}
    if len(position) != len(model.parameters()) or any(id(p) not in position for p in model.parameters()):
        return "the optimizer holds parameters other than the model's"
    spec = loss.describe(T, model.n_outputs)
    if spec.kind is None:
        return f"{type(loss).__name__} has no fused form on the compiled step"
    if found.acts[-1] != spec.last:
        if spec.last == codes.IDENTITY:
            return f"{type(loss).__name__} takes the last Linear's outputs, and the model ends in an activation"
        end = next(act.cls.__name__ for act in ACTIVATIONS if act.code == spec.last)
        return f"{type(loss).__name__} needs the model to end in Linear, {end}"
    return None


def _classes(table):
    return ", ".join(cls.__name__ for cls in table.classes())


def step_data(X, T, labels, sw, dtype):
    """The training data as the step takes it: ``(X, Xraw, raw_kind, labels, dense targets, sample weights)``.

    X of another dtype (float64 data, uint8 pixels) is passed as its bytes and converted batch by batch by the
    step; dense targets are float64 whatever their dtype (exact for every input type, and one compiled step)."""
    if X.dtype == dtype:
        Xraw, raw_kind = np.zeros((0, 0), np.uint8), 0
    elif X.dtype in codes.RAW_DTYPES:  # its bytes: the step views them in their dtype
        Xraw, raw_kind = X.view(np.uint8), codes.RAW_DTYPES.index(X.dtype)
        X = np.zeros((0, 0), dtype)
    else:  # a rarer dtype (float16, int16, ...) is converted once
        X, Xraw, raw_kind = np.ascontiguousarray(X, dtype), np.zeros((0, 0), np.uint8), 0
    labels = labels if labels is not None else np.zeros(0, np.int64)
    dense = np.ascontiguousarray(T, np.float64) if T.ndim == 2 else np.zeros((0, 0))
    return X, Xraw, raw_kind, labels, dense, sw if sw is not None else np.zeros(0)


class _Current:
    """A runner's plan and workspace: the last call's while every layer describes itself with the same spec (a
    changed one is a new object), else planned again, with a new workspace if its layout changed."""

    def __init__(self, model, found, widths, rows, dtype):
        self.model, self.widths, self.rows, self.dtype = model, widths, rows, dtype
        self.plan, self.work = found, layout.workspace(widths, found.acts, found.drops, rows, dtype)

    def get(self):
        """``(plan, work, woff)`` as of now."""
        if not still(self.model, self.plan.specs):
            self._replan()
        return (self.plan, *self.work)

    def _replan(self):
        now, before = plan(self.model), self.plan
        if now is None or len(now.linears) != len(before.linears):
            raise RuntimeError("the model's layers changed during fit: the compiled step cannot train them")
        if not (np.array_equal(now.acts, before.acts) and np.array_equal(now.drops > 0, before.drops > 0)):
            self.work = layout.workspace(self.widths, now.acts, now.drops, self.rows, self.dtype)
        self.plan = now


def make_runner(model, loss, optimizer, X, T, labels, sw, batch_size, clip_norm=None):
    """The compiled step's runner for this fit, or None (:func:`refusal` says why).

    ``run(order, b0, b1, after_step=None, seed=0, data=None) -> (loss_sums, weight_sums, n_correct, n_done)``:
    ``loss_sums`` and ``weight_sums`` are per-batch arrays of length ``n_done`` (plus the failing batch when
    ``n_done < b1 - b0``), views of the runner's buffers valid until its next call. The layers and the loss
    describe themselves at every call and the optimizer for every batch, so a slope, dropout rate or
    hyper-parameter changed between calls applies; ``after_step()`` (a per-batch schedule) is called after
    describing each batch, ahead of the compiled call that trains them all. ``seed``
    keys the dropout masks of the epoch (:meth:`fastnn.layers.Dropout.stream_key`). ``data`` (a
    :func:`step_data` tuple) replaces the fit's data for one call: a batch densified from sparse rows.
    """
    found = plan(model)
    if refusal(model, loss, optimizer, T, found) is not None:
        return None
    position = {id(p): i for i, p in enumerate(optimizer.params)}
    # The step takes optimizer state in the model's parameter order; parameter groups may list them otherwise.
    by_model = [position[id(p)] for p in model.parameters()]
    dtype = model.dtype
    n_samples, widths = X.shape[0], [X.shape[1]] + [lin.params[0].data.shape[1] for lin in found.linears]
    fit_data = None if X.ndim != 2 or not isinstance(X, np.ndarray) else step_data(X, T, labels, sw, dtype)
    step = get_step()
    rows = min(batch_size, n_samples)  # a batch larger than the data is the whole data
    keys = np.zeros(len(found.linears), np.uint64)
    n_batches = -(-n_samples // batch_size)
    losses, weights, correct = np.empty(n_batches), np.empty(n_batches), np.empty(n_batches, np.int64)
    hyper = np.empty((n_batches, len(codes.HYPER)))
    # the BLAS threads, asked at every call (neighbours come and go), for GEMMs as large as the largest layer's
    pace = Pace(batch_size, max(a * b for a, b in zip(widths, widths[1:])))

    current = _Current(model, found, widths, rows, dtype)

    def run(order, b0, b1, after_step=None, seed=0, data=None):
        now, work, woff = current.get()
        lspec, spec = loss.describe(T, widths[-1]), optimizer.describe()
        rows_h = hyper[:b1 - b0]
        if after_step is None:
            rows_h[:] = codes.pack_hyper(spec.hyper)
        else:
            for i in range(b1 - b0):
                codes.pack_hyper(optimizer.hyper(), rows_h[i])
                after_step()
        rows_h[:, codes.H_CLIP_NORM] = clip_norm or 0.0
        rows_h[:, codes.H_LOSS_SCALE] = lspec.scale
        keys[:] = [Dropout.stream_key(seed, l) for l in range(len(keys))]
        # The table is rebuilt (and every array checked) at each call: a parameter or state array replaced
        # between calls is read where it now is.
        S1, S2 = ([state[k] for k in by_model] for state in spec.state)
        W, b = [lin.params[0] for lin in now.linears], [lin.params[1] for lin in now.linears]
        dims, params = layout.param_table([p.data for p in W], [p.data for p in b], [p.grad for p in W],
                                          [p.grad for p in b], S1, S2)
        decays = np.array([spec.weight_decays[k] for k in by_model], np.float64)
        Xs, Xraw, raw_kind, labels, dense, sw = fit_data if data is None else data
        train = step.train_batches  # before the notice: looking it up may import Numba
        threads = pace.threads()
        start = time.perf_counter()
        with limit_blas(threads), _compile_notice():
            done = train(Xs, Xraw, raw_kind, labels, dense, sw, order, batch_size, b0, b1, dims, now.acts,
                         now.alphas, now.drops, keys, params, work, woff, lspec.kind, spec.kind, rows_h, decays,
                         spec.steps, losses, weights, correct)
        pace.record(threads, time.perf_counter() - start, done)
        run.compiled_by = getattr(train, "last", "numpy" if step is get_step("numpy") else "jit")
        k = min(done + 1, b1 - b0)
        return losses[:k], weights[:k], int(correct[:done].sum()), done

    run.compiled_by = None

    return run
