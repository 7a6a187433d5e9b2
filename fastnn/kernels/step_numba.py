"""The compiled training step: one call trains a run of batches, built from the kernels of :mod:`numba_cpu`.

:mod:`step_numpy` is its executable specification, with the same names and signatures (documented there).
It allocates nothing: every buffer is the caller's (:mod:`fastnn.fused` builds them once per ``fit``).
"""
import math

from fastnn._config import jit
from fastnn.kernels.codes import (
    ELU, GELU, RELU, H_BETA1, H_CLIP_NORM, H_BETA2, H_DECOUPLED, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, IDENTITY, LOSS_BCE,
    LOSS_BCE_LOGITS, LOSS_MSE, LOSS_SCE_LABELS, OPT_SGD)
from fastnn.kernels.numba_cpu import (
    _add_weighted, _bce_logits_row, _bce_row, _mse_row, _xent_row_dense, _xent_row_label, act_backward,
    activation_forward, adam_update, clip_grad_norm, dropout, linear_backward, linear_backward_sgd, linear_forward, sgd_update)

__all__ = ["train_batches"]


@jit
def _loss_grad(loss_kind, z, labels, T, sw, rows, grad):
    """``(sum_i w_i l_i, sum_i w_i, hits)`` over the batch and ``grad`` = d(weighted mean loss)/d(pre-activation).

    Hits: argmax equal to the label for softmax losses; outputs on the right side of 1/2 for the binary ones.
    """
    m, k = z.shape
    wsum = 0.0
    for i in range(m):
        wsum += sw[rows[i]] if sw.shape[0] else 1.0
    inv = 1.0 / wsum if wsum > 0 else 0.0
    total, correct = 0.0, 0
    for i in range(m):
        r = rows[i]
        wi = sw[r] * 1.0 if sw.shape[0] else 1.0
        scale = wi * inv
        if loss_kind == LOSS_MSE:
            li = _mse_row(z, i, T[r], grad, scale)
        elif loss_kind == LOSS_BCE_LOGITS or loss_kind == LOSS_BCE:
            cut = 0.0 if loss_kind == LOSS_BCE_LOGITS else 0.5
            for j in range(k):
                if (z[i, j] > cut) == (T[r, j] > 0.5):
                    correct += 1
            if loss_kind == LOSS_BCE_LOGITS:
                li = _bce_logits_row(z, i, T[r], grad, scale)
            else:  # through the last layer's Sigmoid, as sigmoid_backward does, from its output
                li = _bce_row(z, i, T[r], grad, scale)
                for j in range(k):
                    s = z[i, j]
                    grad[i, j] = grad[i, j] * (s * (1 - s))
        else:
            best = 0
            for j in range(1, k):
                if z[i, j] > z[i, best]:
                    best = j
            if labels.shape[0] and best == labels[r]:
                correct += 1
            # grad doubles as the probability buffer: the row helpers allow the aliasing.
            if loss_kind == LOSS_SCE_LABELS:
                li = _xent_row_label(z, i, labels[r], grad, grad, scale)
            else:
                li = _xent_row_dense(z, i, T[r], grad, grad, scale)
        total = _add_weighted(total, wi, li)
    return total, wsum, correct


@jit(fast=True)
def _relu_dropout_backward(d, p, g):
    """Backward through ReLU then dropout from the dropped-out output ``d``: it is non-zero exactly where the
    ReLU passed and the mask kept (``g * 1/(1-p)``), so the mask needs no second hash."""
    scale = g.dtype.type(1.0 / (1.0 - p))
    n, m = g.shape
    for i in range(n):
        for j in range(m):
            g[i, j] = g[i, j] * scale if d[i, j] > 0 else 0


@jit
def train_batches(X, Xraw, labels, T, sw, order, batch_size, b0, b1, Ws, bs, acts, alphas, drops, keys, H, Z, D, G, dWs,
                  dbs, loss_kind, opt_kind, hyper, wds, S1, S2, steps, losses, weights, correct):
    n = order.shape[0]
    L = len(Ws)
    for b in range(b0, b1):
        h = hyper[b - b0]
        lr, momentum, nesterov = h[H_LR], h[H_MOMENTUM], h[H_NESTEROV] != 0
        beta1, beta2, eps, decoupled = h[H_BETA1], h[H_BETA2], h[H_EPS], h[H_DECOUPLED] != 0
        clip = h[H_CLIP_NORM]
        # Plain SGD goes into the weight-gradient GEMM (W -= lr X^T g): W is written once per step
        # instead of three times, and dW never exists. Clipping needs every gradient first.
        fold = opt_kind == OPT_SGD and momentum == 0 and clip == 0
        rows = order[b * batch_size:min(n, (b + 1) * batch_size)]
        m = rows.shape[0]
        start = rows[0]
        in_order = True
        for i in range(1, m):
            if rows[i] != start + i:
                in_order = False
                break
        if in_order and Xraw.shape[0] == 0:  # consecutive rows (shuffle=False): a view of X, no copy
            x = X[start:start + m]
        else:  # gather the batch: the order is shuffled (or the data converted), the data never is
            x = H[0][:m]
            # element loops: a slice assignment compiled ~2.6 s of error-message code
            if Xraw.shape[0]:
                for i in range(m):
                    r = rows[i]
                    for j in range(x.shape[1]):
                        x[i, j] = Xraw[r, j]
            else:
                for i in range(m):
                    r = rows[i]
                    for j in range(x.shape[1]):
                        x[i, j] = X[r, j]
        for l in range(L):
            a = H[l][:m] if l else x
            if drops[l] > 0:  # this layer's input, dropped out (the mask is a function of its position)
                a = dropout(a, drops[l], keys[l], b * batch_size, D[l][:m])
            if acts[l] == ELU or acts[l] == GELU:  # their backward needs the pre-activation: kept in Z
                linear_forward(a, Ws[l], bs[l], IDENTITY, 0.0, Z[l + 1][:m])
                activation_forward(acts[l], alphas[l], Z[l + 1][:m], H[l + 1][:m])
            else:
                linear_forward(a, Ws[l], bs[l], acts[l], alphas[l], H[l + 1][:m])
        total, wsum, hits = _loss_grad(loss_kind, H[L][:m], labels, T, sw, rows, G[L][:m])
        losses[b - b0] = total
        weights[b - b0] = wsum
        correct[b - b0] = hits
        if not math.isfinite(total):
            return b - b0  # stop before the update: the weights stay finite
        for l in range(L - 1, -1, -1):
            a = D[l][:m] if drops[l] > 0 else H[l][:m] if l else x  # this layer's input
            g = G[l + 1][:m]
            # The input needs no gradient: no dX for the first layer, the largest GEMM saved.
            dX = G[l][:m] if l > 0 else None
            if fold:
                linear_backward_sgd(a, Ws[l], g, bs[l], lr, wds[2 * l], wds[2 * l + 1], dX)
            else:
                linear_backward(a, Ws[l], g, dWs[l], dbs[l], dX)
            if l > 0:
                if drops[l] > 0 and acts[l - 1] == RELU:
                    _relu_dropout_backward(D[l][:m], drops[l], G[l][:m])
                else:
                    if drops[l] > 0:
                        dropout(G[l][:m], drops[l], keys[l], b * batch_size, G[l][:m])
                    act_backward(acts[l - 1], alphas[l - 1], Z[l][:m], H[l][:m], G[l][:m])
        steps[0] += 1
        if fold:
            continue
        if clip > 0:
            clip_grad_norm(dWs, dbs, clip)
        t = steps[0]
        for l in range(L):
            W, dW, bias, db = Ws[l].reshape(-1), dWs[l].reshape(-1), bs[l], dbs[l]
            wd_W, wd_b = wds[2 * l], wds[2 * l + 1]
            if opt_kind == OPT_SGD:
                sgd_update(W, dW, S1[2 * l], lr, momentum, wd_W, nesterov)
                sgd_update(bias, db, S1[2 * l + 1], lr, momentum, wd_b, nesterov)
            else:
                adam_update(W, dW, S1[2 * l], S2[2 * l], t, lr, beta1, beta2, eps, wd_W, decoupled)
                adam_update(bias, db, S1[2 * l + 1], S2[2 * l + 1], t, lr, beta1, beta2, eps, wd_b, decoupled)
    return b1 - b0
