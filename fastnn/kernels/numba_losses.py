"""The loss kernels of the compiled twin: fused softmax + cross-entropy, NLL, MSE, BCE (on logits and on
probabilities) and Poisson, each built from a row helper (``_xent_row_label``, ``_mse_row``, ...) that the
compiled training step (:mod:`step_numba`) calls too, with the sample weights' helpers (``_weight``,
``_inv_weight_sum``, ``_add_weighted``). :mod:`numpy_losses` is the NumPy twin, name by name; :mod:`numba_cpu`
exports the kernels with the other per-op kernels. Reductions accumulate in float64; every loss returns a float.
"""
import math

from fastnn._config import jit

__all__ = ["softmax_xent_labels", "softmax_xent_dense", "nll_labels", "nll_dense", "mse", "bce_logits", "bce",
           "poisson"]


@jit
def _sigmoid(v):
    """The sigmoid of one value, without overflow (also the activation's, in :mod:`numba_cpu`)."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@jit(inline=True)
def _softmax_row(x, i, out):
    """Softmax of row ``i`` into ``out[i]``; returns log of the sum of exps after the max shift."""
    m = x.shape[1]
    mx = x[i, 0]
    for j in range(1, m):
        if x[i, j] > mx:
            mx = x[i, j]
    total = 0.0
    for j in range(m):
        e = math.exp(x[i, j] - mx)
        out[i, j] = e
        total += e
    inv = 1.0 / total
    for j in range(m):
        out[i, j] = out[i, j] * inv
    return mx, math.log(total)


@jit(inline=True)
def _xent_row_label(z, i, y, probs, grad, scale):
    """Row ``i`` of fused softmax + cross-entropy with label ``y``: fills ``probs[i]`` and
    ``grad[i] = (probs[i] - onehot(y)) * scale``; returns the row's loss. ``probs`` may be ``grad``."""
    mx, logsum = _softmax_row(z, i, probs)
    for j in range(z.shape[1]):
        grad[i, j] = probs[i, j] * scale
    grad[i, y] -= scale
    return logsum - (z[i, y] - mx)


@jit(inline=True)
def _xent_row_dense(z, i, t, probs, grad, scale):
    """As :func:`_xent_row_label` for a target row ``t``: ``grad[i] = (probs[i] sum(t) - t) * scale``."""
    mx, logsum = _softmax_row(z, i, probs)
    loss, tsum = 0.0, 0.0
    for j in range(z.shape[1]):
        tj = t[j] * 1.0
        tsum += tj
        if tj != 0:  # 0 * log p is 0 even where p underflowed to 0
            loss += tj * (logsum - (z[i, j] - mx))
    for j in range(z.shape[1]):
        grad[i, j] = (probs[i, j] * tsum - t[j]) * scale
    return loss


@jit(inline=True)
def _weight(w, i):
    """Row ``i``'s sample weight; 1 when ``w`` is empty (unweighted)."""
    return w[i] * 1.0 if w.shape[0] else 1.0


@jit
def _inv_weight_sum(w, n):
    """``1 / sum(w)`` over the ``n`` rows (``1 / n`` unweighted); 0 when the weights sum to 0."""
    if w.shape[0] == 0:
        return 1.0 / n
    total = 0.0
    for i in range(n):
        total += w[i]
    return 1.0 / total if total > 0 else 0.0


@jit(inline=True)
def _add_weighted(total, wi, li):
    """``total + wi li``; a row of weight 0 adds nothing, not even a NaN."""
    return total + wi * li if wi != 0 else total


@jit(inline=True)
def _mse_row(y, i, t, grad, scale):
    """Row ``i`` of MSE against target row ``t``: ``grad[i] = 2 (y[i] - t) scale / k``; returns ``mean (y[i] - t)^2``."""
    k = y.shape[1]
    loss = 0.0
    for j in range(k):
        d = y[i, j] - t[j] * 1.0
        loss += d * d
        grad[i, j] = 2.0 * scale / k * d
    return loss / k


@jit(inline=True)
def _poisson_row(z, i, t, grad, scale):
    """Row ``i`` of half the Poisson deviance of log-rates ``z``: ``grad[i] = (exp(z) - t) scale / k``; returns
    the row's mean of ``exp(z) - t z + t log t - t`` (0 for a perfect prediction; ``t log t`` is 0 at t = 0)."""
    k = z.shape[1]
    loss = 0.0
    for j in range(k):
        v = z[i, j] * 1.0
        tj = t[j] * 1.0
        p = math.exp(v)
        loss += p - tj * v + (tj * math.log(tj) - tj if tj > 0 else 0.0)
        grad[i, j] = (p - tj) * (scale / k)
    return loss / k


@jit(inline=True)
def _nll_row_label(P, i, y, eps, grad, scale):
    """Row ``i`` of NLL with label ``y``: ``-log max(p_y, eps)``; a NaN probability propagates."""
    for j in range(P.shape[1]):
        grad[i, j] = 0
    p = P[i, y] * 1.0
    if p <= eps:  # False for NaN: log(NaN) carries it into the loss
        return -math.log(eps)
    grad[i, y] = -scale / p
    return -math.log(p)


@jit(inline=True)
def _nll_row_dense(P, i, t, eps, grad, scale):
    loss = 0.0
    for j in range(P.shape[1]):
        p = P[i, j] * 1.0
        tj = t[j] * 1.0
        if p <= eps:
            loss -= tj * math.log(eps)
            grad[i, j] = 0
        else:
            loss -= tj * math.log(p)
            grad[i, j] = -tj * scale / p
    return loss


@jit(inline=True)
def _bce_logits_row(z, i, t, grad, scale):
    """Row ``i`` of sigmoid + binary cross-entropy on logits: ``grad[i] = (sigmoid(z) - t) scale / k``;
    returns the row's mean of ``max(z, 0) - z t + log1p(exp(-|z|))``, which never overflows."""
    k = z.shape[1]
    loss = 0.0
    for j in range(k):
        v = z[i, j] * 1.0
        tj = t[j] * 1.0
        loss += max(v, 0.0) - v * tj + math.log1p(math.exp(-abs(v)))
        grad[i, j] = (_sigmoid(v) - tj) * (scale / k)
    return loss / k


@jit(inline=True)
def _bce_row(P, i, t, grad, scale):
    """Row ``i`` of binary cross-entropy on probabilities, PyTorch's ``BCELoss``: logs clamped at -100,
    ``grad[i] = (p - t) / max(p (1 - p), 1e-12) scale / k``."""
    k = P.shape[1]
    loss = 0.0
    for j in range(k):
        p = P[i, j] * 1.0
        tj = t[j] * 1.0
        loss -= tj * max(math.log(p), -100.0) + (1.0 - tj) * max(math.log1p(-p), -100.0)
        grad[i, j] = (p - tj) / max(p * (1.0 - p), 1e-12) * (scale / k)
    return loss / k


@jit
def softmax_xent_labels(z, labels, w, probs, grad):
    inv = _inv_weight_sum(w, z.shape[0])
    loss = 0.0
    for i in range(z.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _xent_row_label(z, i, labels[i], probs, grad, wi * inv))
    return loss * inv


@jit
def softmax_xent_dense(z, T, w, probs, grad):
    inv = _inv_weight_sum(w, z.shape[0])
    loss = 0.0
    for i in range(z.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _xent_row_dense(z, i, T[i], probs, grad, wi * inv))
    return loss * inv


@jit
def nll_labels(P, labels, eps, w, grad):
    inv = _inv_weight_sum(w, P.shape[0])
    loss = 0.0
    for i in range(P.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _nll_row_label(P, i, labels[i], eps, grad, wi * inv))
    return loss * inv


@jit
def nll_dense(P, T, eps, w, grad):
    inv = _inv_weight_sum(w, P.shape[0])
    loss = 0.0
    for i in range(P.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _nll_row_dense(P, i, T[i], eps, grad, wi * inv))
    return loss * inv


@jit
def mse(y, target, w, grad):
    inv = _inv_weight_sum(w, y.shape[0])
    loss = 0.0
    for i in range(y.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _mse_row(y, i, target[i], grad, wi * inv))
    return loss * inv


@jit
def bce_logits(z, T, w, grad):
    inv = _inv_weight_sum(w, z.shape[0])
    loss = 0.0
    for i in range(z.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _bce_logits_row(z, i, T[i], grad, wi * inv))
    return loss * inv


@jit
def bce(P, T, w, grad):
    inv = _inv_weight_sum(w, P.shape[0])
    loss = 0.0
    for i in range(P.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _bce_row(P, i, T[i], grad, wi * inv))
    return loss * inv


@jit
def poisson(z, T, w, grad):
    inv = _inv_weight_sum(w, z.shape[0])
    loss = 0.0
    for i in range(z.shape[0]):
        wi = _weight(w, i)
        loss = _add_weighted(loss, wi, _poisson_row(z, i, T[i], grad, wi * inv))
    return loss * inv
