"""``fastnn.MLPClassifier.fit`` against its anchor, ``sklearn.neural_network.MLPClassifier.fit``.

Both get the same hyper-parameters (784-128-64-10, ReLU, Adam at lr 1e-3, batch 64, alpha 1e-4); round ``r``
of either uses ``random_state=r``, which gives both the same initial weights, and ``tol=0`` with a patience
longer than the run makes both train exactly ``EPOCHS`` epochs. Each round is one whole ``fit`` on the
Fashion-MNIST training set; each round's test accuracy (and their mean) goes into ``extra_info``. Under
``--benchmark-disable`` (the test suite) a ``SUBSET`` of the data keeps the run to a few seconds, and the
accuracy floor still checks that both learn.

Timed for real with, e.g.::

    FASTNN_BENCH_ROUNDS=3 python -m pytest benchmarks/test_bench_sklearn.py -p no:cacheprovider \\
        --benchmark-enable --benchmark-columns=min,median,max --benchmark-sort=name
"""
import os

import numpy as np
import pytest
from sklearn import neural_network

from fastnn import estimators
from fastnn.datasets import load_fashion_mnist

EPOCHS = 5
PARAMS = dict(hidden_layer_sizes=(128, 64), solver="adam", learning_rate_init=1e-3, batch_size=64, alpha=1e-4,
              max_iter=EPOCHS, tol=0.0, n_iter_no_change=10 * EPOCHS, shuffle=True)
SUBSET = dict(n_train=3000, n_test=2000, epochs=2)
ESTIMATORS = {"fastnn": estimators.MLPClassifier, "sklearn": neural_network.MLPClassifier}


@pytest.fixture(scope="module")
def fashion():
    try:
        return load_fashion_mnist(download=False)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("impl", list(ESTIMATORS))
def test_fit_fashion_mnist(benchmark, threads, fashion, impl):
    (X, y), (X_test, y_test) = fashion
    params = dict(PARAMS)
    if benchmark.disabled:
        X, y, X_test, y_test = X[:SUBSET["n_train"]], y[:SUBSET["n_train"]], X_test[:SUBSET["n_test"]], \
            y_test[:SUBSET["n_test"]]
        params["max_iter"] = SUBSET["epochs"]
    ESTIMATORS[impl](**dict(params, max_iter=1)).fit(X[:256], y[:256])  # JIT and imports before timing
    fitted = []

    def new_estimator():  # round r uses random_state=r: the accuracy is a mean over seeds, not one draw
        fitted.append(ESTIMATORS[impl](**dict(params, random_state=len(fitted))))
        return (fitted[-1], X, y), {}

    benchmark.group = f"sklearn-api fit: fashion-mnist 784-128-64-10 adam bs=64, {params['max_iter']} epochs"
    rounds = int(os.environ.get("FASTNN_BENCH_ROUNDS", "3"))
    benchmark.pedantic(lambda est, X, y: est.fit(X, y), setup=new_estimator, rounds=rounds)
    accuracies = [float(est.score(X_test, y_test)) for est in fitted]
    benchmark.extra_info.update(impl=impl, accuracy=float(np.mean(accuracies)), accuracies=accuracies,
                                final_loss=float(np.mean([est.loss_curve_[-1] for est in fitted])),
                                epochs=params["max_iter"], n_train=len(X), n_test=len(X_test),
                                dtype=str(fitted[0].coefs_[0].dtype), **threads())
    if impl == "fastnn":
        benchmark.extra_info["fast_path"] = fitted[0].history_.fast_path  # fastnn's compiled fit step, or not
    for est, accuracy in zip(fitted, accuracies):
        assert est.n_iter_ == params["max_iter"] and np.isfinite(est.loss_curve_).all()
        assert accuracy > (0.70 if benchmark.disabled else 0.84), f"{impl}: test accuracy {accuracy:.4f}"
