"""Numba's on-disk cache, healing itself: used by :func:`fastnn._config.jit` (imported only where the JIT is)."""
import glob
import os

from numba.core.caching import FunctionCache

from fastnn._config import _warn_once

__all__ = ["HealingCache"]


class HealingCache(FunctionCache):
    """Numba's on-disk cache of one function, where an entry that cannot be read counts as absent.

    Numba's own ``Cache.load_overload`` lets ``UnpicklingError``, ``UnicodeDecodeError``, ``EOFError`` ...
    from a truncated or foreign ``.nbi`` index or ``.nbc`` data file escape, at every later call, until
    someone deletes the files; its ``save_overload`` reads the same index first and fails the same way.
    Here the function's cache files are removed, the fault is reported once per process, and the function
    is compiled (and saved) afresh.
    """

    def load_overload(self, sig, target_context):
        try:
            cres = super().load_overload(sig, target_context)
            # An entry copied from another function loads without complaint and would run that function.
            fndesc, fn = getattr(cres, "fndesc", None), self._py_func
            if fndesc is not None and (fndesc.modname, fndesc.qualname) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"the entry holds {fndesc.modname}.{fndesc.qualname}")
            return cres
        except Exception as exc:  # noqa: BLE001 - whatever a damaged entry raises, compiling afresh is right
            self._discard(exc)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written must not fail the caller
            self._discard(exc)
            try:
                super().save_overload(sig, data)
            except Exception as again:  # noqa: BLE001
                _warn_once(("save", self.cache_path), f"fastnn: cannot write Numba's cache in {self.cache_path} "
                           f"({type(again).__name__}: {again}); compiled kernels are not kept")

    def _discard(self, exc):
        files = self._cache_file
        base = os.path.join(self.cache_path, files._index_name[:-len(".nbi")])
        _warn_once(("damaged", self.cache_path),
                   f"fastnn: a damaged or foreign Numba cache entry in {self.cache_path} "
                   f"({os.path.basename(base)}: {type(exc).__name__}: {str(exc)[:100]}) was removed and is "
                   "being recompiled; further ones are repaired without a warning")
        for path in [base + ".nbi"] + glob.glob(glob.escape(base) + ".*.nbc"):
            try:
                os.unlink(path)
            except OSError:
                pass
