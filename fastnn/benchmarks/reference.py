"""A plain-NumPy trainer for a ReLU MLP: the baseline fastnn's epoch is timed against.

It is what a competent NumPy user writes, no more: ``X @ W + b`` through ``np.dot`` into workspaces
allocated once per epoch, in-place ReLU, softmax and updates, the fused softmax-cross-entropy
gradient ``(P - Y) / n``, and no gradient for the input layer. Conventions follow ``fastnn.Linear``:
``W`` has shape (n_in, n_out) and parameters are the list ``[W1, b1, W2, b2, ...]``.
"""
import numpy as np

SIZES = (784, 128, 64, 10)


def epoch_flop(n_samples, sizes=SIZES):
    """Floating-point operations of one training epoch of the MLP ``sizes`` over ``n_samples``.

    Per sample and layer of ``n_in x n_out`` weights, ``2 n_in n_out`` each for the forward product and
    the weight gradient, and for the input gradient of every layer but the first (nobody needs ``dX``
    of the data). Elementwise work is not counted: it is a fraction of a percent here.
    """
    macs = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return 2 * n_samples * (2 * sum(macs) + sum(macs[1:]))


def init_params(sizes=SIZES, seed=0, dtype=np.float32):
    """He-normal weights ``N(0, 2 / n_in)`` and zero biases, as ``[W1, b1, W2, b2, ...]``."""
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        params += [(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype), np.zeros(n_out, dtype)]
    return params


def evaluate(params, X, y, batch_size=2048):
    """Mean cross-entropy (float64) and accuracy of the ReLU MLP ``params`` on ``X`` (n, n_in), labels ``y``."""
    Ws, bs = params[0::2], params[1::2]
    loss, correct = 0.0, 0
    for start in range(0, X.shape[0], batch_size):
        a = X[start:start + batch_size]
        for k, (W, b) in enumerate(zip(Ws, bs)):
            a = a @ W + b
            if k < len(Ws) - 1:
                np.maximum(a, 0, out=a)
        z = a.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        yb = y[start:start + batch_size]
        loss -= logp[np.arange(len(yb)), yb].sum()
        correct += int((z.argmax(axis=1) == yb).sum())
    return loss / X.shape[0], correct / X.shape[0]


def train_epoch(params, X, y, lr=0.1, batch_size=64):
    """One epoch of minibatch SGD over ``X`` in order, softmax cross-entropy loss.

    Parameters
    ----------
    params : list of ndarray
        ``[W1, b1, ...]``, updated in place.
    X : ndarray of shape (n_samples, n_in)
    y : ndarray of shape (n_samples,) of int labels
    lr : float
    batch_size : int

    Returns
    -------
    float
        Mean training loss over the epoch, each sample's loss taken before its batch's update.
    """
    Ws, bs = params[0::2], params[1::2]
    last = len(Ws) - 1
    dtype = Ws[0].dtype
    # Full-batch workspaces; a short final batch uses their leading rows (still C-contiguous).
    acts = [np.empty((batch_size, W.shape[1]), dtype) for W in Ws]
    deltas = [np.empty_like(a) for a in acts[:-1]]
    dWs = [np.empty_like(W) for W in Ws]
    total = 0.0
    for start in range(0, X.shape[0], batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        m = xb.shape[0]
        rows = np.arange(m)
        a = xb
        for k in range(last + 1):
            h = acts[k][:m]
            np.dot(a, Ws[k], out=h)
            h += bs[k]
            if k < last:
                np.maximum(h, 0, out=h)
            a = h
        # Softmax in place on the logits, then the fused gradient (P - Y) / m, valid because each
        # one-hot row of Y sums to one.
        a -= a.max(axis=1, keepdims=True)
        zy = a[rows, yb]
        np.exp(a, out=a)
        s = a.sum(axis=1, keepdims=True)
        total += float(np.log(s[:, 0]).sum() - zy.sum())
        a /= s
        a[rows, yb] -= 1
        a /= m
        g = a
        for k in range(last, -1, -1):
            below = acts[k - 1][:m] if k else xb
            np.dot(below.T, g, out=dWs[k])
            db = g.sum(axis=0)
            if k:  # the input layer's dX is never needed
                g_below = deltas[k - 1][:m]
                np.dot(g, Ws[k].T, out=g_below)
                g_below *= below > 0  # ReLU' from the cached output
            dWs[k] *= lr
            Ws[k] -= dWs[k]
            db *= lr
            bs[k] -= db
            if k:
                g = g_below
    return total / X.shape[0]
