"""Optimizers: state lives here, the update rule in the kernels (``sgd_update``, ``adam_update``).

The rules are PyTorch's, as its documentation writes them (``dampening=0``).
State arrays are allocated once, at construction, in each parameter's dtype.
"""
import math

import numpy as np

from fastnn.kernels import get_backend
from fastnn.layers import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _check_number(value, name, *, low=0.0, low_open=False, high=None):
    """Return ``float(value)`` if finite, above ``low`` and below ``high``; else ``ValueError``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and (v > low if low_open else v >= low) and (high is None or v < high)):
        bound = f"{'>' if low_open else '>='} {low:g}" + ("" if high is None else f" and < {high:g}")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


class Optimizer:
    """Base class: holds the parameter list; ``step()`` updates every parameter in place.

    Parameters
    ----------
    params : iterable of Parameter
        Usually ``model.parameters()``.
    """

    def __init__(self, params):
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameter, got a single Parameter; "
                            "pass model.parameters()")
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a fastnn Parameter, got {type(p).__name__}")

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    def _state(self):
        return [np.zeros(p.data.size, p.data.dtype) for p in self.params]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    .. math:: g \\leftarrow g + \\lambda p,\\; b \\leftarrow \\mu b + g,\\;
              p \\leftarrow p - \\eta\\,(g + \\mu b \\text{ if nesterov else } b)
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params)
        self.lr = _check_number(lr, "lr", low_open=True)
        self.momentum = _check_number(momentum, "momentum")
        self.weight_decay = _check_number(weight_decay, "weight_decay")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        self.nesterov = bool(nesterov)
        self.buffers = self._state() if self.momentum else [np.zeros(0, p.data.dtype) for p in self.params]

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def step(self):
        K = get_backend()
        for p, buf in zip(self.params, self.buffers):
            K.sgd_update(p.data.reshape(-1), p.grad.reshape(-1), buf, self.lr, self.momentum,
                         self.weight_decay, self.nesterov)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is L2 added to the gradient.

    .. math:: m \\leftarrow \\beta_1 m + (1-\\beta_1) g,\\; v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2,\\;
              p \\leftarrow p - \\eta\\, \\hat m / (\\sqrt{\\hat v} + \\epsilon)
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = _check_number(lr, "lr", low_open=True)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_check_number(b1, "betas[0]", high=1.0),
                      _check_number(b2, "betas[1]", high=1.0))
        self.eps = _check_number(eps, "eps", low_open=True)
        self.weight_decay = _check_number(weight_decay, "weight_decay")
        self.m, self.v = self._state(), self._state()
        self.t = 0

    def get_config(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def step(self):
        K = get_backend()
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            K.adam_update(p.data.reshape(-1), p.grad.reshape(-1), m, v, self.t, self.lr, self.betas[0],
                          self.betas[1], self.eps, self.weight_decay, self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p <- p (1 - lr wd)`` before the Adam step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
