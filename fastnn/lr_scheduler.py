"""Learning-rate schedules with PyTorch's names, arguments and numbers, and Keras' callback.

Schedulers
----------
StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR
    PyTorch's chainable schedules, computed by PyTorch's own (recursive) formulas, so the
    sequences agree with ``torch.optim.lr_scheduler`` to the last bit.
OneCycleLR
    The 1cycle policy; also cycles SGD's ``momentum`` or Adam's ``betas[0]``.
ReduceLROnPlateau
    Divides the learning rate when ``step(metric)`` stops improving.
LearningRateScheduler
    Keras' callback: ``lr = schedule(epoch, lr)`` at the beginning of every epoch.

fastnn's optimizers have one learning rate, the attribute ``optimizer.lr``. A scheduler
records it as ``base_lr`` when constructed, sets the learning rate of step 0, and writes
``optimizer.lr`` at every ``step()``. Each new value is computed from the scheduler's own
state only (its last value and ``last_epoch``), never read back from the optimizer, so
``fit`` can step a per-batch schedule ahead of an epoch to build the learning-rate array
the compiled step consumes (ReduceLROnPlateau, epoch-only, scales the optimizer's current
``lr`` as PyTorch's does). ``interval`` says whether ``fit`` steps a scheduler after every
``"epoch"`` or every ``"batch"``. ``state_dict()`` holds plain JSON values only (no
optimizer), so a checkpoint can store it and a resumed run continues bit-identically.

Unlike PyTorch's, the constructors take no ``last_epoch`` argument: resume with
``load_state_dict``.
"""
import copy
import inspect
import math
import numbers

from fastnn.optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
           "OneCycleLR", "ReduceLROnPlateau", "LearningRateScheduler"]

_INTERVALS = ("epoch", "batch")


def _real(value, name, low=None, high=None, *, low_open=False, high_open=False):
    """Return ``float(value)`` for a finite real number within the bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if not math.isfinite(v) or below or above:
        bounds = [f"{'>' if low_open else '>='} {low:g}"] if low is not None else []
        bounds += [f"{'<' if high_open else '<='} {high:g}"] if high is not None else []
        raise ValueError(f"{name} must be a finite number{''.join(' ' + b for b in bounds[:1])}"
                         f"{''.join(' and ' + b for b in bounds[1:])}, got {value!r}")
    return v


def _int(value, name, low):
    """Return ``int(value)`` for an integer >= ``low``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError("optimizer must be a fastnn optimizer (fastnn.SGD, Adam or AdamW), "
                        f"got {type(optimizer).__name__}")
    return optimizer


def _check_interval(interval):
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
    return interval


class LRScheduler:
    """Base class: the step counter, ``optimizer.lr`` bookkeeping and the state dict.

    A subclass validates and stores its hyper-parameters, then calls
    ``super().__init__(optimizer, interval)``, which records ``base_lr`` and takes the
    step to epoch 0. It defines ``_lr(epoch, lr)``: the learning rate at step ``epoch``
    given the one at step ``epoch - 1`` (``base_lr`` before step 0), by PyTorch's formula.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    interval : {"epoch", "batch"}
        Whether ``fit`` calls ``step()`` after every epoch or after every batch.

    Attributes
    ----------
    base_lr : float
        ``optimizer.lr`` at construction (PyTorch's ``initial_lr``).
    last_epoch : int
        Number of ``step()`` calls since step 0 (batches when ``interval="batch"``).
    """

    def __init__(self, optimizer, interval="epoch"):
        self.optimizer = _check_optimizer(optimizer)
        self.interval = _check_interval(interval)
        self.base_lr = float(optimizer.lr)
        self.last_epoch = -1
        self._last_lr = self.base_lr
        self.step()

    def _lr(self, epoch, lr):
        raise NotImplementedError

    def step(self):
        """Advance one step (an epoch or a batch, as ``interval`` says) and set ``optimizer.lr``."""
        self._last_lr = self._lr(self.last_epoch + 1, self._last_lr)
        self.last_epoch += 1
        self._apply()

    def _apply(self):
        self.optimizer.lr = self._last_lr

    def get_last_lr(self):
        """The learning rate set by the last step, as a one-element list (as PyTorch's)."""
        return [self._last_lr]

    def state_dict(self):
        """Every attribute but the optimizer, as plain JSON values."""
        return copy.deepcopy({k: v for k, v in vars(self).items() if k != "optimizer"})

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` of the same scheduler and put its values on the optimizer."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        expected, got = set(self.state_dict()), set(state_dict)
        if expected != got:
            raise ValueError(f"state_dict does not fit {type(self).__name__}: missing keys "
                             f"{sorted(expected - got)}, unexpected keys {sorted(got - expected)}")
        self.__dict__.update(copy.deepcopy(state_dict))
        self._apply()

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr!r})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    step_size : int
        Period of the decay, >= 1.
    gamma : float, default 0.1
        Multiplicative factor, > 0.
    interval : {"epoch", "batch"}, default "epoch"
    """

    def __init__(self, optimizer, step_size, gamma=0.1, interval="epoch"):
        self.step_size = _int(step_size, "step_size", 1)
        self.gamma = _real(gamma, "gamma", 0.0, low_open=True)
        super().__init__(optimizer, interval)

    def _lr(self, epoch, lr):
        return lr if epoch == 0 or epoch % self.step_size else lr * self.gamma


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone step.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    milestones : sequence of int
        Strictly increasing step indices, >= 0.
    gamma : float, default 0.1
        Multiplicative factor, > 0.
    interval : {"epoch", "batch"}, default "epoch"
    """

    def __init__(self, optimizer, milestones, gamma=0.1, interval="epoch"):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"milestones must be a sequence of integers, got {milestones!r}")
        self.milestones = [_int(m, f"milestones[{i}]", 0) for i, m in enumerate(milestones)]
        if any(a >= b for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {self.milestones}")
        self.gamma = _real(gamma, "gamma", 0.0, low_open=True)
        super().__init__(optimizer, interval)

    def _lr(self, epoch, lr):
        return lr * self.gamma if epoch in self.milestones else lr


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every step.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    gamma : float
        Multiplicative factor, > 0.
    interval : {"epoch", "batch"}, default "epoch"
    """

    def __init__(self, optimizer, gamma, interval="epoch"):
        self.gamma = _real(gamma, "gamma", 0.0, low_open=True)
        super().__init__(optimizer, interval)

    def _lr(self, epoch, lr):
        return lr if epoch == 0 else lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` steps (then back up, as PyTorch).

    .. math:: \\eta_t = \\eta_{min} + \\tfrac12(\\eta_{base} - \\eta_{min})(1 + \\cos(\\pi t / T_{max}))

    computed, as PyTorch computes it, by the recursion

    .. math:: \\eta_t = \\eta_{min} + (\\eta_{t-1} - \\eta_{min})
              \\frac{1 + \\cos(\\pi t / T_{max})}{1 + \\cos(\\pi (t - 1) / T_{max})}

    whose rounding drifts from the closed form in the last digits (5e-14 relative after 1e5 steps).

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    T_max : int
        Half-period in steps, >= 1.
    eta_min : float, default 0.0
        Minimum learning rate, >= 0.
    interval : {"epoch", "batch"}, default "epoch"
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, interval="epoch"):
        self.T_max = _int(T_max, "T_max", 1)
        self.eta_min = _real(eta_min, "eta_min", 0.0)
        super().__init__(optimizer, interval)

    def _lr(self, epoch, lr):
        if epoch == 0:
            return lr
        if (epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            # The recursion's denominator is 0 at the minimum; PyTorch steps off it this way.
            return lr + (self.base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
        return ((1 + math.cos(math.pi * epoch / self.T_max))
                / (1 + math.cos(math.pi * (epoch - 1) / self.T_max))
                * (lr - self.eta_min) + self.eta_min)


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor going linearly from ``start_factor`` to ``end_factor``.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
    start_factor : float, default 1/3
        Factor at step 0, in (0, 1].
    end_factor : float, default 1.0
        Factor from step ``total_iters`` on, in [0, 1].
    total_iters : int, default 5
        Length of the ramp in steps, >= 1.
    interval : {"epoch", "batch"}, default "epoch"
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, interval="epoch"):
        self.start_factor = _real(start_factor, "start_factor", 0.0, 1.0, low_open=True)
        self.end_factor = _real(end_factor, "end_factor", 0.0, 1.0)
        self.total_iters = _int(total_iters, "total_iters", 1)
        super().__init__(optimizer, interval)

    def _lr(self, epoch, lr):
        if epoch == 0:
            return lr * self.start_factor
        if epoch > self.total_iters:
            return lr
        delta = self.end_factor - self.start_factor
        return lr * (1.0 + delta / (self.total_iters * self.start_factor + (epoch - 1) * delta))


def _anneal_cos(start, end, pct):
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start, end, pct):
    return (end - start) * pct + start


class OneCycleLR(LRScheduler):
    """The 1cycle policy: up from ``max_lr / div_factor`` to ``max_lr``, then down to a minimum.

    Momentum is cycled inversely (``max_momentum`` -> ``base_momentum`` -> ``max_momentum``):
    SGD's ``momentum`` or Adam's/AdamW's ``betas[0]``. The schedule has ``total_steps + 1``
    values (step 0 and ``total_steps`` steps); one more ``step()`` raises ``ValueError``.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
        Its current ``lr`` is ignored, as in PyTorch.
    max_lr : float
        Peak learning rate, > 0.
    total_steps : int, optional
        Length of the cycle; else ``epochs * steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
    pct_start : float, default 0.3
        Fraction of the cycle spent increasing the learning rate, in [0, 1].
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
        As in PyTorch, this switches momentum on for an SGD built with ``momentum=0``.
    base_momentum, max_momentum : float, default 0.85, 0.95
        Momentum at the peak and at the ends of the learning rate, in [0, 1).
    div_factor : float, default 25.0
        ``initial_lr = max_lr / div_factor``.
    final_div_factor : float, default 1e4
        ``min_lr = initial_lr / final_div_factor``.
    three_phase : bool, default False
        Fall back to ``initial_lr`` symmetrically, then anneal to ``min_lr`` (the original paper).
    interval : {"epoch", "batch"}, default "batch"
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, interval="batch"):
        _check_optimizer(optimizer)
        if total_steps is not None:
            self.total_steps = _int(total_steps, "total_steps", 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _int(epochs, "epochs", 1) * _int(steps_per_epoch, "steps_per_epoch", 1)
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        pct_start = _real(pct_start, "pct_start", 0.0, 1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.max_lr = _real(max_lr, "max_lr", 0.0, low_open=True)
        self.initial_lr = self.max_lr / _real(div_factor, "div_factor", 0.0, low_open=True)
        self.min_lr = self.initial_lr / _real(final_div_factor, "final_div_factor", 0.0, low_open=True)
        self.cycle_momentum = bool(cycle_momentum)
        self.momentum_attr = None
        lo_m = hi_m = None
        if self.cycle_momentum:
            if hasattr(optimizer, "betas"):
                self.momentum_attr = "betas"
            elif hasattr(optimizer, "momentum"):
                self.momentum_attr = "momentum"
            else:
                raise ValueError(f"cycle_momentum=True needs an optimizer with momentum or betas, got "
                                 f"{type(optimizer).__name__}")
            lo_m = _real(base_momentum, "base_momentum", 0.0, 1.0, high_open=True)
            hi_m = _real(max_momentum, "max_momentum", 0.0, 1.0, high_open=True)
        # Each phase: [end_step, start_lr, end_lr, start_momentum, end_momentum], as PyTorch's table.
        up = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._phases = [[up, self.initial_lr, self.max_lr, hi_m, lo_m],
                            [float(2 * pct_start * self.total_steps) - 2, self.max_lr, self.initial_lr, lo_m, hi_m],
                            [self.total_steps - 1, self.initial_lr, self.min_lr, hi_m, hi_m]]
        else:
            self._phases = [[up, self.initial_lr, self.max_lr, hi_m, lo_m],
                            [self.total_steps - 1, self.max_lr, self.min_lr, lo_m, hi_m]]
        if self._phases[-1][0] == self._phases[-2][0]:
            # An empty final phase: PyTorch divides by zero at the last step.
            raise ValueError(f"pct_start={pct_start} with three_phase={bool(three_phase)} leaves no steps for "
                             f"the final phase of a {self.total_steps}-step cycle")
        self._last_momentum = hi_m
        super().__init__(optimizer, interval)
        self.base_lr = self.initial_lr

    def _lr(self, epoch, lr):
        if epoch > self.total_steps:
            raise ValueError(f"Tried to step {epoch} times. The specified number of total steps is "
                             f"{self.total_steps}")
        anneal = _anneal_cos if self.anneal_strategy == "cos" else _anneal_linear
        start = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
            if epoch <= end or i == len(self._phases) - 1:
                pct = (epoch - start) / (end - start)
                if self.cycle_momentum:
                    self._last_momentum = anneal(m0, m1, pct)
                return anneal(lr0, lr1, pct)
            start = end

    def _apply(self):
        super()._apply()
        if self.momentum_attr == "betas":
            self.optimizer.betas = (self._last_momentum, self.optimizer.betas[1])
        elif self.momentum_attr == "momentum":
            self.optimizer.momentum = self._last_momentum


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
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"monitor must be a History key (str) or None, got {monitor!r}")
        self.interval, self.mode, self.threshold_mode, self.monitor = interval, mode, threshold_mode, monitor
        self.factor = _real(factor, "factor", 0.0, 1.0, high_open=True)
        self.patience = _int(patience, "patience", 0)
        self.threshold = _real(threshold, "threshold", 0.0)
        self.cooldown = _int(cooldown, "cooldown", 0)
        self.min_lr = _real(min_lr, "min_lr", 0.0)
        self.eps = _real(eps, "eps", 0.0)
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
        if isinstance(metrics, (str, bytes, bool)):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__} {metrics!r}")
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__} {metrics!r}") from None
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
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self._two_args = _takes_lr(schedule)
        self.schedule = schedule
        self.verbose = _int(verbose, "verbose", 0)
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
        epoch = _int(epoch, "epoch", 0)
        lr = self.schedule(epoch, float(self.optimizer.lr)) if self._two_args else self.schedule(epoch)
        if (isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0):
            raise ValueError(f"schedule returned {lr!r} for epoch {epoch}; expected a finite number > 0")
        self._last_lr = self.optimizer.lr = float(lr)
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
