"""Kernel backends: ``numba`` (compiled, the default) and ``numpy`` (the reference twin).

Each backend is two modules, the per-op kernels and the training step built from them;
both twins export the same names with the same signatures, so a layer asks
:func:`get_backend` for the module and calls e.g. ``K.relu_forward(x, out)``, and
:mod:`fastnn.fused` asks :func:`get_step` for ``train_batches``.
"""
import contextlib
import importlib

__all__ = ["BACKENDS", "get_backend", "get_step", "set_backend", "backend"]

# name -> (per-op kernels, training step)
BACKENDS = {"numba": ("fastnn.kernels.numba_cpu", "fastnn.kernels.step_numba"),
            "numpy": ("fastnn.kernels.numpy_ref", "fastnn.kernels.step_numpy")}
_current = "numba"


def _module(name, part=0):
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    return importlib.import_module(BACKENDS[name][part])


def get_backend(name=None):
    """Return the per-op kernel module for ``name`` (default: the active backend)."""
    return _module(_current if name is None else name)


def get_step(name=None):
    """Return the training-step module (``train_batches``) for ``name`` (default: the active backend)."""
    return _module(_current if name is None else name, 1)


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
