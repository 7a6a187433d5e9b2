"""Optimizers: hand-computed steps, PyTorch parity (when installed), invalid hyper-parameters."""
import numpy as np
import pytest

import fastnn as fn


def _param(values, dtype=np.float64):
    p = fn.Parameter(np.array(values, dtype))
    return p


def test_sgd_plain_step(backend):
    p = _param([1.0, -2.0])
    p.grad[...] = [0.5, 0.25]
    fn.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, -2.0 - 0.025], rtol=1e-15)


def test_sgd_momentum_nesterov_weight_decay_by_hand(backend):
    p = _param([1.0])
    opt = fn.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5)
    p.grad[...] = 2.0
    opt.step()
    # d = 2 + 0.5*1 = 2.5; buf = 2.5; update = d + 0.9*buf = 4.75; p = 1 - 0.475 = 0.525
    assert p.data[0] == pytest.approx(0.525, rel=1e-14)
    opt.step()
    # d = 2 + 0.5*0.525 = 2.2625; buf = 0.9*2.5 + 2.2625 = 4.5125; update = 2.2625 + 0.9*4.5125 = 6.32375
    assert p.data[0] == pytest.approx(0.525 - 0.632375, rel=1e-13)


def test_sgd_momentum_without_nesterov(backend):
    p = _param([0.0])
    opt = fn.SGD([p], lr=1.0, momentum=0.5)
    for _ in range(3):
        p.grad[...] = 1.0
        opt.step()
    # buf: 1, 1.5, 1.75 -> p = -(1 + 1.5 + 1.75)
    assert p.data[0] == pytest.approx(-4.25, rel=1e-15)


def test_adam_first_steps_by_hand(backend):
    p = _param([1.0])
    opt = fn.Adam([p], lr=0.1)
    p.grad[...] = 4.0
    opt.step()
    # m = 0.4, v = 0.016; mhat = 4, vhat = 16; step = 0.1 * 4 / (4 + 1e-8)
    assert p.data[0] == pytest.approx(1 - 0.1 * 4 / (4 + 1e-8), rel=1e-14)
    p.grad[...] = -2.0
    opt.step()
    m = 0.9 * 0.4 + 0.1 * -2.0
    v = 0.999 * 0.016 + 0.001 * 4.0
    mhat, vhat = m / (1 - 0.81), v / (1 - 0.999**2)
    assert p.data[0] == pytest.approx(1 - 0.1 * 4 / (4 + 1e-8) - 0.1 * mhat / (np.sqrt(vhat) + 1e-8), rel=1e-13)


def test_adam_l2_vs_adamw_decoupled(backend):
    a, w = _param([2.0]), _param([2.0])
    adam, adamw = fn.Adam([a], lr=0.1, weight_decay=0.5), fn.AdamW([w], lr=0.1, weight_decay=0.5)
    a.grad[...] = w.grad[...] = 1.0
    adam.step()
    adamw.step()
    # Adam: g = 1 + 0.5*2 = 2 -> normalised step 0.1 * 2/(2+eps): p = 1.9
    assert a.data[0] == pytest.approx(2 - 0.1 * 2 / (2 + 1e-8), rel=1e-14)
    # AdamW: p = 2 * (1 - 0.05) = 1.9, then the Adam step on g = 1: 1.9 - 0.1
    assert w.data[0] == pytest.approx(2 * 0.95 - 0.1 * 1 / (1 + 1e-8), rel=1e-14)


def test_state_allocated_once_and_dtype_kept():
    p = fn.Parameter(np.zeros((3, 2), np.float32))
    opt = fn.Adam([p])
    m0, v0 = opt.m[0], opt.v[0]
    p.grad[...] = 1
    opt.step()
    opt.step()
    assert opt.m[0] is m0 and opt.v[0] is v0 and m0.dtype == np.float32
    assert p.data.dtype == np.float32 and p.data.shape == (3, 2)
    opt.zero_grad()
    assert not p.grad.any()


@pytest.mark.parametrize("make, match, error", [
    (lambda p: fn.SGD(p, lr=-0.5), "lr must be a finite number >= 0, got -0.5", ValueError),
    (lambda p: fn.SGD(p, lr=-1), "lr", ValueError),
    (lambda p: fn.SGD(p, lr=float("nan")), "lr", ValueError),
    (lambda p: fn.SGD(p, lr="fast"), "lr must be a finite number >= 0, got 'fast' \\(str\\)", TypeError),
    (lambda p: fn.SGD(p, lr=0.1, momentum=-0.1), "momentum", ValueError),
    (lambda p: fn.SGD(p, lr=0.1, nesterov=True), "nesterov=True requires momentum > 0", ValueError),
    (lambda p: fn.SGD(p, lr=0.1, weight_decay=-1), "weight_decay", ValueError),
    (lambda p: fn.Adam(p, betas=(0.9, 1.0)), r"betas\[1\] must be a number in \[0, 1\), got 1.0", ValueError),
    (lambda p: fn.Adam(p, betas=(-0.1, 0.9)), r"betas\[0\]", ValueError),
    (lambda p: fn.Adam(p, betas=0.9), "betas must be a pair", TypeError),
    (lambda p: fn.Adam(p, eps=0), "eps", ValueError),
    (lambda p: fn.AdamW(p, weight_decay=-0.01), "weight_decay", ValueError),
    (lambda p: fn.SGD([], lr=0.1), "empty parameter list", ValueError),
])
def test_invalid_hyperparameters(make, match, error):
    with pytest.raises(error, match=match):
        make([_param([1.0])])


def test_wrong_params_type():
    with pytest.raises(TypeError, match="single Parameter"):
        fn.SGD(_param([1.0]), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\] must be a fastnn Parameter, got ndarray"):
        fn.SGD([np.zeros(3)], lr=0.1)


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam", "adamw"])
def test_parity_with_torch(backend, name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(5)]
    p = fn.Parameter(w0.copy())
    t = torch.tensor(w0.copy(), requires_grad=True)
    make = {
        "sgd": (lambda ps: fn.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
                lambda ts: torch.optim.SGD(ts, lr=0.1, momentum=0.9, weight_decay=0.01)),
        "nesterov": (lambda ps: fn.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                     lambda ts: torch.optim.SGD(ts, lr=0.1, momentum=0.9, nesterov=True)),
        "adam": (lambda ps: fn.Adam(ps, lr=0.01, weight_decay=0.1),
                 lambda ts: torch.optim.Adam(ts, lr=0.01, weight_decay=0.1)),
        "adamw": (lambda ps: fn.AdamW(ps, lr=0.01, betas=(0.8, 0.99)),
                  lambda ts: torch.optim.AdamW(ts, lr=0.01, betas=(0.8, 0.99))),
    }[name]
    ours, theirs = make[0]([p]), make[1]([t])
    for g in grads:
        p.grad[...] = g
        t.grad = torch.tensor(g)
        ours.step()
        theirs.step()
    np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_parameter_groups_exclude_biases_from_decay_as_torch(name):
    """float64, compiled step: weight decay on the weights only, through PyTorch-style parameter groups."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = fn.Sequential(fn.Linear(5, 6, seed=1, dtype=np.float64), fn.Tanh(), fn.Linear(6, 3, seed=2, dtype=np.float64))
    start = [p.data.copy() for p in model.parameters()]
    weights, biases = model.parameters()[0::2], model.parameters()[1::2]
    make = {"sgd": (fn.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
            "adam": (fn.Adam, torch.optim.Adam, dict(lr=0.01)),
            "adamw": (fn.AdamW, torch.optim.AdamW, dict(lr=0.01))}[name]
    opt = make[0]([{"params": weights, "weight_decay": 0.05}, {"params": biases, "weight_decay": 0.0}], **make[2])
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=opt, epochs=3, batch_size=10, shuffle=False,
                  verbose=0)
    assert h.fast_path
    params = [torch.tensor(a, requires_grad=True) for a in start]
    topt = make[1]([{"params": params[0::2], "weight_decay": 0.05}, {"params": params[1::2], "weight_decay": 0.0}],
                   **make[2])
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(3):
        for s in range(0, 40, 10):
            z = torch.tanh(Xt[s:s + 10] @ params[0] + params[1]) @ params[2] + params[3]
            topt.zero_grad()
            torch.nn.functional.cross_entropy(z, yt[s:s + 10]).backward()
            topt.step()
    for mine, theirs in zip(model.parameters(), params):
        np.testing.assert_allclose(mine.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_parameter_groups_are_validated():
    p = _param([1.0])
    with pytest.raises(ValueError, match="may set only 'weight_decay'"):
        fn.SGD([{"params": [p], "lr": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        fn.SGD([{"params": [p]}, p], lr=0.1)
    with pytest.raises(ValueError, match="parameter group 0 weight_decay"):
        fn.SGD([{"params": [p], "weight_decay": -1}], lr=0.1)
