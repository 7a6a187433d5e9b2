"""The one place Numba options live.

Every ``@njit`` in fastnn is made by :func:`jit`, so caching, fastmath and
parallelism are decided here and nowhere else (``tests/test_config.py`` fails
if a ``fastmath=``/``cache=``/``parallel=`` keyword appears in another module).

Environment overrides, read once at import:

``FASTNN_CACHE=0``
    Do not write or read Numba's on-disk cache.
``FASTNN_FASTMATH=0``
    Compile the matmul-style loops without any fastmath flag.
"""
import os
import warnings

import numba

__all__ = ["CACHE", "FAST_FLAGS", "jit"]


def _env_flag(name, default):
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"0", "false", "no", "off"}:
        return False
    if value in {"1", "true", "yes", "on"}:
        return True
    raise ValueError(f"{name} must be 0 or 1, got {value!r}")


CACHE = _env_flag("FASTNN_CACHE", True)

# LLVM flags for loops that may reassociate and contract sums. ``nnan`` and
# ``ninf`` are deliberately absent: with them ``np.isnan`` folds to False and a
# diverging run would hide its NaNs, so every kernel may use this set.
FAST_FLAGS = (
    frozenset({"nsz", "arcp", "contract", "reassoc"})
    if _env_flag("FASTNN_FASTMATH", True)
    else frozenset()
)


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
    options = {"nogil": True, "fastmath": set(FAST_FLAGS) if fast else False, "parallel": parallel}
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
