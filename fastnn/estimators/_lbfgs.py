"""``solver="lbfgs"``: the full data's loss and gradient from fastnn's training core, handed to SciPy's L-BFGS-B
with ``maxiter=max_iter``, ``maxfun=max_fun`` and ``gtol=tol``, as scikit-learn does."""
import warnings

import numpy as np
import scipy
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from fastnn._config import limit_blas_for
from fastnn.core import TrainingCore, linears


class LbfgsMixin:
    """``_fit_lbfgs`` and scikit-learn's private hook ``_loss_grad_lbfgs`` of
    :class:`fastnn.estimators._base.BaseMLP`."""

    def _flat_parameters(self, dtype):
        """``(theta, grad)``: one flat vector of the parameters in scikit-learn's order (coefs, then intercepts),
        ``coefs_``/``intercepts_`` made views of it, and one of their gradients, which the network's parameters
        are pointed at: handing scipy's iterate to the kernels is one copy."""
        shapes = [W.shape for W in self.coefs_] + [b.shape for b in self.intercepts_]
        bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        theta = np.concatenate([p.ravel() for p in self.coefs_ + self.intercepts_]).astype(dtype)
        grad = np.empty_like(theta)
        views = [theta[a:b].reshape(s) for a, b, s in zip(bounds[:-1], bounds[1:], shapes)]
        gviews = [grad[a:b].reshape(s) for a, b, s in zip(bounds[:-1], bounds[1:], shapes)]
        L = len(self.coefs_)
        self.coefs_, self.intercepts_ = views[:L], views[L:]
        network = self._network()
        for lin, dW, db in zip(linears(network), gviews[:L], gviews[L:]):
            lin.W.grad, lin.b.grad = dW, db
        return theta, grad, network

    def _objective(self, core):
        """scikit-learn's loss with its L2 term, the gradient left in the network's parameters' ``grad``."""
        decays = [self.alpha if p.data.ndim == 2 else 0.0 for p in core.model.parameters()]
        loss, penalty = core.loss_and_gradient(decays)
        return loss / self._report_outputs() + penalty

    def _fit_lbfgs(self, X, y, sample_weight):
        theta, grad, network = self._flat_parameters(self.coefs_[0].dtype)
        core = TrainingCore(network, self._loss(), None, X, self._targets(y), sample_weight, max(X.shape[0], 1))

        def loss_grad(packed):
            theta[...] = packed
            return float(self._objective(core)), grad.astype(np.float64)

        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        if tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15):  # iprint is deprecated after
            options["iprint"] = 1 if self.verbose is True or self.verbose >= 1 else -1
        with limit_blas_for(X.shape[0]):
            result = scipy.optimize.minimize(loss_grad, theta.astype(np.float64), method="L-BFGS-B", jac=True,
                                             options=options)
        self.n_iter_ = min(result.nit, self.max_iter)
        if result.status != 0:
            message = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status={result.status}):\n"
                       f"{result.message}\n")
            if self.n_iter_ >= self.max_iter:
                message += f"\nIncrease the number of iterations to improve the convergence (max_iter={self.max_iter})."
            warnings.warn(message, ConvergenceWarning, stacklevel=3)
        self.loss_ = float(result.fun)
        theta[...] = result.x
        self.fast_path_ = False

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *workspaces):
        """scikit-learn's private hook: ``(loss, flat gradient)`` at the flat parameters (coefs, then intercepts)."""
        dtype = self.coefs_[0].dtype
        theta, grad, network = self._flat_parameters(dtype)
        theta[...] = packed_coef_inter
        X = np.ascontiguousarray(X, dtype)
        y = np.asarray(y, dtype).reshape(X.shape[0], -1)
        core = TrainingCore(network, self._loss(), None, X, self._targets(y), sample_weight, max(X.shape[0], 1))
        return self._objective(core), grad.copy()
