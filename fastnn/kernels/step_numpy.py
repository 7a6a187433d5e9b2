"""The training step in plain NumPy: the executable specification of :mod:`step_numba`.

Built from the per-op kernels of :mod:`numpy_ref` exactly as the compiled twin is built from
:mod:`numba_cpu`; ``step_numba`` exports the same names with the same signatures.
"""
import numpy as np

from fastnn.kernels.codes import (
    H_BETA1, H_BETA2, H_CLIP_NORM, H_DECOUPLED, H_EPS, H_EPS_HAT, H_LOSS_SCALE, H_LR, H_MOMENTUM, H_NESTEROV,
    H_SAMPLE_DECAY, H_VELOCITY, IDENTITY, LOSS_BCE_LOGITS, LOSS_MSE, LOSS_POISSON, LOSS_SCE_DENSE, LOSS_SCE_LABELS, NEEDS_INPUT, RAW_DTYPES, O_D, O_G, O_H, O_Z, OPT_SGD, P_B, P_DB, P_DW, P_S1B,
    P_S1W, P_S2B, P_S2W, P_W)
from fastnn.kernels.numpy_ref import (
    _view, act_backward, activation_forward, adam_update, bce, bce_logits, clip_grad_norm, dropout, linear_backward,
    linear_backward_sgd, linear_forward, mse, poisson, sgd_update, softmax_xent_dense, softmax_xent_labels)

__all__ = ["train_batches"]


def _loss_grad(loss_kind, z, labels, T, w, rows, grad, c):
    """``(sum_i w_i l_i, sum_i w_i, hits)`` for the batch ``rows``; ``grad`` = d(weighted mean)/d(pre-activation),
    each row's loss and gradient times ``c`` (the loss's ``row_scale``)."""
    m = z.shape[0]
    wsum = float(w.sum(dtype=np.float64)) if w.shape[0] else float(m)
    if loss_kind == LOSS_SCE_LABELS or loss_kind == LOSS_SCE_DENSE:
        kernel = softmax_xent_labels if loss_kind == LOSS_SCE_LABELS else softmax_xent_dense
        mean = kernel(z, labels[rows] if loss_kind == LOSS_SCE_LABELS else T[rows], w, np.empty_like(z), grad)
        hits = int((z.argmax(axis=1) == labels[rows]).sum()) if labels.shape[0] else 0
    elif loss_kind == LOSS_MSE:
        mean, hits = mse(z, T[rows], w, grad), 0
    elif loss_kind == LOSS_POISSON:
        mean, hits = poisson(z, T[rows], w, grad), 0
    else:
        cut = 0.0 if loss_kind == LOSS_BCE_LOGITS else 0.5
        hits = int(((z > cut) == (T[rows] > 0.5)).sum())
        if loss_kind == LOSS_BCE_LOGITS:
            mean = bce_logits(z, T[rows], w, grad)
        else:  # through the last layer's Sigmoid, from its output
            mean = bce(z, T[rows], w, grad)
            grad *= z * (1 - z)
    if c != 1:
        grad *= grad.dtype.type(c)
    return mean * wsum * c, wsum, hits


def train_batches(X, Xraw, raw_kind, labels, T, sw, order, batch_size, b0, b1, dims, acts, alphas, drops, keys, params, work,
                  woff, loss_kind, opt_kind, hyper, wds, steps, losses, weights, correct):
    """Train on batches ``b0 .. b1-1`` of ``order``: forward, fused loss gradient, backward, update.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (n_samples, n_in)
        Read in place for a batch of consecutive rows of ``order``, else gathered into ``H[0]``.
    Xraw : C-contiguous uint8 ndarray of shape (n_samples, n_in * itemsize), or empty
        The bytes of the data in another dtype (float64 for a float32 model, uint8 pixels, a memmap), with
        ``X`` empty: each batch is gathered into ``H[0]`` and converted there; the data is never copied whole.
    raw_kind : int
        ``Xraw``'s dtype, a ``RAW_*`` code of :mod:`codes` (its index in ``codes.RAW_DTYPES``).
    labels : int64 ndarray of shape (n_samples,)
        Class labels (also used for accuracy with dense targets); empty for regression.
    T : float64 ndarray of shape (n_samples, n_out)
        Dense targets for every loss but ``LOSS_SCE_LABELS`` (for which it may be empty); float64 holds every
        input dtype exactly.
    sw : float64 ndarray of shape (n_samples,)
        Sample weights; empty for unweighted rows. A batch's loss is ``sum w_i l_i / sum w_i``.
    order : int64 ndarray of shape (n_samples,)
        Sample indices in training order; batch ``b`` is ``order[b*batch_size:(b+1)*batch_size]``.
    dims : int64 ndarray of shape (L + 1,)
        The widths: layer ``l`` maps ``dims[l]`` inputs to ``dims[l + 1]`` outputs.
    acts : int64 ndarray of shape (L,)
        Activation code after each Linear (the last is ``IDENTITY``: the loss takes logits).
    alphas : float64 ndarray of shape (L,)
        Each activation's parameter (LeakyReLU's slope, ELU's alpha; 0 for the others).
    drops : float64 ndarray of shape (L,)
        Dropout rate on each layer's input (0: none).
    keys : uint64 ndarray of shape (L,)
        Each dropout's mask stream; batch ``b``'s mask is the ``dropout`` kernel's at row offset
        ``b * batch_size``, so a run split into several calls draws the same masks.
    params : int64 ndarray of shape (L, codes.N_PARAM_SLOTS)
        The layer table of :mod:`codes`: addresses of each layer's C-contiguous weights (dims[l], dims[l + 1])
        and bias (updated in place), their gradient buffers, and the optimizer's flat states for each (0 where
        a rule keeps none), all in the model's dtype. :func:`fastnn.kernels.layout.param_table` builds it
        from arrays it checks; a wrong address is a crash, so nothing else should.
    work : 1-D ndarray in the model's dtype
        The workspace: per layer the buffers ``H`` (activations; ``H[0]`` the gathered batch), ``Z``
        (pre-activations of codes in ``codes.NEEDS_INPUT``), ``D`` (dropped-out inputs) and ``G`` (gradients
        w.r.t. pre-activations), each of ``batch_size`` rows of the layer's width.
    woff : int64 ndarray of shape (L + 1, codes.N_WORK_SLOTS)
        Each buffer's offset in ``work`` (-1: the layer has none); :func:`fastnn.kernels.layout.workspace`.
    loss_kind : a ``LOSS_*`` code of :mod:`codes`.
    opt_kind : ``OPT_SGD`` or ``OPT_ADAM``.
    hyper : float64 ndarray of shape (b1 - b0, len(codes.HYPER))
        Each batch's optimizer hyper-parameters (learning rate, momentum, ...) in the columns of
        :data:`codes.HYPER`: a schedule may change them from batch to batch. ``loss_scale`` multiplies each row's
        loss and gradient; ``sample_decay`` divides each decay by the batch's weight (``sum w_i``).
    wds : float64 ndarray of shape (2 L,)
        Weight decay of each parameter, in the order W0, b0, W1, b1, ...
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
    L = len(acts)
    dtype = X.dtype

    def buf(l, slot, m):
        o = woff[l, slot]
        return work[o:o + m * dims[l]].reshape(m, dims[l])

    def table(l, slot, shape):
        return _view(params[l, slot], shape if params[l, slot] else (0,), dtype)

    Ws = [table(l, P_W, (dims[l], dims[l + 1])) for l in range(L)]
    bs = [table(l, P_B, (dims[l + 1],)) for l in range(L)]
    dWs = [table(l, P_DW, (dims[l], dims[l + 1])) for l in range(L)]
    dbs = [table(l, P_DB, (dims[l + 1],)) for l in range(L)]
    S1 = [table(l, slot, (n,)) for l in range(L) for slot, n in ((P_S1W, Ws[l].size), (P_S1B, bs[l].size))]
    S2 = [table(l, slot, (n,)) for l in range(L) for slot, n in ((P_S2W, Ws[l].size), (P_S2B, bs[l].size))]
    for b in range(b0, b1):
        rows = order[b * batch_size:(b + 1) * batch_size]
        m = rows.shape[0]
        h = hyper[b - b0]
        lr = h[H_LR]
        # plain SGD: update inside the backward pass
        fold = opt_kind == OPT_SGD and h[H_MOMENTUM] == 0 and h[H_CLIP_NORM] == 0
        buf(0, O_H, m)[...] = Xraw.view(RAW_DTYPES[raw_kind])[rows] if Xraw.shape[0] else X[rows]
        inputs = []  # each layer's input, dropped out where drops[l] > 0
        for l in range(L):
            a = buf(l, O_H, m)
            if drops[l] > 0:
                a = dropout(a, drops[l], keys[l], b * batch_size, buf(l, O_D, m))
            inputs.append(a)
            if acts[l] in NEEDS_INPUT:  # their backward needs the pre-activation: kept in Z
                linear_forward(inputs[l], Ws[l], bs[l], IDENTITY, 0.0, buf(l + 1, O_Z, m))
                activation_forward(acts[l], alphas[l], buf(l + 1, O_Z, m), buf(l + 1, O_H, m))
            else:
                linear_forward(inputs[l], Ws[l], bs[l], acts[l], alphas[l], buf(l + 1, O_H, m))
        z, grad = buf(L, O_H, m), buf(L, O_G, m)
        w = sw[rows] if sw.shape[0] else sw
        losses[b - b0], weights[b - b0], correct[b - b0] = _loss_grad(loss_kind, z, labels, T, w, rows, grad,
                                                                      h[H_LOSS_SCALE])
        decay = 1.0  # sample_decay: each decay over the batch's weight
        if h[H_SAMPLE_DECAY] != 0:
            decay = 1.0 / weights[b - b0] if weights[b - b0] > 0 else 0.0
        total = losses[b - b0]
        if not np.isfinite(total):
            return b - b0
        for l in range(L - 1, -1, -1):
            dX = buf(l, O_G, m) if l > 0 else None
            if fold:
                linear_backward_sgd(inputs[l], Ws[l], buf(l + 1, O_G, m), bs[l], lr, wds[2 * l] * decay,
                                    wds[2 * l + 1] * decay, dX)
            else:
                linear_backward(inputs[l], Ws[l], buf(l + 1, O_G, m), dWs[l], dbs[l], dX)
            if l > 0:
                g = buf(l, O_G, m)
                if drops[l] > 0:
                    dropout(g, drops[l], keys[l], b * batch_size, g)
                act_backward(acts[l - 1], alphas[l - 1], buf(l, O_Z, m) if woff[l, O_Z] >= 0 else g, buf(l, O_H, m),
                             g)
        steps[0] += 1
        if fold:
            continue
        if h[H_CLIP_NORM] > 0:
            clip_grad_norm(tuple(dWs), tuple(dbs), h[H_CLIP_NORM])
        for l in range(L):
            for p, dp, k in ((Ws[l].reshape(-1), dWs[l].reshape(-1), 2 * l), (bs[l], dbs[l], 2 * l + 1)):
                if opt_kind == OPT_SGD:
                    sgd_update(p, dp, S1[k], lr, h[H_MOMENTUM], wds[k] * decay, h[H_NESTEROV] != 0,
                               h[H_VELOCITY] != 0)
                else:
                    adam_update(p, dp, S1[k], S2[k], steps[0], lr, h[H_BETA1], h[H_BETA2], h[H_EPS], wds[k] * decay,
                                h[H_DECOUPLED] != 0, h[H_EPS_HAT] != 0)
    return b1 - b0
