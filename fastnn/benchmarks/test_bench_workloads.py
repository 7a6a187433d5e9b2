"""MLPs across the range of shapes: fastnn beside its NumPy twin, JAX, PyTorch, torch.compile and scikit-learn, and
the sgemm floor.

Every row of the speed issue's table, float32, ReLU hidden layers, plain SGD:

==========  ======================  =======  ============  ==========================
workload    layers                  rows     batch         loss
==========  ======================  =======  ============  ==========================
fmnist      784-128-64-10           60,000   16, 64, 256   softmax cross-entropy
wide        784-1024-1024-10        20,000   256           softmax cross-entropy
tabular     32-64-64-1              100,000  32            MSE
deep        64-(64 x 7)-10          50,000   64            softmax cross-entropy
==========  ======================  =======  ============  ==========================

``fmnist`` runs shuffled (``fit``'s default) and in order, the others shuffled. Fashion-MNIST is the real
training set when it is installed (``wide`` takes its first 20,000 images), else synthetic images of the same
shape (:func:`fastnn.benchmarks.test_bench_epoch._synthetic`); ``tabular`` and ``deep`` are synthetic. One epoch per
timed round, each from the same He-normal weights; the shuffled order is the permutation ``fit(seed=0)`` draws,
and PyTorch gathers its batches in that same order. The frameworks:

``fastnn``
    ``Sequential.fit`` (the compiled step).
``numpy``
    The same ``fit`` on the NumPy reference backend (``fastnn.kernels.backend("numpy")``): the ratio
    fastnn/numpy is what ``scripts/check_kernel_ratios.py`` holds against ``kernel_thresholds.json``.
``torch``
    ``nn.Sequential`` + ``optim.SGD``, batches indexed from one tensor (no DataLoader).
``sklearn``
    ``MLPClassifier``/``MLPRegressor(solver="sgd", momentum=0, alpha=0).partial_fit``: one epoch, its own
    initial weights and (when shuffled) its own permutation.
``jax``, ``jax_step``, ``torch_compile``
    The peers of :mod:`fastnn.benchmarks.peers` (the ``peers`` extra; each skips with one line when its library is
    absent): the whole epoch as one ``jax.jit`` + ``lax.scan``, a ``jax.jit`` step per batch, and the whole step
    under ``torch.compile``, on the same weights, rows and batches as fastnn. Their compilation is done before
    the rounds and recorded (``compile_s``), not timed.

Threads: every framework of a row gets the BLAS threads fastnn's step uses at that batch size
(:func:`fastnn._config.blas_threads`; ``FASTNN_BLAS_THREADS`` overrides it), via threadpoolctl and
``torch.set_num_threads`` (torch.compile's kernels too), except JAX: XLA's CPU client keeps one pool of every core
for the life of the process, so its rows record ``os.cpu_count()`` threads. ``test_sgemm_floor`` times a 2048^3
sgemm at each thread count used, in the same run, through NumPy's BLAS and through fastnn's own GEMM where the
kernels use it: a row's floor is its epoch's GEMM FLOPs (:func:`fastnn.benchmarks.reference.epoch_flop`) at the
faster rate.

Inference: ``predict`` of one row of 784-128-64-10 (p50 and p90 of single calls, one thread) and of 10,000 rows
(floor: the forward FLOPs at the sgemm rate), beside PyTorch and a jitted JAX forward pass. Start-up: import ->
trained in a fresh interpreter with an empty Numba cache (``cold``) and a filled one (``warm``), as
``fastnn/benchmarks/test_bench_startup.py``.

``FASTNN_BENCH_ROUNDS`` sets the timed rounds (default 3). Under ``--benchmark-disable`` (the test suite) each
case runs once on a few thousand rows, one BLAS thread, as a correctness test: fastnn, its NumPy twin and the peers
agree, PyTorch ends near them, scikit-learn learns something; torch.compile traces its graph with the
``aot_eager`` backend there (Inductor's code generation costs ~20 s cold). The peers' epochs are ``slow`` in that
run: ``fastnn/benchmarks/test_peers.py`` checks them on a tiny problem instead. The start-up rows are left to
test_bench_startup.py.
"""
import contextlib
import math
import os
import shutil
import sys

import numpy as np
import pytest
import threadpoolctl

import fastnn
from fastnn.benchmarks import peers, reference
from fastnn.benchmarks.conftest import benchmarks_disabled
from fastnn.benchmarks.test_bench_epoch import _synthetic
from fastnn import kernels
from fastnn._config import blas_threads
from fastnn.datasets import load_fashion_mnist

ROUNDS = int(os.environ.get("FASTNN_BENCH_ROUNDS", "3"))
FRAMEWORKS = ("numpy", "fastnn", "torch", "sklearn", *peers.TRAINERS)  # the twin first: the others are checked
# against it. The peers' correctness runs are slow (a second or more of compiling each); test_peers.py checks them.
FRAMEWORK_PARAMS = [pytest.param(fw, marks=pytest.mark.slow if fw in peers.TRAINERS else ()) for fw in FRAMEWORKS]
FMNIST = (784, 128, 64, 10)
# name -> (layer sizes, rows, rows under --benchmark-disable, loss, lr)
WORKLOADS = {
    "fmnist": (FMNIST, 60_000, 3_000, "sce", 0.1),
    "wide": ((784, 1024, 1024, 10), 20_000, 1_000, "sce", 0.05),
    "tabular": ((32, 64, 64, 1), 100_000, 3_000, "mse", 0.05),
    "deep": ((64,) * 8 + (10,), 50_000, 3_000, "sce", 0.05),
}
CASES = ([("fmnist", bs, order) for bs in (16, 64, 256) for order in ("shuffled", "in-order")]
         + [("wide", 256, "shuffled"), ("tabular", 32, "shuffled"), ("deep", 64, "shuffled")])
# The default test run (--benchmark-disable) checks fmnist at batch 64; the other rows are `slow` there.
CASE_PARAMS = [pytest.param(*case, id=f"{case[0]}-bs{case[1]}-{case[2]}",
                            marks=() if case[:2] == ("fmnist", 64) else pytest.mark.slow) for case in CASES]
PREDICT_ROWS = 10_000
PREDICT1_ROUNDS = 3_000
SEED = 0  # fit(seed=SEED) draws the shuffled order; PyTorch replays it


# -- data -------------------------------------------------------------------------------------------
def _fashion(n):
    try:
        (X, y), _ = load_fashion_mnist(download=False)
        name = "fashion-mnist"
    except FileNotFoundError:
        X, y = _synthetic(60_000)
        name = "synthetic"
    return np.ascontiguousarray(X[:n], np.float32), np.asarray(y[:n], np.int64), name


def _tabular(n, rng):
    """A smooth regression target of 32 features, standardised: one epoch lowers the MSE well below 1."""
    X = rng.standard_normal((n, 32), dtype=np.float32)
    w1, w2 = rng.standard_normal((2, 32)) / np.sqrt(32)
    t = np.sin(2 * X @ w1) + 0.5 * (X @ w2) ** 2 + 0.1 * rng.standard_normal(n)
    t = (t - t.mean()) / t.std()
    return X, t.astype(np.float32)[:, None], "synthetic"


def _deep(n, rng):
    """Ten classes of 64 features: the label is the argmax of a random linear map plus noise."""
    X = rng.standard_normal((n, 64), dtype=np.float32)
    y = (X @ rng.standard_normal((64, 10)) + 2 * rng.standard_normal((n, 10))).argmax(axis=1)
    return X, y.astype(np.int64), "synthetic"


_DATA = {}


def workload_data(name, small):
    """``(X, y, data_name)`` of workload ``name`` (its first few thousand rows when ``small``), built once."""
    key = (name, small)
    if key not in _DATA:
        n = WORKLOADS[name][2 if small else 1]
        rng = np.random.default_rng(1)
        _DATA[key] = _fashion(n) if name in ("fmnist", "wide") else {"tabular": _tabular, "deep": _deep}[name](n, rng)
    return _DATA[key]


def mean_loss(params, X, y, loss):
    """Mean loss (float64) of the ReLU MLP ``params = [W1, b1, ...]`` (``W`` of shape (n_in, n_out)) on ``X``."""
    a = X.astype(np.float64)
    for k in range(0, len(params), 2):
        a = a @ params[k] + params[k + 1]
        if k + 2 < len(params):
            np.maximum(a, 0, out=a)
    if loss == "mse":
        return float(((a - y) ** 2).mean())
    a -= a.max(axis=1, keepdims=True)
    logp = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


# -- trainers: setup() -> (args, kwargs); run(*args) -> (params or None, loss for the check) --------------
class _FastNN:
    backend = "numba"

    def __init__(self, sizes, loss, lr, X, y, batch, shuffle, init):
        self.sizes, self.loss, self.lr, self.X, self.y = sizes, loss, lr, X, y
        self.batch, self.shuffle, self.init = batch, shuffle, init

    def setup(self):
        layers = []
        for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers += [fastnn.Linear(n_in, n_out)] + ([fastnn.ReLU()] if i < len(self.sizes) - 2 else [])
        model = fastnn.Sequential(*layers)
        for p, value in zip(model.parameters(), self.init):
            p.data[...] = value
        return (model,), {}

    def run(self, model):
        loss = fastnn.MSELoss() if self.loss == "mse" else fastnn.SoftmaxCrossEntropy()
        with kernels.backend(self.backend):
            history = model.fit(self.X, self.y, loss=loss, optimizer=fastnn.SGD(model.parameters(), lr=self.lr),
                                epochs=1, batch_size=self.batch, shuffle=self.shuffle, seed=SEED, verbose=0)
        assert history.fast_path, "the compiled step (or its NumPy twin) did not run"
        return [p.data for p in model.parameters()], None


class _NumPy(_FastNN):
    backend = "numpy"


class _NumPy64(_NumPy):
    """The NumPy twin in float64 (data and weights): the reference the others' epochs are checked against."""

    def __init__(self, sizes, loss, lr, X, y, batch, shuffle, init):
        super().__init__(sizes, loss, lr, X.astype(np.float64), y, batch, shuffle, init)

    def setup(self):
        (model,), _ = super().setup()
        return (model.astype(np.float64),), {}


class _Torch:
    def __init__(self, sizes, loss, lr, X, y, batch, shuffle, init):
        self.torch = pytest.importorskip("torch")
        self.sizes, self.loss, self.lr, self.batch, self.init = sizes, loss, lr, batch, init
        self.X, self.y = self.torch.from_numpy(X), self.torch.from_numpy(y)
        self.order = self.torch.from_numpy(np.random.default_rng(SEED).permutation(len(X))) if shuffle else None

    def setup(self):
        nn = self.torch.nn
        layers = []
        for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(self.sizes) - 2 else [])
        model = nn.Sequential(*layers)
        with self.torch.no_grad():
            for layer, W, b in zip(model[0::2], self.init[0::2], self.init[1::2]):
                layer.weight.copy_(self.torch.from_numpy(W.T.copy()))  # torch keeps (out, in)
                layer.bias.copy_(self.torch.from_numpy(b))
        return (model, self.torch.optim.SGD(model.parameters(), lr=self.lr)), {}

    def run(self, model, optimizer):
        F = self.torch.nn.functional
        loss_fn = F.mse_loss if self.loss == "mse" else F.cross_entropy
        X, y, bs, order = self.X, self.y, self.batch, self.order
        for start in range(0, X.shape[0], bs):
            if order is None:
                xb, yb = X[start:start + bs], y[start:start + bs]
            else:
                idx = order[start:start + bs]
                xb, yb = X[idx], y[idx]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            optimizer.step()
        params = []
        for layer in model[0::2]:
            params += [layer.weight.detach().numpy().T, layer.bias.detach().numpy()]
        return params, None


class _Sklearn:
    def __init__(self, sizes, loss, lr, X, y, batch, shuffle, init):
        self.nn = pytest.importorskip("sklearn.neural_network")
        self.sizes, self.loss, self.lr, self.X, self.y, self.batch, self.shuffle = sizes, loss, lr, X, y, batch, shuffle

    def setup(self):
        cls = self.nn.MLPRegressor if self.loss == "mse" else self.nn.MLPClassifier
        return (cls(hidden_layer_sizes=self.sizes[1:-1], activation="relu", solver="sgd", learning_rate_init=self.lr,
                    momentum=0.0, nesterovs_momentum=False, alpha=0.0, batch_size=self.batch, shuffle=self.shuffle,
                    random_state=SEED),), {}

    def run(self, est):
        if self.loss == "mse":
            est.partial_fit(self.X, self.y[:, 0])
            return None, float(((est.predict(self.X) - self.y[:, 0]) ** 2).mean())
        est.partial_fit(self.X, self.y, classes=np.arange(self.sizes[-1]))
        proba = est.predict_proba(self.X)
        return None, float(-np.log(np.maximum(proba[np.arange(len(self.y)), self.y], 1e-12)).mean())


TRAINERS = {"fastnn": _FastNN, "numpy": _NumPy, "torch": _Torch, "sklearn": _Sklearn, **peers.TRAINERS}


# -- threads ------------------------------------------------------------------------------------------
@pytest.fixture
def limit_threads(request):
    """``limit(n)``: every BLAS pool, and PyTorch's intra-op pool if loaded, at ``n`` threads for this test."""
    stack = []

    def limit(n):
        stack.append(threadpoolctl.threadpool_limits(limits=n, user_api="blas"))
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            previous = torch.get_num_threads()
            torch.set_num_threads(n)
            request.addfinalizer(lambda: torch.set_num_threads(previous))
        return n

    yield limit
    for ctx in reversed(stack):
        ctx.restore_original_limits()


def _threads_for(batch, config, sizes=None):
    """The BLAS threads fastnn's own rule gives this batch size and network, for every framework of the row."""
    width = None if sizes is None else max(a * b for a, b in zip(sizes, sizes[1:]))
    return 1 if benchmarks_disabled(config) else blas_threads(batch, width)


def _load_library(framework):
    """Import the framework's library before threads are limited, so threadpoolctl and torch see it."""
    if framework == "torch":
        pytest.importorskip("torch")
    elif framework == "sklearn":
        pytest.importorskip("sklearn.neural_network")
    elif framework in peers.TRAINERS:
        peers.require("jax" if framework.startswith("jax") else "torch")


# -- benchmarks ---------------------------------------------------------------------------------------
_REF_LOSS = {}  # (workload, batch, order) -> the loss after the float64 twin's epoch on the small data


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
@pytest.mark.parametrize("workload,batch,order", CASE_PARAMS)
def test_workload_epoch(request, benchmark, threads, limit_threads, workload, batch, order, framework):
    small = benchmarks_disabled(request.config)
    sizes, _, _, loss, lr = WORKLOADS[workload]
    X, y, data_name = workload_data(workload, small)
    _load_library(framework)
    n_threads = limit_threads(_threads_for(batch, request.config, sizes))
    init = reference.init_params(sizes, seed=0)
    options = {"backend": "aot_eager"} if framework == "torch_compile" and small else {}
    trainer = TRAINERS[framework](sizes, loss, lr, X, y, batch, order == "shuffled", init, **options)
    if framework in peers.TRAINERS:
        trainer.compile()
    benchmark.group = f"workload {workload} bs={batch} {order}"
    benchmark.extra_info.update(kind="epoch", workload=workload, layers="-".join(map(str, sizes)), framework=framework,
                                batch=batch, order=order, samples=len(X), data=data_name, loss=loss, lr=lr,
                                threads=os.cpu_count() if framework.startswith("jax") else n_threads,
                                flop=reference.epoch_flop(len(X), sizes), compile_s=getattr(trainer, "compile_s", None),
                                **threads())
    params, reported = benchmark.pedantic(trainer.run, setup=trainer.setup, rounds=ROUNDS, iterations=1,
                                          warmup_rounds=1)

    before = mean_loss(init, X, y, loss)
    if params is None:  # scikit-learn, from its own weights: after the epoch it must beat a constant guess
        chance = math.log(sizes[-1]) if loss == "sce" else float(y.var())
        benchmark.extra_info["loss_after"] = reported
        assert math.isfinite(reported) and reported < chance, f"sklearn: loss {reported} after the epoch, chance {chance}"
        return
    after = mean_loss([np.ascontiguousarray(p, np.float64) for p in params], X, y, loss)
    benchmark.extra_info.update(loss_before=before, loss_after=after)
    assert math.isfinite(after) and after < before, f"{framework}: loss {before:.4f} -> {after:.4f}"
    if small:
        # Same weights, same batches: the float32 epochs differ from the float64 one by rounding, which SGD
        # amplifies. Mostly that leaves ~1e-7 of the loss, but at batch 16 one ReLU whose pre-activation rounds to
        # the other side of 0 (step 82 of 188 with NumPy's BLAS, measured) sends the rest of the epoch elsewhere:
        # 0.37% of the end loss. PyTorch and torch.compile also differ by PyTorch's own kernels.
        key = (workload, batch, order)
        if key not in _REF_LOSS:
            ref = _NumPy64(sizes, loss, lr, X, y, batch, order == "shuffled", init)
            _REF_LOSS[key] = mean_loss(ref.run(*ref.setup()[0])[0], X, y, loss)
        assert after == pytest.approx(_REF_LOSS[key], rel=0.05 if framework.startswith("torch") else 0.01), \
            f"{framework} ends at loss {after:.5f}, the float64 twin at {_REF_LOSS[key]:.5f}"


def _fmnist_model():
    init = reference.init_params(FMNIST, seed=0)
    layers = [fastnn.Linear(784, 128), fastnn.ReLU(), fastnn.Linear(128, 64), fastnn.ReLU(), fastnn.Linear(64, 10)]
    model = fastnn.Sequential(*layers)
    for p, value in zip(model.parameters(), init):
        p.data[...] = value
    return model, init


def _predictor(framework, model, init):
    """``f(X) -> ndarray``: the framework's prediction of a float32 batch, NumPy in and out."""
    if framework == "jax":
        return peers.jax_predictor(init)
    if framework != "torch":
        return model.predict
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        for layer, W, b in zip(net[0::2], init[0::2], init[1::2]):
            layer.weight.copy_(torch.from_numpy(W.T.copy()))
            layer.bias.copy_(torch.from_numpy(b))

    def predict(X):
        with torch.inference_mode():
            return net(torch.from_numpy(X)).numpy()

    return predict


@pytest.mark.parametrize("framework", ("fastnn", "numpy", "torch", pytest.param("jax", marks=pytest.mark.slow)))
@pytest.mark.parametrize("rows", (1, PREDICT_ROWS), ids=("1row", f"{PREDICT_ROWS}rows"))
def test_workload_predict(request, benchmark, threads, limit_threads, rows, framework):
    """``predict`` of 784-128-64-10: one row (single calls, one thread; p50 and p90 in ``extra_info``) or
    10,000 rows (the machine's threads); outputs checked against a float64 forward pass. JAX: a jitted forward
    pass, NumPy in and out, on XLA's own threads."""
    small = benchmarks_disabled(request.config)
    _load_library(framework)
    n_threads = limit_threads(1 if rows == 1 or small else blas_threads(PREDICT_ROWS))
    model, init = _fmnist_model()
    X = workload_data("fmnist", small)[0][:rows]
    predict = _predictor(framework, model, init)
    stack = contextlib.ExitStack()  # this test's whole run on the framework's kernel backend
    request.addfinalizer(stack.close)
    stack.enter_context(kernels.backend("numpy" if framework == "numpy" else "numba"))
    predict(X)  # compile, load, allocate
    benchmark.group = f"predict {rows} row{'s' if rows > 1 else ''} fmnist"
    benchmark.extra_info.update(kind="predict1" if rows == 1 else "predict", workload="fmnist",
                                layers="784-128-64-10", framework=framework, batch=rows, samples=len(X),
                                threads=os.cpu_count() if framework == "jax" else n_threads,
                                flop=2 * len(X) * sum(a * b for a, b in zip(FMNIST[:-1], FMNIST[1:])),
                                **threads())
    if rows == 1:
        out = benchmark.pedantic(predict, args=(X,), rounds=5 if small else PREDICT1_ROUNDS, iterations=1,
                                 warmup_rounds=0 if small else 200)
        data = np.sort(benchmark.stats.stats.sorted_data) if benchmark.stats else None
        if data is not None and len(data):
            benchmark.extra_info.update(p50_us=float(np.percentile(data, 50) * 1e6),
                                        p90_us=float(np.percentile(data, 90) * 1e6))
    else:
        out = benchmark.pedantic(predict, args=(X,), rounds=ROUNDS * 3, iterations=1, warmup_rounds=1)
    expected = X.astype(np.float64)
    for k in range(0, len(init), 2):
        expected = expected @ init[k] + init[k + 1]
        if k + 2 < len(init):
            np.maximum(expected, 0, out=expected)
    assert out.shape == expected.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("gemm", ["numpy", "fastnn"])
@pytest.mark.parametrize("n_threads", sorted({1, os.cpu_count() or 1}))
def test_sgemm_floor(request, benchmark, threads, limit_threads, n_threads, gemm):
    """A 2048^3 float32 GEMM at ``n_threads`` through NumPy's BLAS and through fastnn's own GEMM (where the kernels
    use it, :func:`fastnn.kernels.aot.gemm`): a row's floor divides by the faster of the two."""
    if gemm == "fastnn" and not str(kernels.aot.gemm()).startswith("fastnn-"):
        pytest.skip("fastnn's kernels multiply with NumPy's BLAS here: its row is the floor")
    limit_threads(n_threads)
    n = 256 if benchmarks_disabled(request.config) else 2048
    rng = np.random.default_rng(0)
    A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    C = np.empty((n, n), np.float32)
    benchmark.group = "sgemm floor"
    benchmark.extra_info.update(kind="sgemm", sgemm=n, threads=n_threads, gemm=gemm, flop=2 * n**3, **threads())
    if gemm == "numpy":
        benchmark.pedantic(np.dot, args=(A, B), kwargs={"out": C}, rounds=max(ROUNDS, 3), iterations=1,
                           warmup_rounds=1)
    else:
        benchmark.pedantic(kernels.get_backend("numba").matmul, args=(A, B, C), rounds=max(ROUNDS, 3), iterations=1,
                           warmup_rounds=1)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4)


@pytest.mark.parametrize("state", ["cold", "warm"])
def test_workload_startup(request, benchmark, tmp_path_factory, state):
    """Import -> one trained fit in a new interpreter (``fastnn/benchmarks/test_bench_startup.py``'s child), with an
    empty Numba cache each round (cold) or one filled by an earlier process (warm)."""
    if benchmarks_disabled(request.config):
        pytest.skip("timing only: test_bench_startup.py checks the same child under --benchmark-disable")
    from fastnn.benchmarks.test_bench_startup import _first_fit

    cache_dir = tmp_path_factory.mktemp(f"workload-cache-{state}")
    if state == "warm":
        _first_fit(cache_dir)
    seconds = []

    def run():
        if state == "cold":
            shutil.rmtree(cache_dir)
            cache_dir.mkdir()
        seconds.append(_first_fit(cache_dir))

    benchmark.group = "start-up: import -> trained"
    benchmark.extra_info.update(kind="startup", workload=f"startup-{state}", framework="fastnn", state=state)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["child_seconds"] = seconds


# -- the CI gate: fastnn against its NumPy twin in the same run ------------------------------------------
CI_ROWS = 2_048


@pytest.mark.workload_ci
@pytest.mark.parametrize("backend", ("numba", "numpy"))
@pytest.mark.parametrize("case", ("epoch_shuffled", "predict_1row"))
def test_workload_ci(benchmark, threads, case, backend):
    """A shuffled epoch (2,048 rows at batch 64) and a single-row predict of 784-128-64-10 on one kernel backend.

    ``scripts/check_kernel_ratios.py`` divides the ``numba`` median by the ``numpy`` median of the same run and
    holds the ratio against ``kernel_thresholds.json``, as it does for the kernels: a regression of the compiled
    step's gather or of the predict path fails CI whatever the machine's speed.
    """
    X, y, _ = workload_data("fmnist", True)
    X, y = X[:CI_ROWS], y[:CI_ROWS]
    model, _ = _fmnist_model()
    benchmark.group = f"ci:{case}"
    benchmark.extra_info.update(case=case, kernel="fit" if case.startswith("epoch") else "predict", backend=backend,
                                batch=64 if case.startswith("epoch") else 1, shape="784-128-64-10", suite="ci",
                                dtype="float32", **threads())
    with kernels.backend(backend):
        if case == "epoch_shuffled":
            optimizer, loss = fastnn.SGD(model.parameters(), lr=0.05), fastnn.SoftmaxCrossEntropy()

            def epoch():
                return model.fit(X, y, loss=loss, optimizer=optimizer, batch_size=64, shuffle=True, verbose=0)

            epoch()  # compile
            history = benchmark(epoch)
            assert history.fast_path and np.isfinite(history.history["loss"][0])
        else:
            row = X[:1]
            model.predict(row)
            out = benchmark(model.predict, row)
            assert out.shape == (1, 10) and np.isfinite(out).all()
