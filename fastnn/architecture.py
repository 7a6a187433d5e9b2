"""What a saved architecture declares: its parameters' names, shapes and dtypes, checked before anything is built.

A model file's architecture comes from anyone: :func:`parameter_specs` reads it without building a layer that
allocates, and :func:`check_file` is the check :func:`fastnn.io.read_model` runs on the file's members before it
decompresses any (:meth:`fastnn.Sequential.load`).
"""
import inspect
import math

from fastnn import init as _init
from fastnn import io as _io
from fastnn._check import POSITIVE_INT, Options, check
from fastnn._validation import as_float_dtype
from fastnn.layers import LAYERS, Linear

__all__ = ["parameter_specs", "check_arrays", "check_file"]


def parameter_specs(architecture):
    """``{name: (shape, dtype)}`` of the parameters ``architecture`` declares, building and allocating nothing.

    Raises ``ValueError`` (or ``TypeError`` for a dtype) naming the layer for an unknown class, an unknown
    config key, a value its layer would not accept, or parameters larger than this machine's memory.
    """
    specs = {}
    for i, entry in enumerate(architecture):
        layer_cls = LAYERS.get(entry["class"])
        if layer_cls is None:
            raise ValueError(f"layer {i}: unknown layer class {entry['class']!r} (known: {sorted(LAYERS)})")
        config = entry["config"]
        accepted = set(inspect.signature(layer_cls).parameters) - {"seed"}  # seeds are not saved
        if unknown := sorted(set(config) - accepted):
            raise ValueError(f"layer {i} ({layer_cls.__name__}): unknown config key(s) {unknown}; "
                             f"expected some of {sorted(accepted)}")
        try:
            if layer_cls is Linear:  # its parameters' sizes come from the config: check them before allocating
                n_in = check("in_features", config.get("in_features"), POSITIVE_INT)
                n_out = check("out_features", config.get("out_features"), POSITIVE_INT)
                dtype = as_float_dtype(config.get("dtype", "float32"))
                init = config.get("init", "he")
                check("init", init, Options(*_init.names()))
                specs[f"{i}.W"], specs[f"{i}.b"] = ((n_in, n_out), dtype), ((n_out,), dtype)
            else:  # the other layers hold no parameters sized by their config: building one allocates nothing
                for p in layer_cls(**config).parameters():
                    specs[f"{i}.{p.name}"] = (p.data.shape, p.data.dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layer {i} ({layer_cls.__name__}): {exc}") from None
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in specs.values())
    if total > (memory := _io.physical_memory()):
        raise ValueError(f"the architecture declares {total:,} bytes of parameters, more than this machine's "
                         f"{memory:,} bytes of memory")
    return specs


def check_arrays(specs, found):
    """Raise ``ValueError`` unless ``found`` (``{name: (shape, dtype)}``) holds exactly the parameters ``specs``."""
    if set(specs) != set(found):
        raise ValueError(f"parameters {sorted(found)} do not match the architecture's {sorted(specs)}")
    for name, (shape, dtype) in specs.items():
        if tuple(found[name][0]) != shape or found[name][1] != dtype:
            raise ValueError(f"parameter {name} has shape {tuple(found[name][0])} dtype {found[name][1]}, "
                             f"expected {shape} {dtype}")


def check_file(architecture, members):
    """``read_model``'s check: the members must be the architecture's parameters, before any is read."""
    try:
        specs = parameter_specs(architecture)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid architecture in model file: {exc}") from None
    check_arrays(specs, members)
