"""Plain-NumPy twins: the executable specification of every fastnn kernel.

``numba_cpu`` exports the same names with the same signatures. Kernels do no
validation and allocate nothing: every result goes into an ``out``/``grad``
array the caller owns, of the inputs' dtype (float32 or float64). Losses
return a Python float accumulated in float64. The layers and losses in
:mod:`fastnn.layers` / :mod:`fastnn.losses` validate and own the buffers.
"""
import numpy as np

# Activation codes for ``linear_forward``'s fused epilogue.
IDENTITY, RELU, SIGMOID, TANH = 0, 1, 2, 3
# Loss and optimizer codes for ``train_batches``.
SCE_LABELS, SCE_DENSE, MSE = 0, 1, 2
SGD, ADAM = 0, 1


def matmul(A, B, out):
    """``out = A @ B``."""
    np.dot(A, B, out=out)
    return out


def _sigmoid(x, out):
    # exp(-|x|) never overflows; sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) below.
    e = np.exp(-np.abs(x))
    np.divide(np.where(x >= 0, 1, e), 1 + e, out=out)
    return out


def _activate(act, out):
    if act == RELU:
        np.maximum(out, 0, out=out)
    elif act == SIGMOID:
        _sigmoid(out, out)
    elif act == TANH:
        np.tanh(out, out=out)
    return out


def linear_forward(X, W, b, act, out):
    """``out = act(X @ W + b)``.

    Parameters
    ----------
    X : ndarray of shape (n, n_in)
    W : ndarray of shape (n_in, n_out)
    b : ndarray of shape (n_out,)
    act : int
        One of ``IDENTITY``, ``RELU``, ``SIGMOID``, ``TANH``.
    out : ndarray of shape (n, n_out)
    """
    np.dot(X, W, out=out)
    out += b
    return _activate(act, out)


def linear_backward(X, W, g, dW, db, dX):
    """Gradients of ``h = X @ W + b`` given ``g = dL/dh``.

    .. math:: dW = X^T g,\\quad db = \\sum_{rows} g,\\quad dX = g W^T

    ``dX`` may be ``None`` (first layer: the input needs no gradient).
    """
    np.dot(X.T, g, out=dW)
    db[...] = g.sum(axis=0, dtype=np.float64)
    if dX is not None:
        np.dot(g, W.T, out=dX)


def linear_backward_sgd(X, W, g, b, lr, weight_decay, dX):
    r"""Backward of ``h = X W + b`` fused with a plain SGD step (no momentum).

    ``dX = g W^T`` with the weights before the step (skipped when ``dX`` is None), then

    .. math:: W \leftarrow (1 - \eta\lambda) W - \eta X^T g,\quad b \leftarrow (1 - \eta\lambda) b - \eta \textstyle\sum_{rows} g

    which is ``sgd_update`` applied to ``linear_backward``'s ``dW``/``db``. The compiled
    twin does the weight update as one BLAS call (alpha = -lr, beta = 1 - lr wd).
    """
    if dX is not None:
        np.dot(g, W.T, out=dX)
    shrink = 1 - lr * weight_decay
    b[...] = shrink * b - lr * g.sum(axis=0, dtype=np.float64)
    W[...] = shrink * W - lr * np.dot(X.T, g)


def relu_forward(x, out):
    """``out = max(x, 0)``; NaN propagates."""
    np.maximum(x, 0, out=out)
    return out


def relu_backward(y, g, out):
    """``out = g`` where the cached output ``y > 0`` (same as input > 0), else 0."""
    out[...] = 0
    np.copyto(out, g, where=y > 0)
    return out


def sigmoid_forward(x, out):
    """``out = 1 / (1 + exp(-x))``, evaluated without overflow."""
    return _sigmoid(x, out)


def sigmoid_backward(y, g, out):
    """``out = g * y * (1 - y)`` from the cached output ``y``."""
    np.multiply(g, y * (1 - y), out=out)
    return out


def tanh_forward(x, out):
    np.tanh(x, out=out)
    return out


def tanh_backward(y, g, out):
    """``out = g * (1 - y**2)`` from the cached output ``y``."""
    np.multiply(g, 1 - y * y, out=out)
    return out


def softmax_forward(x, out):
    """Row-wise softmax with the row maximum subtracted."""
    np.subtract(x, x.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True, dtype=np.float64)
    return out


def softmax_backward(s, g, out):
    """Row-wise Jacobian-vector product of softmax.

    .. math:: dx_i = s_i \\odot (g_i - \\langle g_i, s_i \\rangle)
    """
    dot = np.einsum("ij,ij->i", g.astype(np.float64), s.astype(np.float64))
    np.multiply(s, g - dot[:, None], out=out)
    return out


def _log_softmax(z):
    zm = z - z.max(axis=1, keepdims=True)
    return zm - np.log(np.exp(zm.astype(np.float64)).sum(axis=1, keepdims=True))


def softmax_xent_labels(z, labels, probs, grad):
    """Fused softmax + cross-entropy for integer labels.

    Fills ``probs = softmax(z)`` and ``grad = (probs - onehot(labels)) / n``;
    returns the mean loss ``-mean(log probs[i, labels[i]])``.
    """
    n = z.shape[0]
    logp = _log_softmax(z)
    softmax_forward(z, probs)
    np.divide(probs, n, out=grad)
    grad[np.arange(n), labels] -= 1.0 / n
    return float(-logp[np.arange(n), labels].sum() / n)


def softmax_xent_dense(z, T, probs, grad):
    """Fused softmax + cross-entropy for one-hot or probability targets ``T``.

    Fills ``grad = (probs * T.sum(1) - T) / n``, which is ``(probs - T) / n``
    whenever the rows of ``T`` sum to one; returns ``-mean_i sum_j T_ij log p_ij``.
    """
    n = z.shape[0]
    logp = _log_softmax(z)
    softmax_forward(z, probs)
    t = T.astype(np.float64)
    np.divide(probs * t.sum(axis=1, keepdims=True) - t, n, out=grad)
    return float(-(t * logp).sum() / n)


def nll_labels(P, labels, eps, grad):
    """Negative log-likelihood of probabilities ``P`` with integer labels.

    Loss ``-mean log(max(p_y, eps))``; gradient ``-1 / (n p_y)`` at the label
    (0 where the clip is active), 0 elsewhere.
    """
    n = P.shape[0]
    rows = np.arange(n)
    p = P[rows, labels].astype(np.float64)
    grad[...] = 0
    grad[rows, labels] = np.where(p > eps, -1.0 / (n * np.maximum(p, eps)), 0.0)
    return float(-np.log(np.maximum(p, eps)).sum() / n)


def nll_dense(P, T, eps, grad):
    """NLL with one-hot/probability targets: ``-mean_i sum_j T_ij log max(P_ij, eps)``."""
    n = P.shape[0]
    p = P.astype(np.float64)
    t = T.astype(np.float64)
    clipped = np.maximum(p, eps)
    np.copyto(grad, np.where(p > eps, -t / (n * clipped), 0.0), casting="same_kind")
    return float(-(t * np.log(clipped)).sum() / n)


def mse(y, target, grad):
    """Mean squared error over all elements and its gradient ``2 (y - t) / y.size``."""
    diff = y.astype(np.float64) - target
    np.multiply(diff, 2.0 / y.size, out=grad, casting="same_kind")
    return float((diff * diff).sum() / y.size)


def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """One SGD step on 1-D views, PyTorch's rule (dampening 0).

    ``g += wd p; buf = momentum buf + g; p -= lr (g + momentum buf if nesterov else buf)``.
    ``buf`` starts at zero, so the first step sets ``buf = g`` as PyTorch does.
    With ``momentum == 0`` ``buf`` is not touched.
    """
    d = g.astype(np.float64) + weight_decay * p
    if momentum != 0:
        b = momentum * buf + d
        buf[...] = b
        d = d + momentum * b if nesterov else b
    p[...] = p - lr * d  # one rounding, in float64, as the compiled twin does


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step, PyTorch's rule.

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
    p[...] = w - lr * mhat / (np.sqrt(vhat) + eps)


def _act_backward(act, y, g):
    """``g *= act'(y)`` in place, from the cached activation output ``y``."""
    if act == RELU:
        g[~(y > 0)] = 0
    elif act == SIGMOID:
        g *= y * (1 - y)
    elif act == TANH:
        g *= 1 - y * y


def train_batches(X, labels, T, order, batch_size, b0, b1, Ws, bs, acts, H, G, dWs, dbs,
                  loss_kind, opt_kind, hyper, step, S1, S2, losses, correct):
    """Train on batches ``b0 .. b1-1`` of ``order``: forward, fused loss gradient, backward, update.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (n_samples, n_in)
        Read in place for a batch of consecutive rows of ``order``, else gathered into ``H[0]``.
    labels : int64 ndarray of shape (n_samples,)
        Class labels (also used for accuracy with dense targets); empty for regression.
    T : ndarray of shape (n_samples, n_out)
        Dense targets for ``SCE_DENSE``/``MSE``; unused (may be empty) for ``SCE_LABELS``.
    order : int64 ndarray of shape (n_samples,)
        Sample indices in training order; batch ``b`` is ``order[b*batch_size:(b+1)*batch_size]``.
    Ws, bs : sequences of the L layers' weights (n_in_l, n_out_l) and biases, updated in place.
    acts : int64 ndarray of shape (L,)
        Activation code after each Linear (the last is ``IDENTITY``: the loss takes logits).
    H, G : sequences of L + 1 buffers of shape (batch_size, width_l)
        Activations (``H[0]`` holds the gathered batch) and gradients w.r.t. pre-activations.
    dWs, dbs : gradient buffers shaped like ``Ws``, ``bs``.
    loss_kind : ``SCE_LABELS``, ``SCE_DENSE`` or ``MSE``.
    opt_kind : ``SGD`` or ``ADAM``.
    hyper : float64 ndarray
        ``[lr, momentum, weight_decay, nesterov, beta1, beta2, eps, decoupled]``.
    step : int
        Adam's step count before this call.
    S1, S2 : sequences of flat optimizer states, two per layer (W then b): SGD momentum
        buffers in ``S1``; Adam's ``m`` in ``S1`` and ``v`` in ``S2``.
    losses : float64 ndarray of shape (b1 - b0,)
        Receives each batch's loss *sum* (mean times batch size).
    correct : int64 ndarray of shape (b1 - b0,)
        Receives each batch's count of argmax hits.

    Returns
    -------
    int
        Batches completed. Fewer than ``b1 - b0`` when a loss was not finite: that
        batch's update is not applied.

    Notes
    -----
    Plain SGD (``momentum == 0``) is applied inside the backward pass by
    ``linear_backward_sgd``; ``dWs``/``dbs`` are then not written.
    """
    L = len(Ws)
    fold = opt_kind == SGD and hyper[1] == 0  # plain SGD: update inside the backward pass
    for b in range(b0, b1):
        rows = order[b * batch_size:(b + 1) * batch_size]
        m = rows.shape[0]
        np.take(X, rows, axis=0, out=H[0][:m])
        for l in range(L):
            linear_forward(H[l][:m], Ws[l], bs[l], acts[l], H[l + 1][:m])
        z, grad = H[L][:m], G[L][:m]
        probs = np.empty_like(z)  # the reference may allocate; the compiled twin does not
        if loss_kind == MSE:
            total = mse(z, T[rows], grad) * m
            hits = 0
        else:
            if loss_kind == SCE_LABELS:
                total = softmax_xent_labels(z, labels[rows], probs, grad) * m
            else:
                total = softmax_xent_dense(z, T[rows], probs, grad) * m
            hits = int((z.argmax(axis=1) == labels[rows]).sum()) if labels.shape[0] else 0
        losses[b - b0], correct[b - b0] = total, hits
        if not np.isfinite(total):
            return b - b0
        for l in range(L - 1, -1, -1):
            dX = G[l][:m] if l > 0 else None
            if fold:
                linear_backward_sgd(H[l][:m], Ws[l], G[l + 1][:m], bs[l], hyper[0], hyper[2], dX)
            else:
                linear_backward(H[l][:m], Ws[l], G[l + 1][:m], dWs[l], dbs[l], dX)
            if l > 0:
                _act_backward(acts[l - 1], H[l][:m], G[l][:m])
        if fold:
            continue
        step += 1
        for l in range(L):
            for p, dp, k in ((Ws[l].reshape(-1), dWs[l].reshape(-1), 2 * l), (bs[l], dbs[l], 2 * l + 1)):
                if opt_kind == SGD:
                    sgd_update(p, dp, S1[k], hyper[0], hyper[1], hyper[2], hyper[3] != 0)
                else:
                    adam_update(p, dp, S1[k], S2[k], step, hyper[0], hyper[4], hyper[5], hyper[6], hyper[2],
                                hyper[7] != 0)
    return b1 - b0
