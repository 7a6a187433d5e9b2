"""scikit-learn's :class:`MLPClassifier` and :class:`MLPRegressor`, trained by fastnn's training core.

A drop-in for :mod:`sklearn.neural_network`: the same parameters, defaults, attributes
(``coefs_``, ``intercepts_``, ``loss_curve_``, ``n_iter_``, ``t_``, ``out_activation_``, ...), stopping
rules, messages and verbose output, and the same model: Glorot-uniform weights drawn from ``random_state``
in scikit-learn's order, one logistic output for binary and multi-label problems, softmax for
multi-class, identity (squared error) or exp (Poisson) for regression, and the L2 term
``alpha / 2 ||W||^2 / n`` on the weights only. scikit-learn's own ``test_mlp.py`` passes against these
classes with only its import line changed (``tests/test_sklearn_suite.py``).

How a fit runs: ``fit`` → one :class:`fastnn.core.TrainingCore` per call (``fit`` or ``partial_fit``) → the
compiled step → the kernels. The network is a :class:`fastnn.Sequential` over ``coefs_``/``intercepts_``, the
loss fastnn's with scikit-learn's conventions as options (``outputs="sum"``, ``MSELoss(half=True)``,
:class:`fastnn.PoissonLoss`), the optimizer fastnn's ``SGD(velocity=True)`` or ``Adam(eps_hat=True)`` with
``sample_decay=True`` (``_stochastic``); ``fast_path_`` says whether the compiled step trained every batch.

* ``solver="sgd"`` or ``"adam"``: the core's compiled step, one call per epoch (the learning-rate schedule,
  stopping rule, validation and verbose line run between epochs), sample weights and Poisson included; a
  sparse ``X`` is densified a batch at a time and handed to the step batch by batch. An epoch whose loss
  diverges goes on layer by layer (as in scikit-learn, training goes on). ``loss_curve_`` adds the L2 term
  of the end-of-epoch weights, not of each batch's.
* ``solver="lbfgs"``: the core's loss and gradient of the whole data set (``_lbfgs``), handed to
  ``scipy.optimize.minimize(method="L-BFGS-B")`` with ``maxiter=max_iter``, ``maxfun=max_fun`` and
  ``gtol=tol``, as scikit-learn does.

Training runs in ``X``'s dtype when it is float32 or float64 (float64 otherwise), as in scikit-learn;
``dtype=np.float32`` trains in float32 whatever ``X`` is (faster).
"""
from fastnn.estimators._classifier import MLPClassifier
from fastnn.estimators._regressor import MLPRegressor

# Pickles name the public module, whatever file the class lives in.
MLPClassifier.__module__ = MLPRegressor.__module__ = __name__

__all__ = ["MLPClassifier", "MLPRegressor"]
