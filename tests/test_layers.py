"""Worked examples, fused-vs-unfused equality, extreme logits and dtypes."""
import numpy as np
import pytest

import fastnn as fn
from tests.conftest import DTYPES, tol


def test_one_hand_worked_step(backend):
    """Linear(2, 2) + SoftmaxCrossEntropy, one forward/backward and one SGD step, by hand."""
    model = fn.Sequential(fn.Linear(2, 2, dtype=np.float64))
    lin = model[0]
    lin.W.data[...] = [[1.0, 0.0], [0.0, 1.0]]  # identity
    lin.b.data[...] = [0.0, 0.0]
    X = np.array([[np.log(3.0), 0.0]])  # logits z = X W + b = [ln 3, 0]
    loss = fn.SoftmaxCrossEntropy()
    # softmax([ln 3, 0]) = [3, 1] / 4 = [0.75, 0.25]; label 0 -> loss = -ln 0.75
    value = loss.forward(model.forward(X), np.array([0]))
    assert value == pytest.approx(-np.log(0.75), rel=1e-14)
    # dL/dz = (S - Y) / n = [0.75 - 1, 0.25 - 0] / 1 = [-0.25, 0.25]
    g = loss.backward()
    np.testing.assert_allclose(g, [[-0.25, 0.25]], rtol=1e-14)
    dX = model.backward(g)
    # dW = X^T g = [[ln3 * -0.25, ln3 * 0.25], [0, 0]];  db = [-0.25, 0.25];  dX = g W^T = g
    np.testing.assert_allclose(lin.W.grad, [[-0.25 * np.log(3), 0.25 * np.log(3)], [0, 0]], rtol=1e-14)
    np.testing.assert_allclose(lin.b.grad, [-0.25, 0.25], rtol=1e-14)
    np.testing.assert_allclose(dX, [[-0.25, 0.25]], rtol=1e-14)
    # SGD with lr = 0.4: W <- W - 0.4 dW, b <- b - 0.4 db
    for p in model.parameters():
        p.data -= 0.4 * p.grad
    np.testing.assert_allclose(lin.W.data, [[1 + 0.1 * np.log(3), -0.1 * np.log(3)], [0, 1]], rtol=1e-14)
    np.testing.assert_allclose(lin.b.data, [0.1, -0.1], rtol=1e-14)
    # New logits [ln3 (1 + 0.1 ln3) + 0.1, -0.1 ln3 ln3 - 0.1]: the loss went down.
    assert loss.forward(model.forward(X), [0]) < value


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", ["labels", "onehot"])
def test_softmax_nll_equals_fused(backend, dtype, target):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((8, 5)).astype(dtype) * 3
    labels = rng.integers(0, 5, 8)
    y = labels if target == "labels" else np.eye(5, dtype=dtype)[labels]
    fused = fn.SoftmaxCrossEntropy()
    fused_loss = fused.forward(Z, y)
    sm, nll = fn.Softmax(), fn.NLLLoss()
    two_step = nll.forward(sm.forward(Z), y)
    dZ = sm.backward(nll.backward())
    assert fused_loss == pytest.approx(two_step, rel=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(fused.backward(), dZ, **tol(dtype))
    np.testing.assert_allclose(fused.probs_, sm.forward(Z), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_stay_finite(backend, dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    loss = fn.SoftmaxCrossEntropy()
    value = loss.forward(Z, [1, 2, 0])
    g = loss.backward()
    assert np.isfinite(value) and np.isfinite(g).all()
    # Row 0 puts all mass on class 0 but the label is 1: loss 2e4. Row 1 is uniform: ln 3.
    # Row 2 splits between classes 0 and 1: ln 2.
    assert value == pytest.approx((2e4 + np.log(3) + np.log(2)) / 3, rel=1e-6)
    sm = fn.Softmax().forward(Z)
    assert np.isfinite(sm).all()
    np.testing.assert_allclose(sm.sum(1), 1, rtol=1e-6)
    nll = fn.NLLLoss()
    assert np.isfinite(nll.forward(sm, [1, 2, 0])) and np.isfinite(nll.backward()).all()
    for act in (fn.Sigmoid(), fn.Tanh(), fn.ReLU()):
        assert np.isfinite(act.forward(Z)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_dtypes(backend, dtype):
    rng = np.random.default_rng(1)
    model = fn.Sequential(fn.Linear(3, 4, dtype=dtype, seed=0), fn.Sigmoid(), fn.Linear(4, 3, dtype=dtype),
                          fn.Tanh(), fn.Linear(3, 3, dtype=dtype), fn.ReLU(), fn.Linear(3, 2, dtype=dtype),
                          fn.Softmax())
    X = rng.standard_normal((5, 3))  # float64 in, the model's dtype out
    out = model.forward(X)
    assert out.dtype == np.dtype(dtype)
    for loss, y in [(fn.NLLLoss(), [0, 1, 0, 1, 1]), (fn.MSELoss(), np.zeros((5, 2))),
                    (fn.SoftmaxCrossEntropy(), [1, 1, 0, 0, 1])]:
        assert isinstance(loss.forward(out, y), float)
        g = loss.backward()
        assert g.dtype == np.dtype(dtype)
        assert model.backward(g).dtype == np.dtype(dtype)
    for p in model.parameters():
        assert p.data.dtype == p.grad.dtype == np.dtype(dtype)
        assert p.data.shape == p.grad.shape


def test_backends_agree_on_a_model():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((9, 6)), rng.integers(0, 3, 9)
    results = []
    for name in ("numba", "numpy"):
        with fn.backend(name):
            model = fn.Sequential(fn.Linear(6, 5, seed=0), fn.ReLU(), fn.Linear(5, 3, seed=1))
            loss = fn.SoftmaxCrossEntropy()
            value = loss.forward(model.forward(X), y)
            dX = model.backward(loss.backward())
            results.append((value, dX, [p.grad.copy() for p in model.parameters()]))
    (v1, d1, g1), (v2, d2, g2) = results
    assert v1 == pytest.approx(v2, rel=1e-6)
    np.testing.assert_allclose(d1, d2, **tol(np.float32))
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, **tol(np.float32))


def test_backend_switching():
    assert fn.get_backend().__name__.endswith("numba_cpu")
    with fn.backend("numpy") as K:
        assert K.__name__.endswith("numpy_ref") and fn.get_backend() is K
    assert fn.get_backend().__name__.endswith("numba_cpu")
    fn.set_backend("numpy")
    try:
        assert fn.get_backend().__name__.endswith("numpy_ref")
    finally:
        fn.set_backend("numba")
    with pytest.raises(ValueError, match="backend must be 'numba' or 'numpy', got 'cuda'"):
        fn.set_backend("cuda")


def test_same_seed_same_weights_and_init_scales():
    a, b = fn.Linear(50, 40, seed=3), fn.Linear(50, 40, seed=3)
    np.testing.assert_array_equal(a.W.data, b.W.data)
    assert not np.array_equal(a.W.data, fn.Linear(50, 40, seed=4).W.data)
    assert np.std(fn.Linear(400, 300, seed=0).W.data) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    glorot = fn.Linear(400, 300, seed=0, init="glorot_uniform").W.data
    assert np.abs(glorot).max() <= np.sqrt(6 / 700)
    assert not fn.Linear(3, 2).b.data.any()


def test_parameters_zero_grad_and_repr():
    model = fn.Sequential(fn.Linear(3, 4), fn.ReLU(), fn.Linear(4, 2))
    params = model.parameters()
    assert [p.data.shape for p in params] == [(3, 4), (4,), (4, 2), (2,)]
    assert all(isinstance(p, fn.Parameter) for p in params)
    loss = fn.MSELoss()
    loss.forward(model.forward(np.ones((2, 3))), np.ones((2, 2)))
    model.backward(loss.backward())
    assert any(p.grad.any() for p in params)
    model.zero_grad()
    assert not any(p.grad.any() for p in params)
    assert "Linear(in_features=3, out_features=4" in repr(model)
