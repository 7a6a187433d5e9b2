"""Where a training batch's time goes: the compiled epoch split into its GEMMs, its row gather and the rest.

For each workload of ``fastnn/benchmarks/test_bench_workloads.py`` (plain SGD, shuffled batches as ``fit``'s
default draws them, one BLAS thread unless ``--threads``), one run times, in alternating rounds:

``epoch``
    ``Sequential.fit(epochs=1)``: the compiled step, everything included.
``gemm``
    the same epoch's GEMM calls alone, from a compiled loop over the batches, through the same ``_gemm`` the step
    calls (forward ``a W``, ``dX = g W^T`` for all but the first layer, ``W -= lr a^T g``), on buffers of the
    step's shapes: what the GEMM library costs at these shapes, its per-call overhead and packing included.
``gather``
    the shuffled batches' rows copied into the batch buffer (``step_numba._gather``).
``sgemm``
    a 2048^3 sgemm at the same threads, through NumPy's BLAS and, where the prebuilt kernels multiply with
    fastnn's own GEMM (:func:`fastnn.kernels.aot.gemm`), through it too: the floor is the epoch's GEMM FLOPs at
    the faster rate, as in the workloads suite.

The GEMM loop is compiled by Numba's JIT, whose kernels call NumPy's BLAS by the name ``fastnn_sgemm``. Where the
prebuilt kernels are in use, that name is pointed at their own ``fastnn_sgemm`` first, the entry their training
step calls: the loop then times the GEMM the epoch runs (fastnn's own on AVX-512 CPUs, NumPy's OpenBLAS
otherwise), not always OpenBLAS.

The rest (``epoch - gemm - gather``) is the bias and activation passes, their backward, the bias gradients,
the loss and its gradient and the loop itself. Times are CPU seconds of the process (``time.process_time``):
a busy neighbour disturbs them far less than wall time (use ``--wall`` on a quiet machine with two threads).

Usage::

    python scripts/profile_batch.py --repeat 5            # one thread
    python scripts/profile_batch.py --threads 2 --wall    # a quiet machine
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

# fit's own thread choice follows FASTNN_BLAS_THREADS, read at import: set it from --threads first.
if "--threads" in sys.argv:
    os.environ["FASTNN_BLAS_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]
os.environ.setdefault("FASTNN_BLAS_THREADS", "1")

import ctypes  # noqa: E402

import llvmlite.binding as ll  # noqa: E402

import fastnn  # noqa: E402
from fastnn import _config, kernels  # noqa: E402
from fastnn._config import jit  # noqa: E402
from fastnn.kernels import aot  # noqa: E402
from fastnn.kernels.numba_cpu import _gemm  # noqa: E402
from fastnn.kernels.step_numba import _gather  # noqa: E402


def _epochs_gemm():
    """Points the JIT's ``fastnn_sgemm`` at the prebuilt kernels' own entry (before the loop below is compiled) and
    says who multiplies: ``aot.gemm()``'s name, or ``"openblas"`` when the epoch runs the JIT's kernels too."""
    module = aot.load()
    if module is None:
        return "openblas (the JIT's kernels)"
    ll.add_symbol("fastnn_sgemm", ctypes.cast(ctypes.CDLL(module.__file__).fastnn_sgemm, ctypes.c_void_p).value)
    return aot.gemm()


GEMM = _epochs_gemm()

# (name, layer sizes, rows, batch, loss): the workloads suite's
WORKLOADS = (("fmnist-bs16", (784, 128, 64, 10), 60_000, 16, "sce"),
             ("fmnist-bs64", (784, 128, 64, 10), 60_000, 64, "sce"),
             ("fmnist-bs256", (784, 128, 64, 10), 60_000, 256, "sce"),
             ("wide", (784, 1024, 1024, 10), 20_000, 256, "sce"),
             ("tabular", (32, 64, 64, 1), 100_000, 32, "mse"),
             ("deep", (64,) * 8 + (10,), 50_000, 64, "sce"))


@jit
def _epoch_gemms(n, batch, acts, grads, Ws, lr):
    """Every GEMM of an SGD epoch of ``n`` rows in batches of ``batch``, as the compiled step calls them."""
    L = len(Ws)
    for s in range(0, n, batch):
        m = min(batch, n - s)
        for l in range(L):
            _gemm(acts[l][:m], False, Ws[l], False, 1.0, 0.0, acts[l + 1][:m])
        for l in range(L - 1, -1, -1):
            if l > 0:
                _gemm(grads[l + 1][:m], False, Ws[l], True, 1.0, 0.0, grads[l][:m])
            _gemm(acts[l][:m], True, grads[l + 1][:m], False, -lr, 1.0, Ws[l])


@jit
def _epoch_gather(X, order, batch, x):
    n = order.shape[0]
    for s in range(0, n, batch):
        rows = order[s:min(n, s + batch)]
        _gather(X, rows, x[:rows.shape[0]])


def _model(sizes, seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [fastnn.Linear(a, b)] + ([fastnn.ReLU()] if i < len(sizes) - 2 else [])
    model = fastnn.Sequential(*layers)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.data.shape).astype(np.float32) * np.sqrt(2.0 / p.data.shape[0])
    return model


def _data(sizes, n, loss, rng):
    X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    if loss == "mse":
        return X, rng.standard_normal((n, sizes[-1]), dtype=np.float32)
    return X, rng.integers(0, sizes[-1], n)


def _flops(sizes, n):
    """The epoch's GEMM FLOPs: forward, weight gradient, input gradient for all but the first layer."""
    per_row = sum(2 * a * b * (3 if i else 2) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
    return per_row * n


def _timer(wall):
    return time.perf_counter if wall else time.process_time


def _time(fn, clock):
    t = clock()
    fn()
    return clock() - t


def profile(name, sizes, n, batch, loss, repeat, wall, sgemm):
    rng = np.random.default_rng(1)
    X, y = _data(sizes, n, loss, rng)
    model = _model(sizes)
    loss_fn = fastnn.MSELoss() if loss == "mse" else fastnn.SoftmaxCrossEntropy()

    def epoch():
        history = model.fit(X, y, loss=loss_fn, optimizer=fastnn.SGD(model.parameters(), lr=1e-4), epochs=1,
                            batch_size=batch, shuffle=True, seed=0, verbose=0)
        assert history.fast_path

    acts = tuple(np.zeros((batch, w), np.float32) for w in sizes)
    grads = tuple(np.full((batch, w), 1e-3, np.float32) for w in sizes)
    acts[0][...] = X[:batch]
    Ws = tuple(np.ascontiguousarray(p.data) for p in model.parameters()[::2])
    order = np.random.default_rng(0).permutation(n)
    xbuf = np.empty((batch, sizes[0]), np.float32)
    parts = {"epoch": epoch, "gemm": lambda: _epoch_gemms(n, batch, acts, grads, Ws, np.float32(1e-9)),
             "gather": lambda: _epoch_gather(X, order, batch, xbuf)}
    clock = _timer(wall)
    for fn in parts.values():  # compile and warm up
        fn()
    times = {k: [] for k in parts}
    for _ in range(repeat):
        for k, fn in parts.items():
            times[k].append(_time(fn, clock))
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (min(v), max(v)) for k, v in times.items()}
    flops = _flops(sizes, n)
    batches = -(-n // batch)
    floor = flops / sgemm
    rest = med["epoch"] - med["gemm"] - med["gather"]
    us = 1e6 / batches
    return (f"| {name} | {med['epoch'] * us:.1f} ({spread['epoch'][0] * us:.1f}–{spread['epoch'][1] * us:.1f}) "
            f"| {med['gemm'] * us:.1f} | {flops / med['gemm'] / 1e9:.0f} | {med['gather'] * us:.1f} | {rest * us:.1f} "
            f"| {floor * us:.1f} | {med['epoch'] / floor:.2f} | {med['gemm'] / floor:.2f} |")


def sgemm_rate(repeat, wall):
    """The 2048^3 rate (FLOP/s) through NumPy's BLAS and, where the prebuilt kernels use fastnn's own GEMM, through
    it (the faster of the two), and which one that was."""
    rng = np.random.default_rng(0)
    A, B = rng.random((2048, 2048), dtype=np.float32), rng.random((2048, 2048), dtype=np.float32)
    C = np.empty_like(A)
    clock = _timer(wall)
    ways = {"NumPy's BLAS": lambda: np.dot(A, B, out=C)}
    if str(GEMM).startswith("fastnn-"):
        ways[GEMM] = lambda: kernels.get_backend("numba").matmul(A, B, C)
    rates = {}
    for name, run in ways.items():
        run()
        rates[name] = 2 * 2048**3 / statistics.median(_time(run, clock) for _ in range(max(3, repeat)))
    best = max(rates, key=rates.get)
    return rates[best], best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds per part (median and min-max quoted)")
    parser.add_argument("--threads", type=int, default=int(os.environ["FASTNN_BLAS_THREADS"]),
                        help="BLAS threads, fit's included (default: FASTNN_BLAS_THREADS, else 1)")
    parser.add_argument("--wall", action="store_true", help="wall time instead of the process's CPU time")
    parser.add_argument("-k", default="", help="only workloads whose name contains this")
    args = parser.parse_args(argv)
    with _config.limit_blas(args.threads):
        rate, by = sgemm_rate(args.repeat, args.wall)
        print(f"sgemm 2048^3: {rate / 1e9:.1f} GFLOP/s at {args.threads} thread(s) ({by}); the epoch's GEMMs: "
              f"{GEMM}; {'wall' if args.wall else 'CPU'} time, median of {args.repeat} (min–max)\n")
        print("| workload | epoch µs/batch | GEMMs µs/batch | GEMM GFLOP/s | gather µs | rest µs | floor µs "
              "| epoch / floor | GEMMs / floor |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, sizes, n, batch, loss in WORKLOADS:
            if args.k in name:
                print(profile(name, sizes, n, batch, loss, args.repeat, args.wall, rate), flush=True)


if __name__ == "__main__":
    main()
