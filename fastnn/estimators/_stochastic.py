"""``solver="sgd"`` and ``"adam"``: scikit-learn's epochs, stopping rule and schedule around fastnn's training core.

The optimizer is fastnn's :class:`~fastnn.optim.SGD` (``velocity=True``: scikit-learn's momentum) or
:class:`~fastnn.optim.Adam` (``eps_hat=True``: its epsilon placement), each parameter its own group so that
``alpha`` decays the weights only, per sample (``sample_decay=True``: divided by each batch's weight).
"""
import warnings

import numpy as np
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastnn.core import TrainingCore
from fastnn.optim import SGD, Adam


class _Solver:
    """What scikit-learn's estimators call ``_optimizer``: fastnn's optimizer over the network, with scikit-learn's
    learning-rate schedule and stopping trigger (run between epochs).

    ``"invscaling"`` sets the rate to ``lr0 / (t + 1)^power_t`` at the end of each epoch (``t`` = samples seen),
    ``"adaptive"`` divides it by 5 when the stopping rule fires. ``learning_rate`` and ``t`` read as scikit-learn's.
    """

    def __init__(self, est, network):
        self.network, self.schedule, self.power_t = network, est.learning_rate, est.power_t
        self.learning_rate_init = est.learning_rate_init
        groups = [{"params": [p], "weight_decay": est.alpha if p.data.ndim == 2 else 0.0}
                  for p in network.parameters()]
        if est.solver == "sgd":
            self.optimizer = SGD(groups, lr=est.learning_rate_init, momentum=est.momentum,
                                 nesterov=bool(est.nesterovs_momentum) and est.momentum > 0, velocity=True,
                                 sample_decay=True)
        else:
            self.optimizer = Adam(groups, lr=est.learning_rate_init, betas=(est.beta_1, est.beta_2),
                                  eps=est.epsilon, eps_hat=True, sample_decay=True)

    @property
    def t(self):
        return self.optimizer.t

    @property
    def learning_rate(self):
        """SGD's current rate; Adam's bias-corrected step ``lr0 sqrt(1 - b2^t) / (1 - b1^t)``."""
        opt = self.optimizer
        if isinstance(opt, SGD):
            return opt.lr
        b1, b2 = opt.betas
        return self.learning_rate_init * np.sqrt(1 - b2 ** opt.t) / (1 - b1 ** opt.t) if opt.t else \
            self.learning_rate_init

    def iteration_ends(self, time_step):
        if isinstance(self.optimizer, SGD) and self.schedule == "invscaling":
            self.optimizer.lr = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """True to stop; SGD under ``"adaptive"`` first divides the rate by 5 until it is <= 1e-6."""
        if not isinstance(self.optimizer, SGD) or self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.optimizer.lr <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.optimizer.lr /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.optimizer.lr)
        return False


class StochasticMixin:
    """``_fit_stochastic`` of :class:`fastnn.estimators._base.BaseMLP`."""

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        network = self._network()
        if not incremental or getattr(self, "_optimizer", None) is None or self._optimizer.network is not network:
            self._optimizer = _Solver(self, network)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        (X_train, y_train, sw_train), validation = self._split(X, y, sample_weight)
        n = X_train.shape[0]
        core = TrainingCore(network, self._loss(), self._optimizer.optimizer, X_train, self._targets(y_train),
                            sw_train, self._batch_size(n), nonfinite="continue")
        self.fast_path_ = core.fast_path
        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                # Rows in the order fastnn's fit draws from this seed.
                seed = int(self._random_state.randint(np.iinfo(np.int32).max))
                self.loss_ = self._epoch(core, np.random.default_rng(seed).permutation(n) if self.shuffle
                                         else np.arange(n))
                if self._epoch_ends(n, validation) or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                  "hasn't converged yet." % self.max_iter, ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if self.early_stopping:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts

    def _split(self, X, y, sample_weight):
        """``((X, y, sw) to train on, (X, y, sw) to validate on or Nones)``: scikit-learn's early-stopping split."""
        if not self.early_stopping:
            return (X, y, sample_weight), (None, None, None)
        # Stratified on the 0/1 indicator as scikit-learn does (its messages name the classes True/False).
        stratify = y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        split = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                 stratify=stratify)
        X_train, X_val, y_train, y_val = split[:4]
        sw_train, sw_val = split[4:] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size "
                             "of your dataset.")
        if is_classifier(self):
            y_val = self._label_binarizer.inverse_transform(y_val)
        return (X_train, y_train, sw_train), (X_val, y_val, sw_val)

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          stacklevel=4)
        return int(np.clip(self.batch_size, 1, n))

    def _epoch(self, core, order):
        """One epoch on the core; scikit-learn's epoch loss: the batches' losses (each with its L2 term) weighted
        by their rows. A loss that diverged on the compiled step goes on layer by layer, as scikit-learn does."""
        sums, weights, _, done = core.run(order, 0, core.n_batches)
        if done < core.n_batches:
            head = sums[:done].copy(), weights[:done].copy()
            core.fall_back("the loss diverged: scikit-learn goes on past it, layer by layer")
            self.fast_path_ = False
            rest = core.run(order, done, core.n_batches)
            sums, weights = np.concatenate([head[0], rest[0]]), np.concatenate([head[1], rest[1]])
        rows = core.batch_rows
        # The L2 term of the end-of-epoch weights stands in for each batch's.
        penalty = self._optimizer.optimizer.l2_penalty()
        return float(np.dot(sums / weights / self._report_outputs(), rows) + penalty * np.sum(rows / weights)) \
            / core.n_samples

    def _epoch_ends(self, n, validation):
        """scikit-learn's bookkeeping after an epoch; True to stop."""
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        self._update_no_improvement_count(self.early_stopping, *validation)
        self._optimizer.iteration_ends(self.t_)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol=%f for %d consecutive epochs."
                   % (self.tol, self.n_iter_no_change))
            if self._optimizer.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0
        return False

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
