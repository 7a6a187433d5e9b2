"""``fastnn.MLPClassifier.fit`` against its anchor, ``sklearn.neural_network.MLPClassifier.fit``, per solver.

Both get the same hyper-parameters (784-128-64-10, ReLU, ``alpha=1e-4``) and the same float32 Fashion-MNIST
training set (float32 in: both train in float32); round ``r`` of either uses ``random_state=r``, which gives
both the same initial weights.

* ``adam``, ``sgd``: lr 1e-3 / 1e-2 (momentum 0.9), batch 64, ``tol=0`` with a patience longer than the run,
  so both train exactly ``EPOCHS`` epochs; fastnn on its compiled step (``fast_path`` in ``extra_info``).
* ``lbfgs``: ``LBFGS_ITERS`` L-BFGS iterations on the whole training set, the full-batch loss and gradient
  from fastnn's kernels. Both libraries hand the same float32 GEMMs to the same BLAS here, and scipy's
  L-BFGS-B update is shared, so the two take about the same time.

Each round is one whole ``fit``; each round's test accuracy (and their mean) goes into ``extra_info``. Under
``--benchmark-disable`` (the test suite) a ``SUBSET`` of the data keeps the run to seconds, and the accuracy
floor still checks that both learn.

Timed for real with, e.g.::

    FASTNN_BENCH_ROUNDS=3 python -m pytest fastnn/benchmarks/test_bench_sklearn.py -p no:cacheprovider \\
        --benchmark-enable --benchmark-columns=min,median,max --benchmark-sort=name
"""
import os

import numpy as np
import pytest
from sklearn import neural_network

from fastnn import estimators
from fastnn.datasets import load_fashion_mnist

EPOCHS, LBFGS_ITERS = 5, 50
COMMON = dict(hidden_layer_sizes=(128, 64), alpha=1e-4, shuffle=True)
SOLVERS = {
    "adam": dict(solver="adam", learning_rate_init=1e-3, batch_size=64, max_iter=EPOCHS, tol=0.0,
                 n_iter_no_change=10 * EPOCHS),
    "sgd": dict(solver="sgd", learning_rate_init=1e-2, momentum=0.9, batch_size=64, max_iter=EPOCHS, tol=0.0,
                n_iter_no_change=10 * EPOCHS),
    "lbfgs": dict(solver="lbfgs", max_iter=LBFGS_ITERS, tol=0.0),
}
SUBSET = dict(n_train=3000, n_test=2000, epochs=2, lbfgs_iters=20)
ESTIMATORS = {"fastnn": estimators.MLPClassifier, "sklearn": neural_network.MLPClassifier}


@pytest.fixture(scope="module")
def fashion():
    try:
        return load_fashion_mnist(download=False)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("impl", list(ESTIMATORS))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_fit_fashion_mnist(benchmark, threads, fashion, solver, impl):
    (X, y), (X_test, y_test) = fashion
    params = dict(COMMON, **SOLVERS[solver])
    if benchmark.disabled:
        X, y, X_test, y_test = X[:SUBSET["n_train"]], y[:SUBSET["n_train"]], X_test[:SUBSET["n_test"]], \
            y_test[:SUBSET["n_test"]]
        params["max_iter"] = SUBSET["lbfgs_iters" if solver == "lbfgs" else "epochs"]
    ESTIMATORS[impl](**dict(params, max_iter=1)).fit(X[:256], y[:256])  # JIT and imports before timing
    fitted = []

    def new_estimator():  # round r uses random_state=r: the accuracy is a mean over seeds, not one draw
        fitted.append(ESTIMATORS[impl](**dict(params, random_state=len(fitted))))
        return (fitted[-1], X, y), {}

    what = "iterations" if solver == "lbfgs" else "epochs, bs=64"
    benchmark.group = f"sklearn-api fit {solver}: fashion-mnist 784-128-64-10, {params['max_iter']} {what}"
    rounds = int(os.environ.get("FASTNN_BENCH_ROUNDS", "3"))
    benchmark.pedantic(lambda est, X, y: est.fit(X, y), setup=new_estimator, rounds=rounds)
    accuracies = [float(est.score(X_test, y_test)) for est in fitted]
    benchmark.extra_info.update(impl=impl, solver=solver, accuracy=float(np.mean(accuracies)),
                                accuracies=accuracies, final_loss=float(np.mean([est.loss_ for est in fitted])),
                                n_iter=[est.n_iter_ for est in fitted], n_train=len(X), n_test=len(X_test),
                                dtype=str(fitted[0].coefs_[0].dtype), **threads())
    if impl == "fastnn":
        benchmark.extra_info["fast_path"] = fitted[0].fast_path_  # fastnn's compiled fit step, or its kernels
    for est, accuracy in zip(fitted, accuracies):
        assert np.isfinite(est.loss_)
        if solver != "lbfgs":
            assert est.n_iter_ == params["max_iter"] and np.isfinite(est.loss_curve_).all()
        assert accuracy > (0.70 if benchmark.disabled else 0.80), f"{impl} {solver}: test accuracy {accuracy:.4f}"
