"""PyTorch's step-driven schedules, by PyTorch's own (recursive) formulas, and the 1cycle policy."""
import math

from fastnn._check import (BOOL, COUNT, FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, REAL, Interval, Items, Options,
                           check)
from fastnn.lr_scheduler.base import LRScheduler, _check_optimizer

__all__ = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR"]


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
        self.step_size = check("step_size", step_size, POSITIVE_INT)
        self.gamma = check("gamma", gamma, POSITIVE)
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
        self.milestones = list(check("milestones", milestones, Items(COUNT, what="a sequence of integers >= 0")))
        if any(a >= b for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {self.milestones}")
        self.gamma = check("gamma", gamma, POSITIVE)
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
        self.gamma = check("gamma", gamma, POSITIVE)
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
        self.T_max = check("T_max", T_max, POSITIVE_INT)
        self.eta_min = check("eta_min", eta_min, NON_NEGATIVE)
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
        self.start_factor = check("start_factor", start_factor, Interval(REAL, 0, 1, closed="right"))
        self.end_factor = check("end_factor", end_factor, Interval(REAL, 0, 1))
        self.total_iters = check("total_iters", total_iters, POSITIVE_INT)
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
            self.total_steps = check("total_steps", total_steps, POSITIVE_INT)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (check("epochs", epochs, POSITIVE_INT)
                                * check("steps_per_epoch", steps_per_epoch, POSITIVE_INT))
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        pct_start = check("pct_start", pct_start, Interval(REAL, 0, 1))
        three_phase = check("three_phase", three_phase, BOOL)
        self.anneal_strategy = check("anneal_strategy", anneal_strategy, Options("cos", "linear"))
        self.max_lr = check("max_lr", max_lr, POSITIVE)
        self.initial_lr = self.max_lr / check("div_factor", div_factor, POSITIVE)
        self.min_lr = self.initial_lr / check("final_div_factor", final_div_factor, POSITIVE)
        self.cycle_momentum = check("cycle_momentum", cycle_momentum, BOOL)
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
            lo_m = check("base_momentum", base_momentum, FRACTION)
            hi_m = check("max_momentum", max_momentum, FRACTION)
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
