"""Kernel backends: ``numba`` (compiled, the default) and ``numpy`` (the reference twin).

Each backend is two modules, the per-op kernels and the training step built from them;
both twins export the same names with the same signatures, so a layer asks
:func:`get_backend` for the module and calls e.g. ``K.relu_forward(x, out)``, and
:mod:`fastnn.fused` asks :func:`get_step` for ``train_batches``.

The ``numba`` backend is the kernels built ahead of time at install (:mod:`fastnn.kernels.aot`) where they
exist and can be trusted, and Numba's JIT (:mod:`numba_cpu`, :mod:`step_numba`) for everything else: Numba
is imported only when something needs the JIT.
"""
import contextlib
import contextvars
import importlib

from fastnn._check import Options, check

__all__ = ["BACKENDS", "get_backend", "get_step", "set_backend", "backend", "compiled_by"]

# name -> (per-op kernels, training step)
BACKENDS = {"numba": ("fastnn.kernels.numba_cpu", "fastnn.kernels.step_numba"),
            "numpy": ("fastnn.kernels.numpy_ref", "fastnn.kernels.step_numpy")}
_default = "numba"  # set_backend: the process's
# backend(): this thread's or task's, over the default; contextvars make overlapping blocks in several
# threads each restore their own.
_override = contextvars.ContextVar("fastnn_backend", default=None)


def _active():
    return _override.get() or _default


class _Compiled:
    """The ``numba`` backend's module ``path``: each name resolved once, to the ahead-of-time export (checked
    per call, see :func:`fastnn.kernels.aot.kernel`) or the JIT module's function."""

    def __init__(self, path):
        self._path = path
        self.__name__ = path  # it stands for that module

    def _jit(self):
        return importlib.import_module(self._path)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        from fastnn.kernels import aot  # noqa: PLC0415

        module = aot.load() if name in aot.EXPORTS else None
        if module is not None:
            found = aot.kernel(module, name, lambda: getattr(self._jit(), name))
        else:
            found = getattr(self._jit(), name)
        setattr(self, name, found)
        return found

    def __dir__(self):
        return list(self._jit().__all__)


_COMPILED = tuple(_Compiled(path) for path in BACKENDS["numba"])


_BACKEND = Options(*sorted(BACKENDS))


def _module(name, part=0):
    if type(name) is not str or name not in BACKENDS:  # the check raises; it costs a single-row predict 1.4 us
        check("backend", name, _BACKEND)
    if name == "numba":
        return _COMPILED[part]
    return importlib.import_module(BACKENDS[name][part])


def get_backend(name=None):
    """Return the per-op kernel module for ``name`` (default: the active backend)."""
    return _module(_active() if name is None else name)


def get_step(name=None):
    """Return the training-step module (``train_batches``) for ``name`` (default: the active backend)."""
    return _module(_active() if name is None else name, 1)


def compiled_by(name=None):
    """Which code runs the training step of backend ``name``: ``"aot"`` (built at install), ``"jit"``
    (Numba's JIT) or ``"numpy"``."""
    name = _active() if name is None else name
    if name != "numba":
        return name
    from fastnn.kernels import aot  # noqa: PLC0415

    return "aot" if aot.load() is not None else "jit"


def set_backend(name):
    """Make ``name`` (``"numba"`` or ``"numpy"``) the process's backend, for every thread outside a
    :func:`backend` block."""
    global _default
    _module(name)
    _default = name


@contextlib.contextmanager
def backend(name):
    """Use backend ``name`` inside a ``with`` block, in this thread (or asyncio task) only; the one before is
    back after it, whatever other threads' blocks do meanwhile."""
    _module(name)
    token = _override.set(name)
    try:
        yield get_backend()
    finally:
        _override.reset(token)
