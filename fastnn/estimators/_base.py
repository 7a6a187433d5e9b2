"""What :class:`MLPClassifier` and :class:`MLPRegressor` share: parameters, the network, its loss, ``fit``."""
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from fastnn._validation import FLOAT_DTYPES, check_sample_weight
from fastnn.core import linears
from fastnn.estimators._lbfgs import LbfgsMixin
from fastnn.estimators._params import RULES, SKLEARN_ACTIVATIONS, STOCHASTIC, check_params
from fastnn.estimators._stochastic import StochasticMixin
from fastnn.layers import Linear
from fastnn.losses import BCEWithLogitsLoss, MSELoss, PoissonLoss, SoftmaxCrossEntropy
from fastnn.model import Sequential

_PREDICT_ROWS = 4096  # rows per block of a sparse X's predict: one block densified at a time
_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and "
              "need to be preprocessed.")


class BaseMLP(StochasticMixin, LbfgsMixin, BaseEstimator):
    """Shared parameters and training; see :class:`MLPClassifier` for the parameters."""

    _rules = RULES

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

    def _check_solver(self):
        if self.solver not in STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                                 "not stochastic.")
        return True

    # -- the model -------------------------------------------------------------------------------------
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
        if self.solver in STOCHASTIC:
            self.loss_curve_, self._no_improvement_count = [], 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

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
        act = SKLEARN_ACTIVATIONS[self.activation].cls
        layers = []
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            lin = Linear(W.shape[0], W.shape[1], seed=0, dtype=W.dtype)  # its own draw is replaced
            lin.W.data, lin.b.data = W, b
            layers.append(lin)
            if i < len(self.coefs_) - 1 and act is not None:
                layers.append(act())
        return Sequential(*layers)

    def _network(self, keep=True):
        """The network the estimator trains and predicts with (:meth:`_sequential`), made once and pointed again
        at ``coefs_``/``intercepts_`` when they were assigned; ``keep=False`` (predict) never stores a new one."""
        net = getattr(self, "_net", None)
        found = [] if net is None else linears(net)
        if len(found) != len(self.coefs_) or any(
                lin.W.data.shape != W.shape or lin.W.data.dtype != W.dtype or lin.b.data.shape != b.shape
                for lin, W, b in zip(found, self.coefs_, self.intercepts_)):
            net = self._sequential()
            if keep:
                self._net = net
            return net
        for lin, W, b in zip(found, self.coefs_, self.intercepts_):
            lin.W.data, lin.b.data = W, b
        return net

    def _loss(self):
        """scikit-learn's loss as fastnn's, on the network's outputs: its output activation fused in, each row's
        loss the sum over the outputs (its gradient ``(p - y) / n``), the squared error halved."""
        if self.out_activation_ == "softmax":
            return SoftmaxCrossEntropy()
        if self.out_activation_ == "logistic":
            return BCEWithLogitsLoss(outputs="sum")
        if self.out_activation_ == "exp":
            return PoissonLoss(outputs="sum")
        return MSELoss(outputs="sum", half=True)

    def _targets(self, y):
        """``y`` (binarized for classifiers) as the loss takes it: labels for softmax, else dense rows."""
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(y.argmax(axis=1), np.int64)
        return np.ascontiguousarray(y, self.coefs_[0].dtype)

    def _report_outputs(self):
        """scikit-learn's squared error averages its outputs, whose gradient it takes as their sum: the loss it
        reports is the summed one over this."""
        return self.n_outputs_ if self.out_activation_ == "identity" else 1

    def _predict_outputs(self, X):
        """Network outputs after the output activation, in the parameters' dtype (a sparse ``X`` densified
        ``_PREDICT_ROWS`` rows at a time)."""
        net, dtype = self._network(keep=False), self.coefs_[0].dtype
        if not sp.issparse(X):
            out = net.predict(np.ascontiguousarray(X, dtype), batch_size=_PREDICT_ROWS)
        else:
            out = np.empty((X.shape[0], self.coefs_[-1].shape[1]), dtype)
            for start in range(0, X.shape[0], _PREDICT_ROWS):
                out[start:start + _PREDICT_ROWS] = net.predict(X[start:start + _PREDICT_ROWS].toarray())
        return self._loss().output(out)

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False, dtype=self.coefs_[0].dtype)
            if sp.issparse(X):
                X = X.tocsr()
        return self._predict_outputs(X)

    # -- fit ------------------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = check_params(self, self._rules)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sp.issparse(X):
            X = X.tocsr()
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X.shape[0])
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
        if self.solver in STOCHASTIC:
            self._fit_stochastic(X, y, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, y, sample_weight)
        self._network()  # predict never stores one (scikit-learn's checks want predict to change nothing)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(_NONFINITE)
        return self

    def _params_dtype(self):
        dtype = np.asarray(self.coefs_[0]).dtype
        return dtype if dtype in FLOAT_DTYPES else np.dtype(np.float64)

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


def _check_sample_weight(sample_weight, n):
    """fastnn's check of the weights, a scalar being one weight for every row; scikit-learn's "non-zero" rule."""
    w = check_sample_weight(np.full(n, sample_weight, np.float64) if np.isscalar(sample_weight) else sample_weight,
                            n)
    if not w.any():
        raise ValueError("sample_weight must contain at least one non-zero weight")
    return w
