"""The training step in plain NumPy: the executable specification of :mod:`step_numba`.

Built from the per-op kernels and the loss row helpers of :mod:`numpy_ref` as the compiled twin is built from
:mod:`numba_cpu`: the same helpers under the same names and signatures (``_loss_grad``, ``_relu_dropout_backward``,
``_gather``, ``_work``, ``_state``, ``_clip_grad_norm``; ``tests/test_kernels.py`` checks them), the same loop and
the same branches. Where the compiled twin loops over the rows of a batch, this one takes them all at once, and it
makes its views of the layer table once per call (a NumPy view of an address costs microseconds, the compiled
twin's none). ``step_numba`` exports the same names with the same signatures.
"""
import numpy as np

from fastnn.kernels.codes import (
    H_BETA1, H_BETA2, H_CLIP_NORM, H_DECOUPLED, H_EPS, H_EPS_HAT, H_LOSS_SCALE, H_LR, H_MOMENTUM, H_NESTEROV,
    H_SAMPLE_DECAY, H_VELOCITY, IDENTITY, LOSS_BCE, LOSS_BCE_LOGITS, LOSS_MSE, LOSS_POISSON, LOSS_SCE_LABELS,
    NEEDS_INPUT_MASK, RAW_DTYPES, O_D, O_G, O_H, O_Z, OPT_SGD, P_B, P_DB, P_DW, P_S1B, P_S1W, P_S2B, P_S2W, P_W, RELU)
from fastnn.kernels.numpy_losses import (_add_weighted, _bce_logits_row, _bce_row, _mse_row, _poisson_row, _xent_row_dense,
                                         _xent_row_label)
from fastnn.kernels.numpy_ref import (_mat, _vec, act_backward, activation_forward, adam_update, clip_grad_norm, dropout,
                                      linear_backward, linear_backward_sgd, linear_forward, sgd_update)

__all__ = ["train_batches"]


def _loss_grad(loss_kind, z, labels, T, sw, rows, grad, c):
    """``(sum_i w_i l_i, sum_i w_i, hits)`` over the batch and ``grad`` = d(weighted mean loss)/d(pre-activation),
    each row's loss and gradient times ``c`` (the loss's ``row_scale``).

    Hits: argmax equal to the label for softmax losses; outputs on the right side of 1/2 for the binary ones.
    """
    m = z.shape[0]
    wi = np.asarray(sw[rows], np.float64) if sw.shape[0] else np.ones(m)
    wsum = float(wi.sum())
    inv = 1.0 / wsum if wsum > 0 else 0.0
    scale = wi * inv * c
    i = np.arange(m)
    correct = 0
    if loss_kind == LOSS_MSE:
        li = _mse_row(z, i, T[rows], grad, scale)
    elif loss_kind == LOSS_POISSON:
        li = _poisson_row(z, i, T[rows], grad, scale)
    elif loss_kind == LOSS_BCE_LOGITS or loss_kind == LOSS_BCE:
        cut = 0.0 if loss_kind == LOSS_BCE_LOGITS else 0.5
        correct = int(((z > cut) == (T[rows] > 0.5)).sum())
        if loss_kind == LOSS_BCE_LOGITS:
            li = _bce_logits_row(z, i, T[rows], grad, scale)
        else:  # through the last layer's Sigmoid, as sigmoid_backward does, from its output
            li = _bce_row(z, i, T[rows], grad, scale)
            grad *= z * (1 - z)
    else:
        if labels.shape[0]:
            correct = int((z.argmax(axis=1) == labels[rows]).sum())
        # grad doubles as the probability buffer: the row helpers allow the aliasing.
        if loss_kind == LOSS_SCE_LABELS:
            li = _xent_row_label(z, i, labels[rows], grad, grad, scale)
        else:
            li = _xent_row_dense(z, i, T[rows], grad, grad, scale)
    return _add_weighted(0.0, wi, li * c), wsum, correct


def _relu_dropout_backward(d, p, g):
    """Backward through ReLU then dropout from the dropped-out output ``d``: it is non-zero exactly where the
    ReLU passed and the mask kept (``g * 1/(1-p)``), so the mask needs no second hash."""
    scale = g.dtype.type(1.0 / (1.0 - p))
    g[...] = np.where(d > 0, g * scale, 0)


def _gather(src, rows, x):
    """``x[i] = src[rows[i]]``, converted to ``x``'s dtype."""
    x[...] = src[rows]


def _work(work, woff, l, slot, m, w):
    """Layer ``l``'s buffer ``slot`` of the flat workspace, as an (m, w) matrix."""
    o = woff[l, slot]
    return work[o:o + m * w].reshape((m, w))


def _clip_grad_norm(params, dims, zero, max_norm):
    """:func:`numpy_ref.clip_grad_norm` over the gradients of the layer table."""
    L = params.shape[0]
    clip_grad_norm(tuple(_vec(params[l, P_DW], dims[l] * dims[l + 1], zero) for l in range(L)),
                   tuple(_vec(params[l, P_DB], dims[l + 1], zero) for l in range(L)), max_norm)


def _state(params, l, slot, n, zero):
    """Optimizer state ``slot`` of layer ``l`` (n values), or an empty array where the rule keeps none."""
    return _vec(params[l, slot], n if params[l, slot] else 0, zero)


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
    n = order.shape[0]
    L = acts.shape[0]
    zero = X.dtype.type(0)
    Ws = [_mat(params[l, P_W], dims[l], dims[l + 1], zero) for l in range(L)]
    bs = [_vec(params[l, P_B], dims[l + 1], zero) for l in range(L)]
    dWs = [_mat(params[l, P_DW], dims[l], dims[l + 1], zero) if params[l, P_DW] else None for l in range(L)]
    dbs = [_vec(params[l, P_DB], dims[l + 1], zero) if params[l, P_DB] else None for l in range(L)]
    S = {slot: [_state(params, l, slot, Ws[l].size if slot in (P_S1W, P_S2W) else bs[l].size, zero) for l in range(L)]
         for slot in (P_S1W, P_S1B, P_S2W, P_S2B)}
    for b in range(b0, b1):
        h = hyper[b - b0]
        lr, momentum, nesterov = h[H_LR], h[H_MOMENTUM], h[H_NESTEROV] != 0
        beta1, beta2, eps, decoupled = h[H_BETA1], h[H_BETA2], h[H_EPS], h[H_DECOUPLED] != 0
        clip, velocity, eps_hat = h[H_CLIP_NORM], h[H_VELOCITY] != 0, h[H_EPS_HAT] != 0
        # Plain SGD goes into the weight-gradient GEMM (W -= lr X^T g): clipping needs every gradient first.
        fold = opt_kind == OPT_SGD and momentum == 0 and clip == 0
        rows = order[b * batch_size:min(n, (b + 1) * batch_size)]
        m = rows.shape[0]
        start = rows[0]
        in_order = bool((rows == start + np.arange(m)).all())
        if in_order and Xraw.shape[0] == 0:  # consecutive rows (shuffle=False): a view of X, no copy
            x = X[start:start + m]
        else:  # gather the batch: the order is shuffled (or the data converted), the data never is
            x = _work(work, woff, 0, O_H, m, dims[0])
            _gather(Xraw.view(RAW_DTYPES[raw_kind]) if Xraw.shape[0] else X, rows, x)
        for l in range(L):
            a = _work(work, woff, l, O_H, m, dims[l]) if l else x
            if drops[l] > 0:  # this layer's input, dropped out (the mask is a function of its position)
                a = dropout(a, drops[l], keys[l], b * batch_size, _work(work, woff, l, O_D, m, dims[l]))
            out = _work(work, woff, l + 1, O_H, m, dims[l + 1])
            if NEEDS_INPUT_MASK >> acts[l] & 1:  # their backward needs the pre-activation: kept in Z
                z = _work(work, woff, l + 1, O_Z, m, dims[l + 1])
                linear_forward(a, Ws[l], bs[l], IDENTITY, 0.0, z)
                activation_forward(acts[l], alphas[l], z, out)
            else:
                linear_forward(a, Ws[l], bs[l], acts[l], alphas[l], out)
        total, wsum, hits = _loss_grad(loss_kind, _work(work, woff, L, O_H, m, dims[L]), labels, T, sw, rows,
                                       _work(work, woff, L, O_G, m, dims[L]), h[H_LOSS_SCALE])
        # sample_decay (scikit-learn's alpha): the L2 term belongs to the batch's summed loss, so each decay is
        # divided by the batch's weight.
        decay = 1.0
        if h[H_SAMPLE_DECAY] != 0:
            decay = 1.0 / wsum if wsum > 0 else 0.0
        losses[b - b0] = total
        weights[b - b0] = wsum
        correct[b - b0] = hits
        if not np.isfinite(total):
            return b - b0  # stop before the update: the weights stay finite
        for l in range(L - 1, -1, -1):
            # this layer's input
            a = _work(work, woff, l, O_D if drops[l] > 0 else O_H, m, dims[l]) if l or drops[l] > 0 else x
            g = _work(work, woff, l + 1, O_G, m, dims[l + 1])
            # The input needs no gradient: no dX for the first layer, the largest GEMM saved.
            dX = _work(work, woff, l, O_G, m, dims[l]) if l > 0 else None
            if fold:
                linear_backward_sgd(a, Ws[l], g, bs[l], lr, wds[2 * l] * decay, wds[2 * l + 1] * decay, dX)
            else:
                linear_backward(a, Ws[l], g, dWs[l], dbs[l], dX)
            if l > 0:
                gl = _work(work, woff, l, O_G, m, dims[l])
                if drops[l] > 0 and acts[l - 1] == RELU:
                    _relu_dropout_backward(_work(work, woff, l, O_D, m, dims[l]), drops[l], gl)
                else:
                    if drops[l] > 0:
                        dropout(gl, drops[l], keys[l], b * batch_size, gl)
                    z = _work(work, woff, l, O_Z, m, dims[l]) if woff[l, O_Z] >= 0 else gl
                    act_backward(acts[l - 1], alphas[l - 1], z, _work(work, woff, l, O_H, m, dims[l]), gl)
        steps[0] += 1
        if fold:
            continue
        if clip > 0:
            _clip_grad_norm(params, dims, zero, clip)
        t = steps[0]
        for l in range(L):
            W, dW, bias, db = Ws[l].reshape(-1), dWs[l].reshape(-1), bs[l], dbs[l]
            wd_W, wd_b = wds[2 * l] * decay, wds[2 * l + 1] * decay
            if opt_kind == OPT_SGD:
                sgd_update(W, dW, S[P_S1W][l], lr, momentum, wd_W, nesterov, velocity)
                sgd_update(bias, db, S[P_S1B][l], lr, momentum, wd_b, nesterov, velocity)
            else:
                adam_update(W, dW, S[P_S1W][l], S[P_S2W][l], t, lr, beta1, beta2, eps, wd_W, decoupled, eps_hat)
                adam_update(bias, db, S[P_S1B][l], S[P_S2B][l], t, lr, beta1, beta2, eps, wd_b, decoupled, eps_hat)
    return b1 - b0
