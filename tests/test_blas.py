"""The compiled kernels' GEMM: NumPy's OpenBLAS when it has an ILP64 CBLAS, else Numba's BLAS entry.

Both sources must give NumPy's products for every transpose, alpha/beta and dtype, and kernels
cached under one must run under the other (they call the same registered name).
"""
import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import threadpoolctl

from fastnn.kernels import _blas

# Every product shape the kernels use: X W, X^T g (into W with alpha, beta), g W^T, in both dtypes;
# a strided operand takes the np.dot fallback. Prints the largest error relative to NumPy.
CHECK = """
    import numpy as np
    from fastnn.kernels import _blas, numba_cpu as K
    rng = np.random.default_rng(0)
    worst = 0.0
    for dtype in (np.float32, np.float64):
        X, W, g = (rng.standard_normal(s).astype(dtype) for s in ((7, 5), (5, 3), (7, 3)))
        cases = [
            (lambda: K.matmul(X, W, np.full((7, 3), np.nan, dtype)), X @ W),
            (lambda: K.matmul(X[::2], W, np.full((4, 3), np.nan, dtype)), X[::2] @ W),
        ]
        out = W.copy(); K._gemm(X, True, g, False, -0.5, 0.25, out); cases.append((lambda: out, 0.25 * W - 0.5 * X.T @ g))
        dX = np.full((7, 5), np.nan, dtype); K._gemm(g, False, W, True, 1.0, 0.0, dX); cases.append((lambda: dX, g @ W.T))
        for got, want in cases:
            got = got()
            assert got.dtype == dtype
            worst = max(worst, float(np.max(np.abs(got - want) / (1 + np.abs(want)))))
    print(_blas.SOURCE, worst)
"""


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def _numpy_has_ilp64_cblas():
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            lib = ctypes.CDLL(info["filepath"])
            return any(hasattr(lib, name) for name in ("scipy_cblas_sgemm64_", "cblas_sgemm64_"))
    return False


def test_numpy_blas_is_used_where_available():
    assert _blas.SOURCE == ("numpy" if _numpy_has_ilp64_cblas() else "numba")


def test_both_sources_give_numpys_products_from_one_cache(tmp_path):
    """NumPy's BLAS, then Numba's with the same cache: the second process loads the kernels the
    first compiled (cache files untouched) and they call the adapter through the same name."""
    stamps = []
    for source in ("numpy", "numba"):
        r = _run(CHECK, FASTNN_BLAS=source, NUMBA_CACHE_DIR=str(tmp_path))
        assert r.returncode == 0, r.stderr
        got_source, worst = r.stdout.split()
        assert got_source == (source if source == "numba" else _blas.SOURCE)
        assert float(worst) < 1e-5  # float32 products of length <= 7, relative to 1 + |value|
        stamps.append({p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.nbc")})
    assert stamps[0] and stamps[0] == stamps[1]


def test_bad_blas_choice_is_reported():
    r = _run("import fastnn", FASTNN_BLAS="mkl")
    assert r.returncode != 0 and "FASTNN_BLAS must be 'numpy' or 'numba', got 'mkl'" in r.stderr
