"""Where NumPy's OpenBLAS keeps its ILP64 ``cblas_?gemm``: the GEMM both the JIT (:mod:`._blas`) and the
ahead-of-time kernels (:mod:`.aot`) call. Numba-free, so that finding it does not import Numba."""
import ctypes

from fastnn._config import blas_libraries

__all__ = ["numpy_cblas"]


def numpy_cblas():
    """Addresses of NumPy's ILP64 ``cblas_sgemm``/``cblas_dgemm`` and of its ``openblas_get_num_threads`` (None
    where the library has none), or None."""
    for info in blas_libraries():  # only NumPy's build exports the ILP64 names below
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:  # listed by threadpoolctl but not loadable by path: not ours to use
            continue
        for prefix, threads in (("scipy_cblas_", "scipy_openblas_get_num_threads64_"),  # scipy-openblas64 wheels
                                ("cblas_", "openblas_get_num_threads64_")):  # a plain ILP64 build
            try:
                s, d = (getattr(lib, f"{prefix}{k}gemm64_") for k in "sd")
            except AttributeError:
                continue
            get_threads = getattr(lib, threads, None)
            return tuple(None if f is None else ctypes.cast(f, ctypes.c_void_p).value for f in (s, d, get_threads))
    return None
