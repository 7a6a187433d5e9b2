"""What ``fit`` reports and how it stops: :class:`History` (Keras'), :class:`EarlyStopping`, and the state
protocol through which checkpoints save and restore every stateful callback.

A callback is *stateful* when it has both ``state_dict()`` and ``load_state_dict()`` (:func:`stateful`). Two
forms are taken, as fastnn's own objects and PyTorch's schedulers write them:

* ``state_dict() -> (state, arrays)`` and ``load_state_dict(state, arrays)``: JSON values and a dict of
  ndarrays by name, as :meth:`fastnn.optim.Optimizer.state_dict` (History, EarlyStopping);
* ``state_dict() -> state`` and ``load_state_dict(state)``: JSON values only (e.g.
  :class:`fastnn.lr_scheduler.LearningRateScheduler`, or a PyTorch Lightning style callback of the user's).

:func:`get_state` and :func:`set_state` read and write either form.
"""
import numpy as np

from fastnn._check import BOOL, COUNT, NON_NEGATIVE, NONE, Instance, Options, check

__all__ = ["History", "EarlyStopping", "stateful", "get_state", "set_state"]


class History:
    """What ``fit`` returns, as in Keras.

    Attributes
    ----------
    history : dict of str to list of float
        ``"loss"`` and, for classification losses, ``"accuracy"``; ``"val_loss"`` and
        ``"val_accuracy"`` with validation data; ``"lr"``, the learning rate the epoch started with.
        One entry per epoch.
    epoch : list of int
        The epoch numbers (0-based) that ran.
    stopped_epoch : int or None
        Epoch at which early stopping or a callback ended training.
    fast_path : bool
        Whether the compiled training step of :mod:`fastnn.fused` ran (else layer by layer).
    fallback : str or None
        Why it did not (None when it did): e.g. a layer, loss or optimizer it has no form for.
    compiled_by : str or None
        Which code ran it: ``"aot"`` (built at install, :mod:`fastnn.kernels.aot`), ``"jit"`` (Numba's JIT),
        ``"numpy"`` (the NumPy twin); None layer by layer. For the same seed, data, dtype and BLAS threads,
        ``"aot"`` and ``"jit"`` train bit-identical weights.
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.stopped_epoch = None
        self.fast_path = False
        self.fallback = None
        self.compiled_by = None

    def append(self, epoch, logs):
        """Record epoch ``epoch``'s ``logs`` (a dict of metric name to value)."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self):
        """``(state, arrays)``: the metrics, epochs and stopped epoch as JSON values; no arrays."""
        return {"history": self.history, "epoch": self.epoch, "stopped_epoch": self.stopped_epoch}, {}

    def load_state_dict(self, state, arrays=None):
        """Restore a :meth:`state_dict` (the lists are copied: the caller's stay its own)."""
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.epoch, self.stopped_epoch = list(state["epoch"]), state["stopped_epoch"]

    def plot(self, path=None, ax=None):
        """Learning curves: one panel per metric (loss, accuracy, learning rate, ...), validation beside training.

        Needs matplotlib (``pip install 'fastnn[plot]'``). ``path`` also writes the figure there (PNG, SVG, PDF
        by suffix); ``ax`` draws into existing Axes, one per panel. Returns the matplotlib ``Figure``.
        """
        from fastnn.plot import plot_history  # noqa: PLC0415  (matplotlib loads only when plotting)

        return plot_history(self, path, ax)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``fit`` calls :meth:`start`, then :meth:`update` after every epoch, and :meth:`restore_best` at the end.

    Parameters
    ----------
    monitor : str
        A ``History`` key; ``None`` picks ``"val_loss"`` with validation data, else ``"loss"``.
    patience : int
    min_delta : float
    mode : {"min", "max"}
        ``"max"`` for accuracies.
    restore_best_weights : bool
        On stopping (or at the end of fit), put back the parameters of the best epoch.

    Attributes
    ----------
    best_ : float or None
        The best value seen so far.
    best_epoch_ : int or None
        Its epoch.
    wait_ : int
        Epochs since then.
    """

    def __init__(self, monitor=None, patience=5, min_delta=0.0, mode="min", restore_best_weights=True):
        self.monitor = check("monitor", monitor, Instance(str, what="a History key (str)"), NONE)
        self.patience, self.min_delta = check("patience", patience, COUNT), check("min_delta", min_delta, NON_NEGATIVE)
        self.mode = check("mode", mode, Options("min", "max"))
        self.restore_best_weights = check("restore_best_weights", restore_best_weights, BOOL)
        self.monitor_ = monitor
        self.best_, self.best_epoch_, self.wait_, self._best_weights = None, None, 0, None

    def get_config(self):
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta, "mode": self.mode,
                "restore_best_weights": self.restore_best_weights}

    def state_dict(self):
        """``(state, arrays)``: the best value, its epoch and the epochs waited since, as JSON values, and the
        best epoch's parameters by their position (``"0"``, ``"1"``, ...; none when not kept)."""
        best = {str(i): w for i, w in enumerate(self._best_weights or [])}
        return {"best": self.best_, "best_epoch": self.best_epoch_, "wait": self.wait_}, best

    def load_state_dict(self, state, arrays):
        """Restore a :meth:`state_dict` (after :meth:`start`, which clears it)."""
        best = [arrays[str(i)] for i in range(len(arrays))]
        self.best_, self.best_epoch_, self.wait_ = state["best"], state["best_epoch"], state["wait"]
        self._best_weights = best or None

    def start(self, has_validation):
        """Begin a fit: nothing seen yet; ``monitor=None`` resolved to ``val_loss`` or ``loss``."""
        self.monitor_ = self.monitor or ("val_loss" if has_validation else "loss")
        self.best_, self.best_epoch_, self.wait_, self._best_weights = None, None, 0, None

    def update(self, epoch, logs, params):
        """Record epoch ``epoch``'s ``logs``, keeping a copy of ``params`` (the model's parameters) at a new best;
        return True when training should stop."""
        if self.monitor_ not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor_!r}, which fit does not report; "
                             f"available: {sorted(logs)}")
        value = logs[self.monitor_]
        sign = 1 if self.mode == "min" else -1
        if self.best_ is None or sign * (self.best_ - value) > self.min_delta:
            self.best_, self.best_epoch_, self.wait_ = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = [p.data.copy() for p in params]
            return False
        self.wait_ += 1
        return self.wait_ > self.patience

    def restore_best(self, params):
        """Put the best epoch's parameters back into ``params`` (with ``restore_best_weights``, once one is kept)."""
        if self.restore_best_weights and self._best_weights is not None:
            for p, w in zip(params, self._best_weights):
                p.data[...] = w


def stateful(callbacks):
    """The callbacks among ``callbacks`` that have both ``state_dict`` and ``load_state_dict``, in order."""
    return [cb for cb in callbacks
            if callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None))]


def get_state(cb):
    """``(state, arrays, paired)``: ``cb.state_dict()`` in either form; ``paired`` says which."""
    got = cb.state_dict()
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], dict):
        return got[0], {str(k): np.asarray(a) for k, a in got[1].items()}, True
    return got, {}, False


def set_state(cb, state, arrays, paired):
    """Restore what :func:`get_state` returned."""
    if paired:
        cb.load_state_dict(state, arrays)
    else:
        cb.load_state_dict(state)
