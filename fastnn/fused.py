"""The compiled training step: workspaces for ``train_batches`` and the runner ``fit`` calls.

Eligible: ``Linear`` layers, each optionally followed by one ``ReLU``/``Sigmoid``/
``Tanh``, the last ``Linear`` producing the output; ``SoftmaxCrossEntropy`` or
``MSELoss``; ``SGD``, ``Adam`` or ``AdamW`` over exactly the model's parameters.
Anything else trains through the layer-by-layer path in :mod:`fastnn.train`.
"""
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS Numba's np.dot calls, so threadpoolctl can limit it)
from threadpoolctl import ThreadpoolController

from fastnn._config import blas_threads
from fastnn.kernels import get_backend
from fastnn.kernels.numpy_ref import ADAM, IDENTITY, MSE, SCE_DENSE, SCE_LABELS, SGD
from fastnn.layers import Linear, ReLU, Sigmoid, Tanh
from fastnn.losses import MSELoss, SoftmaxCrossEntropy
from fastnn.optim import SGD as SGDOptimizer
from fastnn.optim import Adam, AdamW

__all__ = ["make_runner"]

_controller = None


def _limit_blas(n_threads):
    """Context manager capping every loaded BLAS (NumPy's and SciPy's OpenBLAS) at ``n_threads``."""
    global _controller
    if _controller is None:  # inspecting the loaded libraries costs milliseconds: once per process
        _controller = ThreadpoolController()
    return _controller.limit(limits=n_threads, user_api="blas")


def _plan(model):
    """``(linears, acts)`` when the layers are Linear[+activation]* ending in a Linear, else None."""
    linears, acts = [], []
    for layer in model.layers:
        if type(layer) is Linear:  # exact types: a subclass may compute something else
            linears.append(layer)
            acts.append(IDENTITY)
        elif type(layer) in (ReLU, Sigmoid, Tanh) and linears and acts[-1] == IDENTITY:
            acts[-1] = layer.code
        else:
            return None
    if not linears or acts[-1] != IDENTITY:
        return None
    return linears, np.array(acts, np.int64)


def make_runner(model, loss, optimizer, X, T, labels, batch_size):
    """Return ``run(order, b0, b1) -> (loss_sums, n_correct, n_done)`` for the compiled step, or None.

    ``loss_sums`` and ``n_correct`` are per-batch arrays of length ``n_done``
    (plus the failing batch when ``n_done < b1 - b0``).
    """
    plan = _plan(model)
    if plan is None or type(loss) not in (SoftmaxCrossEntropy, MSELoss):
        return None
    if type(optimizer) not in (SGDOptimizer, Adam, AdamW):  # a subclass may override step()
        return None
    if [id(p) for p in optimizer.params] != [id(p) for p in model.parameters()]:
        return None
    linears, acts = plan
    dtype = X.dtype
    widths = [X.shape[1]] + [lin.out_features for lin in linears]
    if isinstance(loss, MSELoss):
        loss_kind = MSE
    else:
        loss_kind = SCE_LABELS if T.ndim == 1 else SCE_DENSE
    labels = labels if labels is not None else np.zeros(0, np.int64)
    dense = T if T.ndim == 2 else np.zeros((0, 0), dtype)
    if isinstance(optimizer, Adam):
        opt_kind, S1, S2 = ADAM, optimizer.m, optimizer.v
        hyper = [optimizer.lr, 0.0, optimizer.weight_decay, 0.0, *optimizer.betas, optimizer.eps,
                 float(optimizer.decoupled)]
    else:
        opt_kind, S1 = SGD, optimizer.buffers
        S2 = [np.zeros(0, dtype) for _ in S1]
        hyper = [optimizer.lr, optimizer.momentum, optimizer.weight_decay, float(optimizer.nesterov), 0, 0, 0, 0]
    K = get_backend()
    rows = min(batch_size, X.shape[0])  # a batch larger than the data is the whole data
    # Tuples of same-typed arrays are UniTuples to Numba: indexable by a runtime layer
    # number, free to pass, and unlike typed.List they need no per-process compilation.
    ws = dict(
        Ws=tuple([lin.W.data for lin in linears]), bs=tuple([lin.b.data for lin in linears]),
        H=tuple([np.empty((rows, w), dtype) for w in widths]),
        G=tuple([np.empty((0, 0), dtype)] + [np.empty((rows, w), dtype) for w in widths[1:]]),
        dWs=tuple([lin.W.grad for lin in linears]), dbs=tuple([lin.b.grad for lin in linears]),
        S1=tuple(S1), S2=tuple(S2),
    )
    hyper = np.array(hyper, np.float64)
    n_batches = -(-X.shape[0] // batch_size)
    losses, correct = np.empty(n_batches), np.empty(n_batches, np.int64)
    threads = blas_threads(batch_size)

    def run(order, b0, b1):
        step = optimizer.t if opt_kind == ADAM else 0
        with _limit_blas(threads):
            done = K.train_batches(X, labels, dense, order, batch_size, b0, b1, ws["Ws"], ws["bs"], acts, ws["H"],
                                   ws["G"], ws["dWs"], ws["dbs"], loss_kind, opt_kind, hyper, step, ws["S1"],
                                   ws["S2"], losses, correct)
        if opt_kind == ADAM:
            optimizer.t += done
        k = min(done + 1, b1 - b0)
        return losses[:k], int(correct[:done].sum()), done

    return run
