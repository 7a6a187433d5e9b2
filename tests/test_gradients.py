"""Float64 central differences against every hand-derived backward rule."""
import numpy as np
import pytest

import fastnn as fn

TOL = 1e-7


def _data(loss, n=7, d=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    labels = rng.integers(0, k, n)
    if isinstance(loss, fn.MSELoss):
        return X, rng.standard_normal((n, k))
    return X, labels


@pytest.mark.parametrize("act", [fn.ReLU, fn.Sigmoid, fn.Tanh, fn.LeakyReLU, fn.ELU, fn.GELU,
                                 lambda: fn.LeakyReLU(0.3), lambda: fn.ELU(0.5)])
@pytest.mark.parametrize("loss", [fn.SoftmaxCrossEntropy, fn.MSELoss], ids=lambda c: c.__name__)
def test_every_layer_and_loss(backend, act, loss):
    loss = loss()
    X, y = _data(loss)
    model = fn.Sequential(fn.Linear(5, 6, seed=1), act(), fn.Linear(6, 4, seed=2), act(), fn.Linear(4, 4, seed=3))
    errors = fn.gradcheck(model, loss, X, y)
    assert set(errors) == {"0.W", "0.b", "2.W", "2.b", "4.W", "4.b", "input"}
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("target", ["labels", "onehot", "soft"])
@pytest.mark.parametrize("loss", [fn.SoftmaxCrossEntropy, fn.NLLLoss], ids=lambda c: c.__name__)
def test_classification_losses_all_target_kinds(backend, loss, target):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 3))
    labels = rng.integers(0, 5, 6)
    y = {"labels": labels, "onehot": np.eye(5)[labels],
         "soft": rng.dirichlet(np.ones(5), 6)}[target]
    layers = [fn.Linear(3, 5, seed=0, init="glorot"), fn.Tanh(), fn.Linear(5, 5, seed=1)]
    if loss is fn.NLLLoss:
        layers.append(fn.Softmax())
    errors = fn.gradcheck(fn.Sequential(*layers), loss(), X, y)
    assert max(errors.values()) <= TOL, errors


def test_softmax_layer_alone(backend):
    """Softmax's JVP under MSE (a loss that does not cancel its Jacobian)."""
    rng = np.random.default_rng(5)
    model = fn.Sequential(fn.Linear(3, 4, seed=0), fn.Softmax())
    errors = fn.gradcheck(model, fn.MSELoss(), rng.standard_normal((5, 3)), rng.random((5, 4)))
    assert max(errors.values()) <= TOL, errors


def test_gradcheck_catches_a_wrong_gradient(monkeypatch):
    """The checker itself must fail loudly on a broken rule (here: tanh' = 1 - y)."""
    from fastnn.kernels import numpy_ref

    monkeypatch.setattr(numpy_ref, "tanh_backward", lambda y, g, out: np.multiply(g, 1 - y, out=out))
    rng = np.random.default_rng(6)
    model = fn.Sequential(fn.Linear(3, 4, seed=0), fn.Tanh(), fn.Linear(4, 2, seed=1))
    with fn.backend("numpy"):
        errors = fn.gradcheck(model, fn.MSELoss(), rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    assert errors["2.W"] <= TOL  # layers after the bug are still right
    assert errors["0.W"] > 1e-3 and errors["input"] > 1e-3


def test_gradcheck_leaves_model_untouched():
    model = fn.Sequential(fn.Linear(3, 2, seed=0))
    before = [p.data.copy() for p in model.parameters()]
    fn.gradcheck(model, fn.MSELoss(), np.ones((2, 3)), np.zeros((2, 2)))
    assert model.dtype == np.float32
    for b, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(b, p.data)
