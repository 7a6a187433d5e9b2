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
"""
import llvmlite.binding as ll
from numba import cfunc
from numba.core import cgutils
from numba.core import types as nbt
from numba.extending import intrinsic

from fastnn._config import BLAS
from fastnn.kernels._cblas import numpy_cblas

__all__ = ["SOURCE", "ROW_MAJOR", "NO_TRANS", "TRANS", "gemm_sig"]

# CBLAS: row-major order, ILP64 integers (the adapters accept the same).
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def gemm_sig(real):
    """The ``cblas_?gemm`` signature with ``real`` (float32 or float64) for alpha and beta."""
    i32, i64, ptr = nbt.int32, nbt.int64, nbt.voidptr
    return nbt.void(i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)


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
    return source


SOURCE = _register()
"""``"numpy"`` when the kernels call NumPy's OpenBLAS, ``"numba"`` when Numba's BLAS entry."""
