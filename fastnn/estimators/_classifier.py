"""scikit-learn's ``MLPClassifier``, trained by fastnn."""
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from fastnn.estimators._base import BaseMLP


class MLPClassifier(ClassifierMixin, BaseMLP):
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
        some or all ran layer by layer, as after a diverged loss, or on L-BFGS).
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
