"""Shared state under real threads: inference leaves the model alone, backend blocks are per thread, and
concurrent fits leave the BLAS thread setting as they found it."""
import threading

import numpy as np

import fastnn as fn
from fastnn import _config
from fastnn.kernels import get_backend


def _in_threads(target, n=8):
    errors = []

    def run(i):
        try:
            target(i)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_predict_from_8_threads_on_a_model_in_training_mode():
    """Layer-by-layer inference (a Softmax layer: not the compiled predict) from 8 threads: predict, predict_proba
    and evaluate give the serial results bit for bit, no dropout is applied, and the model is still in training
    mode after."""
    rng = np.random.default_rng(0)
    model = fn.Sequential(fn.Linear(6, 32, seed=0), fn.ReLU(), fn.Dropout(0.5), fn.Linear(32, 4, seed=1),
                          fn.Softmax()).train()
    X, y = rng.random((50, 6), dtype=np.float32), rng.integers(0, 4, 50)
    want = model.predict(X)
    want_eval = model.evaluate(X, y, fn.NLLLoss())
    got = {}

    def work(i):
        got[i] = [(model.predict(X[:10 + i]), model.predict_proba(X[:10 + i]), model.evaluate(X, y, fn.NLLLoss()))
                  for _ in range(30)]

    _in_threads(work)
    for i, outs in got.items():
        for out, proba, metrics in outs:
            np.testing.assert_array_equal(out, want[:10 + i])
            np.testing.assert_array_equal(proba, want[:10 + i])  # the model ends in Softmax
            assert metrics == want_eval
    assert model.training and all(layer.training for layer in model.layers)
    assert model[0]._X is None  # nothing cached by any thread


def test_single_row_predicts_from_8_threads_on_two_models():
    """The compiled single-row predict (each thread its own work rows) from 8 threads, alternating a narrow float32
    and a wide float64 model so that each thread's rows are made again: the serial results bit for bit."""
    rng = np.random.default_rng(1)
    models = (fn.Sequential(fn.Linear(6, 8, seed=0), fn.ReLU(), fn.Linear(8, 3, seed=1)),
              fn.Sequential(fn.Linear(6, 300, seed=2, dtype=np.float64), fn.Tanh(), fn.Linear(300, 2, seed=3,
                                                                                               dtype=np.float64)))
    X = rng.standard_normal((40, 6))
    rows = [[X[i:i + 1].astype(m.dtype) for i in range(len(X))] for m in models]
    want = [[m.predict(x) for x in r] for m, r in zip(models, rows)]
    got = {}

    def work(t):
        got[t] = [[models[k].predict(rows[k][i]) for k in (0, 1)] for _ in range(5) for i in range(len(X))]

    _in_threads(work)
    for outs in got.values():
        for n, pair in enumerate(outs):
            for k in (0, 1):
                np.testing.assert_array_equal(pair[k], want[k][n % len(X)])


def test_backend_blocks_overlapping_in_two_threads_each_restore_their_own():
    first_in, second_out = threading.Event(), threading.Event()
    seen = {}

    def first(_):
        with fn.backend("numpy"):
            first_in.set()
            second_out.wait(10)
            seen["first, after the other block ended"] = get_backend().__name__
        seen["first, after its block"] = get_backend().__name__

    def second(_):
        first_in.wait(10)
        seen["second, outside a block"] = get_backend().__name__
        with fn.backend("numpy"):
            pass
        second_out.set()

    threads = [threading.Thread(target=f, args=(0,)) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"second, outside a block": "fastnn.kernels.numba_cpu",
                    "first, after the other block ended": "fastnn.kernels.numpy_ref",
                    "first, after its block": "fastnn.kernels.numba_cpu"}
    assert get_backend().__name__ == "fastnn.kernels.numba_cpu"


def test_concurrent_fits_leave_the_blas_threads_as_they_found_them():
    """Fits at batch 16 (one BLAS thread) and 64 (all) in 4 threads: afterwards NumPy's BLAS has the threads it
    had, and fastnn still chooses them for large batches."""
    before = _config._blas_counts(_config._blas_libs())
    choice = _config.blas_threads(64)
    rng = np.random.default_rng(0)
    X, y = rng.random((2000, 20), dtype=np.float32), rng.integers(0, 3, 2000)

    def work(i):
        m = fn.Sequential(fn.Linear(20, 16, seed=i), fn.ReLU(), fn.Linear(16, 3, seed=i + 1))
        for _ in range(3):
            m.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(m.parameters(), lr=0.1),
                  batch_size=16 if i % 2 else 64, verbose=0)

    _in_threads(work, n=4)
    assert _config._blas_counts(_config._blas_libs()) == before
    assert _config.blas_threads(64) == choice
