"""The base of every learning-rate scheduler (:class:`LRScheduler`) and the argument checks they share."""
import copy

from fastnn._check import Instance, Options, check
from fastnn.optim import Optimizer

__all__ = ["LRScheduler"]

_INTERVALS = ("epoch", "batch")


def _check_optimizer(optimizer):
    return check("optimizer", optimizer, Instance(Optimizer, what="a fastnn optimizer (fastnn.SGD, Adam or AdamW)"))


def _check_interval(interval):
    return check("interval", interval, Options(*_INTERVALS))


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
