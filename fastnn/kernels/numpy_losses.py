"""The loss kernels' NumPy twins (:mod:`numba_losses`, name by name and signature by signature): the row helpers
take every row at once, and the kernels and the NumPy training step (:mod:`step_numpy`) are built from them as
the compiled ones are. :mod:`numpy_ref` exports the kernels with the other per-op twins.
"""
import numpy as np

__all__ = ["softmax_xent_labels", "softmax_xent_dense", "nll_labels", "nll_dense", "mse", "bce_logits", "bce",
           "poisson"]


def _sigmoid(x, out):
    """``out = 1 / (1 + exp(-x))``, also the BCE-on-logits rows'."""
    # exp(-|x|) never overflows; sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) below.
    e = np.exp(-np.abs(x))
    np.divide(np.where(x >= 0, 1, e), 1 + e, out=out)
    return out


# The row helpers of the compiled twin, with its names and signatures, taking every row at once: ``i`` is an index
# array of the rows to do, ``y``/``t`` their labels or target rows and ``scale`` their weights (arrays where the
# compiled helper takes one row, one label, one number); each fills those rows of ``grad`` (and ``probs``) and
# returns the rows' losses, float64. The loss kernels below are built from them as numba_losses' are, and the NumPy
# training step (:mod:`step_numpy`) calls them as the compiled step does.
def _softmax_row(x, i, out):
    """Softmax of rows ``i`` into ``out[i]``; returns each row's max and the log of its sum of exps after the max
    shift (the exps in float64, as the compiled twin's ``math.exp``)."""
    mx = x[i].max(axis=1)
    e = np.exp((x[i] - mx[:, None]).astype(np.float64))
    total = e.sum(axis=1)
    out[i] = e
    out[i] = out[i] * (1.0 / total)[:, None]  # the stored exps times 1/sum, as the compiled twin rounds them
    return mx, np.log(total)


def _xent_row_label(z, i, y, probs, grad, scale):
    """Rows ``i`` of fused softmax + cross-entropy with labels ``y``: fills ``probs[i]`` and
    ``grad[i] = (probs[i] - onehot(y)) * scale``; returns the rows' losses. ``probs`` may be ``grad``."""
    mx, logsum = _softmax_row(z, i, probs)
    grad[i] = probs[i] * scale[:, None]
    grad[i, y] -= scale
    return logsum - (z[i, y] - mx)


def _xent_row_dense(z, i, t, probs, grad, scale):
    """As :func:`_xent_row_label` for target rows ``t``: ``grad[i] = (probs[i] sum(t) - t) * scale``."""
    mx, logsum = _softmax_row(z, i, probs)
    t = np.asarray(t, np.float64)
    logp = logsum[:, None] - (z[i] - mx[:, None])
    loss = np.multiply(t, logp, out=np.zeros(t.shape), where=t != 0).sum(axis=1)  # 0 log p is 0, even for p = 0
    grad[i] = (probs[i] * t.sum(axis=1)[:, None] - t) * scale[:, None]
    return loss


def _weight(w, i):
    """Rows ``i``'s sample weights; 1 when ``w`` is empty (unweighted)."""
    return np.asarray(w[i], np.float64) if w.shape[0] else np.ones(len(i))


def _inv_weight_sum(w, n):
    """``1 / sum(w)`` over the ``n`` rows (``1 / n`` unweighted); 0 when the weights sum to 0."""
    if w.shape[0] == 0:
        return 1.0 / n
    total = float(w[:n].sum(dtype=np.float64))
    return 1.0 / total if total > 0 else 0.0


def _add_weighted(total, wi, li):
    """``total + sum_i wi li``; a row of weight 0 adds nothing, not even a NaN."""
    keep = wi != 0
    return total + float((wi[keep] * li[keep]).sum())


def _mse_row(y, i, t, grad, scale):
    """Rows ``i`` of MSE against target rows ``t``: ``grad[i] = 2 (y[i] - t) scale / k``; returns
    ``mean (y[i] - t)^2`` of each."""
    k = y.shape[1]
    d = y[i].astype(np.float64) - t
    grad[i] = 2.0 * scale[:, None] / k * d
    return (d * d).sum(axis=1) / k


def _poisson_row(z, i, t, grad, scale):
    """Rows ``i`` of half the Poisson deviance of log-rates ``z``: ``grad[i] = (exp(z) - t) scale / k``; returns
    each row's mean of ``exp(z) - t z + t log t - t`` (``t log t`` is 0 at t = 0)."""
    k = z.shape[1]
    v = z[i].astype(np.float64)
    t = np.asarray(t, np.float64)
    p = np.exp(v)
    grad[i] = (p - t) * (scale[:, None] / k)
    const = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)) - t, 0.0)
    return (p - t * v + const).sum(axis=1) / k


def _nll_row_label(P, i, y, eps, grad, scale):
    """Rows ``i`` of NLL with labels ``y``: ``-log max(p_y, eps)``; a NaN probability propagates."""
    grad[i] = 0
    p = P[i, y].astype(np.float64)
    clipped = p <= eps  # False for NaN: log(NaN) carries it into the loss
    grad[i, y] = np.where(clipped, 0.0, -scale / np.where(clipped, 1.0, p))
    return -np.log(np.where(clipped, eps, p))


def _nll_row_dense(P, i, t, eps, grad, scale):
    p = P[i].astype(np.float64)
    t = np.asarray(t, np.float64)
    clipped = p <= eps
    grad[i] = np.where(clipped, 0.0, -t * scale[:, None] / np.where(clipped, 1.0, p))
    return -(t * np.log(np.where(clipped, eps, p))).sum(axis=1)


def _bce_logits_row(z, i, t, grad, scale):
    """Rows ``i`` of sigmoid + binary cross-entropy on logits: ``grad[i] = (sigmoid(z) - t) scale / k``;
    returns each row's mean of ``max(z, 0) - z t + log1p(exp(-|z|))``, which never overflows."""
    k = z.shape[1]
    v = z[i].astype(np.float64)
    t = np.asarray(t, np.float64)
    grad[i] = (_sigmoid(v, np.empty_like(v)) - t) * (scale[:, None] / k)
    return (np.maximum(v, 0.0) - v * t + np.log1p(np.exp(-np.abs(v)))).sum(axis=1) / k


def _bce_row(P, i, t, grad, scale):
    """Rows ``i`` of binary cross-entropy on probabilities, PyTorch's ``BCELoss``: logs clamped at -100,
    ``grad[i] = (p - t) / max(p (1 - p), 1e-12) scale / k``."""
    k = P.shape[1]
    p = P[i].astype(np.float64)
    t = np.asarray(t, np.float64)
    with np.errstate(divide="ignore"):
        loss = -(t * np.maximum(np.log(p), -100.0) + (1.0 - t) * np.maximum(np.log1p(-p), -100.0)).sum(axis=1)
    grad[i] = (p - t) / np.maximum(p * (1.0 - p), 1e-12) * (scale[:, None] / k)
    return loss / k


def _rows_loss(row, n, w, *args):
    """``sum_i w_i l_i / sum(w)`` over the ``n`` rows of ``row(..., i, ..., scale)``: the body the loss kernels
    share (the compiled twin writes it out in each)."""
    i = np.arange(n)
    inv = _inv_weight_sum(w, n)
    wi = _weight(w, i)
    return _add_weighted(0.0, wi, row(i, wi * inv)) * inv


def softmax_xent_labels(z, labels, w, probs, grad):
    """Fused softmax + cross-entropy for integer labels, weighted by rows.

    Fills ``probs = softmax(z)`` and ``grad = (probs - onehot(labels)) w_i / sum(w)``; returns the
    weighted mean loss ``sum_i w_i (-log probs[i, labels[i]]) / sum(w)``. ``w`` is an empty array
    for unweighted rows (every loss kernel takes ``w`` so; a row of weight 0 has no influence).
    """
    return _rows_loss(lambda i, scale: _xent_row_label(z, i, labels, probs, grad, scale), z.shape[0], w)


def softmax_xent_dense(z, T, w, probs, grad):
    """Fused softmax + cross-entropy for one-hot or probability targets ``T``.

    Fills ``grad = (probs * T.sum(1) - T) w_i / sum(w)``, which is ``(probs - T) w_i / sum(w)`` whenever
    the rows of ``T`` sum to one; returns the weighted mean of ``-sum_j T_ij log p_ij``.
    """
    return _rows_loss(lambda i, scale: _xent_row_dense(z, i, T, probs, grad, scale), z.shape[0], w)


def nll_labels(P, labels, eps, w, grad):
    """Negative log-likelihood of probabilities ``P`` with integer labels.

    Row loss ``-log(max(p_y, eps))``; gradient ``-w_i / (sum(w) p_y)`` at the label (0 where the
    clip is active), 0 elsewhere. A NaN probability propagates into the loss.
    """
    return _rows_loss(lambda i, scale: _nll_row_label(P, i, labels, eps, grad, scale), P.shape[0], w)


def nll_dense(P, T, eps, w, grad):
    """NLL with one-hot/probability targets: row loss ``-sum_j T_ij log max(P_ij, eps)``."""
    return _rows_loss(lambda i, scale: _nll_row_dense(P, i, T, eps, grad, scale), P.shape[0], w)


def mse(y, target, w, grad):
    """Mean squared error, the mean over outputs per row, weighted over rows; gradient ``2 (y - t) w_i / (sum(w) k)``."""
    return _rows_loss(lambda i, scale: _mse_row(y, i, target, grad, scale), y.shape[0], w)


def bce_logits(z, T, w, grad):
    """Sigmoid + binary cross-entropy on logits, PyTorch's ``BCEWithLogitsLoss`` (mean over outputs).

    Row loss ``mean_j max(z, 0) - z t + log1p(exp(-|z|))`` (no overflow for any ``z``); gradient
    ``(sigmoid(z) - t) w_i / (sum(w) k)``.
    """
    return _rows_loss(lambda i, scale: _bce_logits_row(z, i, T, grad, scale), z.shape[0], w)


def bce(P, T, w, grad):
    """Binary cross-entropy on probabilities, PyTorch's ``BCELoss``: logs clamped at -100, gradient
    ``(p - t) / max(p (1 - p), 1e-12) w_i / (sum(w) k)``."""
    return _rows_loss(lambda i, scale: _bce_row(P, i, T, grad, scale), P.shape[0], w)


def poisson(z, T, w, grad):
    """Half the Poisson deviance of log-rates ``z`` (scikit-learn's ``poisson_loss`` of ``exp(z)``), the mean
    over outputs per row, weighted over rows. Row loss ``mean_j exp(z) - t z + t log t - t``; gradient
    ``(exp(z) - t) w_i / (sum(w) k)``, PyTorch's ``PoissonNLLLoss(log_input=True)`` (whose loss lacks the
    constant ``t log t - t``)."""
    return _rows_loss(lambda i, scale: _poisson_row(z, i, T, grad, scale), z.shape[0], w)
