"""Finite-difference check of a model's and a loss's hand-derived gradients."""
import copy

import numpy as np

from fastnn._check import POSITIVE, Instance, check
from fastnn._validation import check_matrix
from fastnn.losses import Loss
from fastnn.model import Sequential

__all__ = ["gradcheck"]


def _max_rel_error(analytic, numeric):
    # Relative to the array's largest gradient, not element-wise: an element
    # that is ~0 analytically has only rounding noise numerically.
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-300)
    return float(np.abs(analytic - numeric).max() / scale)


def _numeric_grad(f, a, eps):
    grad = np.empty_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        orig = flat[k]
        flat[k] = orig + eps
        fp = f()
        flat[k] = orig - eps
        fm = f()
        flat[k] = orig
        gflat[k] = (fp - fm) / (2 * eps)
    return grad


def gradcheck(model, loss, X, y, *, eps=1e-6):
    """Compare analytic gradients with central differences, in float64.

    The model and loss are copied and converted to float64; the originals are
    not touched.

    Parameters
    ----------
    model : Sequential
    loss : Loss
    X : array_like of shape (n_samples, n_features)
    y : array_like
        Target accepted by ``loss``.
    eps : float
        Finite-difference step.

    Returns
    -------
    dict
        ``{"0.W": err, "0.b": err, ..., "input": err}``: for each parameter and
        the input, ``max|analytic - numeric| / max(max|analytic|, max|numeric|)``.
    """
    check("model", model, Instance(Sequential, what="a fastnn Sequential"))
    check("loss", loss, Instance(Loss, what="a fastnn Loss"))
    eps = check("eps", eps, POSITIVE)
    model = model.copy().astype(np.float64)
    loss = copy.deepcopy(loss)
    X = check_matrix(X, "X", n_features=model.n_features_in, dtype=np.float64).copy()

    def f():
        return loss.forward(model.forward(X), y)

    f()
    dX = model.backward(loss.backward())
    errors = {}
    for name, p in model.named_parameters():
        analytic = p.grad.copy()
        errors[name] = _max_rel_error(analytic, _numeric_grad(f, p.data, eps))
    errors["input"] = _max_rel_error(dX, _numeric_grad(f, X, eps))
    return errors
