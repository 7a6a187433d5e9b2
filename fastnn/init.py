"""Weight initialisers, drawn with a ``numpy.random.Generator`` (same seed, same weights).

Each takes ``(rng, fan_in, fan_out, dtype)`` and returns an array of shape
``(fan_in, fan_out)``, the layout of :class:`fastnn.Linear`'s ``W``.
"""
import numpy as np

from fastnn._check import CALLABLE, Options, check

__all__ = ["he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "get_initializer", "names",
           "is_known_name", "name_of"]


def he_normal(rng, fan_in, fan_out, dtype):
    """He et al. (2015): ``N(0, 2 / fan_in)``, for ReLU layers."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(rng, fan_in, fan_out, dtype):
    """He uniform: ``U(-a, a)`` with ``a = sqrt(6 / fan_in)``."""
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, (fan_in, fan_out)).astype(dtype)


def glorot_normal(rng, fan_in, fan_out, dtype):
    """Glorot & Bengio (2010): ``N(0, 2 / (fan_in + fan_out))``, for tanh/sigmoid layers."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def glorot_uniform(rng, fan_in, fan_out, dtype):
    """Glorot uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, (fan_in, fan_out)).astype(dtype)


_INITIALIZERS = {
    "he": he_normal, "he_normal": he_normal, "he_uniform": he_uniform,
    "glorot": glorot_uniform, "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "xavier": glorot_uniform,
}


def get_initializer(init):
    """Resolve ``init`` (a name such as ``"he"``/``"glorot_normal"`` or a callable)."""
    init = check("init", init, CALLABLE, Options(*sorted(_INITIALIZERS)))
    return init if callable(init) else _INITIALIZERS[init]


def names():
    """The initialiser names :func:`get_initializer` accepts (what a saved model's ``init`` may say)."""
    return sorted(_INITIALIZERS) + ["custom"]


def is_known_name(name):
    """True if ``name`` is one of :func:`names` (``"custom"``: a callable that is not one of these)."""
    return isinstance(name, str) and (name in _INITIALIZERS or name == "custom")


def name_of(init):
    """The name under which ``init`` (a name or a callable) is recorded in a model's config.

    fastnn's own initialisers keep their names; any other callable is ``"custom"``.
    """
    if isinstance(init, str):
        return init
    return init.__name__ if _INITIALIZERS.get(getattr(init, "__name__", None)) is init else "custom"
