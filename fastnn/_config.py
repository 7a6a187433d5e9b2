"""The one place Numba options live.

Every ``@njit`` in fastnn is made by :func:`jit`, so caching, fastmath and
parallelism are decided here and nowhere else (``tests/test_config.py`` fails
if a ``fastmath=``/``cache=``/``parallel=`` keyword appears in another module).

Environment overrides, read once at import:

``FASTNN_CACHE=0``
    Do not write or read Numba's on-disk cache.
``FASTNN_FASTMATH=0``
    Compile the matmul-style loops without any fastmath flag (and without the
    on-disk cache, which would otherwise serve code compiled with them).
``FASTNN_BLAS=numpy|numba``
    Which BLAS the compiled kernels call: NumPy's OpenBLAS (default, faster at the
    network's shapes; falls back to Numba's when NumPy's has no ILP64 CBLAS) or the
    one Numba's ``np.dot`` uses (SciPy's). See :mod:`fastnn.kernels._blas`.
``FASTNN_BLAS_THREADS=N``
    BLAS threads for the compiled training step (default: chosen by batch size,
    see :func:`blas_threads`).
"""
import os
import warnings

import numba

__all__ = ["CACHE", "FAST_FLAGS", "BLAS", "BLAS_THREADS", "blas_threads", "jit"]


def _env_flag(name, default):
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"0", "false", "no", "off"}:
        return False
    if value in {"1", "true", "yes", "on"}:
        return True
    raise ValueError(f"{name} must be 0 or 1, got {value!r}")


_FASTMATH = _env_flag("FASTNN_FASTMATH", True)
# Numba's cache index keys on the source file, not on compile options: code cached
# with the fastmath flags would be loaded even with them off, so that mode compiles afresh.
CACHE = _env_flag("FASTNN_CACHE", True) and _FASTMATH


def _env_int(name):
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


BLAS = os.environ.get("FASTNN_BLAS", "").strip().lower() or "numpy"
if BLAS not in ("numpy", "numba"):
    raise ValueError(f"FASTNN_BLAS must be 'numpy' or 'numba', got {BLAS!r}")
BLAS_THREADS = _env_int("FASTNN_BLAS_THREADS")
# Measured (README, Speed; 2-vCPU AVX2 machine): a second BLAS thread cuts the epoch
# from 0.42 to 0.28 s at batch 32 and 0.40 to 0.25 s at 64, but only 0.53 to 0.47 s at 16,
# where with one core busy elsewhere it made the epoch 2.5x slower (1.25 s; one thread: 0.51 s).
MIN_BATCH_FOR_THREADS = 32


def blas_threads(batch_size):
    """BLAS threads for a training step on batches of ``batch_size`` rows.

    One level of parallelism at a time: the Numba kernels run serially, and
    BLAS gets every core only for batches of :data:`MIN_BATCH_FOR_THREADS` or more.
    """
    if BLAS_THREADS is not None:
        return BLAS_THREADS
    return 1 if batch_size < MIN_BATCH_FOR_THREADS else (os.cpu_count() or 1)

# LLVM flags for loops that may reassociate and contract sums. ``nnan`` and
# ``ninf`` are deliberately absent: with them ``np.isnan`` folds to False and a
# diverging run would hide its NaNs, so every kernel may use this set.
FAST_FLAGS = frozenset({"nsz", "arcp", "contract", "reassoc"}) if _FASTMATH else frozenset()


def jit(fn=None, *, fast=False, parallel=False):
    """Compile ``fn`` with fastnn's Numba options.

    Parameters
    ----------
    fn : callable
        A function that only loops over the arrays it is given.
    fast : bool
        Allow :data:`FAST_FLAGS` (reassociation, FMA contraction).
    parallel : bool
        Compile with ``parallel=True`` so ``numba.prange`` splits loops.

    Notes
    -----
    Numba raises ``RuntimeError`` at decoration time when no cache directory
    is writable (read-only site-packages and no writable home); the function
    is then compiled uncached, with a warning, instead of failing to import.
    """
    if fn is None:
        return lambda f: jit(f, fast=fast, parallel=parallel)
    # error_model="numpy": x / 0 gives inf/nan as in the NumPy twins, instead of a
    # ZeroDivisionError check per division that also stops LLVM vectorising the loop.
    options = {"nogil": True, "error_model": "numpy", "fastmath": set(FAST_FLAGS) if fast else False,
               "parallel": parallel}
    if CACHE:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError as exc:
            warnings.warn(
                f"fastnn: Numba cannot cache {fn.__qualname__} ({exc}); compiling without a cache. "
                "Set NUMBA_CACHE_DIR to a writable directory to keep compiled kernels.",
                RuntimeWarning,
                stacklevel=2,
            )
    return numba.njit(cache=False, **options)(fn)
