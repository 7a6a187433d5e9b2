"""Schedules driven by what ``fit`` saw: :class:`ReduceLROnPlateau` (a metric) and Keras' :class:`LearningRateScheduler`
(a function of the epoch)."""
import inspect
import math

from fastnn._check import CALLABLE, COUNT, FRACTION, NON_NEGATIVE, NONE, NUMBER, POSITIVE, Instance, Options, check
from fastnn.lr_scheduler.base import LRScheduler, _check_optimizer

__all__ = ["ReduceLROnPlateau", "LearningRateScheduler"]


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` when a metric has stopped improving.

    ``step(metric)`` once per epoch; after more than ``patience`` epochs without improvement
    ``lr = max(lr * factor, min_lr)`` (skipped if that changes ``lr`` by ``eps`` or less), then
    ``cooldown`` epochs pass before bad epochs count again. As in PyTorch, the reduction scales
    the optimizer's current ``lr``, and a NaN metric counts as an epoch without improvement.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    mode : {"min", "max"}, default "min"
        Whether the metric should decrease or increase.
    factor : float, default 0.1
        In [0, 1).
    patience : int, default 10
    threshold : float, default 1e-4
        Least improvement that counts, >= 0: relative (``best * (1 -/+ threshold)``) or absolute.
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int, default 0
    min_lr : float, default 0
    eps : float, default 1e-8
    monitor : str, optional
        The ``History`` key ``fit`` feeds to ``step``; ``None`` picks ``"val_loss"`` with
        validation data, else ``"loss"``.
    interval : {"epoch"}
        The only choice: the metric exists once per epoch.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8, monitor=None, interval="epoch"):
        self.optimizer = _check_optimizer(optimizer)
        if interval != "epoch":
            raise ValueError(f"ReduceLROnPlateau steps on a per-epoch metric; interval must be 'epoch', "
                             f"got {interval!r}")
        self.mode = check("mode", mode, Options("min", "max"))
        self.threshold_mode = check("threshold_mode", threshold_mode, Options("rel", "abs"))
        self.monitor = check("monitor", monitor, Instance(str, what="a History key (str)"), NONE)
        self.interval = interval
        self.factor = check("factor", factor, FRACTION)
        self.patience = check("patience", patience, COUNT)
        self.threshold = check("threshold", threshold, NON_NEGATIVE)
        self.cooldown = check("cooldown", cooldown, COUNT)
        self.min_lr = check("min_lr", min_lr, NON_NEGATIVE)
        self.eps = check("eps", eps, NON_NEGATIVE)
        self.base_lr = self._last_lr = float(optimizer.lr)
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = self.num_bad_epochs = 0

    def _is_better(self, a):
        if self.mode == "min":
            return a < (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                        else self.best - self.threshold)
        return a > (self.best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                    else self.best + self.threshold)

    def step(self, metrics):
        """Record this epoch's ``metrics`` (a number) and reduce the learning rate if it has plateaued."""
        current = check("metrics", metrics, NUMBER)
        self.last_epoch += 1
        if self._is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = float(self.optimizer.lr)

    def state_dict(self):
        """As the base class; an infinite or NaN ``best`` is stored as its string (``"inf"``) for strict JSON."""
        d = super().state_dict()
        if not math.isfinite(d["best"]):
            d["best"] = str(d["best"])
        return d

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.best = float(self.best)


def _takes_lr(schedule):
    """Whether ``schedule`` is called as ``schedule(epoch, lr)`` (else ``schedule(epoch)``), as Keras."""
    try:
        sig = inspect.signature(schedule)
    except (TypeError, ValueError):  # some builtins: Keras tries the two-argument form first
        return True
    for args, answer in (((0, 0.1), True), ((0,), False)):
        try:
            sig.bind(*args)
            return answer
        except TypeError:
            pass
    raise TypeError(f"schedule must accept (epoch, lr) or (epoch), its signature is {sig}")


class LearningRateScheduler:
    """Keras' callback: at the beginning of each epoch, ``optimizer.lr = schedule(epoch, lr)``.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> float`` with the 0-based epoch and the current learning rate,
        or ``schedule(epoch) -> float``. The result must be a finite number > 0.
    verbose : int, default 0
        1 prints Keras' message at each update.

    Notes
    -----
    ``fit`` calls ``set_optimizer(optimizer)`` once, then ``on_epoch_begin(epoch)`` before every
    epoch; a hand-written loop does the same.
    """

    interval = "epoch"

    def __init__(self, schedule, verbose=0):
        check("schedule", schedule, CALLABLE)
        self._two_args = _takes_lr(schedule)
        self.schedule = schedule
        self.verbose = check("verbose", verbose, COUNT)
        self.optimizer = None
        self.last_epoch = -1
        self._last_lr = None

    def set_optimizer(self, optimizer):
        """Attach the optimizer whose ``lr`` the schedule sets."""
        self.optimizer = _check_optimizer(optimizer)

    def on_epoch_begin(self, epoch, logs=None):
        """Set ``optimizer.lr`` for ``epoch`` (0-based)."""
        if self.optimizer is None:
            raise RuntimeError("LearningRateScheduler has no optimizer: call set_optimizer(optimizer) first "
                               "(fit does)")
        epoch = check("epoch", epoch, COUNT)
        lr = self.schedule(epoch, float(self.optimizer.lr)) if self._two_args else self.schedule(epoch)
        try:
            lr = check("lr", lr, POSITIVE)
        except (TypeError, ValueError):  # a result, not an argument: the schedule is wrong, whatever came
            raise ValueError(f"schedule returned {lr!r} for epoch {epoch}; expected {POSITIVE}") from None
        self._last_lr = self.optimizer.lr = lr
        self.last_epoch = epoch
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {self._last_lr}.")

    def on_epoch_end(self, epoch, logs=None):
        """Nothing: the learning rate changes at the beginning of an epoch."""
        return None

    def get_last_lr(self):
        """The learning rate set by the last ``on_epoch_begin``, as a one-element list (empty before)."""
        return [] if self._last_lr is None else [self._last_lr]

    def state_dict(self):
        """``last_epoch`` and the last learning rate set (the schedule itself is code, not state)."""
        return {"last_epoch": self.last_epoch, "last_lr": self._last_lr}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``; puts its learning rate on the optimizer if one is attached."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"last_epoch", "last_lr"}:
            raise ValueError(f"state_dict must be a dict with keys 'last_epoch' and 'last_lr', got {state_dict!r}")
        self.last_epoch, self._last_lr = state_dict["last_epoch"], state_dict["last_lr"]
        if self.optimizer is not None and self._last_lr is not None:
            self.optimizer.lr = self._last_lr
