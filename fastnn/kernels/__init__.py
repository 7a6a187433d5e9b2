"""Kernel backends: ``numba`` (compiled, the default) and ``numpy`` (the reference twin).

Both modules export the same names with the same signatures, so a layer asks
:func:`get_backend` for the module and calls e.g. ``K.relu_forward(x, out)``.
"""
import contextlib
import importlib

__all__ = ["BACKENDS", "get_backend", "set_backend", "backend"]

BACKENDS = {"numba": "fastnn.kernels.numba_cpu", "numpy": "fastnn.kernels.numpy_ref"}
_current = "numba"


def _module(name):
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    return importlib.import_module(BACKENDS[name])


def get_backend(name=None):
    """Return the kernel module for ``name`` (default: the active backend)."""
    return _module(_current if name is None else name)


def set_backend(name):
    """Make ``name`` (``"numba"`` or ``"numpy"``) the active backend for all layers."""
    global _current
    _module(name)
    _current = name


@contextlib.contextmanager
def backend(name):
    """Use backend ``name`` inside a ``with`` block, restoring the previous one after."""
    global _current
    _module(name)
    previous, _current = _current, name
    try:
        yield get_backend()
    finally:
        _current = previous
