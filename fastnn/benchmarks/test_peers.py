"""The peers of the benchmark suites (:mod:`fastnn.benchmarks.peers`) train exactly what fastnn trains.

On a tiny problem (150 rows, batch 16: nine full batches and a short last one, shuffled as ``fit(seed=0)``
shuffles), each peer's epoch from the same initial weights must end on the NumPy twin's weights up to float32
rounding, for softmax cross-entropy and for MSE; so the suites time the same work. torch.compile is checked with the
``aot_eager`` backend (the graph Dynamo and AOTAutograd capture, run by eager kernels: ~1 s) in the default run and
with Inductor, which generates and compiles C++ (~20 s cold), in the slow set.
"""
import sys

import numpy as np
import pytest

from fastnn.benchmarks import peers, reference
from fastnn.benchmarks.test_bench_workloads import _NumPy

# Importing torch._dynamo runs torch's own deprecated torch.jit.script_method: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
N, BATCH, LR = 150, 16, 0.1
PEERS = [pytest.param("jax", {}, id="jax"), pytest.param("jax_step", {}, id="jax_step"),
         pytest.param("torch_compile", {"backend": "aot_eager"}, id="torch_compile-aot_eager"),
         pytest.param("torch_compile", {"backend": "inductor"}, id="torch_compile-inductor", marks=pytest.mark.slow)]


def _problem(loss):
    rng = np.random.default_rng(3)
    sizes = (20, 16, 8, 3) if loss == "sce" else (20, 16, 8, 2)
    X = rng.standard_normal((N, 20), dtype=np.float32)
    y = rng.integers(0, 3, N) if loss == "sce" else rng.standard_normal((N, 2)).astype(np.float32)
    return sizes, X, y, reference.init_params(sizes, seed=0)


@pytest.mark.parametrize("loss", ("sce", "mse"))
@pytest.mark.parametrize("framework, options", PEERS)
def test_peer_epoch_matches_the_twin(framework, options, loss):
    sizes, X, y, init = _problem(loss)
    twin = _NumPy(sizes, loss, LR, X, y, BATCH, True, init)
    expected = twin.run(*twin.setup()[0])[0]
    peer = peers.TRAINERS[framework](sizes, loss, LR, X, y, BATCH, True, init, **options)
    params, _ = peer.run(*peer.setup()[0])
    assert peer.compile_s > 0
    moved = max(float(np.abs(e - p).max()) for e, p in zip(expected, init))
    assert moved > 1e-2  # the epoch did change the weights, so agreeing below means something
    for k, (got, want) in enumerate(zip(params, expected)):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{framework}: parameter {k}")
    # A second epoch from the same weights repeats the first: nothing is left over between timed rounds.
    again, _ = peer.run(*peer.setup()[0])
    for got, want in zip(again, params):
        np.testing.assert_array_equal(got, want)


def test_peers_follow_fits_batches():
    """The shuffled order is fit(seed=0)'s, and the twin fed it in order trains the same weights."""
    sizes, X, y, init = _problem("sce")
    order = peers.batch_order(N, True)
    assert sorted(order) == list(range(N)) and not (order == np.arange(N)).all()
    shuffled = _NumPy(sizes, "sce", LR, X, y, BATCH, True, init)
    in_order = _NumPy(sizes, "sce", LR, X[order], y[order], BATCH, False, init)
    for a, b in zip(shuffled.run(*shuffled.setup()[0])[0], in_order.run(*in_order.setup()[0])[0]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_jax_predict_matches_a_float64_forward():
    sizes, X, _, init = _problem("sce")
    out = peers.jax_predictor(init)(X)
    expected = reference_forward(init, X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def reference_forward(params, X):
    a = X.astype(np.float64)
    for k in range(0, len(params), 2):
        a = a @ params[k] + params[k + 1]
        if k + 2 < len(params):
            np.maximum(a, 0, out=a)
    return a


def test_missing_peer_skips_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax -> ImportError
    with pytest.raises(pytest.skip.Exception, match=r"^jax not installed: .*'fastnn\[peers\]'"):
        peers.require("jax")
