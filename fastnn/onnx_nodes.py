"""The ONNX nodes of each layer and loss head: ``builder(layer, x, g) -> output name``, ``head(x, g) -> output name``.

``x`` is the name of the input, ``g`` the graph under construction (:class:`fastnn.export._Graph`: ``g.node``,
``g.const``, ``g.dtype``). Nothing here imports onnx; :mod:`fastnn.registry` gives each activation and loss its
builder, :mod:`fastnn.export` puts them together.
"""
import math

import numpy as np

__all__ = ["linear", "elementwise", "elu", "gelu_tanh", "softmax", "identity", "head"]


def _param(layer, key, default=None):
    """A layer's hyperparameter, from ``get_config()`` (what save/load rebuilds it from), else its attribute."""
    config = layer.get_config()
    if key in config:
        return config[key]
    value = getattr(layer, key, default)
    if value is None:
        raise ValueError(f"cannot export {layer!r}: it has no {key!r} in get_config() or as an attribute")
    return value


def linear(layer, x, g):
    # Gemm: Y = X W + b in one node, W stored as (in, out) exactly as fastnn holds it.
    return g.node("Gemm", [x, g.const("W", layer.W.data), g.const("b", layer.b.data)], "linear")


def elementwise(op, **attrs_from_layer):
    """The builder of a one-node activation ``op``, its attributes read from the layer (ONNX name=layer key)."""
    def build(layer, x, g):
        attrs = {name: float(_param(layer, key)) for name, key in attrs_from_layer.items()}
        return g.node(op, [x], **attrs)
    return build


def elu(layer, x, g):
    alpha = float(_param(layer, "alpha"))
    if g.dtype == np.float32:
        return g.node("Elu", [x], alpha=alpha)
    # onnxruntime has no float64 Elu kernel: x > 0 ? x : alpha (exp(min(x, 0)) - 1) from elementary ops.
    zero = g.const("zero", 0.0)
    negative = g.node("Mul", [g.node("Sub", [g.node("Exp", [g.node("Min", [x, zero])]), g.const("one", 1.0)]),
                              g.const("alpha", alpha)])
    return g.node("Where", [g.node("Greater", [x, zero]), x, negative], "elu")


def softmax(layer, x, g):
    return g.node("Softmax", [x], axis=-1)


def gelu_tanh(layer, x, g):
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation, from opset-17 ops.
    cube = g.node("Mul", [g.node("Mul", [x, x]), x])
    inner = g.node("Mul", [g.node("Add", [x, g.node("Mul", [cube, g.const("c", 0.044715)])]),
                           g.const("k", math.sqrt(2 / math.pi))])
    one_plus = g.node("Add", [g.node("Tanh", [inner]), g.const("one", 1.0)])
    return g.node("Mul", [g.node("Mul", [x, one_plus]), g.const("half", 0.5)], "gelu")


def identity(layer, x, g):
    return g.node("Identity", [x], "dropout")  # Dropout is the identity at inference


def head(op, stem, **attrs):
    """A loss's head: the one node turning the model's outputs into what they mean (``Loss.output``)."""
    def build(x, g):
        return g.node(op, [x], stem, **attrs)
    return build
