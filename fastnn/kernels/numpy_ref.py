"""Plain-NumPy twins: the executable specification of every fastnn kernel.

``numba_cpu`` exports the same names with the same signatures. Kernels do no
validation and allocate nothing: every result goes into an ``out``/``grad``
array the caller owns, of the inputs' dtype (float32 or float64). Losses
return a Python float accumulated in float64. The layers and losses in
:mod:`fastnn.layers` / :mod:`fastnn.losses` validate and own the buffers.
"""
import ctypes
import math

import numpy as np

from fastnn.kernels.codes import ELU, GELU, LEAKY_RELU, P_B, P_W, RELU, SIGMOID, TANH
from fastnn.kernels.numpy_losses import (_sigmoid, bce, bce_logits, mse, nll_dense, nll_labels,  # noqa: F401
                                         poisson, softmax_xent_dense, softmax_xent_labels)
from fastnn.kernels.numpy_optim import adam_update, clip_grad_norm, sgd_update  # noqa: F401

__all__ = ["matmul", "linear_forward", "linear_backward", "linear_backward_sgd", "relu_forward", "relu_backward",
           "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward", "softmax_forward",
           "softmax_backward", "dropout", "softmax_xent_labels", "softmax_xent_dense", "nll_labels", "nll_dense",
           "mse", "bce_logits", "bce", "poisson", "clip_grad_norm", "sgd_update", "adam_update", "activation_forward",
           "act_backward", "mlp_forward"]


def matmul(A, B, out):
    """``out = A @ B``."""
    np.dot(A, B, out=out)
    return out


_GELU_C = np.sqrt(2 / np.pi)


def activation_forward(act, alpha, x, out):
    r"""``out = act(x)`` for an activation code of :mod:`codes`.

    .. math:: \mathrm{LeakyReLU}(x) = x \text{ if } x > 0 \text{ else } \alpha x,\quad
              \mathrm{ELU}(x) = x \text{ if } x > 0 \text{ else } \alpha (e^x - 1),\quad
              \mathrm{GELU}(x) = \tfrac12 x (1 + \tanh(\sqrt{2/\pi} (x + 0.044715 x^3)))

    GELU is the tanh approximation (PyTorch's ``approximate="tanh"``).
    """
    if act == RELU:
        np.maximum(x, 0, out=out)
    elif act == SIGMOID:
        _sigmoid(x, out)
    elif act == TANH:
        np.tanh(x, out=out)
    elif act == LEAKY_RELU:
        np.copyto(out, np.where(x > 0, x, x * alpha), casting="same_kind")
    elif act == ELU:
        np.copyto(out, np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), casting="same_kind")
    elif act == GELU:
        v = x.astype(np.float64)
        np.copyto(out, 0.5 * v * (1 + np.tanh(_GELU_C * (v + 0.044715 * v ** 3))), casting="same_kind")
    else:
        out[...] = x
    return out


def linear_forward(X, W, b, act, alpha, out):
    """``out = act(X @ W + b)``.

    Parameters
    ----------
    X : ndarray of shape (n, n_in)
    W : ndarray of shape (n_in, n_out)
    b : ndarray of shape (n_out,)
    act : int
        An activation code of :mod:`codes` (``IDENTITY`` for none).
    alpha : float
        The activation's parameter (LeakyReLU's slope, ELU's alpha); ignored by the others.
    out : ndarray of shape (n, n_out)
    """
    np.dot(X, W, out=out)
    out += b
    return activation_forward(act, alpha, out, out)


def linear_backward(X, W, g, dW, db, dX):
    """Gradients of ``h = X @ W + b`` given ``g = dL/dh``.

    .. math:: dW = X^T g,\\quad db = \\sum_{rows} g,\\quad dX = g W^T

    ``dX`` may be ``None`` (first layer: the input needs no gradient).
    """
    np.dot(X.T, g, out=dW)
    db[...] = g.sum(axis=0, dtype=np.float64)
    if dX is not None:
        np.dot(g, W.T, out=dX)


def linear_backward_sgd(X, W, g, b, lr, wd_W, wd_b, dX):
    r"""Backward of ``h = X W + b`` fused with a plain SGD step (no momentum).

    ``dX = g W^T`` with the weights before the step (skipped when ``dX`` is None), then

    .. math:: W \leftarrow W - \eta (X^T g + \lambda_W W),\quad b \leftarrow b - \eta (\textstyle\sum_{rows} g + \lambda_b b)

    which is ``sgd_update`` applied to ``linear_backward``'s ``dW``/``db``. The compiled
    twin does the gradient part of the weight update as one BLAS call (alpha = -lr, beta = 1),
    after the decay as its own pass; this twin rounds as it does: the decay first, then
    ``W + alpha X^T g`` with ``alpha`` in the parameters' dtype, rounded once, and the bias's
    sum of ``g`` row by row.
    """
    if dX is not None:
        np.dot(g, W.T, out=dX)
    b[...] = b - lr * (np.cumsum(g, axis=0, dtype=np.float64)[-1] + wd_b * b)
    if wd_W != 0:
        W[...] = W - (lr * wd_W) * W
    alpha = np.float64(W.dtype.type(-lr))
    W[...] = W.astype(np.float64) + alpha * np.dot(X.T, g).astype(np.float64)


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


_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _hash(key, idx):
    """splitmix64 of the counters ``idx`` (uint64) in stream ``key``."""
    z = np.uint64(key) + idx * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def dropout(x, p, key, row, out):
    r"""Inverted dropout of the rows ``row, row + 1, ...`` of a stream of masks.

    .. math:: y_{ij} = x_{ij} / (1 - p) \text{ if } u_{ij} \ge p \text{ else } 0

    ``u`` comes from splitmix64: hash ``(row + i) * ceil(m / 2) + j // 2`` of stream ``key``, its low 32
    bits for even ``j`` and its high 32 bits for odd ``j``, over 2^32. The mask depends only on the key and
    the position, so the same call on the gradient is the backward pass (nothing is stored).
    """
    n, m = x.shape
    pairs = (m + 1) // 2
    idx = (np.uint64(row) + np.arange(n, dtype=np.uint64))[:, None] * np.uint64(pairs) \
        + np.arange(pairs, dtype=np.uint64)[None, :]
    h = _hash(key, idx)
    u = np.empty((n, 2 * pairs), np.uint64)
    u[:, 0::2] = h & np.uint64(0xFFFFFFFF)
    u[:, 1::2] = h >> np.uint64(32)
    keep = u[:, :m] >= np.uint64(math.ceil(p * 4294967296.0))  # u / 2^32 >= p, in integers
    np.multiply(x, np.where(keep, x.dtype.type(1.0 / (1.0 - p)), x.dtype.type(0)), out=out)
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


def act_backward(act, alpha, x, y, g):
    """``g *= act'`` in place, from the cached output ``y``; ELU and GELU (``codes.NEEDS_INPUT``)
    differentiate from the input ``x`` (elsewhere ``x`` is not read)."""
    if act == RELU:
        g[~(y > 0)] = 0
    elif act == SIGMOID:
        g *= y * (1 - y)
    elif act == TANH:
        g *= 1 - y * y
    elif act == LEAKY_RELU:  # alpha >= 0: y > 0 exactly where x > 0
        g[~(y > 0)] *= g.dtype.type(alpha)
    elif act == ELU:
        np.multiply(g, np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))), out=g, casting="same_kind")
    elif act == GELU:
        v = x.astype(np.float64)
        t = np.tanh(_GELU_C * (v + 0.044715 * v ** 3))
        dt = (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * v * v)
        np.multiply(g, 0.5 * (1 + t) + 0.5 * v * dt, out=g, casting="same_kind")


def _view(address, shape, dtype):
    """The array of ``shape`` and ``dtype`` at ``address`` (an entry of a layer table, 0 for an empty array):
    what the compiled twin reads there. A view: the memory stays its owner's."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    if size == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer((ctypes.c_char * (size * dtype.itemsize)).from_address(int(address)), dtype).reshape(shape)


def _vec(address, n, zero):
    """The ``n`` values at ``address`` as a 1-D array of ``zero``'s dtype: a view, owned by the caller."""
    return _view(address, (int(n),), np.asarray(zero).dtype)


def _mat(address, n, m, zero):
    """As :func:`_vec`, an (n, m) C-contiguous matrix."""
    return _view(address, (int(n), int(m)), np.asarray(zero).dtype)


def mlp_forward(X, dims, acts, alphas, params, work, out):
    """Inference through ``L = len(acts)`` layers: ``out = f_L(... f_1(X W_1 + b_1) ... W_L + b_L)``, each
    ``f_l`` the activation code ``acts[l]`` fused as in :func:`linear_forward`.

    Parameters
    ----------
    X : ndarray of shape (n, n_in), C-contiguous
    dims : int64 ndarray of shape (L + 1,)
        The widths: layer ``l`` maps ``dims[l]`` inputs to ``dims[l + 1]`` outputs.
    acts : ndarray of L int64 activation codes
    alphas : ndarray of L float64
        The activations' parameters (see :func:`linear_forward`).
    params : int64 ndarray of shape (L, codes.N_PARAM_SLOTS)
        The layer table (:mod:`codes`): ``params[l, P_W]`` and ``params[l, P_B]`` are the addresses of layer
        ``l``'s C-contiguous weights (dims[l], dims[l + 1]) and bias, in ``X``'s dtype (see
        :func:`fastnn.kernels.layout.param_table`).
    work : ndarray of shape (2, chunk * w)
        ``w`` the widest hidden layer: two buffers the hidden layers' outputs alternate between, each holding
        ``chunk`` rows. Rows go through the network ``chunk`` at a time (all at once without hidden layers).
    out : ndarray of shape (n, n_out_L)

    Returns
    -------
    bool
        Whether the first layer's pre-activations ``X W_1 + b_1`` were all finite. A NaN or inf in ``X`` makes
        them NaN or inf wherever its row meets the layer (``inf * 0`` is NaN; no sum of an inf or NaN is finite),
        so True proves ``X`` finite, and ``predict`` need not read ``X`` a second time to check it; False may also
        mean a non-finite parameter or an overflow, which the caller tells apart by checking ``X`` itself.
    """
    n, last = X.shape[0], len(acts) - 1
    Ws = [_view(params[l, P_W], (dims[l], dims[l + 1]), X.dtype) for l in range(last + 1)]
    bs = [_view(params[l, P_B], (dims[l + 1],), X.dtype) for l in range(last + 1)]
    width = max([int(w) for w in dims[1:-1]], default=1)
    chunk = work.shape[1] // width if last else n
    finite = True
    with np.errstate(over="ignore", invalid="ignore"):  # as the compiled twin: the answer says it, not a warning
        for s in range(0, n, chunk):
            finite = _forward_chunk(X[s:s + chunk], Ws, bs, acts, alphas, work, out[s:s + chunk]) and finite
    return finite


def _forward_chunk(a, Ws, bs, acts, alphas, work, out):
    """:func:`mlp_forward` of the rows ``a`` into ``out``; whether the first layer's pre-activations were finite."""
    finite, last, m = True, len(acts) - 1, a.shape[0]
    for l in range(last + 1):
        w = Ws[l].shape[1]
        dst = out if l == last else work[l % 2, :m * w].reshape(m, w)
        if l == 0:  # linear_forward in its two steps, the pre-activations checked between them
            np.dot(a, Ws[l], out=dst)
            dst += bs[l]
            finite = bool(np.isfinite(dst).all())
            activation_forward(acts[l], alphas[l], dst, dst)
        else:
            linear_forward(a, Ws[l], bs[l], acts[l], alphas[l], dst)
        a = dst
    return finite
