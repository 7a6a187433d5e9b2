"""fit / predict / evaluate: batching, metrics, validation, early stopping, divergence, determinism."""
import numpy as np
import pytest

import fastnn as fn


def _blobs(n=120, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.standard_normal((k, d)) * 3
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def _model(d=5, k=3, seed=0, dtype=np.float32):
    return fn.Sequential(fn.Linear(d, 16, seed=seed, dtype=dtype), fn.ReLU(), fn.Linear(16, k, seed=seed + 1,
                                                                                          dtype=dtype))


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


def test_fit_learns_and_reports(backend):
    X, y = _blobs()
    model = _model()
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=1e-2),
                  epochs=15, batch_size=16, seed=0, verbose=0, validation_split=0.25)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert h.history["lr"] == [1e-2] * 15
    assert h.epoch == list(range(15)) and all(len(v) == 15 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0] / 3
    assert h.history["accuracy"][-1] > 0.9 and h.history["val_accuracy"][-1] > 0.9
    assert model.evaluate(X, y, fn.SoftmaxCrossEntropy())["accuracy"] > 0.9


def test_epoch_loss_is_sample_weighted_mean_with_partial_batch(backend):
    """With lr tiny the weights barely move, so the epoch loss equals the full-data loss.

    10 samples in batches of 4: 4 + 4 + 2, each batch mean weighted by its size.
    """
    X, y = _blobs(n=10)
    model = _model()
    full = model.evaluate(X, y, fn.SoftmaxCrossEntropy())["loss"]
    h = model.fit(X, y, loss="SoftmaxCrossEntropy", optimizer=fn.SGD(model.parameters(), lr=1e-12),
                  batch_size=4, verbose=0, shuffle=False)
    assert h.history["loss"][0] == pytest.approx(full, rel=1e-6)


def test_fit_equals_manual_loop():
    """fit(shuffle=False) is exactly forward/backward/step over consecutive batches."""
    X, y = _blobs(n=30)
    a, b = _model(), _model()
    a.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(a.parameters(), lr=0.1, momentum=0.9),
          batch_size=8, shuffle=False, verbose=0, epochs=2)
    loss, opt = fn.SoftmaxCrossEntropy(), fn.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        for s in range(0, 30, 8):
            loss.forward(b.forward(X[s:s + 8]), y[s:s + 8])
            b.backward(loss.backward())
            opt.step()
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_same_seed_bit_identical(backend):
    X, y = _blobs()
    runs = []
    for _ in range(2):
        model = _model()
        model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters()), epochs=2,
                  batch_size=7, seed=42, verbose=0)
        runs.append(_weights(model))
    for wa, wb in zip(*runs):
        np.testing.assert_array_equal(wa, wb)
    other = _model()
    other.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(other.parameters()), epochs=2,
              batch_size=7, seed=43, verbose=0)
    assert not np.array_equal(runs[0][0], _weights(other)[0])


def test_one_hot_targets_and_mse_regression(backend):
    X, y = _blobs()
    model = _model()
    h = model.fit(X, np.eye(3)[y], loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=1e-2),
                  epochs=5, verbose=0, seed=0)
    assert h.history["accuracy"][-1] > 0.8
    reg = fn.Sequential(fn.Linear(5, 8, seed=0), fn.Tanh(), fn.Linear(8, 1, seed=1))
    target = X.sum(axis=1) / 5
    h = reg.fit(X, target, loss=fn.MSELoss(), optimizer=fn.Adam(reg.parameters(), lr=1e-2), epochs=20,
                verbose=0, seed=0, validation_data=(X[:20], target[:20]))
    assert set(h.history) == {"loss", "val_loss", "lr"}
    assert h.history["loss"][-1] < 0.2 * h.history["loss"][0]


def test_early_stopping_restores_best(backend):
    X, y = _blobs(n=60)
    model = _model()
    seen = []

    class Spy:
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, logs["val_loss"], _weights(model)))

    es = fn.EarlyStopping(patience=2)
    # Validation labels are noise, so val_loss stops improving quickly.
    rng = np.random.default_rng(1)
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=0.05),
                  epochs=200, verbose=0, seed=0, early_stopping=es, callbacks=[Spy()],
                  validation_data=(X[:30], rng.integers(0, 3, 30)))
    assert h.stopped_epoch is not None and len(h.epoch) < 200
    assert h.stopped_epoch == es.best_epoch_ + 2 + 1
    best = min(seen, key=lambda s: s[1])
    assert best[0] == es.best_epoch_
    for w, b in zip(_weights(model), best[2]):
        np.testing.assert_array_equal(w, b)


def test_callback_can_stop():
    X, y = _blobs(n=20)
    model = _model()

    class StopAt1:
        def on_epoch_end(self, epoch, logs):
            return epoch == 1

    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1),
                  epochs=10, verbose=0, callbacks=[StopAt1()])
    assert h.epoch == [0, 1] and h.stopped_epoch == 1


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_names_epoch_and_batch_and_keeps_finite_weights(backend):
    X, y = _blobs(n=64)
    model = _model()
    with pytest.raises(FloatingPointError, match=r"at epoch \d+/50, batch \d+/4") as info:
        model.fit(X * 1e3, np.eye(3)[y] * 1e3, loss=fn.MSELoss(), optimizer=fn.SGD(model.parameters(), lr=10.0),
                  epochs=50, batch_size=16, verbose=0, seed=0)
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert isinstance(info.value.history, fn.History)


LOSS_CASES = {  # loss -> (model head, targets)
    "SoftmaxCrossEntropy": (None, lambda y: y),
    "NLLLoss": (fn.Softmax, lambda y: y),
    "MSELoss": (None, lambda y: np.eye(3)[y]),
    "BCEWithLogitsLoss": (None, lambda y: np.eye(3)[y]),
    "BCELoss": (fn.Sigmoid, lambda y: np.eye(3)[y]),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_an_exploding_learning_rate_is_caught_for_every_loss(backend, name):
    """NaN reaches every loss kernel's value, so fit stops with FloatingPointError instead of saving NaN weights.

    BCELoss clamps its logs at -100 as PyTorch's does, so a saturated Sigmoid output may train on with a
    finite loss; then every weight and loss must still be finite."""
    head, target = LOSS_CASES[name]
    X, y = _blobs(n=64)
    model = fn.Sequential(*_model().layers, *([head()] if head else []))
    try:
        h = model.fit(X, target(y), loss=getattr(fn, name)(), optimizer=fn.SGD(model.parameters(), lr=1e30),
                      epochs=5, batch_size=16, verbose=0, seed=0)
    except FloatingPointError as exc:
        assert "loss became" in str(exc)
    else:
        assert name == "BCELoss", f"{name}: no divergence detected, history {h.history['loss']}"
        assert np.isfinite(h.history["loss"]).all()
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_binary_accuracy_counts_each_output():
    """Multilabel accuracy is the fraction of the n x k decisions that are right (Keras' binary accuracy)."""
    X, y = _blobs(n=60)
    Y = np.eye(3)[y]
    model = _model()
    h = model.fit(X, Y, loss=fn.BCEWithLogitsLoss(), optimizer=fn.Adam(model.parameters(), lr=1e-2), epochs=20,
                  batch_size=16, verbose=0, seed=0)
    assert h.fast_path
    result = model.evaluate(X, Y, fn.BCEWithLogitsLoss())
    assert result["accuracy"] == pytest.approx(((model.predict(X) > 0) == (Y > 0.5)).mean())
    assert h.history["accuracy"][-1] > 0.9


def test_weighted_evaluate_is_the_weighted_mean(backend):
    X, y = _blobs(n=30)
    model = _model()
    w = np.linspace(0, 2, 30)
    rows = [model.evaluate(X[i:i + 1], y[i:i + 1], fn.SoftmaxCrossEntropy())["loss"] for i in range(30)]
    result = model.evaluate(X, y, fn.SoftmaxCrossEntropy(), sample_weight=w)
    assert result["loss"] == pytest.approx(np.dot(w, rows) / w.sum(), rel=1e-5)
    assert result["accuracy"] == model.evaluate(X, y, fn.SoftmaxCrossEntropy())["accuracy"]


def test_verbose_output(capsys):
    X, y = _blobs(n=20)
    model = _model()
    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=2,
              verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=2,
              verbose=1, validation_data=(X, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("Epoch 2/2 - ") and "loss: " in lines[1] and "val_accuracy: " in lines[1]
    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=1,
              verbose=2, batch_size=2)
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1 and "it/s" not in captured.err  # no bar: not a tty


def test_predict_batches_caches_nothing_and_leaves_the_model_alone(backend):
    X, _ = _blobs(n=50)
    model = _model()
    out = model.predict(X, batch_size=7)
    assert model[0]._X is None and model[1]._y is None  # inference caches nothing
    full = model.forward(X)
    np.testing.assert_allclose(out, full, rtol=1e-6)
    model.predict(X[:3])
    assert model[0]._X.shape[0] == 50  # a forward's cache, which backward needs, is not predict's to drop


@pytest.mark.parametrize("n, batch_size", [(1, 1024), (3, 2), (50, 7), (50, 1024)])
def test_predict_compiled_path_equals_layer_by_layer_float64(backend, n, batch_size):
    """predict's one-call inference pass (rows one at a time or through BLAS, in chunks) against the layers'
    own forward, in float64, for every fused activation."""
    rng = np.random.default_rng(1)
    f64 = dict(dtype=np.float64)
    model = fn.Sequential(fn.Linear(6, 9, seed=0, **f64), fn.Tanh(), fn.Linear(9, 8, seed=1, **f64), fn.ReLU(),
                          fn.Linear(8, 7, seed=2, **f64), fn.Sigmoid(), fn.Linear(7, 6, seed=3, **f64), fn.GELU(),
                          fn.Linear(6, 5, seed=4, **f64), fn.ELU(alpha=0.7), fn.Linear(5, 4, seed=5, **f64),
                          fn.LeakyReLU(0.05), fn.Linear(4, 3, seed=6, **f64))
    X = rng.standard_normal((n, 6))
    X[:, 0] = 0  # the single-row loop skips zero inputs
    out = model.predict(X, batch_size=batch_size)
    assert out.dtype == np.float64 and out.shape == (n, 3)
    np.testing.assert_allclose(out, model._forward(X), rtol=1e-12, atol=1e-13)


def test_predict_follows_changed_weights_and_layers(backend):
    X, _ = _blobs(n=4)
    model = _model()
    first = model.predict(X)
    model[0].W.data = model[0].W.data * 2  # a new array, as load() and astype() make
    np.testing.assert_allclose(model.predict(X), model._forward(X), rtol=1e-6)
    assert not np.allclose(model.predict(X), first)
    model.layers.append(fn.Softmax())  # not a fused stack any more: layer by layer
    probs = model.predict(X)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("X, match", [
    (np.full((1, 5), np.nan, np.float32), "contains NaN"),
    (np.array([[1, 2, np.inf, 4, 5]], np.float32), "contains inf"),
    (np.ones((1, 4), np.float32), "4 features per sample, expected 5"),
    (np.ones((0, 5), np.float32), "empty batch"),
])
def test_predict_fast_path_still_validates(backend, X, match):
    with pytest.raises(ValueError, match=match):
        _model().predict(X)


def test_predict_converts_what_the_fast_path_does_not_take(backend):
    X, _ = _blobs(n=6)
    model = _model()
    expected = model.predict(X)
    for other in (X.astype(np.float64), np.asfortranarray(X), X.tolist(), np.repeat(X, 2, axis=1)[:, ::2]):
        np.testing.assert_allclose(model.predict(other), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(X, batch_size=0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(X=np.ones((10, 4))), ValueError, "4 features per sample, expected 5"),
    (dict(y=np.zeros(9, int)), ValueError, "9 labels but the prediction has 10 rows"),
    (dict(y=np.full(10, 3)), ValueError, r"label 3 out of range"),
    (dict(X=np.full((10, 5), np.nan)), ValueError, "NaN"),
    (dict(epochs=0), ValueError, "epochs must be an integer >= 1"),
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=0.01), ValueError, "leaves 0 of 10"),
    (dict(validation_data=(np.ones((3, 5)),)), ValueError, "pair"),
    (dict(validation_data=(np.ones((3, 5)), [0, 1])), ValueError, "y_val has 2 labels"),
    (dict(loss="hinge"), ValueError, "loss must be a fastnn Loss or one of .*, got 'hinge'"),
    (dict(optimizer="adam"), TypeError, "optimizer must be a fastnn Optimizer"),
    (dict(verbose=3), ValueError, "verbose"),
    (dict(early_stopping="yes"), TypeError, "early_stopping"),
    (dict(callbacks=[print]), TypeError, "on_epoch_end"),
    (dict(sample_weight=np.ones(9)), ValueError, r"sample_weight has shape \(9,\), expected \(10,\)"),
    (dict(sample_weight=-np.ones(10)), ValueError, "negative"),
    (dict(sample_weight=np.full(10, np.nan)), ValueError, "NaN"),
    (dict(sample_weight=np.zeros(10)), ValueError, "sums to 0"),
    (dict(class_weight="heavy"), ValueError, "'balanced'"),
    (dict(class_weight={7: 1.0}), ValueError, r"class_weight key must be an integer in \[0, 3\), got 7"),
    (dict(class_weight={0: -1.0}), ValueError, "finite number >= 0"),
    (dict(validation_data=(np.ones((3, 5)), [0, 1, 2], [1.0, -1.0, 1.0])), ValueError, "sample_weight_val"),
])
def test_bad_fit_arguments_leave_model_untouched(kwargs, error, match):
    X, y = _blobs(n=10)
    model = _model()
    before = _weights(model)
    args = dict(X=X, y=y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        model.fit(args.pop("X"), args.pop("y"), **args)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_optimizer_of_another_model_is_rejected():
    X, y = _blobs(n=10)
    model, other = _model(), _model()
    with pytest.raises(ValueError, match="optimizer does not hold this model's parameters"):
        model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(other.parameters(), lr=0.1))


def test_predict_proba_follows_the_loss():
    X, y = _blobs(n=30)
    model = _model()
    with pytest.raises(ValueError, match="predict_proba needs to know"):
        model.predict_proba(X)
    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    z = model.predict(X).astype(np.float64)
    softmax = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(X), softmax / softmax.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(model.predict_proba(X, loss="BCEWithLogitsLoss"), 1 / (1 + np.exp(-z)), rtol=1e-5)
    ending = fn.Sequential(*model.layers, fn.Softmax())
    np.testing.assert_allclose(ending.predict_proba(X), softmax / softmax.sum(1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="MSELoss gives no probabilities"):
        model.predict_proba(X, loss=fn.MSELoss())


def test_summary_counts_parameters():
    model = fn.Sequential(fn.Linear(784, 128), fn.ReLU(), fn.Dropout(0.2), fn.Linear(128, 10))
    lines = []
    text = model.summary(print_fn=lines.append)
    assert lines == [text]
    assert "0: Linear(in_features=784, out_features=128" in text and "(None, 128)" in text
    assert "100,480" in text and "1,290" in text and "total parameters: 101,770 (407,080 bytes, float32)" in text


@pytest.mark.parametrize("general", [False, True], ids=["compiled", "layer-by-layer"])
def test_float32_weight_decay_is_as_exact_as_torchs(monkeypatch, general):
    """5,000 plain SGD steps of lr=0.1, weight_decay=0.01 on zero inputs only decay W: W0 * 0.999**n.
    Rounding the shrink factor 1 - lr*wd to float32 once per step drifted 6.4e-5 away; decaying as
    p - (lr wd) p, rounded once per element as PyTorch does, stays within float32 rounding."""
    from fastnn import fused
    X, y = np.zeros((100, 5), np.float32), np.zeros((100, 1), np.float32)
    model = fn.Sequential(fn.Linear(5, 1, seed=0))
    W0 = model[0].W.data.astype(np.float64)
    if general:
        monkeypatch.setattr(fused, "make_runner", lambda *a, **k: None)
    h = model.fit(X, y, loss=fn.MSELoss(), optimizer=fn.SGD(model.parameters(), lr=0.1, weight_decay=0.01),
                  epochs=50, batch_size=1, shuffle=False, verbose=0)
    assert h.fast_path is not general
    exact = W0 * 0.999 ** 5000
    assert np.abs(model[0].W.data - exact).max() < 1e-7 * np.abs(W0).max()  # measured: 1.4e-8 relative


def test_fit_records_its_loss_publicly_and_evaluate_keeps_no_gradient():
    X, y = _blobs(n=40)
    model = _model()
    assert model.fit_loss is None
    loss = fn.SoftmaxCrossEntropy()
    model.fit(X, y, loss=loss, optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=1, verbose=0)
    assert model.fit_loss is loss  # what predict_proba takes the outputs to mean
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1, rtol=1e-5)
    result = model.evaluate(X, y, loss)
    with pytest.raises(RuntimeError, match="before forward"):  # Loss.value: the batch's gradient is not kept
        loss.backward()
    assert result["loss"] == pytest.approx(loss.value(model.predict(X), y))
