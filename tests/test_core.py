"""The training core and scikit-learn's rules as options of fastnn's optimizers and losses.

Each option is checked against scikit-learn's own code (its optimizers of ``_stochastic_optimizers`` and its
losses of ``neural_network._base``) or PyTorch, on both backends, and the compiled step against the
layer-by-layer path with every option on.
"""
import numpy as np
import pytest
import scipy.sparse as sp

import fastnn as fn
from fastnn import core as core_module
from fastnn import fused
from fastnn.core import TrainingCore

sk_opt = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
sk_base = pytest.importorskip("sklearn.neural_network._base")


def _params(seed=0, shapes=((4, 3), (3,))):
    rng = np.random.default_rng(seed)
    return [fn.Parameter(rng.standard_normal(s)) for s in shapes]


def _same_steps(ours, ref, params, theirs, steps, change_rate_at=None):
    """``steps`` updates by fastnn's optimizer and scikit-learn's on the same random gradients: the same weights."""
    rng = np.random.default_rng(1)
    for step in range(steps):
        if step == change_rate_at:
            ours.lr = ref.learning_rate = 0.02
        grads = [rng.standard_normal(p.data.shape) for p in params]
        for p, g in zip(params, grads):
            p.grad[...] = g
        ours.step()
        ref.update_params(theirs, grads)
    for p, q in zip(params, theirs):
        np.testing.assert_allclose(p.data, q, rtol=0, atol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_velocity_is_sklearns_sgd_through_a_change_of_rate(backend, nesterov):
    """SGD(velocity=True) steps as scikit-learn's SGDOptimizer, including after the rate changes (where
    PyTorch's buffer form would rescale the steps already taken)."""
    params = _params()
    theirs = [p.data.copy() for p in params]
    ours = fn.SGD(params, lr=0.1, momentum=0.9, nesterov=nesterov, velocity=True)
    ref = sk_opt.SGDOptimizer(theirs, learning_rate_init=0.1, momentum=0.9, nesterov=nesterov)
    _same_steps(ours, ref, params, theirs, 8, change_rate_at=4)


def test_adam_eps_hat_is_sklearns_adam(backend):
    params = _params()
    theirs = [p.data.copy() for p in params]
    ours = fn.Adam(params, lr=0.01, betas=(0.9, 0.99), eps=1e-3, eps_hat=True)
    ref = sk_opt.AdamOptimizer(theirs, learning_rate_init=0.01, beta_1=0.9, beta_2=0.99, epsilon=1e-3)
    _same_steps(ours, ref, params, theirs, 10)
    assert ours.get_config()["eps_hat"] is True and "eps_hat" not in fn.Adam(_params()).get_config()


@pytest.mark.parametrize("make", [lambda p, **k: fn.SGD(p, lr=0.1, momentum=0.5, **k),
                                  lambda p, **k: fn.Adam(p, lr=0.1, **k)], ids=["SGD", "Adam"])
def test_sample_decay_divides_the_decay_by_the_batch_weight(backend, make):
    a, b = _params(), _params()
    per_sample, plain = make(a, weight_decay=0.6, sample_decay=True), make(b, weight_decay=0.6 / 3.0)
    for p, q in zip(a, b):
        p.grad[...] = q.grad[...] = 1.0
    per_sample.step(batch_weight=3.0)
    plain.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="batch_weight"):
        per_sample.step()
    assert per_sample.l2_penalty() == pytest.approx(0.3 * sum(float(np.vdot(p.data, p.data)) for p in a))


def _value_and_grad(loss, z, y, w=None):
    value = loss.forward(z, y, sample_weight=w)
    return value, loss.backward()


@pytest.mark.parametrize("out, loss", [("logistic", fn.BCEWithLogitsLoss(outputs="sum")),
                                       ("identity", fn.MSELoss(outputs="sum", half=True)),
                                       ("exp", fn.PoissonLoss(outputs="sum"))], ids=lambda v: str(v))
def test_sum_over_outputs_gives_sklearns_gradient(backend, out, loss):
    """With outputs="sum" (and half=True for the squared error) the gradient w.r.t. the logits is scikit-learn's
    ``(p - y) / n``; the value is its loss (the squared error's it averages over the k outputs)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 3))
    y = (rng.random((7, 3)) > 0.5).astype(float) if out == "logistic" else rng.random((7, 3)) * 2
    value, grad = _value_and_grad(loss, z, y)
    p = {"logistic": lambda v: 1 / (1 + np.exp(-v)), "identity": lambda v: v, "exp": np.exp}[out](z)
    np.testing.assert_allclose(grad, (p - y) / len(z), rtol=1e-12, atol=1e-15)
    name = {"logistic": "binary_log_loss", "identity": "squared_loss", "exp": "poisson_loss"}[out]
    expected = getattr(sk_base, name)(y, p)
    assert value / (3 if out == "identity" else 1) == pytest.approx(expected, rel=1e-11)
    assert loss.get_config()["outputs"] == "sum" and "outputs" not in type(loss)().get_config()


def test_outputs_is_checked():
    with pytest.raises(ValueError, match="outputs must be 'mean' or 'sum'"):
        fn.MSELoss(outputs="max")
    with pytest.raises(TypeError):
        fn.SoftmaxCrossEntropy(outputs="sum")  # a softmax row's loss is one number over its classes


def test_poisson_loss_matches_torch_gradient_and_sklearn_value(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((9, 2)), rng.poisson(2.0, (9, 2)).astype(float)
    w = rng.random(9)
    value, grad = _value_and_grad(fn.PoissonLoss(), z, y, w)
    zt = torch.tensor(z, requires_grad=True)
    rows = torch.nn.functional.poisson_nll_loss(zt, torch.tensor(y), log_input=True, reduction="none").mean(1)
    wt = torch.tensor(w)
    ((rows * wt).sum() / wt.sum()).backward()
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    # scikit-learn's poisson_loss averages the rows; its per-output constant y log y - y is in the value too
    assert value * 2 == pytest.approx(sk_base.poisson_loss(y, np.exp(z), sample_weight=w), rel=1e-12)
    assert np.isclose(fn.PoissonLoss().output(np.log(np.array([[2.0]]))), 2.0)
    with pytest.raises(ValueError, match="non-negative"):
        fn.PoissonLoss().forward(z, -y)


def _net(seed=0, n_out=2):
    return fn.Sequential(fn.Linear(5, 6, seed=seed, dtype=np.float64), fn.Tanh(),
                         fn.Linear(6, n_out, seed=seed + 1, dtype=np.float64))


@pytest.mark.parametrize("case", ["sgd-velocity-poisson", "adam-eps_hat-bce", "sgd-plain-mse"])
def test_compiled_step_equals_layer_by_layer_with_the_options(backend, monkeypatch, case):
    """Every option on the compiled step (both twins) and layer by layer: the same weights to rounding."""
    rng = np.random.default_rng(0)
    X, w = rng.standard_normal((50, 5)), rng.random(50)
    kind = case.split("-")[2]
    y = {"poisson": rng.poisson(1.0, (50, 2)).astype(float), "bce": (rng.random((50, 2)) > 0.5) * 1.0,
         "mse": rng.standard_normal((50, 2))}[kind]
    loss = {"poisson": lambda: fn.PoissonLoss(outputs="sum"), "bce": lambda: fn.BCEWithLogitsLoss(outputs="sum"),
            "mse": lambda: fn.MSELoss(outputs="sum", half=True)}[kind]

    def train(compiled):
        model = _net()
        groups = [{"params": [p], "weight_decay": 0.1 if p.data.ndim == 2 else 0.0} for p in model.parameters()]
        if case.startswith("adam"):
            opt = fn.Adam(groups, lr=0.01, eps=1e-3, eps_hat=True, sample_decay=True)
        else:
            opt = fn.SGD(groups, lr=0.05, momentum=0.0 if "plain" in case else 0.9, velocity=True,
                         sample_decay=True)
        with monkeypatch.context() as m:
            if not compiled:
                m.setattr(fused, "make_runner", lambda *a, **k: None)
            h = model.fit(X, y, loss=loss(), optimizer=opt, epochs=3, batch_size=16, sample_weight=w, seed=0,
                          verbose=0)
        assert h.fast_path == compiled
        return model, h

    (a, ha), (b, hb) = train(True), train(False)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-11)


def test_history_says_why_the_compiled_step_did_not_run():
    X, y = np.random.default_rng(0).random((20, 5)), np.arange(20) % 2
    model = fn.Sequential(fn.Linear(5, 2, seed=0), fn.Softmax())
    h = model.fit(X, y, loss=fn.NLLLoss(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    assert not h.fast_path and "layer 1 (Softmax)" in h.fallback

    class Mine(fn.SoftmaxCrossEntropy):
        pass

    model = fn.Sequential(fn.Linear(5, 2, seed=0))
    h = model.fit(X, y, loss=Mine(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    assert not h.fast_path and "the loss Mine is not one of fastnn's own" in h.fallback
    model = fn.Sequential(fn.Linear(5, 2, seed=0))
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), verbose=0)
    assert h.fast_path and h.fallback is None


@pytest.mark.parametrize("budget", [None, 2 * 16 * 5 * 8], ids=["one call", "two batches a call"])
def test_sparse_rows_train_on_the_compiled_step_as_dense_ones(backend, monkeypatch, budget):
    if budget is not None:
        monkeypatch.setattr(core_module, "SPARSE_BYTES", budget)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((45, 5))
    X[X < 0.3] = 0
    y = rng.integers(0, 2, 45)
    results = []
    for data in (X, sp.csr_matrix(X)):
        model = _net()
        opt = fn.Adam(model.parameters(), lr=0.01)
        core = TrainingCore(model, fn.SoftmaxCrossEntropy(), opt, data, y, None, 16)
        assert core.fast_path
        order = np.random.default_rng(1).permutation(45)
        sums, weights, correct, done = core.run(order, 0, core.n_batches)
        assert done == core.n_batches == 3 and list(weights) == [16, 16, 13]
        results.append(([p.data.copy() for p in model.parameters()], sums.copy(), correct))
    for p, q in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)
    assert results[0][2] == results[1][2]


def test_full_batch_gradient_is_the_numerical_gradient():
    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((12, 5)), rng.random((12, 2)), rng.random(12)
    model = _net()
    core = TrainingCore(model, fn.MSELoss(outputs="sum", half=True), None, sp.csr_matrix(X), y, w, 12)
    decays = [0.3 if p.data.ndim == 2 else 0.0 for p in model.parameters()]
    assert not core.fast_path and core.fallback

    def objective():
        return sum(core.loss_and_gradient(decays, block_rows=5))

    objective()
    analytic = [p.grad.copy() for p in model.parameters()]
    p, h = model.parameters()[0], 1e-6
    for idx in [(0, 0), (2, 3), (4, 5)]:
        p.data[idx] += h
        up = objective()
        p.data[idx] -= 2 * h
        down = objective()
        p.data[idx] += h
        assert analytic[0][idx] == pytest.approx((up - down) / (2 * h), rel=1e-6)
