"""fastnn.lr_scheduler against torch.optim.lr_scheduler, step by step, to the last bit."""
import json
import math
import re

import numpy as np
import pytest

import fastnn
from fastnn import lr_scheduler as fs

torch = pytest.importorskip("torch")
ts = torch.optim.lr_scheduler


def optimizers(kind="sgd", lr=0.1, momentum=0.9):
    """The same optimizer in torch and in fastnn, on one dummy parameter."""
    if kind == "sgd":
        return (torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=momentum),
                fastnn.SGD([fastnn.Parameter(np.zeros(1))], lr=lr, momentum=momentum))
    cls = {"adam": (torch.optim.Adam, fastnn.Adam), "adamw": (torch.optim.AdamW, fastnn.AdamW)}[kind]
    return (cls[0]([torch.zeros(1, requires_grad=True)], lr=lr, betas=(0.9, 0.99)),
            cls[1]([fastnn.Parameter(np.zeros(1))], lr=lr, betas=(0.9, 0.99)))


# (name, kwargs, steps): the same keyword arguments go to torch's scheduler and to fastnn's.
CASES = [
    ("StepLR", dict(step_size=3, gamma=0.5), 20),
    ("StepLR", dict(step_size=1, gamma=0.9), 30),
    ("MultiStepLR", dict(milestones=[2, 5, 9], gamma=0.3), 15),
    ("MultiStepLR", dict(milestones=[0, 4]), 8),
    ("ExponentialLR", dict(gamma=0.95), 60),
    ("ExponentialLR", dict(gamma=1.01), 20),
    ("CosineAnnealingLR", dict(T_max=10), 45),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01), 40),
    ("CosineAnnealingLR", dict(T_max=1000, eta_min=1e-4), 1200),
    ("LinearLR", dict(), 10),
    ("LinearLR", dict(start_factor=0.25, end_factor=1.0, total_iters=8), 12),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.1, total_iters=5), 9),
    ("OneCycleLR", dict(max_lr=1.0, total_steps=50), 50),
    ("OneCycleLR", dict(max_lr=0.3, epochs=3, steps_per_epoch=7, three_phase=True), 21),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=40, anneal_strategy="linear", pct_start=0.25,
                        base_momentum=0.8, max_momentum=0.9, div_factor=10.0, final_div_factor=100.0), 40),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=12, pct_start=0.0), 12),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=1), 1),
    ("OneCycleLR", dict(max_lr=2.0, total_steps=30, cycle_momentum=False), 30),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


def momentum_of(opt):
    if isinstance(opt, torch.optim.Optimizer):
        g = opt.param_groups[0]
        return g["betas"] if "betas" in g else g["momentum"]
    return opt.betas if hasattr(opt, "betas") else opt.momentum


def run_torch(sched, opt, n):
    lrs, moms = [opt.param_groups[0]["lr"]], [momentum_of(opt)]
    for _ in range(n):
        opt.step()  # no gradient, no update; keeps torch from warning about the call order
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(momentum_of(opt))
        assert sched.get_last_lr() == [lrs[-1]]
    return lrs, moms


def run_fastnn(sched, n):
    lrs, moms = [sched.optimizer.lr], [momentum_of(sched.optimizer)]
    for _ in range(n):
        sched.step()
        lrs.append(sched.optimizer.lr)
        moms.append(momentum_of(sched.optimizer))
        assert sched.get_last_lr() == [lrs[-1]]
    return lrs, moms


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name, kwargs, n", CASES, ids=IDS)
def test_sequence_equals_torch(name, kwargs, n, kind):
    t_opt, f_opt = optimizers(kind)
    t_sched, f_sched = getattr(ts, name)(t_opt, **kwargs), getattr(fs, name)(f_opt, **kwargs)
    t_lrs, t_moms = run_torch(t_sched, t_opt, n)
    f_lrs, f_moms = run_fastnn(f_sched, n)
    # The same recursive formulas in the same order: equal to the last bit, not merely close.
    assert f_lrs == t_lrs
    assert f_moms == t_moms
    assert f_sched.last_epoch == t_sched.last_epoch == n
    assert f_sched.base_lr == t_sched.base_lrs[0]
    assert len(set(f_lrs)) > 1


def test_cosine_recursion_is_what_torch_computes():
    # The recursion differs from the closed form in the last bits; the match above is with the recursion.
    t_opt, f_opt = optimizers()
    t_lrs, _ = run_torch(ts.CosineAnnealingLR(t_opt, T_max=1000, eta_min=1e-4), t_opt, 1200)
    f_lrs, _ = run_fastnn(fs.CosineAnnealingLR(f_opt, T_max=1000, eta_min=1e-4), 1200)
    closed = [1e-4 + (0.1 - 1e-4) * (1 + math.cos(math.pi * t / 1000)) / 2 for t in range(1201)]
    assert f_lrs == t_lrs
    assert f_lrs != closed
    np.testing.assert_allclose(f_lrs, closed, rtol=1e-13)


def test_one_cycle_momentum_cycles_and_beta2_stays():
    t_opt, f_opt = optimizers("adamw")
    kw = dict(max_lr=0.01, total_steps=20)
    _, t_moms = run_torch(ts.OneCycleLR(t_opt, **kw), t_opt, 20)
    _, f_moms = run_fastnn(fs.OneCycleLR(f_opt, **kw), 20)
    assert list(f_moms) == t_moms
    assert {b2 for _, b2 in f_moms} == {0.99}
    assert f_moms[0][0] == 0.95 and min(b1 for b1, _ in f_moms) < 0.86


def test_one_cycle_past_total_steps_raises_as_torch():
    t_opt, f_opt = optimizers()
    t_sched, f_sched = ts.OneCycleLR(t_opt, max_lr=1.0, total_steps=5), fs.OneCycleLR(f_opt, max_lr=1.0, total_steps=5)
    run_torch(t_sched, t_opt, 5)
    run_fastnn(f_sched, 5)
    with pytest.raises(ValueError, match="Tried to step 6 times"):
        t_sched.step()
    lr = f_opt.lr
    with pytest.raises(ValueError, match="Tried to step 6 times. The specified number of total steps is 5"):
        f_sched.step()
    assert f_opt.lr == lr and f_sched.last_epoch == 5


PLATEAU_METRICS = [1.0, 0.9, 0.9, 0.91, 0.9, 0.95, 0.899, 0.8999, 0.9, 0.9, float("nan"), 0.5, 0.5, 0.5, 0.5,
                   0.5, 0.4999, 0.5, 0.6, 0.7] + [0.2] * 15
# (kwargs, whether the learning rate ends below where it started)
PLATEAU_CASES = [
    (dict(), True),
    (dict(patience=0), True),
    (dict(patience=1, factor=0.5, cooldown=2), True),
    (dict(patience=2, factor=0.5, threshold=0.01, threshold_mode="abs", min_lr=0.02), True),
    (dict(mode="max", patience=1, factor=0.3), True),
    (dict(mode="max", patience=0, threshold=0.05, threshold_mode="abs", cooldown=1), True),
    (dict(patience=0, factor=0.9, eps=0.05), False),  # every reduction is smaller than eps
]


@pytest.mark.parametrize("kwargs, reduced", PLATEAU_CASES)
def test_plateau_equals_torch(kwargs, reduced):
    t_opt, f_opt = optimizers()
    t_sched, f_sched = ts.ReduceLROnPlateau(t_opt, **kwargs), fs.ReduceLROnPlateau(f_opt, **kwargs)
    for metric in PLATEAU_METRICS:
        t_sched.step(metric)
        f_sched.step(np.float64(metric) if metric == 0.2 else metric)  # a NumPy scalar is a number too
        assert f_opt.lr == t_opt.param_groups[0]["lr"]
        assert f_sched.get_last_lr() == t_sched.get_last_lr()
        for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
            assert getattr(f_sched, key) == getattr(t_sched, key), key
    assert (f_opt.lr < 0.1) is reduced


def scheduler(name, opt, kwargs):
    return getattr(fs, name)(opt, **kwargs)


@pytest.mark.parametrize("name, kwargs, n", CASES + [("ReduceLROnPlateau", dict(patience=1), 30)],
                         ids=IDS + ["ReduceLROnPlateau"])
def test_state_dict_round_trip_continues_identically(name, kwargs, n):
    step = ((lambda s, i: s.step(PLATEAU_METRICS[i])) if name == "ReduceLROnPlateau"
            else (lambda s, i: s.step()))
    _, opt = optimizers("adam" if n % 2 else "sgd")
    sched = scheduler(name, opt, kwargs)
    half = n // 2
    for i in range(half):
        step(sched, i)
    saved = json.loads(json.dumps(sched.state_dict(), allow_nan=False))  # strict JSON
    rest = []
    for i in range(half, n):
        step(sched, i)
        rest.append((opt.lr, momentum_of(opt)))
    # A fresh scheduler on a fresh optimizer with another lr: the state alone decides what follows.
    _, opt2 = optimizers("adam" if n % 2 else "sgd", lr=0.7)
    resumed = scheduler(name, opt2, kwargs)
    resumed.load_state_dict(saved)
    assert resumed.last_epoch == half
    resumed_rest = []
    for i in range(half, n):
        step(resumed, i)
        resumed_rest.append((opt2.lr, momentum_of(opt2)))
    assert resumed_rest == rest
    assert resumed.state_dict() == sched.state_dict()


def test_load_state_dict_sets_optimizer_and_rejects_foreign_dicts():
    _, opt = optimizers()
    sched = fs.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    for _ in range(4):
        sched.step()
    saved, lr, momentum = sched.state_dict(), opt.lr, opt.momentum
    _, opt2 = optimizers()
    other = fs.OneCycleLR(opt2, max_lr=1.0, total_steps=10)
    other.load_state_dict(saved)
    assert (opt2.lr, opt2.momentum) == (lr, momentum)
    with pytest.raises(ValueError, match=r"missing keys \['T_max'.*unexpected keys \[.*'total_steps'"):
        fs.CosineAnnealingLR(opt2, T_max=3).load_state_dict(saved)
    with pytest.raises(TypeError, match="must be a dict"):
        other.load_state_dict([1, 2])


def test_interval():
    _, opt = optimizers()
    assert fs.StepLR(opt, 2).interval == "epoch"
    assert fs.CosineAnnealingLR(opt, 5, interval="batch").interval == "batch"
    assert fs.OneCycleLR(opt, max_lr=1.0, total_steps=4).interval == "batch"
    assert fs.OneCycleLR(opt, max_lr=1.0, total_steps=4, interval="epoch").interval == "epoch"
    plateau = fs.ReduceLROnPlateau(opt, monitor="val_accuracy", mode="max")
    assert (plateau.interval, plateau.monitor) == ("epoch", "val_accuracy")
    assert fs.ReduceLROnPlateau(opt).monitor is None
    with pytest.raises(ValueError, match="ReduceLROnPlateau steps on a per-epoch metric; interval must be 'epoch'"):
        fs.ReduceLROnPlateau(opt, interval="batch")
    with pytest.raises(ValueError, match="interval must be 'epoch' or 'batch', got 'step'"):
        fs.ExponentialLR(opt, 0.9, interval="step")


def test_construction_sets_epoch_zero_and_base_lr():
    _, opt = optimizers(lr=0.2)
    sched = fs.LinearLR(opt, start_factor=0.5)
    assert (sched.base_lr, sched.last_epoch, opt.lr) == (0.2, 0, 0.1)
    plateau = fs.ReduceLROnPlateau(opt)
    assert isinstance(plateau, fs.LRScheduler)
    assert (plateau.base_lr, plateau.last_epoch, plateau.get_last_lr()) == (0.1, 0, [0.1])
    saved = plateau.state_dict()
    assert saved["best"] == "inf"  # no metric yet; strict JSON has no Infinity
    plateau.step(1.0)
    plateau.load_state_dict(json.loads(json.dumps(saved, allow_nan=False)))
    assert plateau.best == math.inf and plateau.last_epoch == 0


def bad_cases():
    _, sgd = optimizers()
    _, adam = optimizers("adam")
    t_opt, _ = optimizers()
    return [
        (lambda: fs.StepLR(t_opt, 2), TypeError, "optimizer must be a fastnn optimizer .* got SGD"),
        (lambda: fs.StepLR(object(), 2), TypeError, "optimizer must be a fastnn optimizer .* got object"),
        (lambda: fs.StepLR(sgd, 0), ValueError, "step_size must be an integer >= 1, got 0"),
        (lambda: fs.StepLR(sgd, 2.5), TypeError, r"step_size must be an integer >= 1, got 2.5 \(float\)"),
        (lambda: fs.StepLR(sgd, 2, gamma=0.0), ValueError, "gamma must be a finite number > 0, got 0.0"),
        (lambda: fs.StepLR(sgd, 2, gamma=-0.5), ValueError, "gamma must be a finite number > 0"),
        (lambda: fs.StepLR(sgd, True), TypeError, r"step_size must be an integer >= 1, got True \(bool\)"),
        (lambda: fs.ExponentialLR(sgd, float("nan")), ValueError, "gamma must be a finite number > 0, got nan"),
        (lambda: fs.ExponentialLR(sgd, "0.9"), TypeError, r"gamma must be a finite number > 0, got '0.9' \(str\)"),
        (lambda: fs.MultiStepLR(sgd, [3, 2]), ValueError, r"milestones must be strictly increasing, got \[3, 2\]"),
        (lambda: fs.MultiStepLR(sgd, [2, 2]), ValueError, "strictly increasing"),
        (lambda: fs.MultiStepLR(sgd, [-1, 2]), ValueError, r"milestones\[0\] must be an integer >= 0"),
        (lambda: fs.MultiStepLR(sgd, 5), TypeError, r"milestones must be a sequence of integers >= 0, got 5 \(int\)"),
        (lambda: fs.MultiStepLR(sgd, [1, 2], gamma=0), ValueError, "gamma must be a finite number > 0"),
        (lambda: fs.CosineAnnealingLR(sgd, 0), ValueError, "T_max must be an integer >= 1"),
        (lambda: fs.CosineAnnealingLR(sgd, 10, eta_min=-1e-3), ValueError, "eta_min must be a finite number >= 0"),
        (lambda: fs.LinearLR(sgd, start_factor=0.0), ValueError, r"start_factor must be a number in \(0, 1\]"),
        (lambda: fs.LinearLR(sgd, start_factor=1.5), ValueError, "start_factor .* got 1.5"),
        (lambda: fs.LinearLR(sgd, end_factor=-0.1), ValueError, r"end_factor must be a number in \[0, 1\]"),
        (lambda: fs.LinearLR(sgd, total_iters=0), ValueError, "total_iters must be an integer >= 1"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0), ValueError, "needs total_steps, or both epochs and steps_per_epoch"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, epochs=3), ValueError, "needs total_steps"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=0), ValueError, "total_steps must be an integer >= 1"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, epochs=0, steps_per_epoch=5), ValueError, "epochs must be"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, epochs=2, steps_per_epoch=1.5), TypeError, "steps_per_epoch must be"),
        (lambda: fs.OneCycleLR(sgd, max_lr=0.0, total_steps=9), ValueError, "max_lr must be a finite number > 0"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=9, pct_start=1.2), ValueError, "pct_start must be"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=9, pct_start=1.0), ValueError,
         "leaves no steps for the final phase"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=9, anneal_strategy="exp"), ValueError,
         "anneal_strategy must be 'cos' or 'linear', got 'exp'"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=9, div_factor=0), ValueError, "div_factor must be"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=9, final_div_factor=-1.0), ValueError,
         "final_div_factor must be"),
        (lambda: fs.OneCycleLR(sgd, max_lr=1.0, total_steps=9, max_momentum=1.0), ValueError,
         r"max_momentum must be a number in \[0, 1\)"),
        (lambda: fs.OneCycleLR(adam, max_lr=1.0, total_steps=9, base_momentum=-0.1), ValueError, "base_momentum"),
        (lambda: fs.ReduceLROnPlateau(sgd, mode="low"), ValueError, "mode must be 'min' or 'max', got 'low'"),
        (lambda: fs.ReduceLROnPlateau(sgd, factor=1.0), ValueError, r"factor must be a number in \[0, 1\)"),
        (lambda: fs.ReduceLROnPlateau(sgd, patience=-1), ValueError, "patience must be an integer >= 0"),
        (lambda: fs.ReduceLROnPlateau(sgd, threshold=-1e-4), ValueError, "threshold must be a finite number >= 0"),
        (lambda: fs.ReduceLROnPlateau(sgd, threshold_mode="pct"), ValueError, "threshold_mode must be 'rel' or 'abs'"),
        (lambda: fs.ReduceLROnPlateau(sgd, cooldown=1.0), TypeError, "cooldown must be an integer"),
        (lambda: fs.ReduceLROnPlateau(sgd, min_lr=[0.0]), TypeError,
         r"min_lr must be a finite number >= 0, got \[0.0\] \(list\)"),
        (lambda: fs.ReduceLROnPlateau(sgd, eps=float("inf")), ValueError, "eps must be a finite number >= 0"),
        (lambda: fs.ReduceLROnPlateau(sgd, monitor=3), TypeError, "monitor must be a History key"),
        (lambda: fs.ReduceLROnPlateau(sgd).step("0.5"), TypeError, r"metrics must be a number, got '0.5' \(str\)"),
        (lambda: fs.ReduceLROnPlateau(sgd).step(None), TypeError, r"metrics must be a number, got None \(NoneType\)"),
        (lambda: fs.ReduceLROnPlateau(sgd).step(np.ones(3)), TypeError, r"metrics must be a number, got .*\(ndarray\)"),
    ]


def test_bad_arguments_raise():
    for make, exc, match in bad_cases():
        with pytest.raises(exc, match=match):
            make()


@pytest.mark.parametrize("cycle_momentum", [True, False])
def test_one_cycle_on_sgd_without_momentum_as_torch(cycle_momentum):
    # torch switches momentum on (to max_momentum) when cycling it on an SGD built with momentum=0.
    t_opt, f_opt = optimizers(momentum=0.0)
    kw = dict(max_lr=1.0, total_steps=9, cycle_momentum=cycle_momentum)
    t_lrs, t_moms = run_torch(ts.OneCycleLR(t_opt, **kw), t_opt, 9)
    f_lrs, f_moms = run_fastnn(fs.OneCycleLR(f_opt, **kw), 9)
    assert (f_lrs, f_moms) == (t_lrs, t_moms)
    assert (f_moms[0] == 0.95) is cycle_momentum


# LearningRateScheduler: Keras' callback.

def test_keras_schedule_two_and_one_argument_forms(capsys):
    _, opt = optimizers(lr=0.1)
    two = fs.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * math.exp(-0.1), verbose=1)
    two.set_optimizer(opt)
    seen = []
    for epoch in range(5):
        two.on_epoch_begin(epoch)
        seen.append(opt.lr)
        assert two.on_epoch_end(epoch, {"loss": 1.0}) is None
    decay = math.exp(-0.1)
    assert seen == [0.1, 0.1, 0.1 * decay, 0.1 * decay * decay, 0.1 * decay * decay * decay]
    out = capsys.readouterr().out
    assert "\nEpoch 1: LearningRateScheduler setting learning rate to 0.1.\n" in out
    assert out.count("LearningRateScheduler setting learning rate") == 5
    assert two.get_last_lr() == [opt.lr] and two.last_epoch == 4

    def one(epoch):
        return 0.5 / (epoch + 1)

    _, opt = optimizers()
    cb = fs.LearningRateScheduler(one)
    cb.set_optimizer(opt)
    for epoch in range(3):
        cb.on_epoch_begin(epoch, logs={})
        assert opt.lr == 0.5 / (epoch + 1)
    assert capsys.readouterr().out == ""
    assert cb.interval == "epoch"


def test_keras_schedule_state_dict():
    _, opt = optimizers()
    cb = fs.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    assert cb.get_last_lr() == []
    cb.set_optimizer(opt)
    cb.on_epoch_begin(0)
    cb.on_epoch_begin(1)
    saved = json.loads(json.dumps(cb.state_dict()))
    _, opt2 = optimizers(lr=0.9)
    cb2 = fs.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    cb2.set_optimizer(opt2)
    cb2.load_state_dict(saved)
    assert opt2.lr == opt.lr == 0.025 and cb2.last_epoch == 1
    with pytest.raises(ValueError, match="keys 'last_epoch' and 'last_lr'"):
        cb2.load_state_dict({"last_epoch": 1})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -0.1, "0.1", None, True, [0.1]])
def test_keras_schedule_bad_return_names_epoch_and_value(value):
    _, opt = optimizers()
    cb = fs.LearningRateScheduler(lambda epoch: 0.1 if epoch < 3 else value)
    cb.set_optimizer(opt)
    for epoch in range(3):
        cb.on_epoch_begin(epoch)
    with pytest.raises(ValueError, match=rf"schedule returned {re.escape(repr(value))} for epoch 3; "
                                         "expected a finite number > 0"):
        cb.on_epoch_begin(3)
    assert opt.lr == 0.1


def test_keras_schedule_bad_use():
    with pytest.raises(TypeError, match=r"schedule must be callable, got 0.1 \(float\)"):
        fs.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match=r"schedule must accept \(epoch, lr\) or \(epoch\)"):
        fs.LearningRateScheduler(lambda: 0.1)
    with pytest.raises(ValueError, match="verbose must be an integer >= 0"):
        fs.LearningRateScheduler(lambda e: 0.1, verbose=-1)
    cb = fs.LearningRateScheduler(lambda e: 0.1)
    with pytest.raises(RuntimeError, match=r"no optimizer: call set_optimizer\(optimizer\) first"):
        cb.on_epoch_begin(0)
    with pytest.raises(TypeError, match="optimizer must be a fastnn optimizer"):
        cb.set_optimizer(optimizers()[0])
    _, opt = optimizers()
    cb.set_optimizer(opt)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0, got -1"):
        cb.on_epoch_begin(-1)


@pytest.mark.parametrize("kind, momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", None)])
def test_hand_written_loop_trains_as_torch(kind, momentum):
    # The optimizer reads the lr and momentum/betas the scheduler sets at every step(), as torch's does.
    target = np.array([1.0, -2.0, 0.5])
    w0 = np.array([0.3, 0.1, -0.4])
    t_param = torch.tensor(w0.copy(), requires_grad=True)
    f_param = fastnn.Parameter(w0.copy())
    if kind == "sgd":
        t_opt = torch.optim.SGD([t_param], lr=0.1, momentum=momentum)
        f_opt = fastnn.SGD([f_param], lr=0.1, momentum=momentum)
    else:
        t_opt, f_opt = torch.optim.Adam([t_param], lr=0.1), fastnn.Adam([f_param], lr=0.1)
    t_sched = ts.OneCycleLR(t_opt, max_lr=0.5, total_steps=15)
    f_sched = fs.OneCycleLR(f_opt, max_lr=0.5, total_steps=15)
    with fastnn.backend("numpy"):
        for _ in range(15):
            t_param.grad = t_param.detach() - torch.tensor(target)
            f_param.grad[...] = f_param.data - target
            t_opt.step()
            f_opt.step()
            t_sched.step()
            f_sched.step()
    np.testing.assert_allclose(f_param.data, t_param.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(f_param.data, w0)
