"""GEMM for the compiled kernels, from the same OpenBLAS that NumPy uses.

Numba's ``np.dot`` calls the OpenBLAS bundled with SciPy. NumPy's wheels bundle a
newer build (ILP64, with OpenBLAS's small-matrix kernels), and at the network's
shapes it is faster (docs/performance.md, "What made it fast", has the GEMM and epoch
times; ``tests/test_blas.py`` checks both give the same products). One library also
means one BLAS thread pool.

Mechanism: the address of NumPy's ``cblas_?gemm`` is registered with LLVM under a
fixed name (``fastnn_sgemm``/``fastnn_dgemm``), and the kernels declare that name
as an external function. Compiled code refers to the name, not to an address, so it
stays cacheable: every process registers the name at import, before any cached
kernel is loaded. Where NumPy's library has no ILP64 CBLAS (another NumPy build),
or with ``FASTNN_BLAS=numba``, the same names point at small adapters that call
Numba's own BLAS entry instead; the kernels cannot tell the difference.

``fastnn_srows``, the product of a few rows (``_aot_gemm.c``), is registered the same way: the ahead-of-time
extension's own where it is trusted, else a stub that declines, after which the kernel loops itself.
"""
import ctypes
import sys

import llvmlite.binding as ll
import numpy as np
from numba import cfunc
from numba.core import cgutils
from numba.core import types as nbt
from numba.extending import intrinsic

from fastnn._config import BLAS, jit
from fastnn.kernels._cblas import numpy_cblas

__all__ = ["SOURCE", "ROW_MAJOR", "NO_TRANS", "TRANS", "gemm_sig", "rows_sig", "gemm", "srows"]

# CBLAS: row-major order, ILP64 integers (the adapters accept the same).
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def gemm_sig(real):
    """The ``cblas_?gemm`` signature with ``real`` (float32 or float64) for alpha and beta."""
    i32, i64, ptr = nbt.int32, nbt.int64, nbt.voidptr
    return nbt.void(i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)


def rows_sig():
    """The signature of ``fastnn_srows`` (``_aot_gemm.c``): ``(M, N, K, X, ldx, W, ldw, b, out, ldo) -> done``."""
    i64, ptr = nbt.int64, nbt.voidptr
    return nbt.int32(i64, i64, i64, ptr, i64, ptr, i64, ptr, ptr, i64)


_ROWS_ARGS = (ctypes.c_int64,) * 3 + (ctypes.c_void_p, ctypes.c_int64) * 2 + (ctypes.c_void_p,) * 2 + (ctypes.c_int64,)


def _rows():
    """The address of ``fastnn_srows`` for the JIT's kernels and what keeps it valid: the ahead-of-time
    extension's where :func:`fastnn.kernels.aot.load` trusts it (built from these sources, for this CPU), else a
    callback that does nothing and says so (returns 0), after which the kernel runs its own loop."""
    from fastnn.kernels import aot  # noqa: PLC0415  (aot does not import this module)

    # The build (_aot_build) imports this module to compile the kernels from it; it links fastnn_srows itself and
    # must not load the extension it is about to replace.
    module = aot.load() if "fastnn.kernels._aot_build" not in sys.modules else None
    if module is not None:
        library = ctypes.CDLL(module.__file__)
        return ctypes.cast(library.fastnn_srows, ctypes.c_void_p).value, library
    stub = ctypes.CFUNCTYPE(ctypes.c_int32, *_ROWS_ARGS)(lambda *args: 0)
    return ctypes.cast(stub, ctypes.c_void_p).value, stub


# Numba's BLAS entry (what np.dot calls): column-major, alpha/beta by pointer, 's' or 'd' first.
_xxgemm = nbt.ExternalFunction("numba_xxgemm", nbt.intc(
    nbt.char, nbt.char, nbt.char, nbt.intp, nbt.intp, nbt.intp, nbt.voidptr, nbt.voidptr, nbt.intp, nbt.voidptr,
    nbt.intp, nbt.voidptr, nbt.voidptr, nbt.intp))


@intrinsic
def _on_stack(typingctx, value):
    """A pointer to a stack copy of the scalar ``value``: BLAS takes alpha and beta by address,
    and a heap array would be an allocation per call."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(cgutils.alloca_once_value(builder, args[0]), cgutils.voidptr_t)
    return nbt.voidptr(value), codegen


def _adapter(real, kind):
    """A C-callable ``cblas_?gemm`` (row-major only) that calls Numba's BLAS entry."""

    # Not through fastnn._config.jit: a C callback, compiled only where this fallback is used.
    @cfunc(gemm_sig(real))
    def gemm(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
        # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        _xxgemm(kind, 116 if trans_b == TRANS else 110, 116 if trans_a == TRANS else 110, N, M, K, _on_stack(alpha),
                B, ldb, A, lda, _on_stack(beta), C, ldc)

    return gemm


def _register():
    found = numpy_cblas() if BLAS == "numpy" else None
    if found is None:
        # Numba's BLAS entry is SciPy's; loaded only here (a third of fastnn's import time), and before any
        # step runs, so that threadpoolctl sees and limits it.
        import scipy.linalg.cython_blas  # noqa: F401
        adapters = _adapter(nbt.float32, 115), _adapter(nbt.float64, 100)
        found = tuple(a.address for a in adapters)
        _register.keep = adapters  # the compiled callbacks must outlive this call
        source = "numba"
    else:
        source = "numpy"
    # The JIT's kernels call the BLAS for every GEMM; fastnn's own float32 GEMM is in the ahead-of-time build only.
    ll.add_symbol("fastnn_sgemm", found[0])
    ll.add_symbol("fastnn_dgemm", found[1])
    address, _register.keep_rows = _rows()
    ll.add_symbol("fastnn_srows", address)
    return source


SOURCE = _register()
"""``"numpy"`` when the kernels call NumPy's OpenBLAS, ``"numba"`` when Numba's BLAS entry."""

# The names above as the compiled code calls them.
_sgemm = nbt.ExternalFunction("fastnn_sgemm", gemm_sig(nbt.float32))
_dgemm = nbt.ExternalFunction("fastnn_dgemm", gemm_sig(nbt.float64))
srows = nbt.ExternalFunction("fastnn_srows", rows_sig())
"""``fastnn_srows(M, N, K, X, ldx, W, ldw, b, out, ldo) -> done``: ``out = X W + b`` for a few float32 rows
(``numba_cpu._affine_rows``); 0 when it declined and did nothing."""


@jit
def gemm(A, trans_a, B, trans_b, alpha, beta, C):
    """``C = alpha op(A) op(B) + beta C``, ``op(A)`` being ``A.T`` when ``trans_a``; one BLAS call when
    all three are C-contiguous. ``beta == 0`` ignores what ``C`` held (NaN included), as BLAS does."""
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    if A.flags.c_contiguous and B.flags.c_contiguous and C.flags.c_contiguous:
        ta, tb = TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS
        lda, ldb, ldc = max(1, A.shape[1]), max(1, B.shape[1]), max(1, N)
        if C.itemsize == 4:
            _sgemm(ROW_MAJOR, ta, tb, M, N, K, np.float32(alpha), A.ctypes, lda, B.ctypes, ldb, np.float32(beta),
                   C.ctypes, ldc)
        else:
            _dgemm(ROW_MAJOR, ta, tb, M, N, K, np.float64(alpha), A.ctypes, lda, B.ctypes, ldb, np.float64(beta),
                   C.ctypes, ldc)
        return
    # Strided views (never in the training step, whose buffers are contiguous): plain loops,
    # accumulating in float64, rather than np.dot's copies and performance warnings.
    for i in range(M):
        for j in range(N):
            acc = 0.0
            for k in range(K):
                acc += (A[k, i] if trans_a else A[i, k]) * (B[j, k] if trans_b else B[k, j])
            C[i, j] = alpha * acc + (beta * C[i, j] if beta != 0 else 0)
