"""scikit-learn estimators on fastnn: :class:`MLPClassifier` and :class:`MLPRegressor`.

Parameters are named and defaulted as in :mod:`sklearn.neural_network` where they overlap; the same
``random_state`` draws the same initial weights. ``fit`` is one :meth:`fastnn.Sequential.fit` call of
``max_iter`` epochs whose epoch callback applies scikit-learn's ``tol``/``n_iter_no_change`` rule to the
loss scikit-learn reports. Differences, by design:

* Training runs in ``dtype`` (float32 by default) whatever the dtype of ``X``; outputs are float64.
* Binary problems get two softmax outputs instead of one logistic unit (the same model family).
* ``alpha`` becomes one plain SGD/Adam ``weight_decay`` (see ``_BaseMLP._fit``), so that fit takes
  fastnn's compiled step, which has one decay for all parameters. It therefore also decays the biases,
  which scikit-learn does not penalise: by ``alpha / batch_size * b`` per step (negligible), except that
  Adam normalises a bias gradient that is the decay alone (a dead ReLU unit) into a step of up to ``lr``
  toward 0. A smaller last batch is decayed as a full one.
* Adam adds ``epsilon`` to ``sqrt(v_hat)`` (PyTorch's placement); scikit-learn adds it to ``sqrt(v)``,
  ``epsilon / sqrt(1 - beta_2**t)`` on ``sqrt(v_hat)``: larger during the first few thousand steps.
* Only the ``"adam"`` and ``"sgd"`` solvers, at a constant learning rate; no ``sample_weight``; no
  multi-label classification.
"""
import numbers
import warnings

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from fastnn._validation import FLOAT_DTYPES
from fastnn.layers import Linear, ReLU, Sigmoid, Tanh
from fastnn.losses import MSELoss, SoftmaxCrossEntropy
from fastnn.model import Sequential
from fastnn.optim import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}


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
    "solver": (lambda v: v in ("adam", "sgd"), "'adam' or 'sgd' (lbfgs is not supported)"),
    "alpha": (_real(0), "a finite number >= 0"),
    "batch_size": (lambda v: v == "auto" if isinstance(v, str) else _positive_int(v), "'auto' or an int >= 1"),
    "learning_rate_init": (_real(0, low_open=True), "a finite number > 0"),
    "max_iter": (_positive_int, "an int >= 1"),
    "tol": (_real(0), "a finite number >= 0"),
    "momentum": (_real(0, 1), "a number in [0, 1]"),
    "validation_fraction": (_real(0, 1, low_open=True, high_open=True), "a number in (0, 1)"),
    "beta_1": (_real(0, 1, high_open=True), "a number in [0, 1)"),
    "beta_2": (_real(0, 1, high_open=True), "a number in [0, 1)"),
    "epsilon": (_real(0, low_open=True), "a finite number > 0"),
    "n_iter_no_change": (_positive_int, "an int >= 1"),
    "dtype": (lambda v: np.dtype(v) in FLOAT_DTYPES, "np.float32 or np.float64"),
}


class _Monitor:
    """Epoch callback: scikit-learn's loss bookkeeping and stopping rule, kept on the estimator.

    scikit-learn adds ``alpha/2 ||W||^2 / n_batch`` to every batch loss and weights batch losses by
    ``n_batch``, so an epoch's reported loss carries ``n_batches * alpha/2 ||W||^2 / n``; the weights
    at the end of the epoch stand in for the per-batch ones.
    """

    def __init__(self, est, n, batch_size, validation):
        self.est, self.n, self.validation, self.converged = est, n, validation, False
        self.penalty = 0.5 * est.alpha * -(-n // batch_size) / n

    def on_epoch_end(self, epoch, logs):
        est = self.est
        loss = logs["loss"] / est._loss_scale + self.penalty * sum(float(np.vdot(W, W)) for W in est.coefs_)
        est.loss_ = loss
        est.loss_curve_.append(loss)
        est.n_iter_ += 1
        est.t_ += self.n
        if self.validation is None:
            worse = loss > est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, loss)
        else:
            score = est._score_outputs(self.validation[1], est.model_.predict(self.validation[0]))
            est.validation_scores_.append(score)
            worse = score < est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = [p.data.copy() for p in est.model_.parameters()]
        est._no_improvement_count = est._no_improvement_count + 1 if worse else 0
        self.converged = est._no_improvement_count > est.n_iter_no_change
        return self.converged


class _BaseMLP(BaseEstimator):
    """Shared parameters and training; see :class:`MLPClassifier` for the parameters."""

    _loss_scale = 1  # fastnn's loss divided by the loss scikit-learn reports, for the same predictions

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, dtype=np.float32):
        self.hidden_layer_sizes, self.activation, self.solver = hidden_layer_sizes, activation, solver
        self.alpha, self.batch_size, self.learning_rate_init = alpha, batch_size, learning_rate_init
        self.max_iter, self.shuffle, self.random_state, self.tol = max_iter, shuffle, random_state, tol
        self.verbose, self.warm_start = verbose, warm_start
        self.momentum, self.nesterovs_momentum = momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.n_iter_no_change, self.dtype = n_iter_no_change, dtype

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    def _grad_scale(self):
        """fastnn's loss gradient divided by the gradient scikit-learn steps along."""
        return 1

    @property
    def coefs_(self):
        """list of ndarray of shape (n_in, n_out): the live weight matrices of ``model_``."""
        check_is_fitted(self)
        return [p.data for p in self.model_.parameters() if p.data.ndim == 2]

    @property
    def intercepts_(self):
        """list of ndarray of shape (n_out,): the live biases of ``model_``."""
        check_is_fitted(self)
        return [p.data for p in self.model_.parameters() if p.data.ndim == 1]

    def _check_params(self):
        """Raise ValueError naming the first invalid parameter; return the hidden widths as a list."""
        for name, (ok, expected) in _RULES.items():
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

    def _build(self, n_in, n_out, hidden, rs):
        # Glorot-uniform weights *and* biases drawn from `rs` in scikit-learn's order (W then b, layer by
        # layer), so one random_state starts both libraries from the same weights.
        sizes, factor = [n_in, *hidden, n_out], 2.0 if self.activation == "logistic" else 6.0
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            linear = Linear(fan_in, fan_out, seed=0, dtype=self.dtype)  # its own draw is overwritten
            linear.W.data[...] = rs.uniform(-bound, bound, (fan_in, fan_out))
            linear.b.data[...] = rs.uniform(-bound, bound, fan_out)
            layers.append(linear)
            if i < len(sizes) - 2 and _ACTIVATIONS[self.activation] is not None:
                layers.append(_ACTIVATIONS[self.activation]())
        return Sequential(*layers)

    def _optimizer_for(self, params, scale):
        # fastnn's gradient is `scale` times scikit-learn's; dividing SGD's lr and multiplying Adam's eps
        # by `scale` makes the steps scikit-learn's (Adam is otherwise invariant to the scale).
        if self.solver == "sgd":
            return SGD(params, lr=self.learning_rate_init / scale, momentum=self.momentum,
                       nesterov=self.nesterovs_momentum and self.momentum > 0)
        return Adam(params, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon * scale)

    def _fit(self, X, y, incremental):
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_") or not (self.warm_start or incremental)
        X, T = self._validate_xy(X, y, first, incremental)
        rs = check_random_state(self.random_state)
        if first:
            n_out = len(self.classes_) if is_classifier(self) else T.shape[1]
            self.model_ = self._build(X.shape[1], n_out, hidden, rs)
            self.loss_curve_, self.t_, self._no_improvement_count = [], 0, 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self._best_weights = None
        validation = None
        if self.early_stopping:
            X, Xv, T, Tv = train_test_split(X, T, random_state=rs, test_size=self.validation_fraction,
                                            stratify=T if is_classifier(self) else None)
            if Xv.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the "
                                 "size of your dataset.")
            validation = (Xv, Tv)
        n = X.shape[0]
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} samples; using {n}.",
                          UserWarning, stacklevel=3)
        batch_size = min(200 if self.batch_size == "auto" else self.batch_size, n)
        scale = self._grad_scale()
        if first or not incremental:  # scikit-learn keeps the optimizer state only across partial_fit
            self._optimizer = self._optimizer_for(self.model_.parameters(), scale)
        # scikit-learn's batch gradient is (A^T delta + alpha W) / n_batch: an L2 weight decay of
        # alpha / n_batch on its gradient's scale.
        self._optimizer.weight_decay = scale * self.alpha / batch_size
        monitor = _Monitor(self, n, batch_size, validation)
        self.n_iter_ = 0
        self.history_ = self.model_.fit(
            X, T, loss=self._loss(), optimizer=self._optimizer, epochs=1 if incremental else self.max_iter,
            batch_size=batch_size, shuffle=self.shuffle, seed=int(rs.randint(np.iinfo(np.int32).max)),
            verbose=int(bool(self.verbose)), callbacks=[monitor])
        if self.early_stopping and self._best_weights is not None:
            for p, w in zip(self.model_.parameters(), self._best_weights):
                p.data[...] = w
        if not incremental and not monitor.converged:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        return self

    def fit(self, X, y):
        """Train from scratch (or from the current weights with ``warm_start``) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like of shape (n_samples,) of labels, or for the regressor (n_samples[, n_targets])

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def _outputs(self, X):
        """Raw network outputs (logits or regression values) for ``X``, as float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.dtype)
        return self.model_.predict(X).astype(np.float64)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer-perceptron classifier trained by fastnn, with scikit-learn's interface.

    The network is ``Linear -> activation -> ... -> Linear`` with a softmax cross-entropy loss on the
    classes encoded as ``0 .. n_classes - 1`` (``classes_`` holds the original labels).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
    solver : {"adam", "sgd"}, default="adam"
    alpha : float, default=0.0001
        L2 penalty, scikit-learn's ``alpha / (2 n_batch) ||W||^2`` per batch.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``.
    learning_rate_init : float, default=0.001
        The (constant) learning rate.
    max_iter : int, default=200
        Epochs per ``fit`` (``partial_fit`` runs one).
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Initial weights, the validation split and the shuffling; an int makes ``fit`` repeatable.
    tol : float, default=1e-4
        Training stops when the loss has not fallen by ``tol`` (or the validation score risen by
        ``tol``) for more than ``n_iter_no_change`` consecutive epochs.
    verbose : bool, default=False
        Print one line per epoch.
    warm_start : bool, default=False
        ``fit`` continues from the current weights (with a fresh optimizer, as scikit-learn).
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified) and stop on its accuracy; the best weights are kept.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    dtype : np.float32 or np.float64, default=np.float32
        Precision of the weights and of training.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    model_ : fastnn.Sequential
        The trained network; outputs are logits.
    history_ : fastnn.History
        What the last ``fit``/``partial_fit`` call's ``Sequential.fit`` returned.
    loss_curve_ : list of float
        scikit-learn's loss (mean cross-entropy plus the L2 term) after each epoch.
    loss_, best_loss_, validation_scores_, best_validation_score_, t_ : as in scikit-learn
    n_iter_ : int
        Epochs run by the last ``fit``/``partial_fit`` call.
    coefs_, intercepts_ : list of ndarray
        Views of ``model_``'s weights, of shapes (n_in, n_out) and (n_out,).
    """

    _loss = SoftmaxCrossEntropy

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (every label that will ever occur) on the first call."""
        if not hasattr(self, "model_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = unique_labels(classes)
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to partial_fit, "
                             f"which was {self.classes_!r}")
        return self._fit(X, y, incremental=True)

    def _validate_xy(self, X, y, first, incremental):
        X, y = validate_data(self, X, y, reset=first, multi_output=True, dtype=self.dtype)
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(f"MLPClassifier supports 1-D class labels only, got y of shape {y.shape}; "
                             "multi-label and multi-output classification are not supported.")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        labels = unique_labels(y)
        if first and not incremental:
            self.classes_ = labels
        elif incremental and not np.isin(labels, self.classes_).all():
            raise ValueError(f"y has classes {np.setdiff1d(labels, self.classes_)!r} not in classes_ "
                             f"{self.classes_!r}")
        elif not incremental and not np.array_equal(labels, self.classes_):
            raise ValueError(f"warm_start can only be used where y has the same classes as in the previous "
                             f"call to fit: previously {self.classes_!r}, now {labels!r}")
        return X, np.searchsorted(self.classes_, y)

    @staticmethod
    def _score_outputs(labels, Z):
        return float(np.mean(Z.argmax(axis=1) == labels))

    def decision_function(self, X):
        """Logits of shape (n_samples, n_classes); for two classes ``z_1 - z_0``, of shape (n_samples,)."""
        Z = self._outputs(X)
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict_proba(self, X):
        """Class probabilities of shape (n_samples, n_classes), the softmax of the logits in float64."""
        return softmax(self._outputs(X), axis=1)

    def predict(self, X):
        """Labels from ``classes_`` of shape (n_samples,)."""
        Z = self._outputs(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[Z.argmax(axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer-perceptron regressor trained by fastnn, with scikit-learn's interface.

    Parameters are those of :class:`MLPClassifier`; the loss is the mean squared error, identity
    output. ``early_stopping`` monitors R^2 on the held-out split. ``loss_curve_`` holds scikit-learn's
    loss, half the mean squared error plus the L2 term.
    """

    _loss = MSELoss
    _loss_scale = 2  # fastnn's MSELoss is mean((y - y*)^2); scikit-learn reports half of it

    def _grad_scale(self):
        # scikit-learn steps along (y - y*) / n_samples, the gradient of its loss times n_outputs;
        # fastnn's MSELoss gradient is 2 (y - y*) / (n_samples n_outputs).
        return 2 / self.model_.n_outputs

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing from the current weights."""
        return self._fit(X, y, incremental=True)

    def _validate_xy(self, X, y, first, incremental):
        X, y = validate_data(self, X, y, reset=first, multi_output=True, y_numeric=True, dtype=self.dtype)
        T = y.reshape(y.shape[0], -1)
        if not first and T.shape[1] != self.model_.n_outputs:
            raise ValueError(f"y has {T.shape[1]} targets, but the model was fitted with "
                             f"{self.model_.n_outputs}")
        return X, T

    @staticmethod
    def _score_outputs(T, Y):
        return float(r2_score(T, Y))

    def predict(self, X):
        """Predictions of shape (n_samples,) for one target, else (n_samples, n_targets), float64."""
        Y = self._outputs(X)
        return Y.ravel() if Y.shape[1] == 1 else Y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
