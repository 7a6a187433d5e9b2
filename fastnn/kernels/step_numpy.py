"""The training step in plain NumPy: the executable specification of :mod:`step_numba`.

Built from the per-op kernels of :mod:`numpy_ref` exactly as the compiled twin is built from
:mod:`numba_cpu`; ``step_numba`` exports the same names with the same signatures.
"""
import numpy as np

from fastnn.kernels.codes import (
    H_BETA1, H_BETA2, H_CLIP_NORM, H_DECOUPLED, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, IDENTITY, LOSS_BCE_LOGITS,
    LOSS_MSE, LOSS_SCE_DENSE, LOSS_SCE_LABELS, NEEDS_INPUT, OPT_SGD)
from fastnn.kernels.numpy_ref import (
    act_backward, activation_forward, adam_update, bce, bce_logits, clip_grad_norm, dropout, linear_backward,
    linear_backward_sgd, linear_forward, mse, sgd_update, softmax_xent_dense, softmax_xent_labels)

__all__ = ["train_batches"]


def _loss_grad(loss_kind, z, labels, T, w, rows, grad):
    """``(sum_i w_i l_i, sum_i w_i, hits)`` for the batch ``rows``; ``grad`` = d(weighted mean)/d(pre-activation)."""
    m = z.shape[0]
    wsum = float(w.sum(dtype=np.float64)) if w.shape[0] else float(m)
    if loss_kind == LOSS_SCE_LABELS or loss_kind == LOSS_SCE_DENSE:
        kernel = softmax_xent_labels if loss_kind == LOSS_SCE_LABELS else softmax_xent_dense
        mean = kernel(z, labels[rows] if loss_kind == LOSS_SCE_LABELS else T[rows], w, np.empty_like(z), grad)
        hits = int((z.argmax(axis=1) == labels[rows]).sum()) if labels.shape[0] else 0
    elif loss_kind == LOSS_MSE:
        mean, hits = mse(z, T[rows], w, grad), 0
    else:
        cut = 0.0 if loss_kind == LOSS_BCE_LOGITS else 0.5
        hits = int(((z > cut) == (T[rows] > 0.5)).sum())
        if loss_kind == LOSS_BCE_LOGITS:
            mean = bce_logits(z, T[rows], w, grad)
        else:  # through the last layer's Sigmoid, from its output
            mean = bce(z, T[rows], w, grad)
            grad *= z * (1 - z)
    return mean * wsum, wsum, hits


def train_batches(X, Xraw, labels, T, sw, order, batch_size, b0, b1, Ws, bs, acts, alphas, drops, keys, H, Z, D, G, dWs,
                  dbs, loss_kind, opt_kind, hyper, wds, S1, S2, steps, losses, weights, correct):
    """Train on batches ``b0 .. b1-1`` of ``order``: forward, fused loss gradient, backward, update.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (n_samples, n_in)
        Read in place for a batch of consecutive rows of ``order``, else gathered into ``H[0]``.
    Xraw : C-contiguous ndarray of shape (n_samples, n_in), or empty
        The data in another dtype (float64 for a float32 model, uint8, a memmap), with ``X`` empty:
        each batch is gathered into ``H[0]`` and converted there; the data is never copied whole.
    labels : int64 ndarray of shape (n_samples,)
        Class labels (also used for accuracy with dense targets); empty for regression.
    T : ndarray of shape (n_samples, n_out)
        Dense targets for every loss but ``LOSS_SCE_LABELS`` (for which it may be empty).
    sw : float64 ndarray of shape (n_samples,)
        Sample weights; empty for unweighted rows. A batch's loss is ``sum w_i l_i / sum w_i``.
    order : int64 ndarray of shape (n_samples,)
        Sample indices in training order; batch ``b`` is ``order[b*batch_size:(b+1)*batch_size]``.
    Ws, bs : sequences of the L layers' weights (n_in_l, n_out_l) and biases, updated in place.
    acts : int64 ndarray of shape (L,)
        Activation code after each Linear (the last is ``IDENTITY``: the loss takes logits).
    alphas : float64 ndarray of shape (L,)
        Each activation's parameter (LeakyReLU's slope, ELU's alpha; 0 for the others).
    drops : float64 ndarray of shape (L,)
        Dropout rate on each layer's input (0: none).
    keys : uint64 ndarray of shape (L,)
        Each dropout's mask stream; batch ``b``'s mask is the ``dropout`` kernel's at row offset
        ``b * batch_size``, so a run split into several calls draws the same masks.
    H, G : sequences of L + 1 buffers of shape (batch_size, width_l)
        Activations (``H[0]`` holds the gathered batch) and gradients w.r.t. pre-activations.
    Z : sequence of L + 1 buffers
        Pre-activations of the layers whose activation is in ``codes.NEEDS_INPUT``, shaped like ``H``;
        empty (0, 0) elsewhere.
    D : sequence of L buffers
        The dropped-out inputs of the layers with ``drops[l] > 0``, shaped like ``H[l]``; (0, 0) elsewhere.
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
        Receives each batch's weighted loss *sum* ``sum w_i l_i``.
    weights : float64 ndarray of shape (b1 - b0,)
        Receives each batch's ``sum w_i`` (its row count when unweighted).
    correct : int64 ndarray of shape (b1 - b0,)
        Receives each batch's hits: rows whose argmax is the label (softmax losses), outputs on the
        right side of 1/2 (binary losses; up to ``rows * n_out``).

    Returns
    -------
    int
        Batches completed. Fewer than ``b1 - b0`` when a loss was not finite: that
        batch's update is not applied.

    Notes
    -----
    Plain SGD (``momentum == 0``, no clipping) is applied inside the backward pass by
    ``linear_backward_sgd``; ``dWs``/``dbs`` are then not written. With ``clip_norm > 0`` the
    gradients are clipped by their global norm (``clip_grad_norm``) before the update.
    """
    L = len(Ws)
    for b in range(b0, b1):
        rows = order[b * batch_size:(b + 1) * batch_size]
        m = rows.shape[0]
        h = hyper[b - b0]
        lr = h[H_LR]
        # plain SGD: update inside the backward pass
        fold = opt_kind == OPT_SGD and h[H_MOMENTUM] == 0 and h[H_CLIP_NORM] == 0
        H[0][:m] = Xraw[rows] if Xraw.shape[0] else X[rows]
        inputs = []  # each layer's input, dropped out where drops[l] > 0
        for l in range(L):
            a = H[l][:m]
            if drops[l] > 0:
                a = dropout(a, drops[l], keys[l], b * batch_size, D[l][:m])
            inputs.append(a)
            if acts[l] in NEEDS_INPUT:  # their backward needs the pre-activation: kept in Z
                linear_forward(inputs[l], Ws[l], bs[l], IDENTITY, 0.0, Z[l + 1][:m])
                activation_forward(acts[l], alphas[l], Z[l + 1][:m], H[l + 1][:m])
            else:
                linear_forward(inputs[l], Ws[l], bs[l], acts[l], alphas[l], H[l + 1][:m])
        z, grad = H[L][:m], G[L][:m]
        w = sw[rows] if sw.shape[0] else sw
        losses[b - b0], weights[b - b0], correct[b - b0] = _loss_grad(loss_kind, z, labels, T, w, rows, grad)
        total = losses[b - b0]
        if not np.isfinite(total):
            return b - b0
        for l in range(L - 1, -1, -1):
            dX = G[l][:m] if l > 0 else None
            if fold:
                linear_backward_sgd(inputs[l], Ws[l], G[l + 1][:m], bs[l], lr, wds[2 * l], wds[2 * l + 1], dX)
            else:
                linear_backward(inputs[l], Ws[l], G[l + 1][:m], dWs[l], dbs[l], dX)
            if l > 0:
                if drops[l] > 0:
                    dropout(G[l][:m], drops[l], keys[l], b * batch_size, G[l][:m])
                act_backward(acts[l - 1], alphas[l - 1], Z[l][:m], H[l][:m], G[l][:m])
        steps[0] += 1
        if fold:
            continue
        if h[H_CLIP_NORM] > 0:
            clip_grad_norm(dWs, dbs, h[H_CLIP_NORM])
        for l in range(L):
            for p, dp, k in ((Ws[l].reshape(-1), dWs[l].reshape(-1), 2 * l), (bs[l], dbs[l], 2 * l + 1)):
                if opt_kind == OPT_SGD:
                    sgd_update(p, dp, S1[k], lr, h[H_MOMENTUM], wds[k], h[H_NESTEROV] != 0)
                else:
                    adam_update(p, dp, S1[k], S2[k], steps[0], lr, h[H_BETA1], h[H_BETA2], h[H_EPS], wds[k],
                                h[H_DECOUPLED] != 0)
    return b1 - b0
