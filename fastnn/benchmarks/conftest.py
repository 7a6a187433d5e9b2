"""Shared setup of the benchmark suite: thread bookkeeping, the data option, the ``kernel_ci`` marker.

Environment knobs (all optional):

``FASTNN_BENCH_THREADS=N``
    Limit every BLAS pool (NumPy's and SciPy's OpenBLAS, which Numba's ``np.dot`` uses) to ``N``
    threads with threadpoolctl for each benchmark. Unset: timed runs leave the libraries' defaults
    alone; ``--benchmark-disable`` runs (correctness only) use one thread.
``FASTNN_BENCH_DATA=synthetic|fashion`` (or ``--bench-data``)
    Data of the epoch benchmarks; ``fashion`` loads the real Fashion-MNIST training set.
``FASTNN_BENCH_ROUNDS=R``
    Timed epochs per epoch benchmark (default 5).
"""
import os
import sys

import numba
import pytest
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's OpenBLAS now, so threadpoolctl sees and limits it)
import threadpoolctl

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "FASTNN_BENCH_THREADS")


def pytest_addoption(parser):
    parser.addoption("--bench-data", choices=("synthetic", "fashion"),
                     default=os.environ.get("FASTNN_BENCH_DATA", "synthetic"),
                     help="data of the epoch benchmarks (default: $FASTNN_BENCH_DATA or synthetic)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "kernel_ci: small fixed-shape kernel pairs timed by scripts/check_kernel_ratios.py")
    config.addinivalue_line(
        "markers", "workload_ci: shuffled-epoch and predict pairs timed by scripts/check_kernel_ratios.py")
    config.addinivalue_line("markers", "slow: seconds or more even under --benchmark-disable (CI runs -m slow)")


def thread_settings():
    """The thread counts in force now: one entry per BLAS pool, Numba's, and PyTorch's if it is loaded."""
    # Keyed by the package that ships the pool (numpy.libs, scipy.libs, torch/lib, ...).
    blas = {os.path.basename(os.path.dirname(info["filepath"])): info["num_threads"]
            for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = numba.config.THREADING_LAYER
    settings = {"blas_threads": blas, "numba_threads": numba.get_num_threads(), "numba_threading_layer": layer}
    if "torch" in sys.modules:
        settings["torch_threads"] = sys.modules["torch"].get_num_threads()
    return settings


def benchmarks_disabled(config):
    """True when pytest-benchmark runs each benchmarked function once, untimed."""
    return config.getoption("benchmark_disable") and not config.getoption("benchmark_enable")


@pytest.fixture(autouse=True)
def _blas_threads(request):
    """Limit every BLAS pool for one benchmark: to ``FASTNN_BENCH_THREADS`` if set, else to one thread
    when benchmarks are disabled (a correctness run: on a busy 2-core machine two-thread OpenBLAS
    stalls on these small GEMMs, ~80x slower than one thread), else not at all."""
    limit = os.environ.get("FASTNN_BENCH_THREADS", "").strip()
    if not limit and benchmarks_disabled(request.config):
        limit = "1"
    if not limit:
        yield
        return
    with threadpoolctl.threadpool_limits(limits=int(limit), user_api="blas"):
        yield


@pytest.fixture
def threads():
    """A callable returning :func:`thread_settings`, for ``benchmark.extra_info``."""
    return thread_settings


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastnn_threads"] = {
        "env": {name: os.environ.get(name) for name in _THREAD_VARS},
        "threadpoolctl": [{k: info.get(k) for k in ("user_api", "internal_api", "prefix", "filepath", "version",
                                                   "num_threads", "threading_layer", "architecture")}
                          for info in threadpoolctl.threadpool_info()],
        "numba": {"version": numba.__version__, "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
                  "threading_layer": numba.config.THREADING_LAYER},
    }
