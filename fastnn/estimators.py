"""scikit-learn's :class:`MLPClassifier` and :class:`MLPRegressor`, trained by fastnn's kernels.

A drop-in for :mod:`sklearn.neural_network`: the same parameters, defaults, attributes
(``coefs_``, ``intercepts_``, ``loss_curve_``, ``n_iter_``, ``t_``, ``out_activation_``, ...), stopping
rules, messages and verbose output, and the same model: Glorot-uniform weights drawn from ``random_state``
in scikit-learn's order, one logistic output for binary and multi-label problems, softmax for
multi-class, identity (squared error) or exp (Poisson) for regression, and the L2 term
``alpha / 2 ||W||^2 / n`` on the weights only. scikit-learn's own ``test_mlp.py`` passes against these
classes with only its import line changed (``tests/test_sklearn_suite.py``).

How a fit runs (``fast_path_`` says whether it was the compiled step throughout):

* ``solver="sgd"`` or ``"adam"`` on a softmax, logistic (binary, multi-label) or squared-error problem with
  dense ``X`` and no ``sample_weight``: fastnn's compiled training step, one :meth:`fastnn.Sequential.fit`
  epoch at a time (the learning-rate schedule, stopping rule, validation and verbose line run between
  epochs). Each parameter is its own group, so ``alpha`` decays the weights only; Adam's epsilon is set
  batch by batch to scikit-learn's placement. Two differences remain: the step divides the L2 term by the
  batch size where scikit-learn divides by the rows of each batch (they differ on a smaller last batch),
  and ``loss_curve_`` adds the L2 term of the end-of-epoch weights, not of each batch's.
* the rest (the exp output of ``loss="poisson"``, sample weights, sparse ``X``, densified one batch of
  rows at a time; and an epoch whose loss diverged on the compiled step, redone here so that, as in
  scikit-learn, training goes on): batch by batch on fastnn's per-op kernels with scikit-learn's update rules.
* ``solver="lbfgs"``: the loss and gradient of the whole data set from the same kernels, handed to
  ``scipy.optimize.minimize(method="L-BFGS-B")`` with ``maxiter=max_iter``, ``maxfun=max_fun`` and
  ``gtol=tol``, as scikit-learn does.

Training runs in ``X``'s dtype when it is float32 or float64 (float64 otherwise), as in scikit-learn;
``dtype=np.float32`` trains in float32 whatever ``X`` is (faster).
"""
import numbers
import warnings

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit, xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from fastnn._config import blas_threads, limit_blas
from fastnn._validation import FLOAT_DTYPES
from fastnn.kernels import codes, get_backend
from fastnn.layers import Linear, ReLU, Sigmoid, Tanh
from fastnn.losses import BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropy
from fastnn.lr_scheduler import LRScheduler
from fastnn.model import Sequential
from fastnn.optim import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}
_STOCHASTIC = ("sgd", "adam")
_SPARSE_ROWS = 2048  # rows of a sparse X densified at a time by the full-batch (lbfgs) loss
_PREDICT_ROWS = 4096  # rows per block of predict/predict_proba: the activations of one block at a time
_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and "
              "need to be preprocessed.")


def _limit_blas(rows):
    """BLAS threads as fastnn's training step sets them for GEMMs of ``rows`` rows (one below a threshold)."""
    return limit_blas(blas_threads(rows))


def _real(low, high=np.inf, low_open=False, high_open=False):
    def ok(v):
        return (isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
                and (v > low if low_open else v >= low) and (v < high if high_open else v <= high))
    return ok


def _positive_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


# name -> (predicate, what was expected); checked in fit, never in __init__ (scikit-learn's contract).
_RULES = {
    "activation": (lambda v: isinstance(v, str) and v in _ACTIVATIONS, f"one of {sorted(_ACTIVATIONS)}"),
    "solver": (lambda v: isinstance(v, str) and v in ("adam", "sgd", "lbfgs"), "'adam', 'sgd' or 'lbfgs'"),
    "alpha": (_real(0), "a finite number >= 0"),
    "batch_size": (lambda v: v == "auto" if isinstance(v, str) else _positive_int(v), "'auto' or an int >= 1"),
    "learning_rate": (lambda v: isinstance(v, str) and v in ("constant", "invscaling", "adaptive"),
                      "'constant', 'invscaling' or 'adaptive'"),
    "learning_rate_init": (_real(0, low_open=True), "a finite number > 0"),
    "power_t": (_real(0), "a finite number >= 0"),
    "max_iter": (_positive_int, "an int >= 1"),
    "tol": (_real(0), "a finite number >= 0"),
    "momentum": (_real(0, 1), "a number in [0, 1]"),
    "validation_fraction": (_real(0, 1, low_open=True, high_open=True), "a number in (0, 1)"),
    "beta_1": (_real(0, 1, high_open=True), "a number in [0, 1)"),
    "beta_2": (_real(0, 1, high_open=True), "a number in [0, 1)"),
    "epsilon": (_real(0, low_open=True), "a finite number > 0"),
    "n_iter_no_change": (lambda v: _positive_int(v) or (isinstance(v, float) and v == np.inf),
                         "an int >= 1 or np.inf"),
    "max_fun": (_positive_int, "an int >= 1"),
    "dtype": (lambda v: v is None or np.dtype(v) in FLOAT_DTYPES, "None, np.float32 or np.float64"),
}


# -- scikit-learn's optimizers (the update rules of sklearn/neural_network/_stochastic_optimizers.py) ---------
class _SGDOptimizer:
    """SGD with (Nesterov) momentum: ``v <- momentum v - lr g``, ``p += v`` (or ``momentum v - lr g``).

    ``learning_rate`` is the current rate: ``"invscaling"`` sets it to ``lr0 / (t + 1)^power_t`` at the
    end of each epoch (``t`` = samples seen), ``"adaptive"`` divides it by 5 when the stopping rule fires.
    """

    def __init__(self, params, learning_rate_init, lr_schedule, momentum, nesterov, power_t):
        self.learning_rate_init, self.learning_rate = learning_rate_init, float(learning_rate_init)
        self.lr_schedule, self.momentum, self.nesterov, self.power_t = lr_schedule, momentum, nesterov, power_t
        self.velocities = [np.zeros_like(p) for p in params]

    def update_params(self, params, grads):
        for p, v, g in zip(params, self.velocities, grads):
            v *= self.momentum
            v -= self.learning_rate * g
            if self.nesterov:
                p += self.momentum * v - self.learning_rate * g
            else:
                p += v

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """True to stop; under ``"adaptive"`` first divide the rate by 5 until it is <= 1e-6."""
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class _AdamOptimizer:
    """Adam as scikit-learn writes it: ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``.

    Epsilon is added to ``sqrt(v)``, not to the bias-corrected ``sqrt(v_hat)`` (PyTorch's placement).
    """

    def __init__(self, params, learning_rate_init, beta_1, beta_2, epsilon):
        self.learning_rate_init, self.learning_rate = learning_rate_init, float(learning_rate_init)
        self.beta_1, self.beta_2, self.epsilon, self.t = beta_1, beta_2, epsilon, 0
        self.ms = [np.zeros_like(p) for p in params]
        self.vs = [np.zeros_like(p) for p in params]

    def update_params(self, params, grads):
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        self.learning_rate = self.learning_rate_init * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        # fastnn's fused Adam kernel adds its epsilon to sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t): handing it
        # epsilon / sqrt(1 - b2^t) is scikit-learn's step, one pass over memory instead of NumPy's ten.
        eps = self.epsilon / np.sqrt(1 - b2 ** self.t)
        K = get_backend()
        for p, m, v, g in zip(params, self.ms, self.vs, grads):
            K.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), self.t,
                          self.learning_rate_init, b1, b2, eps, 0.0, False)

    def iteration_ends(self, time_step):
        pass

    def trigger_stopping(self, msg, verbose):
        if verbose:
            print(msg + " Stopping.")
        return True


# -- the network on fastnn's kernels ----------------------------------------------------------------------
def _out_activation(name, Z):
    """scikit-learn's output activation, in place on the last layer's output ``Z``."""
    if name == "softmax":
        Z -= Z.max(axis=1)[:, np.newaxis]
        np.exp(Z, out=Z)
        Z /= Z.sum(axis=1)[:, np.newaxis]
    elif name == "logistic":
        expit(Z, out=Z)
    elif name == "exp":
        np.exp(Z, out=Z)
    return Z


def _sample_losses(name, Y, P):
    """Per-sample loss of scikit-learn's ``LOSS_FUNCTIONS`` (their batch loss is the weighted mean)."""
    if name == "identity":
        return 0.5 * ((Y - P) ** 2).mean(axis=1)
    if name == "exp":
        return (xlogy(Y, Y / P) - Y + P).sum(axis=1)
    eps = np.finfo(P.dtype).eps
    P = np.clip(P, eps, 1 - eps)
    if name == "softmax":
        return -xlogy(Y, P).sum(axis=1)
    return -(xlogy(Y, P) + xlogy(1 - Y, 1 - P)).sum(axis=1)


def _dense_rows(X, start, stop):
    """Rows ``start:stop`` of ``X`` as a C-contiguous dense array (a sparse X is densified here only)."""
    block = X[start:stop]
    return block.toarray() if sp.issparse(block) else block


class _BaseMLP(BaseEstimator):
    """Shared parameters and training; see :class:`MLPClassifier` for the parameters."""

    _loss_name = None

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None):
        self.hidden_layer_sizes, self.activation, self.solver = hidden_layer_sizes, activation, solver
        self.alpha, self.batch_size, self.learning_rate = alpha, batch_size, learning_rate
        self.learning_rate_init, self.power_t, self.max_iter = learning_rate_init, power_t, max_iter
        self.shuffle, self.random_state, self.tol = shuffle, random_state, tol
        self.verbose, self.warm_start = verbose, warm_start
        self.momentum, self.nesterovs_momentum = momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.n_iter_no_change, self.max_fun, self.dtype = n_iter_no_change, max_fun, dtype

    def __sklearn_is_fitted__(self):
        return hasattr(self, "coefs_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- parameters and state ---------------------------------------------------------------------------
    def _check_params(self):
        """Raise ValueError naming the first invalid parameter; return the hidden widths as a list."""
        for name, (ok, expected) in self._rules().items():
            value = getattr(self, name)
            try:
                valid = ok(value)
            except TypeError:  # e.g. np.dtype("foo") or comparing a list with a number
                valid = False
            if not valid:
                raise ValueError(f"{name} must be {expected}, got {value!r}")
        h = self.hidden_layer_sizes
        sizes = [h] if isinstance(h, numbers.Integral) else list(h) if np.iterable(h) else None
        if sizes is None or not all(_positive_int(s) for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be an int >= 1 or a sequence of them, got {h!r}")
        return sizes

    def _rules(self):
        return _RULES

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                                 "not stochastic.")
        return True

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_, self.t_ = 0, 0
        self.n_outputs_, self.n_layers_ = y.shape[1], len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        # Glorot-uniform weights *and* biases from the random state in scikit-learn's order (W then b, layer
        # by layer, drawn in float64), so one random_state starts both libraries from the same weights.
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out).astype(dtype))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.solver in _STOCHASTIC:
            self.loss_curve_, self._no_improvement_count = [], 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _params_dtype(self):
        dtype = np.asarray(self.coefs_[0]).dtype
        return dtype if dtype in FLOAT_DTYPES else np.dtype(np.float64)

    def _own_params(self, dtype):
        """Make ``coefs_``/``intercepts_`` C-contiguous arrays of ``dtype`` (they may have been assigned)."""
        self.coefs_ = [np.ascontiguousarray(c, dtype) for c in self.coefs_]
        self.intercepts_ = [np.ascontiguousarray(np.reshape(b, -1), dtype) for b in self.intercepts_]

    @property
    def model_(self):
        """A :class:`fastnn.Sequential` computing this estimator's outputs before the output activation.

        Its parameters share memory with ``coefs_``/``intercepts_``.
        """
        check_is_fitted(self)
        return self._sequential()

    def _sequential(self):
        act = _ACTIVATIONS[self.activation]
        layers = []
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            lin = Linear(W.shape[0], W.shape[1], seed=0, dtype=W.dtype)  # its own draw is replaced
            lin.W.data, lin.b.data = W, b
            layers.append(lin)
            if i < len(self.coefs_) - 1 and act is not None:
                layers.append(act())
        return Sequential(*layers)

    # -- forward and backward on fastnn's kernels ---------------------------------------------------------
    def _forward(self, X):
        """Activations ``[X, h_1, ..., out]``: bias and hidden activation fused into each GEMM's epilogue."""
        K, act = get_backend(), _ACTIVATIONS[self.activation]
        code = codes.IDENTITY if act is None else act.code
        H = [X]
        last = len(self.coefs_) - 1
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            out = np.empty((H[-1].shape[0], W.shape[1]), W.dtype)
            H.append(K.linear_forward(H[-1], W, b, code if i < last else codes.IDENTITY, 0.0, out))
        _out_activation(self.out_activation_, H[-1])
        return H

    def _backward(self, H, delta, coef_grads, intercept_grads):
        """Fill ``coef_grads[i] = H_i^T delta_i`` and ``intercept_grads[i] = sum(delta_i)`` from the output's delta."""
        K, act = get_backend(), _ACTIVATIONS[self.activation]
        for i in range(len(self.coefs_) - 1, -1, -1):
            dX = np.empty_like(H[i]) if i > 0 else None
            K.linear_backward(H[i], self.coefs_[i], delta, coef_grads[i], intercept_grads[i], dX)
            if i > 0:
                if act is not None:  # relu, logistic and tanh derive from their output
                    K.act_backward(act.code, 0.0, H[i], H[i], dX)
                delta = dX
        return coef_grads, intercept_grads

    def _loss_grad(self, X, Y, sample_weight, coef_grads, intercept_grads):
        """scikit-learn's ``_backprop``: the loss with its L2 term, gradients into the lists given.

        A sparse ``X`` is densified ``_SPARSE_ROWS`` rows at a time, gradients summed over the blocks.
        """
        n = X.shape[0]
        step = _SPARSE_ROWS if sp.issparse(X) else max(n, 1)
        total = 0.0
        for start in range(0, n, step):
            stop = min(start + step, n)
            H = self._forward(_dense_rows(X, start, stop))
            P, T = H[-1], Y[start:stop]
            losses = _sample_losses(self.out_activation_, T, P)
            delta = P - T
            if sample_weight is None:
                total += losses.sum()
            else:
                w = sample_weight[start:stop]
                total += np.dot(w, losses)
                delta *= w.reshape(-1, 1).astype(delta.dtype, copy=False)
            if start == 0:
                self._backward(H, delta, coef_grads, intercept_grads)
            else:
                more = self._backward(H, delta, [np.empty_like(g) for g in coef_grads],
                                      [np.empty_like(g) for g in intercept_grads])
                for acc, g in zip(coef_grads + intercept_grads, more[0] + more[1]):
                    acc += g
        sw_sum = n if sample_weight is None else sample_weight.sum()
        penalty = sum(np.dot(W.ravel(), W.ravel()) for W in self.coefs_)
        for W, dW, db in zip(self.coefs_, coef_grads, intercept_grads):
            dW += self.alpha * W
            dW /= sw_sum
            db /= sw_sum
        return total / sw_sum + (0.5 * self.alpha) * penalty / sw_sum

    def _predict_outputs(self, X):
        """Network outputs after the output activation, in the parameters' dtype.

        ``_PREDICT_ROWS`` rows at a time: beside the output, only one block's activations are ever alive (a
        sparse ``X`` is densified a block at a time too).
        """
        dtype = self.coefs_[0].dtype
        out = np.empty((X.shape[0], self.coefs_[-1].shape[1]), dtype)
        for start in range(0, X.shape[0], _PREDICT_ROWS):
            block = _dense_rows(X, start, start + _PREDICT_ROWS)
            out[start:start + _PREDICT_ROWS] = self._forward(np.ascontiguousarray(block, dtype))[-1]
        return out

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                              dtype=self.coefs_[0].dtype)
            if sp.issparse(X):
                X = X.tocsr()
        return self._predict_outputs(X)

    # -- fit ------------------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sp.issparse(X):
            X = X.tocsr()
        if sample_weight is not None:
            sample_weight = self._check_sample_weight(sample_weight, X.shape[0])
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        dtype = self._params_dtype() if not first_pass else X.dtype
        self._own_params(dtype)
        X = X.astype(dtype, copy=False)
        if not sp.issparse(X):
            X = np.ascontiguousarray(X)
        y = np.ascontiguousarray(y, dtype)
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(X, y, sample_weight, incremental)
        else:
            with _limit_blas(X.shape[0]):
                self._fit_lbfgs(X, y, sample_weight, layer_units)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(_NONFINITE)
        return self

    @staticmethod
    def _check_sample_weight(sample_weight, n):
        if np.isscalar(sample_weight):
            sample_weight = np.full(n, sample_weight, np.float64)
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must be a scalar or of shape ({n},), got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("sample_weight must be finite and non-negative")
        if not w.any():
            raise ValueError("sample_weight must contain at least one non-zero weight")
        return w

    def _fit_lbfgs(self, X, y, sample_weight, layer_units):
        dtype = self.coefs_[0].dtype
        shapes = [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:])]
        sizes = [a * b for a, b in shapes] + [b for _, b in shapes]
        bounds = np.cumsum([0] + sizes)
        # The parameters live in one flat vector; coefs_/intercepts_ are views of it, so handing scipy's
        # iterate to the kernels is one copy. Gradients are computed into views of a second vector.
        theta = np.concatenate([p.ravel() for p in self.coefs_ + self.intercepts_]).astype(dtype)
        grad = np.empty_like(theta)
        n_layers = len(shapes)
        views = [theta[bounds[i]:bounds[i + 1]] for i in range(2 * n_layers)]
        gviews = [grad[bounds[i]:bounds[i + 1]] for i in range(2 * n_layers)]
        self.coefs_ = [views[i].reshape(shapes[i]) for i in range(n_layers)]
        self.intercepts_ = views[n_layers:]
        coef_grads = [gviews[i].reshape(shapes[i]) for i in range(n_layers)]
        intercept_grads = gviews[n_layers:]

        def loss_grad(packed):
            theta[...] = packed
            loss = self._loss_grad(X, y, sample_weight, coef_grads, intercept_grads)
            return float(loss), grad.astype(np.float64)

        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        if tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15):  # iprint is deprecated after
            options["iprint"] = 1 if self.verbose is True or self.verbose >= 1 else -1
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
        start = 0
        for group in (self.coefs_, self.intercepts_):
            for i, p in enumerate(group):
                group[i] = np.asarray(packed_coef_inter[start:start + p.size], dtype).reshape(p.shape)
                start += p.size
        X = np.ascontiguousarray(X, dtype)
        y = np.asarray(y, dtype).reshape(X.shape[0], -1)
        coef_grads = [np.empty_like(c) for c in self.coefs_]
        intercept_grads = [np.empty_like(b) for b in self.intercepts_]
        loss = self._loss_grad(X, y, sample_weight, coef_grads, intercept_grads)
        return loss, np.concatenate([g.ravel() for g in coef_grads + intercept_grads])

    def _new_optimizer(self, params):
        if self.solver == "sgd":
            return _SGDOptimizer(params, self.learning_rate_init, self.learning_rate, self.momentum,
                                 self.nesterovs_momentum, self.power_t)
        return _AdamOptimizer(params, self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _compiled_step_applies(self, X, sample_weight):
        """Whether fastnn's compiled training step computes this fit exactly as scikit-learn's update would.

        The exp (Poisson) output has no loss on the step; with sample weights scikit-learn divides the L2
        term by each batch's weight sum, the step by its fixed batch size; sparse rows are not gathered there.
        """
        return (self.out_activation_ in ("softmax", "identity", "logistic") and sample_weight is None
                and not sp.issparse(X))

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        params = self.coefs_ + self.intercepts_
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer(params)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val = y_val = sw_val = None
        X_train, y_train, sw_train = X, y, sample_weight
        if self.early_stopping:
            # Stratified on the 0/1 indicator as scikit-learn does (its messages name the classes True/False).
            stratify = y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
            arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
            split = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
            X_train, X_val, y_train, y_val = split[:4]
            if sample_weight is not None:
                sw_train, sw_val = split[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size "
                                 "of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be "
                              "clipped", stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n))
        compiled = _CompiledEpochs(self, X_train, y_train, batch_size) \
            if self._compiled_step_applies(X_train, sample_weight) else None
        self.fast_path_ = compiled is not None
        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                # Both paths visit the rows in the order fastnn's fit draws from this seed, so that a fit is the
                # same whichever path runs it (e.g. with and without sample_weight=ones).
                seed = int(self._random_state.randint(np.iinfo(np.int32).max))
                loss = None
                if compiled is not None:
                    loss = compiled.epoch(seed)
                    if loss is None:  # diverged: redo the epoch here, where (as in scikit-learn) NaN goes on
                        compiled, self.fast_path_ = None, False
                if loss is None:
                    order = np.random.default_rng(seed).permutation(n) if self.shuffle else None
                    with _limit_blas(batch_size):
                        loss = self._epoch(X_train, y_train, sw_train, order, batch_size)
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(self.early_stopping, X_val, y_val, sw_val)
                before = self._optimizer.learning_rate
                self._optimizer.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if self.early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    if self._optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if compiled is not None and self._optimizer.learning_rate != before:
                    compiled.set_learning_rate(before, self._optimizer.learning_rate)
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                  "hasn't converged yet." % self.max_iter, ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        finally:
            if compiled is not None:
                compiled.close()
        if self.early_stopping:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts

    def _epoch(self, X, y, sample_weight, order, batch_size):
        """One epoch batch by batch on the kernels with scikit-learn's optimizer; the mean batch loss."""
        n = X.shape[0]
        params = self.coefs_ + self.intercepts_
        coef_grads = [np.empty_like(c) for c in self.coefs_]
        intercept_grads = [np.empty_like(b) for b in self.intercepts_]
        accumulated = 0.0
        for batch in gen_batches(n, batch_size):
            idx = batch if order is None else order[batch]
            Xb = X[idx]
            sw = None if sample_weight is None else sample_weight[idx]
            loss = self._loss_grad(Xb, y[idx], sw, coef_grads, intercept_grads)
            accumulated += loss * (batch.stop - batch.start)
            self._optimizer.update_params(params, coef_grads + intercept_grads)
        return accumulated / n

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            score = self._score(X, y, sample_weight=sample_weight)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last = self.validation_scores_[-1]
            if last < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last > self.best_validation_score_:
                self.best_validation_score_ = last
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return float(score_function(y, y_pred, sample_weight=sample_weight))

    def fit(self, X, y, sample_weight=None):
        """Train from scratch (or from the current weights with ``warm_start``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels (a label-indicator matrix for multi-label classification) or regression targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss (its mean is weighted).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)


class _AdamEpsilon(LRScheduler):
    """Per-batch schedule making fastnn's Adam step scikit-learn's: ``eps_t = scale epsilon / sqrt(1 - b2^t)``.

    fastnn adds epsilon to ``sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t)``, scikit-learn to ``sqrt(v)``; the
    compiled step describes the optimizer before each batch, so setting ``eps`` batch by batch is exact.
    ``reset()`` before each ``fit`` call re-anchors the count on the optimizer's update counter.
    """

    def __init__(self, optimizer, epsilon):
        self.epsilon, self._ahead = epsilon, -1
        super().__init__(optimizer, "batch")

    def _lr(self, epoch, lr):
        return lr

    def step(self):
        self._ahead += 1
        self.last_epoch += 1
        self._set()

    def reset(self):
        self._ahead = 0
        self._set()

    def _set(self):
        t = self.optimizer.t + 1 + self._ahead  # the update the next described batch makes
        self.optimizer.eps = self.epsilon / np.sqrt(1 - self.optimizer.betas[1] ** t)


class _CompiledEpochs:
    """Epochs of scikit-learn's SGD or Adam run by fastnn's compiled step (:meth:`fastnn.Sequential.fit`).

    The network is a :class:`fastnn.Sequential` sharing the estimator's arrays, each parameter its own group
    so that only the weights decay. fastnn's loss gradient is ``scale`` times scikit-learn's (``2 / k`` for
    the mean squared error, ``1 / k`` for the binary cross-entropy, both averaged over ``k`` outputs too), so
    SGD's rate is ``lr / scale``, Adam's epsilon ``scale`` times, the decay ``scale alpha / batch_size``.
    scikit-learn's optimizer state is converted in and out: SGD's velocity ``v`` is fastnn's buffer
    ``-v / lr``; Adam's moments are fastnn's ``scale m`` and ``scale^2 v``.
    """

    def __init__(self, est, X, y, batch_size):
        self.est, self.X, self.batch_size = est, X, batch_size
        self.model = est._sequential()
        k = y.shape[1]
        if est.out_activation_ == "softmax":
            self.T, self.loss, self.scale, self.report = y.argmax(axis=1), SoftmaxCrossEntropy(), 1.0, 1.0
        elif est.out_activation_ == "logistic":  # mean over n k elements; scikit-learn's sums the k outputs
            self.T, self.loss, self.scale, self.report = y, BCEWithLogitsLoss(), 1.0 / k, float(k)
        else:  # fastnn's MSELoss is the mean over all elements, scikit-learn's loss half of it
            self.T, self.loss, self.scale, self.report = y, MSELoss(), 2.0 / k, 0.5
        opt, params = est._optimizer, self.model.parameters()
        groups = [{"params": [p], "weight_decay": self.scale * est.alpha / batch_size if p.data.ndim == 2 else 0.0}
                  for p in params]
        n_layers = len(est.coefs_)  # fastnn orders parameters W0, b0, W1, ...; scikit-learn W0, W1, ..., b0, ...
        self.order = [j for i in range(n_layers) for j in (i, n_layers + i)]
        self.callbacks = []
        if isinstance(opt, _SGDOptimizer):
            self.opt = SGD(groups, lr=opt.learning_rate / self.scale, momentum=opt.momentum,
                           nesterov=opt.nesterov and opt.momentum > 0)
            for buf, j in zip(self.opt.buffers, self.order):
                buf[...] = opt.velocities[j].ravel() / -self.opt.lr
        else:
            self.opt = Adam(groups, lr=opt.learning_rate_init, betas=(opt.beta_1, opt.beta_2), eps=opt.epsilon)
            self.opt.t = opt.t
            for m, v, j in zip(self.opt.m, self.opt.v, self.order):
                m[...] = self.scale * opt.ms[j].ravel()
                v[...] = self.scale ** 2 * opt.vs[j].ravel()
            self.callbacks = [_AdamEpsilon(self.opt, self.scale * opt.epsilon)]
        # scikit-learn adds alpha/2 ||W||^2 / n_batch to every batch loss and weights the batch losses by
        # n_batch: n_batches alpha/2 ||W||^2 / n per epoch, the weights at the end standing in for each batch's.
        self.penalty = 0.5 * est.alpha * -(-X.shape[0] // batch_size) / X.shape[0]

    def _state(self):
        if isinstance(self.opt, SGD):
            return self.opt.buffers
        return self.opt.m + self.opt.v

    def epoch(self, seed):
        """One epoch; scikit-learn's epoch loss, or None (weights as at the epoch's start) if it diverged."""
        est = self.est
        start = [a.copy() for a in [p.data for p in self.model.parameters()] + self._state()]
        t0 = self.opt.t
        for cb in self.callbacks:
            cb.reset()
        try:
            history = self.model.fit(self.X, self.T, loss=self.loss, optimizer=self.opt, epochs=1,
                                     batch_size=self.batch_size, shuffle=est.shuffle, seed=seed, verbose=0,
                                     callbacks=self.callbacks)
        except FloatingPointError:
            for dst, src in zip([p.data for p in self.model.parameters()] + self._state(), start):
                dst[...] = src
            self.opt.t = t0
            self.close()
            return None
        return history.history["loss"][0] * self.report + self.penalty * sum(
            float(np.vdot(W, W)) for W in est.coefs_)

    def set_learning_rate(self, old, new):
        """scikit-learn keeps ``v`` across a rate change; fastnn's buffer is ``-v / lr``: rescale it."""
        for buf in self.opt.buffers:
            buf *= old / new
        self.opt.lr = new / self.scale

    def close(self):
        """Hand the optimizer state back to scikit-learn's optimizer."""
        opt = self.est._optimizer
        if isinstance(self.opt, SGD):
            for buf, j in zip(self.opt.buffers, self.order):
                opt.velocities[j][...] = (-self.opt.lr * buf).reshape(opt.velocities[j].shape)
            return
        opt.t = self.opt.t
        for m, v, j in zip(self.opt.m, self.opt.v, self.order):
            opt.ms[j][...] = (m / self.scale).reshape(opt.ms[j].shape)
            opt.vs[j][...] = (v / self.scale ** 2).reshape(opt.vs[j].shape)
        if opt.t:
            opt.learning_rate = opt.learning_rate_init * np.sqrt(1 - opt.beta_2 ** opt.t) / (1 - opt.beta_1 ** opt.t)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer-perceptron classifier: scikit-learn's ``MLPClassifier`` trained by fastnn.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
    alpha : float, default=0.0001
        L2 penalty: ``alpha / 2 ||W||^2 / n_samples`` (weights only) is added to the loss.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        SGD's schedule: ``learning_rate_init``; ``learning_rate_init / (t + 1)^power_t`` after each epoch
        (``t`` = samples seen); or divided by 5 whenever the stopping rule fires, stopping below 1e-6.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs (sgd, adam) or L-BFGS iterations.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Initial weights, the validation split and the shuffling.
    tol : float, default=1e-4
        Training stops when the loss has not fallen by ``tol`` (or the validation score risen by ``tol``)
        for more than ``n_iter_no_change`` consecutive epochs; L-BFGS's ``gtol``.
    verbose : bool or int, default=False
        Print ``Iteration N, loss = ...`` after each epoch.
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified for binary problems), stop on its accuracy and keep the
        best weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters (epsilon added to ``sqrt(v)``, as in scikit-learn).
    n_iter_no_change : int or np.inf, default=10
    max_fun : int, default=15000
        L-BFGS's limit on loss evaluations.
    dtype : None, np.float32 or np.float64, default=None
        Training precision; None follows ``X`` (float32 stays float32, anything else is float64).

    Attributes
    ----------
    classes_, coefs_, intercepts_, loss_, loss_curve_, best_loss_, validation_scores_,
    best_validation_score_, t_, n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_ :
        As in scikit-learn. ``coefs_``/``intercepts_`` may be assigned.
    fast_path_ : bool
        Whether every epoch of the last ``fit``/``partial_fit`` ran on fastnn's compiled training step (else
        some or all ran batch by batch on the per-op kernels, or on L-BFGS).
    model_ : fastnn.Sequential
        The network without its output activation, sharing ``coefs_``/``intercepts_``.
    """

    _loss_name = "log_loss"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=self._input_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _input_dtype(self):
        return (np.float64, np.float32) if self.dtype is None else self.dtype

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (every label that will ever occur) on the first call."""
        if classes is None and getattr(self, "classes_", None) is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None and getattr(self, "classes_", None) is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, was: "
                                 f"{self.classes_!r}")
        elif classes is not None:
            self.classes_ = unique_labels(classes)
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    def predict(self, X):
        """Labels from ``classes_`` (a label-indicator matrix for multi-label problems)."""
        check_is_fitted(self)
        return self._predict(X)

    def predict_proba(self, X):
        """Probabilities of shape (n_samples, n_classes): softmax, or per-label sigmoids (multi-label)."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return np.vstack([1 - y_pred, y_pred]).T if y_pred.ndim == 1 else y_pred

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer-perceptron regressor: scikit-learn's ``MLPRegressor`` trained by fastnn.

    Parameters are those of :class:`MLPClassifier`, plus ``loss``: ``"squared_error"`` (identity output,
    half the mean squared error) or ``"poisson"`` (exp output, half the Poisson deviance).
    ``early_stopping`` monitors R^2 on the held-out split.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype)
        self.loss = loss

    def _rules(self):
        return {**_RULES, "loss": (lambda v: isinstance(v, str) and v in ("squared_error", "poisson"),
                                   "'squared_error' or 'poisson'")}

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32) if self.dtype is None else self.dtype, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (np.asarray(y) < 0).any():
            raise ValueError("loss='poisson' requires non-negative y")
        if hasattr(self, "coefs_") and not reset and (y.reshape(len(y), -1).shape[1] != self.coefs_[-1].shape[1]):
            raise ValueError(f"y has {y.reshape(len(y), -1).shape[1]} targets, but the model was fitted with "
                             f"{self.coefs_[-1].shape[1]}")
        return X, y

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current weights."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    def predict(self, X):
        """Predictions of shape (n_samples,) for one target, else (n_samples, n_targets)."""
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
