"""PyTorch's step-driven schedules, by PyTorch's own (recursive) formulas, and the 1cycle policy."""
import math

from fastnn.lr_scheduler.base import LRScheduler, _check_optimizer, _int, _real

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
