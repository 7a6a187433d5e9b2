"""fastnn's own float32 GEMM (``fastnn/kernels/_aot_gemm.c``), which the ahead-of-time kernels call on AVX-512 and
AVX2 CPUs.

Checked against NumPy in float64 for every transpose, tile tail, packed-panel boundary, leading dimension and
alpha/beta the kernels use, with each instruction set this CPU runs (and the same bits from each); then that the
kernels really take it (and ``FASTNN_GEMM=blas`` really does not), and that a fit on it is deterministic whatever
the BLAS thread count and agrees with a fit on OpenBLAS.
"""
import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn.kernels import aot

_module = aot.load()
_lib = ctypes.CDLL(_module.__file__) if _module is not None else None
_best = _lib.fastnn_own_sgemm_available() if _lib is not None else 0  # 3: AVX-512, 2: AVX2 + FMA, 0: neither
_available = _best >= 2
needs_own = pytest.mark.skipif(not _available, reason="fastnn's own GEMM needs the ahead-of-time build and AVX2")
LEVELS = [level for level in (2, 3) if level <= _best] or [2]  # the instruction sets this CPU runs it with
NAMES = {2: "fastnn-avx2", 3: "fastnn-avx512"}

_I, _P, _F = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float


def own_sgemm(ta, tb, alpha, A, B, beta, C, threads=1, level=_best):
    """``C = alpha op(A) op(B) + beta C`` by fastnn's GEMM with instruction set ``level`` on ``threads`` threads, on
    (views of) C-ordered rows with their own strides."""
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    item = 4
    f = _lib.fastnn_own_sgemm
    f.restype = None
    f(ctypes.c_int(level), ctypes.c_int(ta), ctypes.c_int(tb), _I(M), _I(N), _I(K), _F(alpha), _P(A.ctypes.data),
      _I(A.strides[0] // item), _P(B.ctypes.data), _I(B.strides[0] // item), _F(beta), _P(C.ctypes.data),
      _I(C.strides[0] // item), ctypes.c_int(threads))


def operands(rng, M, N, K, ta, tb, pad):
    """op(A) M x K and op(B) K x N as float32 row-major views inside wider arrays (leading dimension + pad)."""
    def view(rows, cols):
        return rng.standard_normal((rows, cols + pad)).astype(np.float32)[:, :cols]
    A = view(K, M) if ta else view(M, K)
    B = view(N, K) if tb else view(K, N)
    return A, B


SHAPES = [(1, 1, 1), (1, 128, 784), (14, 32, 5), (15, 33, 7), (6, 16, 9), (7, 17, 4), (13, 31, 300),
          (29, 65, 257), (64, 10, 64), (3, 1, 64), (64, 128, 1), (40, 47, 513), (20, 520, 300), (0, 5, 3), (5, 0, 3),
          (6, 7, 0)]
# tiles: AVX-512 14 x 32, AVX2 6 x 16 (and tails of each); (20, 520, 300): op(B) = B rows 520+ floats apart, packed
# in chunks of K (256 + 44)


@needs_own
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("pad", [0, 3])
def test_products_match_numpy(M, N, K, ta, tb, pad, level):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    A, B = operands(rng, M, N, K, ta, tb, pad)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    scale = np.sqrt(max(K, 1)) * 1e-6 * 4
    for alpha, beta in [(1.0, 0.0), (-0.01, 1.0), (0.5, 0.25)]:
        C0 = rng.standard_normal((M, N + pad)).astype(np.float32)[:, :N]
        if beta == 0.0:
            C0[...] = np.nan  # beta == 0 must not read C
        C = C0.copy() if pad == 0 else np.pad(C0, ((0, 0), (0, pad)), constant_values=7.0)[:, :N]
        outside = C.base[:, N:].copy() if pad else None
        want = alpha * (opA @ opB) + (beta * C0.astype(np.float64) if beta != 0.0 else 0.0)
        own_sgemm(ta, tb, alpha, A, B, beta, C, level=level)
        assert not np.isnan(C).any()
        np.testing.assert_allclose(C, want, rtol=1e-5, atol=scale * (1 + np.abs(want).max(initial=0)))
        if pad:
            np.testing.assert_array_equal(C.base[:, N:], outside)  # nothing written beyond each row's N columns


@needs_own
@pytest.mark.skipif(_best < 3, reason="needs AVX-512 to compare its kernels with the AVX2 ones")
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("M,N,K", SHAPES + [(256, 128, 784), (256, 1024, 1024), (33, 20, 600)])
def test_every_instruction_set_gives_the_same_bits(M, N, K, ta, tb):
    """AVX-512's 14 x 32 tiles and AVX2's 6 x 16 ones add each output's products in the same order (one fused
    multiply-add per k, then alpha, then beta C): a model trains to the same bits on either kind of CPU."""
    rng = np.random.default_rng(M + 7 * N + K)
    A, B = operands(rng, M, N, K, ta, tb, 1)
    C0 = rng.standard_normal((M, N)).astype(np.float32)
    out = {}
    for level in (2, 3):
        for threads in (1, 2):
            out[level, threads] = C0.copy()
            own_sgemm(ta, tb, -0.01, A, B, 1.0, out[level, threads], threads=threads, level=level)
    for C in out.values():
        np.testing.assert_array_equal(C, out[3, 1])


@needs_own
@pytest.mark.parametrize("level", LEVELS)
def test_special_values_propagate_like_blas(level):
    """inf and NaN in an operand reach exactly the outputs they feed, as in any BLAS."""
    A = np.ones((3, 4), np.float32)
    B = np.ones((4, 5), np.float32)
    A[1, 2] = np.inf
    B[0, 3] = np.nan
    C = np.zeros((3, 5), np.float32)
    own_sgemm(0, 0, 1.0, A, B, 0.0, C, level=level)
    want = A.astype(np.float64) @ B
    np.testing.assert_array_equal(np.isnan(C), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(C), np.isinf(want))


def _child(code, **env):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


WHO = "from fastnn.kernels import aot; print(aot.gemm())"


@needs_own
def test_the_kernels_take_it_unless_told_not_to():
    setting = os.environ.get("FASTNN_GEMM", "auto")
    auto = "fastnn-avx512" if _best == 3 else "openblas"  # on AVX2 CPUs OpenBLAS's kernels measured faster
    assert aot.gemm() == {"auto": auto, "avx2": "fastnn-avx2", "blas": "openblas"}[setting]
    assert _child(WHO, FASTNN_GEMM="blas") == "openblas"
    assert _child(WHO, FASTNN_GEMM="auto") == auto
    assert _child(WHO, FASTNN_GEMM="avx2") == "fastnn-avx2"


def test_a_bad_setting_is_named():
    out = subprocess.run([sys.executable, "-c", WHO], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FASTNN_GEMM": "mkl"})
    assert out.returncode != 0
    assert "FASTNN_GEMM" in out.stderr and "mkl" in out.stderr


FIT = """
    import hashlib, numpy as np, fastnn
    from fastnn import SGD, SoftmaxCrossEntropy, Linear, ReLU, Sequential
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 256)).astype(np.float32); y = rng.integers(0, 10, 2000)
    net = Sequential(Linear(256, 256, seed=1), ReLU(), Linear(256, 10, seed=2))  # 128 x 256 x 256: shared
    net.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(net.parameters(), lr=0.05), epochs=2, batch_size=128,
            seed=3, verbose=0)
    W = np.concatenate([p.data.ravel() for p in net.parameters()])
    np.save({path!r}, W)
    print(hashlib.sha256(W.tobytes()).hexdigest())
"""


@needs_own
def test_fits_are_bit_identical_at_any_thread_count_and_close_to_openblas(tmp_path):
    """fastnn's GEMM sums each tile in one order on one thread: unlike OpenBLAS's, its results do not change with
    the threads allowed (this net's first layer's calls are shared between two)."""
    paths = {k: str(tmp_path / f"{k}.npy") for k in ("one", "two", "blas")}
    own_gemm = "auto" if _best == 3 else "avx2"  # fastnn's own GEMM, whichever this CPU runs
    one = _child(FIT.format(path=paths["one"]), FASTNN_GEMM=own_gemm, FASTNN_BLAS_THREADS="1")
    two = _child(FIT.format(path=paths["two"]), FASTNN_GEMM=own_gemm, FASTNN_BLAS_THREADS="2")
    assert one == two
    _child(FIT.format(path=paths["blas"]), FASTNN_GEMM="blas", FASTNN_BLAS_THREADS="1")
    own, blas = np.load(paths["one"]), np.load(paths["blas"])
    assert not np.array_equal(own, blas)  # really another GEMM
    np.testing.assert_allclose(own, blas, rtol=1e-3, atol=1e-4)


PROFILE = """
    import importlib.util, sys, numpy as np
    sys.argv = ["profile_batch.py"]
    spec = importlib.util.spec_from_file_location("profile_batch", {path!r})
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from fastnn import kernels
    rng = np.random.default_rng(0)
    a, W = rng.standard_normal((64, 784)).astype(np.float32), rng.standard_normal((784, 128)).astype(np.float32)
    acts = (a, np.zeros((64, 128), np.float32))
    grads = (np.zeros((64, 784), np.float32), np.zeros((64, 128), np.float32))
    script._epoch_gemms(64, 64, acts, grads, (W.copy(),), np.float32(0))  # one batch: acts[1] = a W
    C = np.empty((64, 128), np.float32)
    kernels.get_backend("numba").matmul(a, W, C)  # the prebuilt kernels' GEMM
    print(script.GEMM, np.array_equal(acts[1], C), np.array_equal(acts[1], a @ W))
"""


@needs_own
def test_the_batch_profile_times_the_gemm_the_epoch_runs():
    """``scripts/profile_batch.py`` times the epoch's GEMM calls in a loop compiled by the JIT, whose kernels
    multiply with NumPy's BLAS: it points them at the prebuilt kernels' own entry first, so that under fastnn's own
    GEMM its GEMM column is that GEMM's (it was OpenBLAS's whatever the epoch ran). The products tell them apart:
    fastnn's sums each output in another order than OpenBLAS."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "profile_batch.py")
    own_gemm = "auto" if _best == 3 else "avx2"
    assert _child(PROFILE.format(path=path), FASTNN_GEMM=own_gemm) == f"{NAMES[_best]} True False"
    assert _child(PROFILE.format(path=path), FASTNN_GEMM="blas") == "openblas True True"


THREADED = [(200, 300, 100), (130, 70, 600), (256, 128, 784), (29, 1024, 256), (784, 10, 256)]  # >= 2M mult-adds


@needs_own
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("M,N,K", THREADED)
def test_more_threads_give_the_same_bits(M, N, K, ta, tb, level):
    """The threads share a call's tiles, each tile summed whole by one of them: the same bits as one thread,
    call after call (the helper threads sleep and wake between them)."""
    rng = np.random.default_rng(M + N + K)
    A, B = operands(rng, M, N, K, ta, tb, 0)
    C0 = rng.standard_normal((M, N)).astype(np.float32)
    alone = C0.copy()
    own_sgemm(ta, tb, -0.01, A, B, 1.0, alone, threads=1, level=level)
    np.testing.assert_allclose(alone, -0.01 * ((A.T if ta else A).astype(np.float64) @ (B.T if tb else B)) + C0,
                               rtol=1e-5, atol=1e-4)
    for threads in (2, 3, 2, 8):
        for _ in range(5):
            C = C0.copy()
            own_sgemm(ta, tb, -0.01, A, B, 1.0, C, threads=threads, level=level)
            np.testing.assert_array_equal(C, alone)


@needs_own
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("M,N,K,lda", [(30, 40, 1024, 1024), (23, 33, 300, 1024), (9, 70, 100, 2048),
                                       (256, 128, 1024, 1024)])
def test_rows_4k_apart_give_the_same_bits_as_any_other_layout(M, N, K, lda, tb):
    """op(A) rows a multiple of 1024 floats apart go through AVX-512 tiles of 8 rows instead of 14 (L1's sets):
    right, and the same bits as the same numbers laid out otherwise, on one thread or two."""
    rng = np.random.default_rng(M + K)
    wide = rng.standard_normal((M, lda)).astype(np.float32)
    A, other = wide[:, :K], np.ascontiguousarray(wide[:, :K])  # leading dimension lda, and K (or K + 1 below)
    if K == lda:
        other = np.pad(other, ((0, 0), (0, 1)))[:, :K]
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C0 = rng.standard_normal((M, N)).astype(np.float32)
    want = C0.copy()
    own_sgemm(0, tb, -0.01, other, B, 1.0, want)
    np.testing.assert_allclose(want, -0.01 * (A.astype(np.float64) @ (B.T if tb else B)) + C0, rtol=1e-5, atol=1e-4)
    for threads in (1, 2):
        C = C0.copy()
        own_sgemm(0, tb, -0.01, A, B, 1.0, C, threads=threads)
        np.testing.assert_array_equal(C, want)


@needs_own
def test_callers_in_several_threads_at_once():
    """Python threads calling at once (the exports release the GIL): one of them gets the helpers, the others
    run alone, every result right."""
    import threading
    rng = np.random.default_rng(5)
    A, B = operands(rng, 256, 128, 784, 0, 0, 0)
    want = np.zeros((256, 128), np.float32)
    own_sgemm(0, 0, 1.0, A, B, 0.0, want)
    bad = []

    def work():
        for _ in range(30):
            C = np.full((256, 128), np.nan, np.float32)
            own_sgemm(0, 0, 1.0, A, B, 0.0, C, threads=2)
            if not np.array_equal(C, want):
                bad.append(1)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@needs_own
def test_a_forked_child_multiplies_on_its_own_threads():
    """After fork the child has none of the parent's helper threads; it must start its own, not wait for them."""
    code = """
        import os, numpy as np
        from fastnn.kernels import get_backend
        K = get_backend("numba")  # the ahead-of-time kernels, which call fastnn's GEMM
        rng = np.random.default_rng(0)
        X = rng.standard_normal((256, 784)).astype(np.float32); W = rng.standard_normal((784, 128)).astype(np.float32)
        import threadpoolctl
        with threadpoolctl.threadpool_limits(2):
            first = K.matmul(X, W, np.empty((256, 128), np.float32)).copy()
            pid = os.fork()
            if pid == 0:
                again = K.matmul(X, W, np.empty((256, 128), np.float32))
                os._exit(0 if np.array_equal(again, first) else 3)
            _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """
    assert _child(code) == "0"


@needs_own
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_helpers_sharing_one_core_with_the_caller():
    """Pinned to one CPU, a helper is often descheduled in the middle of its piece: the caller waits for it, then
    runs alone for a while. No deadlock, and the same bits."""
    code = """
        import ctypes, os, numpy as np
        from fastnn.kernels import aot
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        lib = ctypes.CDLL(aot.load().__file__)
        f, level = lib.fastnn_own_sgemm, lib.fastnn_own_sgemm_available()
        I, P, F = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
        rng = np.random.default_rng(1)
        A = rng.standard_normal((256, 784)).astype(np.float32); B = rng.standard_normal((784, 128)).astype(np.float32)
        def mul(threads):
            C = np.full((256, 128), np.nan, np.float32)
            f(level, 0, 0, I(256), I(128), I(784), F(1.0), P(A.ctypes.data), I(784), P(B.ctypes.data), I(128), F(0.0),
              P(C.ctypes.data), I(128), ctypes.c_int(threads))
            return C
        alone = mul(1)
        print(all(np.array_equal(mul(2), alone) for _ in range(300)))
    """
    assert _child(code) == "True"
