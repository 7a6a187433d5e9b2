"""Optimizers: state lives here, the update rule in the kernels (``sgd_update``, ``adam_update``).

The rules are PyTorch's, as its documentation writes them (``dampening=0``).
State arrays are allocated once, at construction, in each parameter's dtype.
Each optimizer describes itself to the compiled training step through :meth:`Optimizer.describe`,
which reads the hyper-parameters afresh at every call: a learning rate changed by a callback or a
scheduler between calls takes effect on the next batch, on the compiled and the layer-by-layer path alike.
"""
from typing import NamedTuple

import numpy as np

from fastnn._check import BOOL, FRACTION, NON_NEGATIVE, POSITIVE, Items, check
from fastnn.kernels import codes, get_backend
from fastnn.layers import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "StepSpec", "clip_grad_norm"]


_BETAS = Items(FRACTION, length=2, what="a pair (beta1, beta2) of numbers in [0, 1)")


class StepSpec(NamedTuple):
    """What the compiled training step needs from an optimizer, as of one call.

    Attributes
    ----------
    kind : int
        ``codes.OPT_SGD`` or ``codes.OPT_ADAM``.
    hyper : dict
        Hyper-parameters by their :data:`fastnn.kernels.codes.HYPER` names, the current ``lr`` among them.
    weight_decays : list of float
        One per parameter, in ``params`` order (parameter groups may differ).
    state : tuple (S1, S2)
        Lists of flat state arrays, one per parameter (empty arrays where a rule keeps none).
    steps : int64 ndarray of shape (1,)
        The update counter, advanced in place by the step.
    """

    kind: int
    hyper: dict
    weight_decays: list
    state: tuple
    steps: np.ndarray


class Optimizer:
    """Base class: holds the parameters; ``step()`` updates every parameter in place.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts ``{"params": [...], "weight_decay": float}``
        Usually ``model.parameters()``. Parameter groups, as in PyTorch, may set their own
        ``weight_decay`` (e.g. 0 for biases); every other hyper-parameter is the optimizer's.
    """

    def __init__(self, params):
        if isinstance(params, (Parameter, dict)):
            raise TypeError(f"params must be an iterable of Parameter or of parameter groups, got a single "
                            f"{type(params).__name__}; pass model.parameters()")
        self.params, self._group_decay = [], []
        for i, item in enumerate(params):
            if isinstance(item, dict):
                unknown = set(item) - {"params", "weight_decay"}
                if "params" not in item or unknown:
                    raise ValueError(f"parameter group {i} must have a 'params' key and may set only "
                                     f"'weight_decay'; got keys {sorted(item)}")
                group = [item["params"]] if isinstance(item["params"], Parameter) else list(item["params"])
                decay = (check(f"parameter group {i} weight_decay", item["weight_decay"], NON_NEGATIVE)
                         if "weight_decay" in item else None)
            else:
                group, decay = [item], None
            for p in group:
                if not isinstance(p, Parameter):
                    raise TypeError(f"params[{len(self.params)}] must be a fastnn Parameter, got {type(p).__name__}")
                if any(p is q for q in self.params):
                    raise ValueError(f"parameter {p!r} appears twice in the optimizer's parameters")
                self.params.append(p)
                self._group_decay.append(decay)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self._steps = np.zeros(1, np.int64)

    @property
    def t(self):
        """Updates applied so far (Adam's bias-correction step count)."""
        return int(self._steps[0])

    @t.setter
    def t(self, value):
        self._steps[0] = value

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    def weight_decays(self):
        """The weight decay of each parameter: its group's, else ``self.weight_decay``."""
        wd = check("weight_decay", self.weight_decay, NON_NEGATIVE)
        return [wd if d is None else d for d in self._group_decay]

    def _decay_step(self, batch_weight):
        """The factor on each weight decay for a batch of total weight ``batch_weight``: ``1 / batch_weight``
        with ``sample_decay`` (scikit-learn's ``alpha``: the L2 term belongs to the batch's summed loss), else 1."""
        if not self.sample_decay:
            return 1.0
        if batch_weight is None:
            raise ValueError(f"{type(self).__name__}(sample_decay=True).step needs batch_weight, the batch's weight "
                             "sum (its rows when unweighted)")
        return 1.0 / batch_weight if batch_weight > 0 else 0.0

    def l2_penalty(self):
        """``sum_p wd_p ||p||^2 / 2``: with ``sample_decay`` the L2 term of a batch's summed loss (0 without it)."""
        if not self.sample_decay:
            return 0.0
        return sum(0.5 * wd * float(np.vdot(p.data, p.data)) for p, wd in zip(self.params, self.weight_decays())
                   if wd != 0)

    def _options(self):
        """The scikit-learn options that are on, by name (left out when off: older files and fingerprints stay)."""
        return {name: True for name in self.OPTIONS if getattr(self, name)}

    def current_lr(self):
        """``self.lr``, checked: a scheduler or callback may have set it since the last call."""
        return check("lr", self.lr, NON_NEGATIVE)

    kind = None  # the codes.OPT_* update rule
    OPTIONS = ()  # scikit-learn's variants of the rule this optimizer takes
    sample_decay = False

    def hyper(self):
        """The hyper-parameters by their :data:`fastnn.kernels.codes.HYPER` names, as they are now (checked)."""
        raise NotImplementedError

    def describe(self):
        """Return the :class:`StepSpec` the compiled step needs, from the current attributes."""
        return StepSpec(self.kind, self.hyper(), self.weight_decays(), self._state_pair(), self._steps)

    def _buffers(self):
        """The state arrays by name, one list (one array per parameter) each."""
        return {}

    def state_dict(self):
        """``(config, arrays)``: the hyper-parameters as they are now (a schedule may have changed them) and
        the update count as JSON values, every state array by name (``"m.3"``: Adam's ``m`` of parameter 3)."""
        config = {**self.get_config(), "steps": self.t}
        arrays = {f"{name}.{i}": a for name, bufs in self._buffers().items() for i, a in enumerate(bufs)}
        return config, arrays

    def load_state_dict(self, config, arrays):
        """Restore a :meth:`state_dict` of an optimizer of the same kind over parameters of the same shapes;
        state arrays are copied into this optimizer's own (a running compiled step keeps its references)."""
        mine = self.state_dict()
        if set(config) != set(mine[0]) or set(arrays) != set(mine[1]):
            raise ValueError(f"optimizer state does not fit {type(self).__name__}: expected config keys "
                             f"{sorted(mine[0])} and arrays {sorted(mine[1])}, got {sorted(config)} and "
                             f"{sorted(arrays)}")
        for name, a in mine[1].items():
            if arrays[name].shape != a.shape:
                raise ValueError(f"optimizer state {name} has shape {arrays[name].shape}, expected {a.shape}")
        for name, a in mine[1].items():
            a[...] = arrays[name]
        for key, value in config.items():
            if key != "steps":
                setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self.t = int(config["steps"])

    def _state(self):
        return [np.zeros(p.data.size, p.data.dtype) for p in self.params]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    .. math:: g \\leftarrow g + \\lambda p,\\; b \\leftarrow \\mu b + g,\\;
              p \\leftarrow p - \\eta\\,(g + \\mu b \\text{ if nesterov else } b)

    Parameters
    ----------
    velocity : bool
        Keep scikit-learn's velocity ``v <- momentum v - lr g; p <- p + v`` (Nesterov: ``p <- p + momentum v - lr
        g``) instead of PyTorch's buffer: the same steps while ``lr`` is constant (``v = -lr b``); after a change
        of ``lr`` the velocity keeps the steps taken at the old rate, as in scikit-learn.
    sample_decay : bool
        ``weight_decay`` is per sample, as scikit-learn's ``alpha``: each batch's decay is ``weight_decay`` over
        the batch's weight (its rows when unweighted).
    """

    kind = codes.OPT_SGD
    OPTIONS = ("velocity", "sample_decay")

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, velocity=False,
                 sample_decay=False):
        self.lr = check("lr", lr, NON_NEGATIVE)
        self.momentum = check("momentum", momentum, NON_NEGATIVE)
        self.weight_decay = check("weight_decay", weight_decay, NON_NEGATIVE)
        self.nesterov, self.velocity, self.sample_decay = (check(name, v, BOOL) for name, v in (
            ("nesterov", nesterov), ("velocity", velocity), ("sample_decay", sample_decay)))
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        super().__init__(params)
        # Momentum buffers exist even at momentum 0: a schedule (OneCycleLR) may raise it later.
        self.buffers = self._state()

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, **self._options()}

    def _buffers(self):
        return {"momentum_buffer": self.buffers}

    def hyper(self):
        momentum = check("momentum", self.momentum, NON_NEGATIVE)
        if self.nesterov and momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        return {"lr": self.current_lr(), "momentum": momentum, "nesterov": float(self.nesterov),
                "velocity": float(self.velocity), "sample_decay": float(self.sample_decay)}

    def _state_pair(self):
        return self.buffers, [np.zeros(0, p.data.dtype) for p in self.params]

    def step(self, batch_weight=None):
        """One update from the parameters' gradients; ``batch_weight`` (the batch's weight sum) with
        ``sample_decay``."""
        K, spec = get_backend(), self.describe()
        h, scale = spec.hyper, self._decay_step(batch_weight)
        for p, buf, wd in zip(self.params, self.buffers, spec.weight_decays):
            K.sgd_update(p.data.reshape(-1), p.grad.reshape(-1), buf, h["lr"], h["momentum"], wd * scale,
                         self.nesterov, self.velocity)
        self._steps[0] += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is L2 added to the gradient.

    .. math:: m \\leftarrow \\beta_1 m + (1-\\beta_1) g,\\; v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2,\\;
              p \\leftarrow p - \\eta\\, \\hat m / (\\sqrt{\\hat v} + \\epsilon)

    Parameters
    ----------
    eps_hat : bool
        Add ``eps`` to ``sqrt(v)`` rather than to ``sqrt(v_hat)``: Kingma & Ba's epsilon-hat, the placement of
        scikit-learn and TensorFlow, ``p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``.
    sample_decay : bool
        ``weight_decay`` is per sample, as scikit-learn's ``alpha`` (see :class:`SGD`).
    """

    kind = codes.OPT_ADAM
    decoupled = False
    OPTIONS = ("eps_hat", "sample_decay")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, eps_hat=False,
                 sample_decay=False):
        self.lr = check("lr", lr, NON_NEGATIVE)
        self.betas = check("betas", betas, _BETAS)
        self.eps = check("eps", eps, POSITIVE)
        self.weight_decay = check("weight_decay", weight_decay, NON_NEGATIVE)
        self.eps_hat, self.sample_decay = check("eps_hat", eps_hat, BOOL), check("sample_decay", sample_decay, BOOL)
        super().__init__(params)
        self.m, self.v = self._state(), self._state()


    def get_config(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                **self._options()}

    def _buffers(self):
        return {"m": self.m, "v": self.v}

    def hyper(self):
        b1, b2 = check("betas", self.betas, _BETAS)
        return {"lr": self.current_lr(), "beta1": b1, "beta2": b2,
                "eps": check("eps", self.eps, POSITIVE), "decoupled": float(self.decoupled),
                "eps_hat": float(self.eps_hat), "sample_decay": float(self.sample_decay)}

    def _state_pair(self):
        return self.m, self.v

    def step(self, batch_weight=None):
        """One update from the parameters' gradients; ``batch_weight`` (the batch's weight sum) with
        ``sample_decay``."""
        K, spec = get_backend(), self.describe()
        h, scale = spec.hyper, self._decay_step(batch_weight)
        self._steps[0] += 1
        for p, m, v, wd in zip(self.params, self.m, self.v, spec.weight_decays):
            K.adam_update(p.data.reshape(-1), p.grad.reshape(-1), m, v, self.t, h["lr"], h["beta1"], h["beta2"],
                          h["eps"], wd * scale, self.decoupled, self.eps_hat)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p <- p (1 - lr wd)`` before the Adam step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, eps_hat=False,
                 sample_decay=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_hat=eps_hat,
                         sample_decay=sample_decay)


def clip_grad_norm(parameters, max_norm):
    """Scale the gradients of ``parameters`` in place so their global 2-norm is at most ``max_norm``,
    PyTorch's ``clip_grad_norm_`` (factor ``max_norm / (norm + 1e-6)`` when below 1).

    For hand-written loops, between ``backward`` and ``optimizer.step()``; ``fit(clip_grad_norm=...)``
    does the same on the compiled step. Returns the norm before clipping.
    """
    params = list(parameters)
    max_norm = check("max_norm", max_norm, POSITIVE)
    if not params:
        return 0.0
    grads = [p.grad for p in params]
    matrices = tuple(g.reshape(g.shape[0], -1) if g.ndim > 1 else g.reshape(1, -1) for g in grads)
    return float(get_backend().clip_grad_norm(matrices, tuple(np.zeros(0, g.dtype) for g in grads), max_norm))
