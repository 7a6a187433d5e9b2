"""The training step in plain NumPy: the executable specification of :mod:`step_numba`.

Built from the per-op kernels of :mod:`numpy_ref` exactly as the compiled twin is built from
:mod:`numba_cpu`; ``step_numba`` exports the same names with the same signatures.
"""
import numpy as np

from fastnn.kernels.codes import (
    H_BETA1, H_BETA2, H_DECOUPLED, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, IDENTITY, LOSS_MSE, LOSS_SCE_LABELS,
    NEEDS_INPUT, OPT_SGD)
from fastnn.kernels.numpy_ref import (
    act_backward, activation_forward, adam_update, linear_backward, linear_backward_sgd, linear_forward, mse,
    sgd_update, softmax_xent_dense, softmax_xent_labels)

__all__ = ["train_batches"]


def train_batches(X, labels, T, order, batch_size, b0, b1, Ws, bs, acts, alphas, H, Z, G, dWs, dbs,
                  loss_kind, opt_kind, hyper, wds, S1, S2, steps, losses, correct):
    """Train on batches ``b0 .. b1-1`` of ``order``: forward, fused loss gradient, backward, update.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (n_samples, n_in)
        Read in place for a batch of consecutive rows of ``order``, else gathered into ``H[0]``.
    labels : int64 ndarray of shape (n_samples,)
        Class labels (also used for accuracy with dense targets); empty for regression.
    T : ndarray of shape (n_samples, n_out)
        Dense targets for ``LOSS_SCE_DENSE``/``LOSS_MSE``; unused (may be empty) for ``LOSS_SCE_LABELS``.
    order : int64 ndarray of shape (n_samples,)
        Sample indices in training order; batch ``b`` is ``order[b*batch_size:(b+1)*batch_size]``.
    Ws, bs : sequences of the L layers' weights (n_in_l, n_out_l) and biases, updated in place.
    acts : int64 ndarray of shape (L,)
        Activation code after each Linear (the last is ``IDENTITY``: the loss takes logits).
    alphas : float64 ndarray of shape (L,)
        Each activation's parameter (LeakyReLU's slope, ELU's alpha; 0 for the others).
    H, G : sequences of L + 1 buffers of shape (batch_size, width_l)
        Activations (``H[0]`` holds the gathered batch) and gradients w.r.t. pre-activations.
    Z : sequence of L + 1 buffers
        Pre-activations of the layers whose activation is in ``codes.NEEDS_INPUT``, shaped like ``H``;
        empty (0, 0) elsewhere.
    dWs, dbs : gradient buffers shaped like ``Ws``, ``bs``.
    loss_kind : a ``LOSS_*`` code of :mod:`codes`.
    opt_kind : ``OPT_SGD`` or ``OPT_ADAM``.
    hyper : float64 ndarray of shape (b1 - b0, len(codes.HYPER))
        Each batch's optimizer hyper-parameters (learning rate, momentum, ...) in the columns of
        :data:`codes.HYPER`: a schedule may change them from batch to batch.
    wds : float64 ndarray of shape (2 L,)
        Weight decay of each parameter, in the order W0, b0, W1, b1, ...
    S1, S2 : sequences of flat optimizer states, two per layer (W then b): SGD momentum
        buffers in ``S1``; Adam's ``m`` in ``S1`` and ``v`` in ``S2``.
    steps : int64 ndarray of shape (1,)
        The optimizer's update count, incremented by every batch's update (Adam's bias correction).
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
    for b in range(b0, b1):
        rows = order[b * batch_size:(b + 1) * batch_size]
        m = rows.shape[0]
        h = hyper[b - b0]
        lr = h[H_LR]
        fold = opt_kind == OPT_SGD and h[H_MOMENTUM] == 0  # plain SGD: update inside the backward pass
        np.take(X, rows, axis=0, out=H[0][:m])
        for l in range(L):
            if acts[l] in NEEDS_INPUT:  # their backward needs the pre-activation: kept in Z
                linear_forward(H[l][:m], Ws[l], bs[l], IDENTITY, 0.0, Z[l + 1][:m])
                activation_forward(acts[l], alphas[l], Z[l + 1][:m], H[l + 1][:m])
            else:
                linear_forward(H[l][:m], Ws[l], bs[l], acts[l], alphas[l], H[l + 1][:m])
        z, grad = H[L][:m], G[L][:m]
        probs = np.empty_like(z)  # the reference may allocate; the compiled twin does not
        if loss_kind == LOSS_MSE:
            total = mse(z, T[rows], grad) * m
            hits = 0
        else:
            if loss_kind == LOSS_SCE_LABELS:
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
                linear_backward_sgd(H[l][:m], Ws[l], G[l + 1][:m], bs[l], lr, wds[2 * l], wds[2 * l + 1], dX)
            else:
                linear_backward(H[l][:m], Ws[l], G[l + 1][:m], dWs[l], dbs[l], dX)
            if l > 0:
                act_backward(acts[l - 1], alphas[l - 1], Z[l][:m], H[l][:m], G[l][:m])
        steps[0] += 1
        if fold:
            continue
        for l in range(L):
            for p, dp, k in ((Ws[l].reshape(-1), dWs[l].reshape(-1), 2 * l), (bs[l], dbs[l], 2 * l + 1)):
                if opt_kind == OPT_SGD:
                    sgd_update(p, dp, S1[k], lr, h[H_MOMENTUM], wds[k], h[H_NESTEROV] != 0)
                else:
                    adam_update(p, dp, S1[k], S2[k], steps[0], lr, h[H_BETA1], h[H_BETA2], h[H_EPS], wds[k],
                                h[H_DECOUPLED] != 0)
    return b1 - b0
