"""Losses: ``forward(prediction, target, sample_weight=None) -> float`` (batch mean), ``backward() -> dL/dprediction``.

Targets are integer labels of shape (n,) or dense arrays of the prediction's
shape (one-hot or probabilities for the classification losses, 0/1 or probabilities
for the binary ones). With sample weights the loss is the weighted mean
``sum_i w_i l_i / sum_i w_i``; a row of weight 0 has no influence at all.
"""
from typing import NamedTuple

import numpy as np

from fastnn._check import BOOL, REAL, Interval, Options, check
from fastnn._validation import as_numeric, check_dense_target, check_labels, check_matrix, check_sample_weight
from fastnn.kernels import codes, get_backend

__all__ = ["Loss", "LossSpec", "SoftmaxCrossEntropy", "NLLLoss", "MSELoss", "BCEWithLogitsLoss", "BCELoss",
           "PoissonLoss"]

_UNWEIGHTED = np.zeros(0)


class LossSpec(NamedTuple):
    """What the compiled step needs from a loss, for one fit's targets (:meth:`Loss.describe`).

    Attributes
    ----------
    kind : int or None
        The ``codes.LOSS_*`` code, or None: no form on the compiled step (layer by layer).
    scale : float
        The factor on each row's loss and gradient (``codes.HYPER``'s ``loss_scale``, :meth:`Loss.row_scale`).
    last : int
        The activation code the model must end in: ``codes.SIGMOID`` for :class:`BCELoss` (the step folds
        the Sigmoid's backward into the loss), ``codes.IDENTITY`` (the last Linear's outputs) otherwise.
    """

    kind: object
    scale: float
    last: int


class Loss:
    """Base class: validates inputs, calls a kernel, keeps the gradient for ``backward``.

    Parameters
    ----------
    outputs : {"mean", "sum"}
        How each row's loss combines its ``k`` outputs: their mean (PyTorch's) or their sum (scikit-learn's
        ``MLPClassifier``/``MLPRegressor``, whose gradient is ``(p - y) / n``); the row losses are averaged
        (weighted) either way.

    Attributes
    ----------
    classification : bool
        Targets are classes (labels, one-hot or probabilities).
    accuracy : {None, "argmax", "binary"}
        What ``fit`` reports as accuracy: the argmax hitting the label, or each output on the right
        side of 1/2 (the fraction of the ``n_samples * n_outputs`` binary decisions that are right).
    """

    classification = False
    accuracy = None
    outputs = "mean"  # how a row's k outputs combine: "mean" (PyTorch's) or "sum" (scikit-learn's)
    # the activation code the compiled step needs the model to end in (LossSpec.last): the last Linear's outputs
    last = codes.IDENTITY

    def __init__(self, outputs="mean"):
        self.outputs = check("outputs", outputs, Options("mean", "sum"))
        self._grad = None

    def row_scale(self, n_outputs):
        """The factor on each row's loss and gradient, as the compiled step takes it (``codes.HYPER``'s
        ``loss_scale``): ``n_outputs`` for ``outputs="sum"`` (the kernels compute the mean), else 1."""
        return float(n_outputs) if self.outputs == "sum" else 1.0

    def output(self, Z):
        """What the model's outputs ``Z`` mean, in place: probabilities for the losses on logits, the mean
        (``exp``) for :class:`PoissonLoss`; the outputs themselves for the others."""
        return Z

    def forward(self, prediction, target, sample_weight=None):
        """Mean loss over the batch (weighted by ``sample_weight`` when given).

        Parameters
        ----------
        prediction : ndarray of shape (n_samples, n_outputs)
        target : ndarray of shape (n_samples,) of int labels, or (n_samples, n_outputs)
        sample_weight : array_like of shape (n_samples,), optional
            Non-negative weights; the loss is ``sum w_i l_i / sum w_i``.
        """
        P = check_matrix(prediction, "prediction")
        w = None if sample_weight is None else check_sample_weight(sample_weight, P.shape[0])
        return self._forward(P, self.check_target(target, P.shape, P.dtype), w)

    def _forward(self, P, T, w=None):
        """``forward`` on an already validated prediction, target and weights (None: unweighted)."""
        grad = np.empty_like(P)
        loss = self._compute(P, T, _UNWEIGHTED if w is None else w, grad)
        c = self.row_scale(P.shape[1])
        if c != 1:
            grad *= grad.dtype.type(c)
            loss *= c
        self._grad = grad
        return loss

    def step_code(self, T):
        """The ``codes.LOSS_*`` code of the compiled step for targets ``T``, or None (layer by layer): what a
        subclass says of itself to :meth:`describe`, which is what the step reads."""
        return None

    def describe(self, T, n_outputs):
        """The :class:`LossSpec` the compiled step needs for targets ``T`` and a model of ``n_outputs``
        outputs, from the current attributes (asked at every call of the step)."""
        return LossSpec(self.step_code(T), self.row_scale(n_outputs), self.last)

    def value(self, prediction, target, sample_weight=None):
        """The mean loss of an already validated ``prediction``, ``target`` and ``sample_weight`` (as
        :meth:`check_target` gives it; None: unweighted), keeping no gradient: what ``evaluate`` reports."""
        loss = self._forward(prediction, target, sample_weight)
        self._grad = None
        return loss

    __call__ = forward

    def backward(self):
        """Gradient of the last ``forward``'s loss w.r.t. its prediction, shape of the prediction."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        return self._grad

    def check_target(self, target, shape, dtype, name="target"):
        """Validate ``target`` for a prediction of ``shape``/``dtype``; return it as the kernels take it.

        Integer labels come back int64 of shape (n,), dense targets C-contiguous in ``dtype``.
        """
        T = as_numeric(target, name)
        if self.accuracy == "argmax" and shape[1] < 2:
            # A softmax over one output is 1 whatever the logit: the loss is 0 and no weight ever moves.
            raise ValueError(f"{type(self).__name__} needs at least 2 outputs (one per class), the model has "
                             f"{shape[1]}: for one output use BCEWithLogitsLoss (a 0/1 label) or MSELoss (a value)")
        if T.ndim == 1 and self.classification:
            return check_labels(T, shape[0], shape[1], name)
        if T.ndim == 2 and T.shape[0] != shape[0]:
            raise ValueError(f"{name} has {T.shape[0]} rows but the prediction has {shape[0]}")
        T = check_dense_target(T, shape, dtype, name)
        if self.classification and (T < 0).any():
            raise ValueError(f"one-hot/probability {name} has negative entries; expected values in [0, 1]")
        return T

    def get_config(self):
        return {} if self.outputs == "mean" else {"outputs": self.outputs}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused; takes logits.

    .. math:: L = -\\tfrac1n \\textstyle\\sum_i \\log S_{i, y_i},\\quad \\partial L / \\partial z = (S - Y) / n

    The fused gradient is valid because softmax's Jacobian ``diag(S) - S S^T``
    applied to NLL's ``-Y / (n S)`` collapses to ``(S - Y) / n`` when each row
    of ``Y`` sums to one; for other dense targets the kernel uses the general
    ``(S sum(Y) - Y) / n``. ``probs_`` keeps the last softmax output.
    """

    classification = True

    accuracy = "argmax"

    def __init__(self):
        super().__init__()  # a row's loss is already one number over its classes: no ``outputs``

    def step_code(self, T):
        return codes.LOSS_SCE_LABELS if T.ndim == 1 else codes.LOSS_SCE_DENSE

    def _compute(self, Z, T, w, grad):
        K = get_backend()
        self.probs_ = np.empty_like(Z)
        if T.ndim == 1:
            return K.softmax_xent_labels(Z, T, w, self.probs_, grad)
        return K.softmax_xent_dense(Z, T, w, self.probs_, grad)

    def output(self, Z):
        return get_backend().softmax_forward(Z, Z)


class NLLLoss(Loss):
    """Negative log-likelihood of probabilities (e.g. the output of :class:`Softmax`).

    .. math:: L = -\\tfrac1n \\textstyle\\sum_i \\log \\max(P_{i, y_i}, \\epsilon)

    Parameters
    ----------
    eps : float
        Probabilities are clipped to ``eps`` so ``log 0`` never occurs; where
        the clip is active the gradient is 0 (the clip's own derivative).
    """

    classification = True
    accuracy = "argmax"

    def __init__(self, eps=1e-7):
        super().__init__()
        self.eps = check("eps", eps, Interval(REAL, 0, 1, closed="neither"))

    def get_config(self):
        return {"eps": self.eps, **super().get_config()}

    def _compute(self, P, T, w, grad):
        _check_probabilities(P, "NLLLoss", "Softmax", "SoftmaxCrossEntropy")
        K = get_backend()
        if T.ndim == 1:
            return K.nll_labels(P, T, self.eps, w, grad)
        return K.nll_dense(P, T, self.eps, w, grad)


class MSELoss(Loss):
    """Mean squared error over all elements.

    .. math:: L = \\tfrac1{N} \\textstyle\\sum (y - y^*)^2,\\quad \\partial L / \\partial y = \\tfrac2N (y - y^*)

    with ``N = n_samples * n_outputs``. A 1-D target is accepted for a single output.

    Parameters
    ----------
    outputs : {"mean", "sum"}
        ``"sum"``: each row's squared errors are summed over the outputs (``N = n_samples``).
    half : bool
        Half the squared error, ``(y - y^*)^2 / 2`` (gradient ``y - y^*``): with ``outputs="sum"`` the gradient
        scikit-learn's ``MLPRegressor`` follows.
    """

    def __init__(self, outputs="mean", half=False):
        super().__init__(outputs)
        self.half = check("half", half, BOOL)

    def row_scale(self, n_outputs):
        return super().row_scale(n_outputs) * (0.5 if self.half else 1.0)

    def get_config(self):
        return {**super().get_config(), **({"half": True} if self.half else {})}

    def check_target(self, target, shape, dtype, name="target"):
        return super().check_target(_rows(as_numeric(target, name), shape), shape, dtype, name)

    def step_code(self, T):
        return codes.LOSS_MSE

    def _compute(self, Y, T, w, grad):
        return get_backend().mse(Y, T, w, grad)


class _BinaryLoss(Loss):
    """Targets: an (n, k) array of 0/1 labels or probabilities (multilabel), or (n,) when k == 1."""

    classification = True
    accuracy = "binary"

    def check_target(self, target, shape, dtype, name="target"):
        T = _rows(as_numeric(target, name), shape)
        if T.ndim != 2:
            raise ValueError(f"{type(self).__name__} takes {name} of shape (n_samples, {shape[1]}) of 0/1 labels or "
                             f"probabilities (or (n_samples,) for one output), got shape {T.shape}")
        T = check_dense_target(T, shape, dtype, name)
        if T.size and (T.min() < 0 or T.max() > 1):
            raise ValueError(f"{type(self).__name__} takes {name} in [0, 1] (0/1 labels or probabilities), got values "
                             f"in [{T.min():g}, {T.max():g}]")
        return T


class BCEWithLogitsLoss(_BinaryLoss):
    """Sigmoid fused into binary cross-entropy; takes logits (binary and multilabel outputs).

    .. math:: L = \\tfrac1{nk} \\textstyle\\sum \\max(z, 0) - z y + \\log(1 + e^{-|z|}),\\quad
              \\partial L / \\partial z = (\\sigma(z) - y) / (nk)

    as PyTorch's ``BCEWithLogitsLoss``; the form never overflows, whatever ``|z|``.
    """

    def step_code(self, T):
        return codes.LOSS_BCE_LOGITS

    def _compute(self, Z, T, w, grad):
        return get_backend().bce_logits(Z, T, w, grad)

    def output(self, Z):
        return get_backend().sigmoid_forward(Z, Z)


class BCELoss(_BinaryLoss):
    """Binary cross-entropy of probabilities (after a :class:`Sigmoid` output), PyTorch's ``BCELoss``.

    .. math:: L = -\\tfrac1{nk} \\textstyle\\sum y \\log p + (1 - y) \\log(1 - p),

    logs clamped at -100 and the gradient ``(p - y) / max(p (1 - p), 1e-12) / (nk)``, as PyTorch. Trains on
    the compiled step when the model ends in ``Linear, Sigmoid``; :class:`BCEWithLogitsLoss` on logits is
    the more accurate choice.
    """

    last = codes.SIGMOID  # the step folds the Sigmoid's backward into the loss

    def step_code(self, T):
        return codes.LOSS_BCE

    def _compute(self, P, T, w, grad):
        _check_probabilities(P, "BCELoss", "Sigmoid", "BCEWithLogitsLoss")
        return get_backend().bce(P, T, w, grad)


class PoissonLoss(Loss):
    """Half the Poisson deviance of log-rate outputs ``z`` (the mean ``exp(z)``), scikit-learn's ``poisson`` loss.

    .. math:: L = \\tfrac1{nk} \\textstyle\\sum e^z - y z + y \\log y - y,\\quad
              \\partial L / \\partial z = (e^z - y) / (nk)

    PyTorch's ``PoissonNLLLoss(log_input=True)`` has the same gradient; its loss lacks the constant
    ``y log y - y``, which makes a perfect prediction score 0. Targets are non-negative.

    Parameters
    ----------
    outputs : {"mean", "sum"}
        ``"sum"``: each row's loss is the sum over its outputs (scikit-learn's).
    """

    def check_target(self, target, shape, dtype, name="target"):
        T = super().check_target(_rows(as_numeric(target, name), shape), shape, dtype, name)
        if (T < 0).any():
            raise ValueError(f"PoissonLoss takes non-negative {name}")
        return T

    def step_code(self, T):
        return codes.LOSS_POISSON

    def _compute(self, Z, T, w, grad):
        return get_backend().poisson(Z, T, w, grad)

    def output(self, Z):
        return np.exp(Z, out=Z)


def _rows(T, shape):
    """A 1-D target as one column, for a prediction of one output."""
    return T.reshape(-1, 1) if T.ndim == 1 and shape[1] == 1 else T


def _check_probabilities(P, loss, layer, instead):
    lo, hi = P.min(), P.max()
    if lo < 0 or hi > 1 + 1e-5:
        raise ValueError(f"{loss} expects probabilities in [0, 1] (e.g. after {layer}), got values in "
                         f"[{lo:g}, {hi:g}]; pass logits to {instead} instead")

