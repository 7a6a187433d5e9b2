"""The compiled training step: one call trains a run of batches, built from the kernels of :mod:`numba_cpu`.

:mod:`step_numpy` is its executable specification, with the same names and signatures (documented there).
It allocates nothing: every buffer is the caller's (:mod:`fastnn.fused` builds them once per ``fit``).
Its arguments are the same types for every network (per-layer arrays reach it through the tables of
:mod:`codes`), so one compiled step per dtype serves every depth, width, activation, loss and optimizer.
"""
import math

import numpy as np

from fastnn._config import jit
from fastnn.kernels.codes import (
    NEEDS_INPUT_MASK, RELU, H_BETA1, H_CLIP_NORM, H_BETA2, H_DECOUPLED, H_EPS, H_EPS_HAT, H_LOSS_SCALE, H_LR, H_MOMENTUM,
    H_NESTEROV, H_SAMPLE_DECAY, H_VELOCITY, IDENTITY, LOSS_BCE, LOSS_BCE_LOGITS, LOSS_MSE, LOSS_POISSON, LOSS_SCE_LABELS, RAW_F32, RAW_F64, RAW_I32, RAW_U8, O_D, O_G, O_H, O_Z, OPT_SGD, P_B, P_DB, P_DW, P_S1B, P_S1W, P_S2B,
    P_S2W, P_W)
from fastnn.kernels.numba_cpu import (_mat, _vec, act_backward, activation_forward, adam_update, dropout, linear_backward,
                                      linear_backward_sgd, linear_forward, sgd_update)
from fastnn.kernels.numba_losses import (_add_weighted, _bce_logits_row, _bce_row, _mse_row, _poisson_row, _xent_row_dense,
                                         _xent_row_label)

__all__ = ["train_batches"]


@jit
def _loss_grad(loss_kind, z, labels, T, sw, rows, grad, c):
    """``(sum_i w_i l_i, sum_i w_i, hits)`` over the batch and ``grad`` = d(weighted mean loss)/d(pre-activation),
    each row's loss and gradient times ``c`` (the loss's ``row_scale``).

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
        scale = wi * inv * c
        if loss_kind == LOSS_MSE:
            li = _mse_row(z, i, T[r], grad, scale)
        elif loss_kind == LOSS_POISSON:
            li = _poisson_row(z, i, T[r], grad, scale)
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
        total = _add_weighted(total, wi, li * c)
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
def _gather(src, rows, x):
    """``x[i] = src[rows[i]]``, converted to ``x``'s dtype. Element loops: a slice assignment made Numba compile
    seconds of error-message code (docs/performance.md)."""
    for i in range(x.shape[0]):
        r = rows[i]
        for j in range(x.shape[1]):
            x[i, j] = src[r, j]


@jit
def _work(work, woff, l, slot, m, w):
    """Layer ``l``'s buffer ``slot`` of the flat workspace, as an (m, w) matrix: a view made from the address, as
    :func:`numba_cpu._mat` makes them (a slice's ``reshape`` is a call into Numba's runtime and a reference count,
    a dozen times a batch)."""
    return _mat(np.int64(work.ctypes.data) + woff[l, slot] * work.itemsize, m, w, work.dtype.type(0))


@jit
def _clip_grad_norm(params, dims, zero, max_norm):
    """:func:`numba_cpu.clip_grad_norm` over the gradients of the layer table: same sums, same factor."""
    total = 0.0
    for l in range(params.shape[0]):
        dW, db = _vec(params[l, P_DW], dims[l] * dims[l + 1], zero), _vec(params[l, P_DB], dims[l + 1], zero)
        for k in range(dW.shape[0]):
            total += dW[k] * 1.0 * dW[k]
        for k in range(db.shape[0]):
            total += db[k] * 1.0 * db[k]
    coef = max_norm / (math.sqrt(total) + 1e-6)
    if coef < 1:
        c = zero + coef
        for l in range(params.shape[0]):
            dW, db = _vec(params[l, P_DW], dims[l] * dims[l + 1], zero), _vec(params[l, P_DB], dims[l + 1], zero)
            for k in range(dW.shape[0]):
                dW[k] = dW[k] * c
            for k in range(db.shape[0]):
                db[k] = db[k] * c


@jit
def _state(params, l, slot, n, zero):
    """Optimizer state ``slot`` of layer ``l`` (n values), or an empty array where the rule keeps none."""
    return _vec(params[l, slot], n if params[l, slot] else 0, zero)


@jit
def train_batches(X, Xraw, raw_kind, labels, T, sw, order, batch_size, b0, b1, dims, acts, alphas, drops, keys, params, work,
                  woff, loss_kind, opt_kind, hyper, wds, steps, losses, weights, correct):
    n = order.shape[0]
    L = acts.shape[0]
    zero = X.dtype.type(0)
    for b in range(b0, b1):
        h = hyper[b - b0]
        lr, momentum, nesterov = h[H_LR], h[H_MOMENTUM], h[H_NESTEROV] != 0
        beta1, beta2, eps, decoupled = h[H_BETA1], h[H_BETA2], h[H_EPS], h[H_DECOUPLED] != 0
        clip, velocity, eps_hat = h[H_CLIP_NORM], h[H_VELOCITY] != 0, h[H_EPS_HAT] != 0
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
            x = _work(work, woff, 0, O_H, m, dims[0])
            if Xraw.shape[0] == 0:
                _gather(X, rows, x)
            elif raw_kind == RAW_F32:
                _gather(Xraw.view(np.float32), rows, x)
            elif raw_kind == RAW_F64:
                _gather(Xraw.view(np.float64), rows, x)
            elif raw_kind == RAW_U8:
                _gather(Xraw, rows, x)
            elif raw_kind == RAW_I32:
                _gather(Xraw.view(np.int32), rows, x)
            else:
                _gather(Xraw.view(np.int64), rows, x)
        for l in range(L):
            W, bias = _mat(params[l, P_W], dims[l], dims[l + 1], zero), _vec(params[l, P_B], dims[l + 1], zero)
            a = _work(work, woff, l, O_H, m, dims[l]) if l else x
            if drops[l] > 0:  # this layer's input, dropped out (the mask is a function of its position)
                a = dropout(a, drops[l], keys[l], b * batch_size, _work(work, woff, l, O_D, m, dims[l]))
            out = _work(work, woff, l + 1, O_H, m, dims[l + 1])
            if NEEDS_INPUT_MASK >> acts[l] & 1:  # their backward needs the pre-activation: kept in Z
                z = _work(work, woff, l + 1, O_Z, m, dims[l + 1])
                linear_forward(a, W, bias, IDENTITY, 0.0, z)
                activation_forward(acts[l], alphas[l], z, out)
            else:
                linear_forward(a, W, bias, acts[l], alphas[l], out)
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
        if not math.isfinite(total):
            return b - b0  # stop before the update: the weights stay finite
        for l in range(L - 1, -1, -1):
            W, bias = _mat(params[l, P_W], dims[l], dims[l + 1], zero), _vec(params[l, P_B], dims[l + 1], zero)
            # this layer's input
            a = _work(work, woff, l, O_D if drops[l] > 0 else O_H, m, dims[l]) if l or drops[l] > 0 else x
            g = _work(work, woff, l + 1, O_G, m, dims[l + 1])
            # The input needs no gradient: no dX for the first layer, the largest GEMM saved.
            dX = _work(work, woff, l, O_G, m, dims[l]) if l > 0 else None
            if fold:
                linear_backward_sgd(a, W, g, bias, lr, wds[2 * l] * decay, wds[2 * l + 1] * decay, dX)
            else:
                linear_backward(a, W, g, _mat(params[l, P_DW], dims[l], dims[l + 1], zero),
                                _vec(params[l, P_DB], dims[l + 1], zero), dX)
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
            nw, nb = dims[l] * dims[l + 1], dims[l + 1]
            W, dW = _vec(params[l, P_W], nw, zero), _vec(params[l, P_DW], nw, zero)
            bias, db = _vec(params[l, P_B], nb, zero), _vec(params[l, P_DB], nb, zero)
            wd_W, wd_b = wds[2 * l] * decay, wds[2 * l + 1] * decay
            if opt_kind == OPT_SGD:
                sgd_update(W, dW, _state(params, l, P_S1W, nw, zero), lr, momentum, wd_W, nesterov, velocity)
                sgd_update(bias, db, _state(params, l, P_S1B, nb, zero), lr, momentum, wd_b, nesterov, velocity)
            else:
                adam_update(W, dW, _state(params, l, P_S1W, nw, zero), _state(params, l, P_S2W, nw, zero), t, lr,
                            beta1, beta2, eps, wd_W, decoupled, eps_hat)
                adam_update(bias, db, _state(params, l, P_S1B, nb, zero), _state(params, l, P_S2B, nb, zero), t, lr,
                            beta1, beta2, eps, wd_b, decoupled, eps_hat)
    return b1 - b0
