"""Losses: ``forward(prediction, target) -> float`` (batch mean), ``backward() -> dL/dprediction``.

Targets are integer labels of shape (n,) or dense arrays of the prediction's
shape (one-hot or probabilities for the classification losses).
"""
import numpy as np

from fastnn._validation import as_numeric, check_dense_target, check_labels, check_matrix
from fastnn.kernels import get_backend

__all__ = ["Loss", "SoftmaxCrossEntropy", "NLLLoss", "MSELoss", "LOSSES"]


class Loss:
    """Base class: validates inputs, calls a kernel, keeps the gradient for ``backward``."""

    classification = False

    def __init__(self):
        self._grad = None

    def forward(self, prediction, target):
        """Mean loss over the batch.

        Parameters
        ----------
        prediction : ndarray of shape (n_samples, n_outputs)
        target : ndarray of shape (n_samples,) of int labels, or (n_samples, n_outputs)
        """
        P = check_matrix(prediction, "prediction")
        return self._forward(P, self.check_target(target, P.shape, P.dtype))

    def _forward(self, P, T):
        """``forward`` on an already validated prediction and target."""
        grad = np.empty_like(P)
        loss = self._compute(P, T, grad)
        self._grad = grad
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
        if T.ndim == 1 and self.classification:
            return check_labels(T, shape[0], shape[1], name)
        if T.ndim == 2 and T.shape[0] != shape[0]:
            raise ValueError(f"{name} has {T.shape[0]} rows but the prediction has {shape[0]}")
        T = check_dense_target(T, shape, dtype, name)
        if self.classification and (T < 0).any():
            raise ValueError(f"one-hot/probability {name} has negative entries; expected values in [0, 1]")
        return T

    def get_config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused; takes logits.

    .. math:: L = -\\tfrac1n \\textstyle\\sum_i \\log S_{i, y_i},\\quad \\partial L / \\partial z = (S - Y) / n

    The fused gradient is valid because softmax's Jacobian ``diag(S) - S S^T``
    applied to NLL's ``-Y / (n S)`` collapses to ``(S - Y) / n`` when each row
    of ``Y`` sums to one; for other dense targets the kernel uses the general
    ``(S sum(Y) - Y) / n``. ``probs_`` keeps the last softmax output.
    """

    classification = True

    def _compute(self, Z, T, grad):
        K = get_backend()
        self.probs_ = np.empty_like(Z)
        if T.ndim == 1:
            return K.softmax_xent_labels(Z, T, self.probs_, grad)
        return K.softmax_xent_dense(Z, T, self.probs_, grad)


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

    def __init__(self, eps=1e-7):
        super().__init__()
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {eps!r}")
        self.eps = float(eps)

    def get_config(self):
        return {"eps": self.eps}

    def _compute(self, P, T, grad):
        lo, hi = P.min(), P.max()
        if lo < 0 or hi > 1 + 1e-5:
            raise ValueError(f"NLLLoss expects probabilities in [0, 1] (e.g. after Softmax), got values in "
                             f"[{lo:g}, {hi:g}]; pass logits to SoftmaxCrossEntropy instead")
        K = get_backend()
        if T.ndim == 1:
            return K.nll_labels(P, T, self.eps, grad)
        return K.nll_dense(P, T, self.eps, grad)


class MSELoss(Loss):
    """Mean squared error over all elements.

    .. math:: L = \\tfrac1{N} \\textstyle\\sum (y - y^*)^2,\\quad \\partial L / \\partial y = \\tfrac2N (y - y^*)

    with ``N = n_samples * n_outputs``. A 1-D target is accepted for a single output.
    """

    def check_target(self, target, shape, dtype, name="target"):
        T = as_numeric(target, name)
        if T.ndim == 1 and shape[1] == 1:
            T = T.reshape(-1, 1)
        return super().check_target(T, shape, dtype, name)

    def _compute(self, Y, T, grad):
        return get_backend().mse(Y, T, grad)


LOSSES = {cls.__name__: cls for cls in (SoftmaxCrossEntropy, NLLLoss, MSELoss)}
