"""The compiled training step against the layer-by-layer path and its NumPy twin."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn import fused, lr_scheduler


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


def _fit(model, X, y, loss, opt, *, general, epochs=1, batch_size=10, monkeypatch=None, shuffle=True, **kwargs):
    if general:
        monkeypatch.setattr(fused, "make_runner", lambda *a, **k: None)
    h = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch_size, seed=3, verbose=0,
                  shuffle=shuffle, **kwargs)
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
        import ctypes, numpy as np, fastnn as fn
        from fastnn import fused
        from fastnn.kernels import aot, compiled_by
        if compiled_by() == "aot":  # the prebuilt module's own copy of Numba's runtime
            lib = ctypes.CDLL(aot.load().__file__)
            lib.fastnn_aot_count_allocations.restype = lib.fastnn_aot_allocations.restype = ctypes.c_size_t
            assert lib.fastnn_aot_count_allocations() == 1
            allocations = lib.fastnn_aot_allocations
        else:
            from numba.core.runtime import rtsys
            allocations = lambda: rtsys.get_allocation_stats().alloc
        rng = np.random.default_rng(0)
        X, y = rng.random((1280, 20)).astype(np.float32), rng.integers(0, 5, 1280)
        m = fn.Sequential(fn.Linear(20, 16), fn.ReLU(), fn.Linear(16, 5))
        weighted = (None, rng.random(1280))
        for opt, sw in [(o, w) for o in (fn.SGD(m.parameters(), lr=0.1, momentum=0.9), fn.Adam(m.parameters()))
                        for w in weighted]:
            run = fused.make_runner(m, fn.SoftmaxCrossEntropy(), opt, X, y, y, sw, 32)
            order = np.arange(1280)
            run(order, 0, 1)
            counts = []
            for nb in (4, 40):
                s0 = allocations()
                run(order, 0, nb)
                counts.append(allocations() - s0)
            print(*counts, run.compiled_by)
    """
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.split("\n")[:4]:
        few, many, compiled_by = line.split()
        assert few == many and compiled_by in ("aot", "jit"), r.stdout


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


SCHEDULES = {  # each takes the module to build from (fastnn's lr_scheduler, or torch's) and returns a factory
    "step": lambda S: lambda o: S.StepLR(o, step_size=2, gamma=0.5),
    "multistep": lambda S: lambda o: S.MultiStepLR(o, milestones=[1, 3], gamma=0.3),
    "exponential": lambda S: lambda o: S.ExponentialLR(o, gamma=0.7),
    "cosine": lambda S: lambda o: S.CosineAnnealingLR(o, T_max=4, eta_min=1e-4),
    "cosine-per-batch": lambda S: lambda o: S.CosineAnnealingLR(o, T_max=40, interval="batch"),
    "linear-warmup": lambda S: lambda o: S.LinearLR(o, start_factor=0.1, total_iters=3),
    "onecycle": lambda S: lambda o: S.OneCycleLR(o, max_lr=0.05, epochs=4, steps_per_epoch=10),
    "plateau": lambda S: lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=0, threshold=0.5),
    "keras": lambda S: lambda o: S.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_schedules_run_compiled_as_layer_by_layer(monkeypatch, schedule, opt):
    """float64: a schedule on the compiled step trains as on the layer-by-layer path (OneCycleLR's
    per-batch momentum/beta1 cycling included); the history records each epoch's learning rate."""
    X, y = _data(n=100)  # 10 batches of 10
    results = []
    for general in (False, True):
        model = _model(dtype=np.float64)
        optimizer = OPTIMIZERS[opt](model.parameters())
        h = _fit(model, X, y, fn.SoftmaxCrossEntropy(), optimizer, general=general, epochs=4,
                 monkeypatch=monkeypatch, callbacks=[SCHEDULES[schedule](lr_scheduler)(optimizer)])
        results.append((h.history, [p.data.copy() for p in model.parameters()], optimizer.lr))
    (h1, w1, lr1), (h2, w2, lr2) = results
    assert h1["lr"] == h2["lr"] and lr1 == lr2
    assert len(set(h1["lr"])) > 1 or schedule == "plateau"
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-12)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


class _TorchSchedulers:
    """``SCHEDULES`` builds fastnn schedulers from ``lr_scheduler.X``; this makes it build torch's."""

    def __init__(self, torch):
        self.torch = torch

    def __getattr__(self, name):
        return getattr(self.torch.optim.lr_scheduler, name)


@pytest.mark.parametrize("schedule", ["step", "multistep", "exponential", "cosine", "linear-warmup"])
def test_history_lr_is_torchs_epoch_sequence(schedule):
    torch = pytest.importorskip("torch")
    X, y = _data()
    model = _model()
    optimizer = fn.SGD(model.parameters(), lr=0.05)
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=optimizer, epochs=6, batch_size=32, verbose=0,
                  callbacks=[SCHEDULES[schedule](lr_scheduler)(optimizer)])
    assert h.fast_path
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    sched = SCHEDULES[schedule](_TorchSchedulers(torch))(reference)
    expected = []
    for _ in range(6):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        sched.step()
    np.testing.assert_allclose(h.history["lr"], expected, rtol=1e-15)


def test_a_scheduler_on_another_optimizer_is_an_error():
    X, y = _data()
    model = _model()
    other = fn.SGD(_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="StepLR was built on another optimizer"):
        model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0,
                  callbacks=[lr_scheduler.StepLR(other, step_size=1)])


@pytest.mark.parametrize("act", [fn.LeakyReLU, fn.ELU, fn.GELU, lambda: fn.LeakyReLU(0.2), lambda: fn.ELU(0.7)],
                         ids=["leaky_relu", "elu", "gelu", "leaky_relu-0.2", "elu-0.7"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_new_activations_run_compiled(monkeypatch, act, opt):
    X, y = _data()
    _assert_paths_agree(monkeypatch, act, X, y, fn.SoftmaxCrossEntropy(), opt, epochs=2)


def _binary_model(dtype=np.float64, k=3, sigmoid=False):
    layers = [fn.Linear(7, 12, seed=0, dtype=dtype), fn.Tanh(), fn.Linear(12, k, seed=1, dtype=dtype)]
    return fn.Sequential(*layers, *([fn.Sigmoid()] if sigmoid else []))


HEADS = {  # name -> (model factory, loss, targets from (X, labels))
    "softmax": (lambda: _model(dtype=np.float64), fn.SoftmaxCrossEntropy, lambda X, y: y),
    "mse": (lambda: _model(dtype=np.float64), fn.MSELoss, lambda X, y: np.eye(4)[y] * 2 - 0.5),
    "bce-logits-multilabel": (_binary_model, fn.BCEWithLogitsLoss, lambda X, y: (X[:, :3] > 0).astype(float)),
    "bce-logits-binary": (lambda: _binary_model(k=1), fn.BCEWithLogitsLoss, lambda X, y: (y > 1).astype(float)),
    "sigmoid-bce": (lambda: _binary_model(sigmoid=True), fn.BCELoss, lambda X, y: (X[:, :3] > 0).astype(float)),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_heads_and_sample_weights_run_compiled(monkeypatch, head, opt, weighted):
    """float64: every output/loss pair, with and without sample weights, trains compiled as layer by layer."""
    make, loss, target = HEADS[head]
    X, y = _data()
    Y = target(X, y)
    w = np.random.default_rng(5).random(len(X)) * (np.arange(len(X)) % 7 != 0) if weighted else None
    results = []
    for general in (False, True):
        model = make()
        h = _fit(model, X, Y, loss(), OPTIMIZERS[opt](model.parameters()), general=general, epochs=2,
                 monkeypatch=monkeypatch, sample_weight=w)
        results.append((h.history, [p.data.copy() for p in model.parameters()]))
    (h1, w1), (h2, w2) = results
    assert h1.keys() == h2.keys() and ("accuracy" in h1) is (head != "mse")
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-12)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("general", [False, True], ids=["compiled", "layer-by-layer"])
@pytest.mark.parametrize("head", ["softmax", "bce-logits-multilabel", "mse"])
def test_zero_weight_rows_have_no_influence(monkeypatch, head, general):
    make, loss, target = HEADS[head]
    X, y = _data()
    Y = target(X, y)
    w = np.where(np.arange(len(X)) % 3 == 0, 0.0, 1.0)
    scrambled = Y.copy()
    rng = np.random.default_rng(9)
    zero = w == 0
    scrambled[zero] = scrambled[zero][rng.permutation(zero.sum())]
    if scrambled.ndim == 1:
        scrambled[zero] = (scrambled[zero] + 1) % 4
    else:
        scrambled[zero] = 1 - scrambled[zero] if head != "mse" else scrambled[zero] * 7 + 3
    weights = []
    for targets in (Y, scrambled):
        model = make()
        _fit(model, X, targets, loss(), fn.Adam(model.parameters(), lr=1e-2), general=general, epochs=2,
             monkeypatch=monkeypatch, sample_weight=w)
        weights.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_class_weight_is_sample_weight_per_class():
    sklearn_utils = pytest.importorskip("sklearn.utils")
    X, y = _data()
    y = np.where(y == 3, 2, y)  # classes 0-2 present, 3 absent
    balanced = sklearn_utils.compute_class_weight("balanced", classes=np.unique(y), y=y)
    weights = []
    for kwargs in ({"class_weight": "balanced"}, {"sample_weight": balanced[y]},
                   {"class_weight": {0: 2.0, 2: 0.5}}, {"sample_weight": np.array([2.0, 1, 0.5])[y]}):
        model = _model()
        h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=2,
                      batch_size=16, seed=1, verbose=0, **kwargs)
        assert h.fast_path
        weights.append(np.concatenate([p.data.ravel() for p in model.parameters()]))
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_array_equal(weights[2], weights[3])


def _dropout_model(dtype=np.float64, p_in=0.1, p=0.3):
    return fn.Sequential(fn.Dropout(p_in), fn.Linear(7, 12, seed=0, dtype=dtype), fn.ReLU(), fn.Dropout(p),
                         fn.Linear(12, 9, seed=1, dtype=dtype), fn.Tanh(), fn.Dropout(p),
                         fn.Linear(9, 4, seed=2, dtype=dtype))


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_dropout_runs_compiled_with_the_layer_by_layer_masks(monkeypatch, opt):
    """float64: the compiled step draws exactly the masks the Dropout layers draw, so both paths agree."""
    X, y = _data()
    results = []
    for general in (False, True):
        model = _dropout_model()
        h = _fit(model, X, y, fn.SoftmaxCrossEntropy(), OPTIMIZERS[opt](model.parameters()), general=general,
                 epochs=3, monkeypatch=monkeypatch)
        results.append((h.history, [p.data.copy() for p in model.parameters()]))
        assert not model.training  # fit leaves inference mode as it found it
    (h1, w1), (h2, w2) = results
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-12)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dropout_is_seeded_active_in_training_and_identity_in_inference():
    X, y = _data()
    runs = []
    for seed in (4, 4, 5):
        model = _dropout_model(np.float32)
        model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters()), epochs=2, seed=seed,
                  verbose=0)
        runs.append(np.concatenate([p.data.ravel() for p in model.parameters()]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    plain = fn.Sequential(*[layer for layer in model.layers if not isinstance(layer, fn.Dropout)])
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))  # inference: identity
    model.train()
    assert not np.array_equal(model.forward(X), plain.forward(X))  # hand-written loops: training mode drops
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))  # predict always infers
    assert model.training


def test_dropout_on_the_output_falls_back_and_says_so():
    X, y = _data()
    model = fn.Sequential(fn.Linear(7, 4, dtype=np.float64), fn.Dropout(0.2))
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    assert not h.fast_path


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_gradient_clipping_runs_compiled(monkeypatch, opt):
    X, y = _data()
    _assert_paths_agree(monkeypatch, fn.ReLU, X, y, fn.SoftmaxCrossEntropy(), opt, epochs=2, clip_grad_norm=0.05)


def test_clipped_sgd_matches_torch():
    """float64, in-order batches: fit(clip_grad_norm=) on the compiled step against torch's loop."""
    torch = pytest.importorskip("torch")
    X, y = _data(n=40)
    model = _model(dtype=np.float64)
    start = [p.data.copy() for p in model.parameters()]
    h = model.fit(X.astype(np.float64), y, loss=fn.SoftmaxCrossEntropy(),
                  optimizer=fn.SGD(model.parameters(), lr=0.5, momentum=0.9), epochs=2, batch_size=10, shuffle=False,
                  verbose=0, clip_grad_norm=0.1)
    assert h.fast_path
    params = [torch.tensor(a, requires_grad=True) for a in start]
    opt = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    Xt, yt = torch.tensor(X.astype(np.float64)), torch.tensor(y)
    for _ in range(2):
        for s in range(0, 40, 10):
            z = Xt[s:s + 10]
            for i in range(0, len(params), 2):
                z = z @ params[i] + params[i + 1]
                if i < len(params) - 2:
                    z = torch.relu(z)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(z, yt[s:s + 10]).backward()
            torch.nn.utils.clip_grad_norm_(params, 0.1)
            opt.step()
    for mine, theirs in zip(model.parameters(), params):
        np.testing.assert_allclose(mine.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("source", ["float64", "uint8-memmap"])
def test_data_of_another_dtype_is_converted_per_batch(tmp_path, monkeypatch, source):
    """float64 data or uint8 pixels in a memmap train a float32 model exactly as the converted array does,
    on both paths, without a whole-dataset copy (the step gathers and converts each batch)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (200, 7), dtype=np.uint8)
    if source == "float64":
        data = pixels / 255.0
    else:
        np.save(tmp_path / "pixels.npy", pixels)
        data = np.load(tmp_path / "pixels.npy", mmap_mode="r")
    y = rng.integers(0, 4, 200)
    for general in (False, True):
        weights = []
        for X in (data, np.asarray(data, np.float32)):
            model = _model()
            _fit(model, X, y, fn.SoftmaxCrossEntropy(), fn.SGD(model.parameters(), lr=0.01), general=general,
                 epochs=2, monkeypatch=monkeypatch, shuffle=source == "float64")
            weights.append([p.data.copy() for p in model.parameters()])
        for a, b in zip(*weights):
            np.testing.assert_array_equal(a, b)


def test_float64_data_for_a_float32_model_is_not_copied():
    """Peak memory of fit on 160 MB of float64 data stays within 64 MiB of the data's own."""
    code = """
        import resource, numpy as np, fastnn as fn
        X = np.random.default_rng(0).random((100_000, 200))
        y = (X[:, 0] > 0.5).astype(np.int64)
        model = fn.Sequential(fn.Linear(200, 32), fn.ReLU(), fn.Linear(32, 2))
        model.fit(X[:500], y[:500], loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1),
                  verbose=0)  # compiles, loads BLAS: not part of the data's cost
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0,
                      validation_split=0.1)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(h.fast_path, (after - before) / 1024)
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    fast, extra_mib = r.stdout.split()
    assert fast == "True" and float(extra_mib) < 64, r.stdout


@pytest.mark.slow  # compiles a training step from an empty cache: seconds
def test_first_compile_is_announced_once_and_a_cached_step_is_silent(tmp_path):
    """On the JIT, a fit that compiles the step says so once on stderr; a second process that loads it from the
    cache, and a second fit in the same process, say nothing (the prebuilt step never compiles:
    tests/test_aot.py)."""
    code = ("import numpy as np, fastnn as fn\n"
            "X = np.random.default_rng(0).random((40, 3), dtype=np.float32); y = np.arange(40) % 2\n"
            "for _ in range(2):\n"
            "    m = fn.Sequential(fn.Linear(3, 4, seed=0), fn.Tanh(), fn.Linear(4, 2, seed=1))\n"
            "    m.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(m.parameters(), lr=0.1), verbose=0)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "FASTNN_AOT": "0"}
    errs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    assert [e.returncode for e in errs] == [0, 0], errs[0].stderr + errs[1].stderr
    assert errs[0].stderr.count("fastnn: compiling the training step") == 1
    assert "compiling" not in errs[1].stderr


def test_layers_describe_themselves_the_same_object_until_they_change():
    lin, act, drop = fn.Linear(3, 2, seed=0), fn.LeakyReLU(0.1), fn.Dropout(0.2)
    specs = [layer.describe() for layer in (lin, act, drop)]
    assert [layer.describe() for layer in (lin, act, drop)] == specs
    assert all(a is b for a, b in zip(specs, [layer.describe() for layer in (lin, act, drop)]))
    assert specs[0].kind == "linear" and specs[0].params == (lin.W, lin.b)
    assert (specs[1].kind, specs[1].code, specs[1].alpha) == ("activation", fn.LeakyReLU.code, 0.1)
    assert (specs[2].kind, specs[2].p) == ("dropout", 0.2)
    act.alpha, drop.p, lin.W = 0.25, 0.4, fn.layers.Parameter(np.zeros((3, 2), np.float32), "W")
    now = [layer.describe() for layer in (lin, act, drop)]
    assert all(a is not b for a, b in zip(specs, now))
    assert now[0].params[0] is lin.W and now[1].alpha == 0.25 and now[2].p == 0.4
    assert fn.Softmax().describe() is None and fn.layers.Layer().describe() is None


def test_losses_describe_themselves():
    labels, dense = np.zeros(4, np.int64), np.zeros((4, 3))
    codes = fn.kernels.codes
    assert fn.SoftmaxCrossEntropy().describe(labels, 3) == (codes.LOSS_SCE_LABELS, 1.0, codes.IDENTITY)
    assert fn.SoftmaxCrossEntropy().describe(dense, 3).kind == codes.LOSS_SCE_DENSE
    assert fn.MSELoss(outputs="sum", half=True).describe(dense, 3) == (codes.LOSS_MSE, 1.5, codes.IDENTITY)
    assert fn.BCELoss().describe(dense, 3) == (codes.LOSS_BCE, 1.0, codes.SIGMOID)
    assert fn.NLLLoss().describe(labels, 3).kind is None
    loss = fn.MSELoss()
    loss.half = True  # read afresh: the next call of the step sees it
    assert loss.describe(dense, 3).scale == 0.5


@pytest.mark.parametrize("act", [fn.LeakyReLU, fn.ELU], ids=lambda c: c.__name__)
def test_an_alpha_changed_after_predict_is_honoured(backend, act):
    """The compiled predict's plan is cached, but checked against what the layers describe at every call."""
    X, _ = _data()
    model = fn.Sequential(fn.Linear(7, 12, seed=0, dtype=np.float64), act(0.05), fn.Linear(12, 4, seed=1,
                                                                                          dtype=np.float64))
    X = X.astype(np.float64) * 3
    before = model.predict(X)
    np.testing.assert_allclose(before, model.forward(X), rtol=1e-12, atol=1e-12)
    model.layers[1].alpha = 0.7
    after = model.predict(X)
    np.testing.assert_allclose(after, model.forward(X), rtol=1e-12, atol=1e-12)
    assert not np.allclose(before, after)
    model.layers[1].alpha = 0.05  # and back
    np.testing.assert_allclose(model.predict(X), before, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_single_row_predict_honours_every_change(backend, dtype):
    """The single-row path (the prebuilt export without its checks, into this thread's work rows) plans again for
    a changed or deleted slope, a replaced weight parameter or bias array, and a replaced layer: setting or
    deleting what ``describe`` reads drops the spec a layer keeps, so a plan never outlives a change."""
    rng = np.random.default_rng(0)
    model = fn.Sequential(fn.Linear(7, 12, seed=0, dtype=dtype), fn.LeakyReLU(0.05), fn.Linear(12, 4, seed=1,
                                                                                             dtype=dtype))
    x = rng.standard_normal((1, 7)).astype(dtype)
    tolerance = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    seen = []
    for change in (lambda: None, lambda: setattr(model.layers[1], "alpha", 0.7),
                   lambda: setattr(model.layers[0], "W", fn.layers.Parameter(rng.standard_normal((7, 12)).astype(dtype),
                                                                            "W")),
                   lambda: setattr(model.layers[2].b, "data", np.ones(4, dtype)),
                   lambda: delattr(model.layers[1], "alpha"),  # the class's slope, 0, again
                   lambda: model.layers.__setitem__(1, fn.ELU()),
                   lambda: model.layers.__setitem__(0, fn.Linear(7, 12, seed=5, dtype=dtype)),  # a new Linear
                   lambda: setattr(model, "layers", [fn.Linear(7, 12, seed=6, dtype=dtype), *model.layers[1:]])):
        change()
        got = model.predict(x)
        np.testing.assert_allclose(got, model.forward(x), **tolerance)
        assert not any(np.allclose(got, earlier) for earlier in seen)
        seen.append(got)


def test_the_full_plan_check_runs_only_after_a_change(monkeypatch):
    """A predict skips checking every layer and parameter while nothing they hold can have changed
    (``fastnn.layers.CHANGES`` and the same layer list), and checks in full after a change anywhere: a change to
    another model costs this one a check, never a stale plan."""
    from fastnn import fused, inference  # noqa: PLC0415

    model, other = (fn.Sequential(fn.Linear(7, 12, seed=s), fn.ReLU(), fn.Linear(12, 4, seed=s + 1)) for s in (0, 2))
    x = np.random.default_rng(0).standard_normal((1, 7)).astype(np.float32)
    model.predict(x)
    plan = inference._forward_plan(model)
    checks = []
    real = fused.still
    monkeypatch.setattr(fused, "still", lambda m, specs: checks.append(m) or real(m, specs))
    for _ in range(3):
        model.predict(x)
    assert checks == [] and inference._forward_plan(model) is plan
    other.layers[0].W.data = other.layers[0].W.data * 2  # another model's array replaced
    model.predict(x)
    model.predict(x)
    assert checks == [model] and inference._forward_plan(model) is plan  # checked once, still current
    model.layers[1].code = fn.kernels.codes.IDENTITY  # this model's activation changed behind its back
    np.testing.assert_allclose(model.predict(x), model.layers[2].forward(model.layers[0].forward(x)), rtol=1e-5,
                               atol=1e-6)
    assert inference._forward_plan(model) is not plan


def test_a_slope_or_dropout_rate_changed_between_epochs_is_honoured_by_the_compiled_step(monkeypatch):
    """A callback changes LeakyReLU's slope and turns a Dropout on (its buffer appears in the step's workspace):
    the compiled step, which asks the layers at every call, trains what the layer-by-layer path trains."""
    X, y = _data()
    results = []
    for general in (False, True):
        model = fn.Sequential(fn.Linear(7, 12, seed=0, dtype=np.float64), fn.LeakyReLU(0.01), fn.Dropout(0.0),
                              fn.Linear(12, 4, seed=1, dtype=np.float64))

        class Anneal:
            def on_epoch_begin(self, epoch, logs):
                model.layers[1].alpha, model.layers[2].p = 0.01 + 0.2 * epoch, 0.25 * epoch

        h = _fit(model, X, y, fn.SoftmaxCrossEntropy(), fn.Adam(model.parameters(), lr=1e-2), general=general,
                 epochs=3, monkeypatch=monkeypatch, callbacks=[Anneal()])
        results.append((h.history["loss"], [p.data.copy() for p in model.parameters()]))
    (h1, w1), (h2, w2) = results
    np.testing.assert_allclose(h1, h2, rtol=1e-12)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
