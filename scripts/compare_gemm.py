"""Time the sgemm providers a fastnn user could have at the GEMM shapes of the benchmark workloads.

Providers (each skipped, with a note, when it is not installed):

``openblas``
    NumPy's bundled OpenBLAS, called as fastnn's kernels call it: its ILP64 ``cblas_sgemm`` through ctypes,
    row-major, with the transposes of the training step (no copies).
``fastnn``
    fastnn's own float32 GEMM (``fastnn/kernels/_aot_gemm.c``), through the ahead-of-time module's
    ``fastnn_sgemm``, the entry its kernels call; skipped unless ``fastnn.kernels.aot.gemm()`` is
    ``"fastnn-avx512"`` (or ``"fastnn-avx2"`` under ``FASTNN_GEMM=avx2``). It shares its calls among as many
    threads as NumPy's OpenBLAS is allowed, so it is limited through OpenBLAS's thread count.
``mkl``
    Intel's oneMKL from the ``mkl`` wheel (``libmkl_rt``), the same ``cblas_sgemm`` call (LP64).
``blis``
    The ``blis`` wheel's ``blis.py.gemm`` (a Cython call into a bundled BLIS; that build is single-threaded,
    so it is timed at one thread only).

For each workload of ``fastnn/benchmarks/test_bench_workloads.py`` and its batch size, every GEMM of one training step
is timed (forward ``X W``, weight gradient ``X^T g``, input gradient ``g W^T`` for all but the first layer) at 1
and 2 threads, and the step's GEMM time is scaled to one epoch. A ratio only ever divides two medians of this run.

Usage::

    python scripts/compare_gemm.py                 # markdown to stdout
    python scripts/compare_gemm.py --json gemm.json --threads 1 2 --repeat 7
"""
import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import statistics
import sys
import time

import numpy as np
import threadpoolctl

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# (name, layer sizes, rows per epoch, batch size): the workloads of fastnn/benchmarks/test_bench_workloads.py
WORKLOADS = (("fmnist", (784, 128, 64, 10), 60_000, 16), ("fmnist", (784, 128, 64, 10), 60_000, 64),
             ("fmnist", (784, 128, 64, 10), 60_000, 256), ("wide", (784, 1024, 1024, 10), 20_000, 256),
             ("tabular", (32, 64, 64, 1), 100_000, 32), ("deep", (64,) * 8 + (10,), 50_000, 64),
             ("predict10k", (784, 128, 64, 10), 10_000, 10_000))


def step_gemms(sizes, batch, forward_only=False):
    """``[(label, M, N, K, trans_a, trans_b)]``: the GEMMs of one training step (or one forward) at ``batch``."""
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"fwd{i}", batch, n_out, n_in, False, False))  # X W
        if forward_only:
            continue
        out.append((f"dW{i}", n_in, n_out, batch, True, False))  # X^T g
        if i:
            out.append((f"dX{i}", batch, n_in, n_out, False, True))  # g W^T
    return out


class _Cblas:
    """A ``cblas_sgemm`` entry point called through ctypes; ``int_t`` is the library's integer type."""

    def __init__(self, fn, int_t, set_threads):
        self.fn, self.int_t, self.set_threads = fn, int_t, set_threads
        i32, it, f, p = ctypes.c_int, int_t, ctypes.c_float, ctypes.c_void_p
        fn.argtypes = [i32, i32, i32, it, it, it, f, p, it, p, it, f, p, it]
        fn.restype = None

    def __call__(self, A, trans_a, B, trans_b, C):
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        self.fn(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, M, N, K, 1.0,
                A.ctypes.data, A.shape[1], B.ctypes.data, B.shape[1], 0.0, C.ctypes.data, N)


def openblas():
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info["filepath"]:
            lib = ctypes.CDLL(info["filepath"])
            for name in ("scipy_cblas_sgemm64_", "cblas_sgemm64_"):
                if hasattr(lib, name):
                    controller = threadpoolctl.ThreadpoolController().select(filepath=info["filepath"])
                    return _Cblas(getattr(lib, name), ctypes.c_int64, lambda n: controller.limit(limits=n)), \
                        f"OpenBLAS {info.get('version')} ({info.get('architecture')}) from NumPy"
    return None, "NumPy's OpenBLAS has no ILP64 cblas_sgemm"


def fastnn_gemm():
    from fastnn.kernels import aot
    if not str(aot.gemm()).startswith("fastnn-"):
        why = aot.reason() or "a CPU without AVX-512 (FASTNN_GEMM=avx2 takes the AVX2 kernels), or FASTNN_GEMM=blas"
        return None, f"not in use here (fastnn.kernels.aot.gemm() is {aot.gemm()!r}: {why})"
    blas, note = openblas()
    if blas is None:
        return None, note
    return _Cblas(ctypes.CDLL(aot.load().__file__).fastnn_sgemm, ctypes.c_int64, blas.set_threads), \
        f"fastnn's own GEMM (_aot_gemm.c, {'AVX-512' if aot.gemm() == 'fastnn-avx512' else 'AVX2'})"


def mkl():
    candidates = glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")) + [ctypes.util.find_library("mkl_rt")]
    for path in filter(None, candidates):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        set_threads = lib.MKL_Set_Num_Threads
        set_threads.argtypes = [ctypes.c_int]
        version = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(version, 256)

        class _Limit:
            def __init__(self, n):
                self.previous = lib.MKL_Get_Max_Threads()
                set_threads(n)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                set_threads(self.previous)

        return _Cblas(lib.cblas_sgemm, ctypes.c_int, _Limit), version.value.decode().strip()
    return None, "libmkl_rt not found (pip install mkl)"


def blis():
    try:
        from blis.py import gemm
    except ImportError:
        return None, "not installed (pip install blis)"

    class _Blis:
        def __call__(self, A, trans_a, B, trans_b, C):
            gemm(A, B, out=C, trans1=trans_a, trans2=trans_b, alpha=1.0, beta=0.0)

        @staticmethod
        def set_threads(n):
            if n != 1:
                raise ValueError("the blis wheel is single-threaded")
            return threadpoolctl.threadpool_limits(limits=None)  # a no-op context

    import blis as blis_pkg
    return _Blis(), f"blis wheel {getattr(blis_pkg, '__version__', '?')} (single-threaded build)"


def time_call(fn, min_time=0.02, repeat=5):
    """Median seconds per call over ``repeat`` rounds of enough calls to last ``min_time``."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(min_time / once))
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t0) / calls)
    return statistics.median(rounds)


def measure(providers, threads, repeat):
    rng = np.random.default_rng(0)
    results = []
    for name, sizes, rows, batch in WORKLOADS:
        forward_only = name.startswith("predict")
        steps = -(-rows // batch)
        for label, M, N, K, ta, tb in step_gemms(sizes, batch, forward_only):
            A = rng.random((K, M) if ta else (M, K), dtype=np.float32)
            B = rng.random((N, K) if tb else (K, N), dtype=np.float32)
            ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B)
            for pname, prov in providers.items():
                for n in threads:
                    if pname == "blis" and n != 1:
                        continue
                    C = np.empty((M, N), np.float32)
                    with prov.set_threads(n):
                        prov(A, ta, B, tb, C)
                        err = float(np.abs(C - ref).max() / max(1e-30, np.abs(ref).max()))
                        if err > 1e-4:
                            raise AssertionError(f"{pname} {label} {M}x{N}x{K}: relative error {err:.2e}")
                        sec = time_call(lambda: prov(A, ta, B, tb, C), repeat=repeat)
                    results.append(dict(workload=name, sizes=list(sizes), batch=batch, steps=steps, gemm=label, M=M,
                                        N=N, K=K, trans_a=ta, trans_b=tb, provider=pname, threads=n, seconds=sec,
                                        gflops=2 * M * N * K / sec / 1e9))
    return results


def table(results, threads):
    """Markdown: per workload and thread count, the epoch's GEMM seconds per provider and ratios to OpenBLAS."""
    providers = sorted({r["provider"] for r in results}, key=lambda p: (p != "openblas", p))
    lines = ["| workload | batch | threads | " + " | ".join(f"{p} (s/epoch)" for p in providers) + " | "
             + " | ".join(f"{p}/openblas" for p in providers if p != "openblas") + " |",
             "|---|---:|---:|" + "---:|" * (2 * len(providers) - 1)]
    keys = sorted({(r["workload"], r["batch"]) for r in results}, key=lambda k: ([w[0] for w in WORKLOADS].index(k[0]), k[1]))
    for workload, batch in keys:
        for n in threads:
            epoch = {}
            for p in providers:
                rows = [r for r in results if (r["workload"], r["batch"], r["provider"], r["threads"]) ==
                        (workload, batch, p, n)]
                if rows:
                    epoch[p] = sum(r["seconds"] for r in rows) * rows[0]["steps"]
            if not epoch:
                continue
            base = epoch.get("openblas")
            lines.append(f"| {workload} | {batch} | {n} | " + " | ".join(
                f"{epoch[p]:.4g}" if p in epoch else "–" for p in providers) + " | " + " | ".join(
                f"{epoch[p] / base:.2f}" if p in epoch and base else "–" for p in providers if p != "openblas") + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per GEMM (median reported)")
    parser.add_argument("--json", help="write every timing here")
    parser.add_argument("--providers", nargs="+", default=["openblas", "fastnn", "mkl", "blis"])
    args = parser.parse_args(argv)
    providers, notes = {}, {}
    for name in args.providers:
        prov, note = {"openblas": openblas, "fastnn": fastnn_gemm, "mkl": mkl, "blis": blis}[name]()
        notes[name] = note
        if prov is not None:
            providers[name] = prov
    for name, note in notes.items():
        print(f"- {name}: {note}{'' if name in providers else ' (skipped)'}")
    results = measure(providers, args.threads, args.repeat)
    print()
    print(table(results, args.threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"providers": notes, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
