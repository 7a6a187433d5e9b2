"""The optimizers' kernels' NumPy twins (:mod:`numba_optim`, name by name and signature by signature), in
float64; :mod:`numpy_ref` exports them with the other per-op kernels.
"""
import math

import numpy as np

__all__ = ["clip_grad_norm", "sgd_update", "adam_update"]


def clip_grad_norm(dWs, dbs, max_norm):
    """Scale every gradient by ``max_norm / (norm + 1e-6)`` when that is below 1, PyTorch's
    ``clip_grad_norm_``; ``norm`` is the 2-norm of all of them together, returned."""
    norm = float(np.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel())) for g in (*dWs, *dbs))))
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        for g in (*dWs, *dbs):
            g *= g.dtype.type(coef)
    return norm


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov, velocity):
    """One SGD step on 1-D views, PyTorch's rule (dampening 0).

    ``g += wd p; buf = momentum buf + g; p -= lr (g + momentum buf if nesterov else buf)``.
    ``buf`` starts at zero, so the first step sets ``buf = g`` as PyTorch does.
    With ``momentum == 0`` ``buf`` is not touched. ``velocity``: ``buf`` is scikit-learn's velocity,
    ``buf = momentum buf - lr g; p += (momentum buf - lr g if nesterov else buf)`` (the same steps while
    ``lr`` is constant, with ``buf`` = -lr times PyTorch's).
    """
    d = g.astype(np.float64) + weight_decay * p
    if momentum != 0 and velocity:
        v = momentum * buf - lr * d
        buf[...] = v
        p[...] = p + (momentum * v - lr * d if nesterov else v)
        return
    if momentum != 0:
        b = momentum * buf + d
        buf[...] = b
        d = d + momentum * b if nesterov else b
    p[...] = p - lr * d  # one rounding, in float64, as the compiled twin does


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, eps_hat):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step, PyTorch's rule.

    ``eps_hat``: ``eps`` is added to ``sqrt(v)`` instead of ``sqrt(v_hat)`` (Kingma & Ba's epsilon-hat,
    scikit-learn's and TensorFlow's placement): ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``.

    ``step`` is the 1-based step count used for bias correction. Computed in float64 here;
    the compiled twin computes in the parameters' dtype, as PyTorch does, so float32
    results agree to float32 rounding.
    """
    d = g.astype(np.float64)
    w = p.astype(np.float64)
    if decoupled:
        w *= 1 - lr * weight_decay
    elif weight_decay != 0:
        d = d + weight_decay * w
    mt = beta1 * m + (1 - beta1) * d
    vt = beta2 * v + (1 - beta2) * d * d
    m[...] = mt
    v[...] = vt
    mhat = mt / (1 - beta1**step)
    vhat = vt / (1 - beta2**step)
    if eps_hat:
        eps = eps / math.sqrt(1 - beta2**step)
    p[...] = w - lr * mhat / (np.sqrt(vhat) + eps)
