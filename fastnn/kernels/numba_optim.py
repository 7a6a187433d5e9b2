"""The optimizers' kernels of the compiled twin: SGD (momentum, Nesterov, scikit-learn's velocity form), Adam and
AdamW, and the gradients' clipping by their global norm. :mod:`numpy_optim` is the NumPy twin, name by name;
:mod:`numba_cpu` exports them with the other per-op kernels, and the compiled step (:mod:`step_numba`) calls them.
"""
import math

from fastnn._config import jit

__all__ = ["clip_grad_norm", "sgd_update", "adam_update"]


@jit
def clip_grad_norm(dWs, dbs, max_norm):
    total = 0.0
    for l in range(len(dWs)):
        dW, db = dWs[l].reshape(-1), dbs[l]
        for k in range(dW.shape[0]):
            total += dW[k] * 1.0 * dW[k]
        for k in range(db.shape[0]):
            total += db[k] * 1.0 * db[k]
    norm = math.sqrt(total)
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        c = dWs[0].dtype.type(coef)
        for l in range(len(dWs)):
            dW, db = dWs[l].reshape(-1), dbs[l]
            for k in range(dW.shape[0]):
                dW[k] = dW[k] * c
            for k in range(db.shape[0]):
                db[k] = db[k] * c
    return norm


@jit(fast=True)
def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov, velocity):
    for k in range(p.shape[0]):
        d = g[k] + weight_decay * p[k]
        if momentum != 0 and velocity:  # buf is the velocity v = momentum v - lr d
            v = momentum * buf[k] - lr * d
            buf[k] = v
            p[k] = p[k] + (momentum * v - lr * d if nesterov else v)
            continue
        if momentum != 0:
            b = momentum * buf[k] + d
            buf[k] = b
            d = d + momentum * b if nesterov else b
        p[k] = p[k] - lr * d


@jit(fast=True)
def adam_update(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, eps_hat):
    # Arithmetic in the parameters' dtype, as PyTorch does: float64 sqrt and division run at half
    # the vector width and made this loop compute-bound (docs/performance.md, "What made it fast").
    # Bias corrections are folded into two scalars, also as PyTorch.
    T = p.dtype.type
    c1 = T(1.0 / (1.0 - beta1**step))
    c2 = T(1.0 / math.sqrt(1.0 - beta2**step))
    b1, b2, one_b1, one_b2 = T(beta1), T(beta2), T(1.0 - beta1), T(1.0 - beta2)
    if eps_hat:  # eps added to sqrt(v), not to sqrt(v_hat) = sqrt(v) c2: the same step with eps c2
        eps = eps / math.sqrt(1.0 - beta2**step)
    lr_, eps_, wd, shrink = T(lr), T(eps), T(weight_decay), T(1.0 - lr * weight_decay)
    for k in range(p.shape[0]):
        w = p[k]
        d = g[k]
        if decoupled:
            w = w * shrink
        elif weight_decay != 0:
            d = d + wd * w
        mk = b1 * m[k] + one_b1 * d
        vk = b2 * v[k] + one_b2 * d * d
        m[k] = mk
        v[k] = vk
        p[k] = w - lr_ * (mk * c1) / (math.sqrt(vk) * c2 + eps_)
