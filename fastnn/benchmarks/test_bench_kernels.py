"""Every kernel of ``fastnn.kernels``: the Numba twin timed beside the NumPy twin.

Shapes are the Fashion-MNIST MLP's (784-128-64-10, float32) at batch 16, 64 and 256. Each
Numba/NumPy pair shares one ``benchmark.group`` and records ``case``, ``kernel``, ``backend``,
``batch`` and ``shape`` in ``extra_info``, which ``scripts/bench_report.py`` pairs on.

Inputs and output buffers are allocated before timing, and each kernel is called once first, which
compiles it and checks it: every result must match the NumPy twin evaluated in float64 on the same
inputs. Under ``--benchmark-disable`` the timed call runs once too and is checked again, so the suite
is a correctness test of both twins at these shapes.

``test_kernel_ci`` holds the fused kernels at fixed bs=64 shapes for ``scripts/check_kernel_ratios.py``,
which compares their Numba/NumPy ratios with ``kernel_thresholds.json``.
"""
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fastnn.kernels import get_backend, get_step, layout, numpy_ref, step_numpy
from fastnn.kernels.codes import IDENTITY, LOSS_SCE_LABELS, OPT_SGD, RELU, pack_hyper
from fastnn.registry import ACTIVATIONS

F32 = np.float32
LAYERS = ((784, 128), (128, 64), (64, 10))  # (n_in, n_out) of the three Linear layers
BATCHES = (16, 64, 256)
BACKENDS = ("numba", "numpy")
ACTS = {act.names[0]: act.code for act in ACTIVATIONS}  # every activation's code, by fastnn's name
THRESHOLDS = Path(__file__).with_name("kernel_thresholds.json")


@dataclass(frozen=True)
class Case:
    """One kernel call at one shape.

    ``make(rng)`` returns the positional arguments (inputs and output buffers); ``outputs`` are the
    indices of the arguments the kernel writes. A ``stateful`` kernel also reads them (optimizer
    state), so repeated timed calls change its result.
    """

    name: str  # key of kernel_thresholds.json, e.g. "linear_forward_relu"
    kernel: str  # function name in both kernel modules
    shape: str
    batch: int | None  # None for optimizer updates, which see flat parameter vectors
    make: object
    outputs: tuple
    stateful: bool = False
    pack: object = None  # args -> the kernel's arguments, where those hold layer tables built from the arrays

    def passed(self, args):
        """The kernel's arguments for ``args``: tables reference the very arrays of ``args``, so results land there."""
        return self.pack(args) if self.pack else args

    @property
    def group(self):
        return f"{self.name}[bs={self.batch},{self.shape}]" if self.batch else f"{self.name}[{self.shape}]"

    @property
    def id(self):
        return f"{self.name}-bs{self.batch}-{self.shape}" if self.batch else f"{self.name}-{self.shape}"


# -- inputs ---------------------------------------------------------------------------------------
def _buffer(shape):
    # NaN-filled, so an entry a kernel forgets to write fails the check.
    return np.full(shape, np.nan, F32)


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def _relu_out(rng, n, m):
    return np.maximum(_normal(rng, (n, m)), 0)


def _probs(rng, n, m):
    z = _normal(rng, (n, m), 2.0)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(F32)


def _layer_input(rng, n, n_in):
    # Pixels in [0, 1] about half of them zero, as in Fashion-MNIST, or hidden ReLU outputs.
    return np.maximum(rng.random((n, n_in), dtype=F32) * 2 - 1, 0) if n_in == 784 else _relu_out(rng, n, n_in)


def _activation_out(name, rng, n, m):
    return {"relu": lambda: _relu_out(rng, n, m),
            "sigmoid": lambda: rng.uniform(0.01, 0.99, (n, m)).astype(F32),
            "tanh": lambda: rng.uniform(-0.99, 0.99, (n, m)).astype(F32)}[name]()


def _labels(rng, n, m):
    return rng.integers(0, m, n).astype(np.int64)


# -- cases ----------------------------------------------------------------------------------------
def _shape(n_in, n_out):
    return f"{n_in}x{n_out}"


def _matmul(n, n_in, n_out):
    return Case("matmul", "matmul", _shape(n_in, n_out), n, lambda rng: (
        _layer_input(rng, n, n_in), _normal(rng, (n_in, n_out), np.sqrt(2 / n_in)), _buffer((n, n_out))), (2,))


def _linear_forward(act, n, n_in, n_out):
    return Case(f"linear_forward_{act}", "linear_forward", _shape(n_in, n_out), n, lambda rng: (
        _layer_input(rng, n, n_in), _normal(rng, (n_in, n_out), np.sqrt(2 / n_in)), _normal(rng, n_out, 0.1),
        ACTS[act], 0.0, _buffer((n, n_out))), (5,))


def _linear_backward(with_dx, n, n_in, n_out):
    def make(rng):
        X, W, g = _layer_input(rng, n, n_in), _normal(rng, (n_in, n_out), np.sqrt(2 / n_in)), _normal(rng, (n, n_out))
        return X, W, g, _buffer(W.shape), _buffer(n_out), _buffer(X.shape) if with_dx else None
    return Case("linear_backward_dX" if with_dx else "linear_backward_nodX", "linear_backward",
                _shape(n_in, n_out), n, make, (3, 4, 5) if with_dx else (3, 4))


def _linear_backward_sgd(with_dx, n, n_in, n_out):
    def make(rng):
        X, W, g = _layer_input(rng, n, n_in), _normal(rng, (n_in, n_out), np.sqrt(2 / n_in)), _normal(rng, (n, n_out))
        return X, W, g, _normal(rng, n_out, 0.1), 0.01, 0.0, 0.0, _buffer(X.shape) if with_dx else None
    return Case("linear_backward_sgd_dX" if with_dx else "linear_backward_sgd_nodX", "linear_backward_sgd",
                _shape(n_in, n_out), n, make, (1, 3, 7) if with_dx else (1, 3), stateful=True)


def _activation(act, direction, n, m):
    def make(rng):
        if direction == "forward":
            return _normal(rng, (n, m), 2.0), _buffer((n, m))
        return _activation_out(act, rng, n, m), _normal(rng, (n, m)), _buffer((n, m))
    name = f"{act}_{direction}"
    return Case(name, name, str(m), n, make, (1,) if direction == "forward" else (2,))


def _act_backward(act, n, m):
    """The training step's in-place backward through an activation (``g *= act'(y)``)."""
    def make(rng):
        y = _activation_out(act, rng, n, m)
        return ACTS[act], 0.0, y, y, _normal(rng, (n, m))
    return Case(f"act_backward_{act}", "act_backward", str(m), n, make, (4,), stateful=True)


def _activation_forward(act, n, m):
    """The generic activation kernel (the layer path of LeakyReLU, ELU and GELU)."""
    return Case(f"activation_forward_{act}", "activation_forward", str(m), n, lambda rng: (
        ACTS[act], 0.1, _normal(rng, (n, m), 2.0), _buffer((n, m))), (3,))


def _dropout(n, m):
    return Case("dropout", "dropout", str(m), n, lambda rng: (_normal(rng, (n, m)), 0.2, 12345, 0, _buffer((n, m))),
                (4,))


def _clip_grad_norm(n):
    """All the network's gradients, clipped to half their norm."""
    def make(rng):
        dWs = [_normal(rng, (a, b), 1e-2) for a, b in LAYERS]  # lists: passed as tuples, checked element-wise
        dbs = [_normal(rng, b, 1e-2) for _, b in LAYERS]
        norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in (*dWs, *dbs)))
        return dWs, dbs, norm / 2
    return Case("clip_grad_norm", "clip_grad_norm", "-".join(str(b) for _, b in LAYERS), n, make, (0, 1),
                stateful=True)


def _mlp_forward(n):
    """Inference through the whole network (``predict``'s compiled path)."""
    def make(rng):
        Ws = [_normal(rng, (a, b), np.sqrt(2 / a)) for a, b in LAYERS]
        bs = [_normal(rng, b, 0.1) for _, b in LAYERS]
        chunk = 256
        return (_layer_input(rng, n, LAYERS[0][0]), Ws, bs, np.array([RELU, RELU, IDENTITY], np.int64), np.zeros(3),
                _buffer((2, chunk * max(b for _, b in LAYERS[:-1]))), _buffer((n, LAYERS[-1][1])))

    def pack(args):
        X, Ws, bs, acts, alphas, work, out = args
        dims, params = layout.param_table(Ws, bs)
        return X, dims, acts, alphas, params, work, out
    return Case("mlp_forward", "mlp_forward", "-".join(str(b) for _, b in LAYERS), n, make, (6,), pack=pack)


def _softmax(direction, n, m):
    def make(rng):
        if direction == "forward":
            return _normal(rng, (n, m), 2.0), _buffer((n, m))
        return _probs(rng, n, m), _normal(rng, (n, m)), _buffer((n, m))
    name = f"softmax_{direction}"
    return Case(name, name, str(m), n, make, (1,) if direction == "forward" else (2,))


def _loss(name, n, m):
    w = np.zeros(0)  # unweighted, as fit without sample_weight
    makers = {
        "softmax_xent_labels": lambda rng: (_normal(rng, (n, m), 2.0), _labels(rng, n, m), w,
                                            _buffer((n, m)), _buffer((n, m))),
        "softmax_xent_dense": lambda rng: (_normal(rng, (n, m), 2.0), np.eye(m, dtype=F32)[_labels(rng, n, m)], w,
                                           _buffer((n, m)), _buffer((n, m))),
        "nll_labels": lambda rng: (_probs(rng, n, m), _labels(rng, n, m), 1e-7, w, _buffer((n, m))),
        "nll_dense": lambda rng: (_probs(rng, n, m), np.eye(m, dtype=F32)[_labels(rng, n, m)], 1e-7, w,
                                  _buffer((n, m))),
        "mse": lambda rng: (_normal(rng, (n, m)), _normal(rng, (n, m)), w, _buffer((n, m))),
        "bce_logits": lambda rng: (_normal(rng, (n, m), 2.0), np.eye(m, dtype=F32)[_labels(rng, n, m)], w,
                                   _buffer((n, m))),
        "bce": lambda rng: (_probs(rng, n, m), np.eye(m, dtype=F32)[_labels(rng, n, m)], w, _buffer((n, m))),
        "poisson": lambda rng: (_normal(rng, (n, m)), np.abs(_normal(rng, (n, m))), w, _buffer((n, m))),
    }
    outputs = {"softmax_xent_labels": (3, 4), "softmax_xent_dense": (3, 4), "nll_labels": (4,), "nll_dense": (4,),
               "mse": (3,), "bce_logits": (3,), "bce": (3,), "poisson": (3,)}[name]
    return Case(name, name, str(m), n, makers[name], outputs)


def _optimizer(name, n_in, n_out):
    size = n_in * n_out  # a weight matrix, flattened as the optimizers see it

    def make(rng):
        p, g = _normal(rng, size, np.sqrt(2 / n_in)), _normal(rng, size, 1e-2)
        if name == "adam_update":  # state as after a few steps: m ~ g, v ~ g**2 > 0
            m, v = _normal(rng, size, 1e-2), (_normal(rng, size, 1e-2) ** 2 + 1e-6).astype(F32)
            return p, g, m, v, 3, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False
        momentum = 0.9 if name == "sgd_update_momentum" else 0.0
        return p, g, np.zeros(size, F32), 0.01, momentum, 0.0, False, False
    outputs = (0, 2, 3) if name == "adam_update" else (0, 2)
    kernel = "adam_update" if name == "adam_update" else "sgd_update"
    return Case(name, kernel, _shape(n_in, n_out), None, make, outputs, stateful=True)


def _train_batches(n, n_batches=4):
    """Four plain-SGD steps of the whole MLP (``fit``'s compiled path), batches gathered in shuffled order."""
    sizes = (LAYERS[0][0],) + tuple(n_out for _, n_out in LAYERS)

    def make(rng):
        n_samples = n * n_batches
        Ws = [_normal(rng, (a, b), np.sqrt(2 / a)) for a, b in LAYERS]
        bs = [_normal(rng, b, 0.1) for _, b in LAYERS]
        params = [a for pair in zip(Ws, bs) for a in pair]
        return (_layer_input(rng, n_samples, sizes[0]), np.zeros((0, 0), np.uint8), _labels(rng, n_samples, sizes[-1]),
                np.zeros((0, 0)), np.zeros(0), rng.permutation(n_samples).astype(np.int64), n, 0, n_batches, Ws, bs,
                np.array([RELU, RELU, IDENTITY], np.int64), np.zeros(3), np.zeros(3), np.zeros(3, np.uint64),
                [_buffer(W.shape) for W in Ws], [_buffer(b.shape) for b in bs], LOSS_SCE_LABELS, OPT_SGD,
                np.tile(pack_hyper({"lr": 0.1}), (n_batches, 1)), np.zeros(len(params)),
                [np.zeros(0, F32) for _ in params], [np.zeros(0, F32) for _ in params], np.zeros(1, np.int64),
                np.full(n_batches, np.nan), np.zeros(n_batches), np.zeros(n_batches, np.int64))

    def pack(args):
        (X, Xraw, labels, T, sw, order, batch_size, b0, b1, Ws, bs, acts, alphas, drops, keys, dWs, dbs, loss_kind,
         opt_kind, hyper, wds, S1, S2, steps, losses, weights, correct) = args
        dims, params = layout.param_table(Ws, bs, dWs, dbs, S1, S2)
        work, woff = layout.workspace(dims, acts, drops, batch_size, Ws[0].dtype)
        return (X, Xraw.view(np.uint8), 0, labels, T, sw, order, batch_size, b0, b1, dims, acts, alphas, drops, keys,
                params, work, woff, loss_kind, opt_kind, hyper, wds, steps, losses, weights, correct)
    return Case("train_batches_sgd", "train_batches", "-".join(map(str, sizes)), n, make, (9, 10, 24, 26),
                stateful=True, pack=pack)


def _batch_cases(n):
    cases = [_matmul(n, *layer) for layer in LAYERS]
    # Hidden layers with every activation; the logits layer as the MLP runs it (identity).
    cases += [_linear_forward(act, n, *layer) for layer in LAYERS[:2] for act in ("identity", "relu", "sigmoid", "tanh")]
    cases.append(_linear_forward("identity", n, *LAYERS[2]))
    cases += [_linear_backward(with_dx, n, *layer) for layer in LAYERS for with_dx in (True, False)]
    cases += [_linear_backward_sgd(with_dx, n, *layer) for layer in LAYERS for with_dx in (True, False)]
    cases += [_activation(act, d, n, m) for act in ("relu", "sigmoid", "tanh")
              for d in ("forward", "backward") for m in (128, 64)]
    cases += [_act_backward(act, n, 128) for act in ("relu", "sigmoid", "tanh")]
    cases += [_activation_forward(act, n, 128) for act in ("leaky_relu", "elu", "gelu")]
    cases += [_softmax(d, n, 10) for d in ("forward", "backward")]
    cases += [_dropout(n, 128), _mlp_forward(n)]
    cases += [_loss(name, n, 10) for name in ("softmax_xent_labels", "softmax_xent_dense", "nll_labels",
                                              "nll_dense", "mse", "bce_logits", "bce", "poisson")]
    cases.append(_train_batches(n))
    return cases


CASES = [case for n in BATCHES for case in _batch_cases(n)]
CASES.append(_clip_grad_norm(None))
CASES += [_optimizer(name, *layer) for name in ("sgd_update", "sgd_update_momentum", "adam_update")
          for layer in LAYERS]

# Fused kernels at bs=64 shapes for the CI ratio check: big enough that the loop, not the call
# overhead, is what is timed; small enough that the whole check takes seconds.
CI_CASES = [
    _linear_forward("relu", 64, 128, 64),
    _activation("relu", "forward", 64, 128),
    _activation("relu", "backward", 64, 128),
    _activation("sigmoid", "backward", 64, 128),
    _activation("tanh", "backward", 64, 128),
    _softmax("forward", 64, 10),
    _softmax("backward", 64, 10),
    _loss("softmax_xent_labels", 64, 10),
    _loss("mse", 64, 10),
    _optimizer("sgd_update", 128, 64),
    _optimizer("sgd_update_momentum", 128, 64),
    _optimizer("adam_update", 128, 64),
]


# -- checking ---------------------------------------------------------------------------------------
def _copy(a):
    """Deep copy of an argument tuple; lists of arrays (``train_batches``) are copied element-wise."""
    if isinstance(a, (tuple, list)):
        return type(a)(_copy(x) for x in a)
    return a.copy() if isinstance(a, np.ndarray) else a


def _widen(a):
    if isinstance(a, (tuple, list)):
        return type(a)(_widen(x) for x in a)
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == F32 else a


def _as_passed(args):
    # clip_grad_norm takes its gradients as tuples (UniTuples to Numba), as fastnn.clip_grad_norm passes them;
    # a tuple holds the very arrays it was built from, so results land in them.
    return tuple(tuple(a) if isinstance(a, list) else a for a in args)


def _kernel(backend, name):
    """The kernel ``name`` of ``backend``: the training step, or a per-op kernel."""
    return get_step(backend).train_batches if name == "train_batches" else getattr(get_backend(backend), name)


def _expected(case, args):
    """The NumPy twin in float64 on the same (float32) inputs: (return value, written outputs)."""
    wide = _widen(_copy(args))
    ret = _kernel("numpy", case.kernel)(*case.passed(wide))
    return ret, [wide[i] for i in case.outputs]


def _check(case, args, before, ret, backend):
    """``args`` are the arguments after one call that started from ``before``."""
    want_ret, want = _expected(case, before)
    for i, expected in zip(case.outputs, want):
        for got, orig, exp in zip(*((args[i], before[i], expected) if isinstance(expected, list)
                                    else ([args[i]], [before[i]], [expected]))):
            where = f"{case.kernel} ({backend}) output {i} at {case.group}"
            assert got.dtype == orig.dtype, f"{where}: wrote {got.dtype} into a {orig.dtype} buffer"
            if got.dtype.kind in "iu":  # argmax hit counts: a float32 near-tie may flip one
                np.testing.assert_allclose(got, exp, atol=1, err_msg=where)
            else:
                # Sums of up to 784 float32 products: the error scales with the largest entry, not each one.
                np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(exp).max()),
                                           err_msg=where)
    # Scalar returns: a loss (float) or train_batches' count of completed batches (int).
    if isinstance(want_ret, float):
        assert ret == pytest.approx(want_ret, rel=1e-5), f"{case.kernel} ({backend}) returned {ret}"
    elif isinstance(want_ret, int):
        assert ret == want_ret, f"{case.kernel} ({backend}) returned {ret}, expected {want_ret}"


def _bench(benchmark, threads, case, backend, suite):
    fn = _kernel(backend, case.kernel)
    args = case.make(np.random.default_rng(0))
    warm = _copy(args)
    _check(case, warm, args, fn(*case.passed(_as_passed(warm))), backend)  # compiles; from a fresh state
    benchmark.group = ("ci:" if suite == "ci" else "") + case.group
    benchmark.extra_info.update(case=case.name, kernel=case.kernel, backend=backend, batch=case.batch,
                                shape=case.shape, dtype="float32", suite=suite, **threads())
    timed = _copy(args)
    ret = benchmark(fn, *case.passed(_as_passed(timed)))
    if not case.stateful or benchmark.disabled:  # a stateful kernel timed N times has moved on N steps
        _check(case, timed, args, ret, backend)
    elif isinstance(ret, (int, np.integer)):  # train_batches: every batch still finished (finite loss)
        assert ret == _expected(case, args)[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernel(benchmark, threads, case, backend):
    _bench(benchmark, threads, case, backend, "full")


@pytest.mark.kernel_ci
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CI_CASES, ids=lambda c: c.id)
def test_kernel_ci(benchmark, threads, case, backend):
    _bench(benchmark, threads, case, backend, "ci")


# -- coverage of the suite itself ---------------------------------------------------------------------
def _kernel_names(module):
    return {name for name, obj in vars(module).items()
            if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == module.__name__}


def test_every_kernel_is_benchmarked():
    kernels = _kernel_names(numpy_ref) | _kernel_names(step_numpy)
    assert kernels <= set(dir(get_backend("numba"))) | set(dir(get_step("numba"))), \
        "every NumPy twin has a Numba twin of the same name"
    missing = kernels - {case.kernel for case in CASES}
    assert not missing, f"kernels without a benchmark case in {Path(__file__).name}: {sorted(missing)}"


def test_thresholds_name_ci_cases():
    from fastnn.benchmarks.test_bench_workloads import test_workload_ci  # noqa: PLC0415  (its whole-step CI cases)

    max_ratio = json.loads(THRESHOLDS.read_text())["max_ratio"]
    workload = next(m.args[1] for m in test_workload_ci.pytestmark if m.name == "parametrize" and m.args[0] == "case")
    ci = {case.name for case in CI_CASES} | set(workload)
    assert set(max_ratio) <= ci, f"thresholds for kernels with no CI case: {sorted(set(max_ratio) - ci)}"
    assert all(isinstance(v, (int, float)) and v > 0 for v in max_ratio.values())
