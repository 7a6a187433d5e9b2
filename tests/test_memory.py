"""Inference memory: predict works in row blocks, so beside its output it never holds more than one block.

Peaks are traced by tracemalloc (NumPy reports its allocations to it); each bound is a multiple of sizes the
test computes, and scikit-learn's own peak is measured in the same test for its estimators.
"""
import tracemalloc
import warnings

import numpy as np
import pytest

import fastnn as fn

sklearn = pytest.importorskip("sklearn")
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402

from fastnn.estimators import MLPClassifier, MLPRegressor  # noqa: E402


def peak_of(call):
    """``(result, peak bytes allocated while running call())``."""
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200_000, 64), dtype=np.float32)
    return X, rng.integers(0, 3, X.shape[0])


def fitted(cls, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one iteration does not converge
        return cls(hidden_layer_sizes=(64, 64, 64), max_iter=1, random_state=0).fit(X[:2000], y[:2000])


def test_estimator_predict_proba_holds_one_block_beside_the_output(rows):
    X, y = rows
    ours, theirs = fitted(MLPClassifier, X, y), fitted(SkMLPClassifier, X, y)
    P, peak = peak_of(lambda: ours.predict_proba(X))
    P_sk, peak_sk = peak_of(lambda: theirs.predict_proba(X))
    assert P.shape == P_sk.shape
    np.testing.assert_allclose(P[:5000], ours.predict_proba(X[:5000]), rtol=1e-5, atol=1e-7)
    # The output, plus one 4096-row block's activations and their temporaries (generous: 4 x 3 layers).
    block = 4096 * 64 * X.itemsize * 12
    assert peak <= P.nbytes + block, f"{peak / 2**20:.1f} MiB for an output of {P.nbytes / 2**20:.1f} MiB"
    assert peak <= peak_sk, f"fastnn {peak / 2**20:.1f} MiB, scikit-learn {peak_sk / 2**20:.1f} MiB"


def test_estimator_predict_and_regressor_are_blocked_too(rows):
    X, y = rows
    clf = fitted(MLPClassifier, X, y)
    labels, peak = peak_of(lambda: clf.predict(X))
    assert labels.shape == (X.shape[0],)
    assert peak <= 8 * X.shape[0] * 3 + 4096 * 64 * 4 * 12  # label-binarizer work on the output, one block
    reg = fitted(MLPRegressor, X, y.astype(np.float64))
    out, peak = peak_of(lambda: reg.predict(X))
    np.testing.assert_allclose(out[:5000], reg.predict(X[:5000]), rtol=1e-5, atol=1e-6)
    assert peak <= out.nbytes * 2 + 4096 * 64 * 4 * 12


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kind", ["float64", "uint8", "fortran", "float32"])
def test_sequential_predict_needs_the_output_and_one_batch(kind, backend):
    rng = np.random.default_rng(1)
    n, d = 100_000, 48
    X = rng.standard_normal((n, d), dtype=np.float32)
    X = {"float64": X.astype(np.float64), "uint8": (np.abs(X) * 40).astype(np.uint8),
         "fortran": np.asfortranarray(X), "float32": X}[kind]
    model = fn.Sequential([fn.Linear(d, 32, seed=0), fn.ReLU(), fn.Linear(32, 10, seed=1)])
    with fn.backend(backend):
        expected = model.predict(np.ascontiguousarray(X, np.float32), batch_size=1000)
        out, peak = peak_of(lambda: model.predict(X, batch_size=1000))
    np.testing.assert_array_equal(out, expected)
    one_batch = 1000 * (d * 8 + 2 * 32 * 4 + 10 * 4) * 2  # a converted batch, the work buffers, their temporaries
    assert peak <= 2 * out.nbytes + one_batch, \
        f"{kind}: {peak / 2**20:.1f} MiB for an output of {out.nbytes / 2**20:.1f} MiB"


def test_predict_proba_converts_in_place(rows):
    X, _ = rows
    model = fn.Sequential([fn.Linear(64, 32, seed=0), fn.Tanh(), fn.Linear(32, 5, seed=1)])
    P, peak = peak_of(lambda: model.predict_proba(X, loss="SoftmaxCrossEntropy"))
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
    assert peak <= 2 * P.nbytes + 1024 * (2 * 32 + 5) * 4 * 2
