"""Losses against PyTorch (float64), sample weights, binary targets, NaN propagation, on both backends."""
import numpy as np
import pytest

import fastnn as fn


def _torch():
    return pytest.importorskip("torch")


def _case(kind, n=9, k=3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * 4
    if kind == "labels":
        return z, rng.integers(0, k, n)
    if kind == "binary":
        return z, (rng.random((n, k)) > 0.5).astype(np.float64)
    return z, rng.random((n, k))  # probabilities / regression targets


def _torch_loss(name, z, y, w):
    """The weighted mean ``sum w_i l_i / sum w_i`` (l_i the row's mean over outputs) and its gradient, by torch."""
    torch = _torch()
    F = torch.nn.functional
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y)
    if name == "SoftmaxCrossEntropy":
        rows = F.cross_entropy(zt, yt, reduction="none")
    elif name == "NLLLoss":
        rows = F.nll_loss(torch.log(F.softmax(zt, 1)), yt, reduction="none")
    elif name == "MSELoss":
        rows = F.mse_loss(zt, yt, reduction="none").mean(1)
    elif name == "BCEWithLogitsLoss":
        rows = F.binary_cross_entropy_with_logits(zt, yt, reduction="none").mean(1)
    else:
        rows = F.binary_cross_entropy(torch.sigmoid(zt), yt, reduction="none").mean(1)
    wt = torch.ones(len(z), dtype=torch.float64) if w is None else torch.tensor(w)
    value = (rows * wt).sum() / wt.sum()
    value.backward()
    return value.item(), zt.grad.numpy()


LOSSES = {  # name -> (target kind, output layer applied to the logits before the loss)
    "SoftmaxCrossEntropy": ("labels", None),
    "NLLLoss": ("labels", fn.Softmax),
    "MSELoss": ("dense", None),
    "BCEWithLogitsLoss": ("binary", None),
    "BCELoss": ("binary", fn.Sigmoid),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_and_gradients_match_torch(backend, name, weighted):
    """float64, through the output layer: loss value and d loss / d logits to 1e-12."""
    kind, head = LOSSES[name]
    z, y = _case(kind)
    w = np.random.default_rng(1).random(len(z)) * [0, 1, 1, 1, 0, 1, 1, 1, 1] if weighted else None
    model = fn.Sequential(fn.Linear(3, 3, dtype=np.float64), *([head()] if head else []))
    model[0].W.data[...] = np.eye(3)  # the logits pass through unchanged
    loss = getattr(fn, name)()
    value = loss.forward(model.forward(z), y, sample_weight=w)
    model.backward(loss.backward())
    expected, grad = _torch_loss(name, z, y, w)
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(model[0].b.grad, grad.sum(0), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_stable_for_huge_logits(backend, dtype):
    z = np.array([[1e4, -1e4, 0.0, 30.0, -30.0]], dtype)
    y = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype)
    loss = fn.BCEWithLogitsLoss()
    value = loss.forward(z, y)
    expected = (0 + 0 + np.log(2) + 30 + np.log1p(np.exp(-30.0)) + 30 + np.log1p(np.exp(-30.0))) / 5
    assert value == pytest.approx(expected, rel=1e-6)
    grad = loss.backward()
    assert grad.dtype == dtype and np.isfinite(grad).all()
    np.testing.assert_allclose(grad[0], np.array([0, 0, -0.5, 1, -1]) / 5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nan_propagates_through_every_loss(backend, name):
    """A NaN prediction is never clipped into a finite loss (a diverged model must not look trained)."""
    kind, head = LOSSES[name]
    z, y = _case(kind, n=4)
    P = z if head is None else head().forward(z)
    P[2, 1] = np.nan
    loss = getattr(fn, name)()  # the validated entry point rejects NaN input; fit calls the kernels directly
    assert np.isnan(loss._forward(P, loss.check_target(y, P.shape, P.dtype)))
    assert np.isnan(loss._forward(P, loss.check_target(y, P.shape, P.dtype), np.ones(4)))


def test_binary_targets_are_validated():
    loss = fn.BCEWithLogitsLoss()
    with pytest.raises(ValueError, match=r"target in \[0, 1\]"):
        loss.forward(np.zeros((2, 1)), np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 3\)"):
        loss.forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    assert loss.forward(np.zeros((2, 1)), np.array([0, 1])) == pytest.approx(np.log(2))


@pytest.mark.parametrize("w, match", [([1.0, -1.0], "negative"), ([1.0, np.nan], "NaN"), ([1.0], r"shape \(1,\)"),
                                      ([[1.0, 1.0]], "expected \\(2,\\)")])
def test_bad_sample_weights(w, match):
    with pytest.raises(ValueError, match=match):
        fn.MSELoss().forward(np.zeros((2, 1)), np.zeros(2), sample_weight=w)


@pytest.mark.parametrize("loss", [fn.SoftmaxCrossEntropy(), fn.NLLLoss()], ids=lambda l: type(l).__name__)
def test_a_softmax_loss_on_one_output_is_refused_with_the_fix(loss):
    """A softmax over one output is always 1: the loss would be 0 and the weights would never move."""
    model = fn.Sequential(fn.Linear(3, 1, seed=0))
    X, y = np.random.default_rng(0).random((8, 3)), np.zeros(8, np.int64)
    before = model[0].W.data.copy()
    with pytest.raises(ValueError, match="needs at least 2 outputs.*BCEWithLogitsLoss"):
        model.fit(X, y, loss=loss, optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    with pytest.raises(ValueError, match="needs at least 2 outputs"):
        loss.forward(np.zeros((8, 1)), y)
    np.testing.assert_array_equal(model[0].W.data, before)


@pytest.mark.parametrize("general", [False, True], ids=["compiled", "layer-by-layer"])
def test_float16_data_trains_as_its_float32_conversion(general):
    """float16 holds nothing float32 cannot: a fit on it equals a fit on the converted array, on both paths."""
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 5)).astype(np.float16), rng.integers(0, 3, 64)
    weights = []
    for data in (X, X.astype(np.float32)):
        layers = [fn.Linear(5, 4, seed=0), fn.Tanh(), fn.Linear(4, 3, seed=1)] + ([fn.Softmax()] if general else [])
        model = fn.Sequential(*layers)
        h = model.fit(data, y, loss=fn.NLLLoss() if general else fn.SoftmaxCrossEntropy(),
                      optimizer=fn.SGD(model.parameters(), lr=0.1), batch_size=16, verbose=0, seed=0)
        assert h.fast_path is not general
        weights.append([p.data.copy() for p in model.parameters()] + [model.predict(data)])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
