"""The compiled training step against the layer-by-layer path and its NumPy twin."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fn
from fastnn import fused


def _data(n=96, d=7, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n)


def _model(act=fn.ReLU, dtype=np.float32, d=7, k=4):
    return fn.Sequential(fn.Linear(d, 12, seed=0, dtype=dtype), act(), fn.Linear(12, 9, seed=1, dtype=dtype), act(),
                         fn.Linear(9, k, seed=2, dtype=dtype))


OPTIMIZERS = {
    "sgd": lambda p: fn.SGD(p, lr=0.05),
    "momentum": lambda p: fn.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda p: fn.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: fn.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda p: fn.AdamW(p, lr=1e-2),
}


def _fit(model, X, y, loss, opt, *, general, epochs=1, batch_size=10, monkeypatch=None, shuffle=True):
    if general:
        monkeypatch.setattr(fused, "make_runner", lambda *a, **k: None)
    h = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch_size, seed=3, verbose=0,
                  shuffle=shuffle)
    if general:
        monkeypatch.undo()
    assert h.fast_path is not general
    return h


def _assert_paths_agree(monkeypatch, act, X, Y, loss, opt, **fit_kwargs):
    """Train the float64 model on the fused step and on the layer-by-layer path; same history and weights."""
    results = []
    for general in (False, True):
        model = _model(act, np.float64)
        h = _fit(model, X, Y, loss, OPTIMIZERS[opt](model.parameters()), general=general, monkeypatch=monkeypatch,
                 **fit_kwargs)
        results.append((h.history, [p.data.copy() for p in model.parameters()]))
    (h1, w1), (h2, w2) = results
    assert h1.keys() == h2.keys()
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-12)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("act", [fn.ReLU, fn.Sigmoid, fn.Tanh], ids=lambda c: c.__name__)
@pytest.mark.parametrize("target", ["labels", "onehot", "mse"])
def test_fused_matches_general_path(backend, monkeypatch, opt, act, target):
    """A few steps in float64: the fused step is the same arithmetic as the layers (to rounding)."""
    X, y = _data(n=30)
    loss = fn.MSELoss() if target == "mse" else fn.SoftmaxCrossEntropy()
    _assert_paths_agree(monkeypatch, act, X, y if target == "labels" else np.eye(4)[y], loss, opt)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_in_order_batches_match_general_path(backend, monkeypatch, opt):
    """shuffle=False: the compiled step reads each batch in place from X (no gather); same result."""
    X, y = _data(n=35)  # a short last batch too
    _assert_paths_agree(monkeypatch, fn.Tanh, X, y, fn.SoftmaxCrossEntropy(), opt, shuffle=False, epochs=2)


def test_numba_epoch_matches_numpy_epoch_float32():
    """A whole float32 epoch: trajectories drift by rounding, so compare loosely (loss, accuracy, weights)."""
    X, y = _data(n=2000, d=20, k=5)
    results = []
    for name in ("numba", "numpy"):
        with fn.backend(name):
            model = _model(d=20, k=5)
            h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters()), batch_size=32,
                          seed=0, verbose=0)
            assert h.fast_path
            results.append((h.history, [p.data.copy() for p in model.parameters()]))
    (h1, w1), (h2, w2) = results
    assert h1["loss"][0] == pytest.approx(h2["loss"][0], rel=1e-4)
    assert abs(h1["accuracy"][0] - h2["accuracy"][0]) <= 0.005
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_first_steps_tight_in_float32(monkeypatch):
    X, y = _data(n=40)
    ws = []
    for general in (False, True):
        model = _model()
        _fit(model, X, y, fn.SoftmaxCrossEntropy(), fn.SGD(model.parameters(), lr=0.1, momentum=0.9),
             general=general, monkeypatch=monkeypatch)
        ws.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*ws):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers, loss, opt, eligible", [
    (lambda: [fn.Linear(7, 4)], fn.SoftmaxCrossEntropy, fn.SGD, True),
    (lambda: [fn.Linear(7, 4), fn.Softmax()], fn.NLLLoss, fn.SGD, False),
    (lambda: [fn.Linear(7, 4), fn.ReLU()], fn.MSELoss, fn.SGD, False),  # activation on the output
    (lambda: [fn.ReLU(), fn.Linear(7, 4)], fn.MSELoss, fn.SGD, False),
    (lambda: [fn.Linear(7, 5), fn.ReLU(), fn.Tanh(), fn.Linear(5, 4)], fn.MSELoss, fn.SGD, False),
    (lambda: [fn.Linear(7, 5), fn.Tanh(), fn.Linear(5, 4)], fn.MSELoss, type("MySGD", (fn.SGD,), {}), False),
])
def test_eligibility(layers, loss, opt, eligible):
    X, y = _data(n=20)
    model = fn.Sequential(*layers())
    Y = np.eye(4)[y] if loss is fn.MSELoss else y
    h = model.fit(X, Y, loss=loss(), optimizer=opt(model.parameters(), lr=0.01), verbose=0)
    assert h.fast_path is eligible


def test_no_allocation_per_step():
    """Numba's allocator counts: a call over 40 batches allocates as much as one over 4."""
    code = """
        import numpy as np, fastnn as fn
        from numba.core.runtime import rtsys
        from fastnn import fused
        rng = np.random.default_rng(0)
        X, y = rng.random((1280, 20)).astype(np.float32), rng.integers(0, 5, 1280)
        m = fn.Sequential(fn.Linear(20, 16), fn.ReLU(), fn.Linear(16, 5))
        for opt in (fn.SGD(m.parameters(), lr=0.1, momentum=0.9), fn.Adam(m.parameters())):
            run = fused.make_runner(m, fn.SoftmaxCrossEntropy(), opt, X, y, y, 32)
            order = np.arange(1280)
            run(order, 0, 1)
            counts = []
            for nb in (4, 40):
                s0 = rtsys.get_allocation_stats().alloc
                run(order, 0, nb)
                counts.append(rtsys.get_allocation_stats().alloc - s0)
            print(*counts)
    """
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.split("\n")[:2]:
        few, many = map(int, line.split())
        assert few == many, r.stdout


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("general", [False, True], ids=["compiled", "layer-by-layer"])
def test_lr_set_by_a_callback_takes_effect(monkeypatch, opt, general):
    """The optimizer describes itself at every call: lr = 0 after the first epoch freezes the weights."""
    X, y = _data()
    model = _model()
    optimizer = OPTIMIZERS[opt](model.parameters())
    after_first = []

    class Freeze:
        def on_epoch_end(self, epoch, logs):
            optimizer.lr = 0.0
            after_first[:] = [p.data.copy() for p in model.parameters()]

    if general:
        monkeypatch.setattr(fused, "make_runner", lambda *a, **k: None)
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=optimizer, epochs=3, batch_size=10, seed=0,
                  verbose=0, callbacks=[Freeze()])
    assert h.fast_path is not general
    for before, p in zip(after_first, model.parameters()):
        np.testing.assert_array_equal(p.data, before)
