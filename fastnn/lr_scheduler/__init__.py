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
from fastnn.lr_scheduler.base import LRScheduler
from fastnn.lr_scheduler.callbacks import LearningRateScheduler, ReduceLROnPlateau
from fastnn.lr_scheduler.schedules import (CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, OneCycleLR,
                                           StepLR)

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
           "OneCycleLR", "ReduceLROnPlateau", "LearningRateScheduler"]
