"""ONNX export of a :class:`fastnn.Sequential` or a fitted :class:`fastnn.MLPClassifier` / :class:`fastnn.MLPRegressor`.

The graph is built with ``onnx.helper`` (``pip install 'fastnn[onnx]'``; onnx is imported on first use only) at
**opset 17** and IR version 8: the opset of ONNX 1.12, which every maintained runtime reads (onnxruntime >= 1.13),
and recent enough for ``Softmax(axis=-1)`` to mean the last axis alone (opset 13 changed it from "flatten from
axis"). The one op that would need a newer opset, ``Gelu`` (opset 20), is written out from elementary ops instead.

What the graph computes, with input ``X`` of shape ``(batch, n_features)`` in the model's dtype:

* a ``Sequential``: output ``Y`` = ``model.predict(X)`` (logits for a classifier trained with
  ``SoftmaxCrossEntropy``; probabilities if it ends with ``Softmax``);
* an ``MLPClassifier``: outputs ``label`` = ``predict(X)`` (the ``classes_`` values: int64, float64, bool or
  string) and ``probabilities`` = ``predict_proba(X)`` in the model's dtype (float32 by default, where scikit-learn
  returns float64);
* an ``MLPRegressor``: output ``Y`` = ``predict(X)``, of shape ``(batch,)`` for one target, else
  ``(batch, n_targets)``.

A ``Sequential`` with preprocessing (:mod:`fastnn.preprocessing`) carries it into the graph:

* ``preprocessing=Standardize``: input ``X`` is float64 (the standardization is computed in float64, as
  ``predict`` computes it, then cast to the model's dtype);
* ``preprocessing=Table``: input ``X`` is float64 ``(batch, n_numeric)``, the numeric columns in the table's order
  (NaN where a cell is missing: imputed in the graph), plus one string input ``(batch, 1)`` per categorical column,
  named after it ("" where a cell is missing); one-hot codes come from ``ai.onnx.ml`` ``LabelEncoder``, an unseen
  category gives all zeros;
* ``target=Labels``: outputs ``label`` (the class labels) and ``probabilities``;
* ``target=Standardize``: output ``Y`` in the target's units.

Every layer class maps to one builder in :data:`BUILDERS` (:mod:`fastnn.onnx_nodes`): an activation's is the ``onnx``
column of its :data:`fastnn.registry.ACTIVATIONS` row, so supporting a new activation is its row.
"""
import sys

import numpy as np

from fastnn import onnx_nodes
from fastnn._check import PATH, check
from fastnn.io import atomic_write
from fastnn.layers import Dropout, Linear, Softmax
from fastnn.registry import ACTIVATIONS, LOSSES

__all__ = ["export_onnx", "to_onnx", "BUILDERS", "OPSET"]

OPSET = 17
ML_OPSET = 2  # ai.onnx.ml: LabelEncoder with string keys and int64 values
IR_VERSION = 8


def _onnx():
    try:
        import onnx  # noqa: PLC0415  (optional extra)
        import onnx.checker  # noqa: PLC0415, F401
        import onnx.numpy_helper  # noqa: PLC0415, F401
    except ImportError:
        raise ImportError("ONNX export needs the onnx package, an optional extra of fastnn: "
                          "pip install 'fastnn[onnx]' (or pip install onnx onnxruntime)") from None
    return onnx


class _Graph:
    """Nodes and initialisers under construction, with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem, value, dtype=None):
        """An initialiser holding ``value`` (in the graph's dtype unless ``dtype``); returns its name."""
        name = self.name(stem)
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, stem=None, **attrs):
        """Append one ``op`` node; returns its (single) output name."""
        out = self.name(stem or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=self.name(op), **attrs))
        return out


# layer class -> builder(layer, input name, graph) -> output name; each activation's is its registry row's.
BUILDERS = {Linear: onnx_nodes.linear, Softmax: onnx_nodes.softmax, Dropout: onnx_nodes.identity,
            **{row.cls: row.onnx for row in ACTIVATIONS if row.cls is not None}}


def _preprocessing(model, g, helper):
    """The graph inputs and the nodes that turn them into the network's input; ``(inputs, name, uses_ml)``."""
    from fastnn import preprocessing as pre  # noqa: PLC0415

    p, double = getattr(model, "preprocessing", None), _tensor_type(np.float64)
    if p is None:
        return [helper.make_tensor_value_info("X", _tensor_type(model.dtype), ["batch", model.n_features_in])], \
            "X", False
    if isinstance(p, pre.Standardize):
        z = g.node("Div", [g.node("Sub", ["X", g.const("mean", p.mean_, np.float64)]),
                           g.const("std", p.std_, np.float64)], "standardized")
        return [helper.make_tensor_value_info("X", double, ["batch", p.n_columns])], \
            g.node("Cast", [z], "features", to=_tensor_type(model.dtype)), False
    numbers = [c for c in p.columns_ if c["kind"] == "number"]
    inputs, blocks, order, width = [], [], [], 0  # order: each output feature's position in concat(blocks)
    if numbers:
        inputs.append(helper.make_tensor_value_info("X", double, ["batch", len(numbers)]))
        x = "X"
        if all(c["fill"] is not None for c in numbers):
            x = g.node("Where", [g.node("IsNaN", ["X"]), g.const("fill", [c["fill"] for c in numbers], np.float64),
                                 "X"], "imputed")
        z = g.node("Div", [g.node("Sub", [x, g.const("mean", [c["mean"] for c in numbers], np.float64)]),
                           g.const("std", [c["std"] for c in numbers], np.float64)], "standardized")
        blocks.append(g.node("Cast", [z], "numbers", to=_tensor_type(model.dtype)))
        width = len(numbers)
    i_num = 0
    for c in p.columns_:
        if c["kind"] == "number":
            order.append(i_num)
            i_num += 1
            continue
        cats = c["categories"]
        keys, values = list(cats), list(range(len(cats)))
        if c["fill"] is not None:  # a missing cell ("") is the most frequent category, as predict imputes it
            keys.append("")
            values.append(cats.index(c["fill"]))
        inputs.append(helper.make_tensor_value_info(c["name"], _tensor_type(np.str_), ["batch", 1]))
        code = g.name("code")
        g.nodes.append(helper.make_node("LabelEncoder", [c["name"]], [code], name=g.name("LabelEncoder"),
                                        domain="ai.onnx.ml", keys_strings=keys, values_int64s=values,
                                        default_int64=-1))
        hot = g.node("Equal", [code, g.const("codes", np.arange(len(cats)), np.int64)], "is")
        blocks.append(g.node("Cast", [hot], "one_hot", to=_tensor_type(model.dtype)))
        order += range(width, width + len(cats))
        width += len(cats)
    x = blocks[0] if len(blocks) == 1 else g.node("Concat", blocks, "columns", axis=1)
    if order != list(range(width)):
        x = g.node("Gather", [x, g.const("order", order, np.int64)], "features", axis=1)
    return inputs, x, len(blocks) > (1 if numbers else 0)


def _network(model, g, x):
    for i, layer in enumerate(model.layers):
        builder = BUILDERS.get(type(layer))
        if builder is None:
            raise ValueError(f"cannot export layer {i}, {layer!r}: no ONNX builder for {type(layer).__name__} "
                             f"(supported: {', '.join(cls.__name__ for cls in BUILDERS)})")
        x = builder(layer, x, g)
    return x


def _tensor_type(dtype):
    """ONNX element type of a numpy dtype (string-like dtypes become STRING)."""
    from onnx import TensorProto  # noqa: PLC0415

    dtype = np.dtype(dtype)
    if dtype.kind in "USO":
        return TensorProto.STRING
    return {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
            np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32,
            np.dtype(np.bool_): TensorProto.BOOL}[dtype]


def to_onnx(model, name="fastnn"):
    """The ONNX ``ModelProto`` of ``model`` (a ``Sequential`` or a fitted fastnn estimator), checked.

    Raises
    ------
    ImportError
        Without the onnx package.
    ValueError
        For a layer without a builder, or an estimator that is not fitted.
    TypeError
        For anything else.
    """
    onnx = _onnx()
    from fastnn.model import Sequential  # noqa: PLC0415

    estimator, mlp = None, sys.modules.get("fastnn.estimators")  # an estimator exists only once they are loaded
    if not isinstance(model, Sequential):
        if mlp is None or not isinstance(model, (mlp.MLPClassifier, mlp.MLPRegressor)):
            raise TypeError(f"export_onnx takes a fastnn.Sequential or a fastnn MLPClassifier/MLPRegressor, got "
                            f"{type(model).__name__}")
        if not hasattr(model, "model_"):
            raise ValueError(f"this {type(model).__name__} is not fitted yet; call fit before exporting it")
        estimator, model = model, model.model_
    g = _Graph(onnx, model.dtype)
    helper = onnx.helper
    inputs, x, uses_ml = _preprocessing(model, g, helper)
    out = _network(model, g, x)
    if estimator is not None:
        outputs = _estimator_outputs(estimator, isinstance(estimator, mlp.MLPClassifier), g, helper, out)
    elif model.target is not None:
        outputs = _target_outputs(model, g, helper, out)
    else:
        _named(g, "Y")  # the last layer's node writes the graph output
        outputs = [helper.make_tensor_value_info("Y", _tensor_type(model.dtype), ["batch", model.n_outputs])]
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("ai.onnx.ml", ML_OPSET)] if uses_ml else [])
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn", ir_version=IR_VERSION)
    proto.doc_string = f"fastnn {type(estimator or model).__name__}: " + ", ".join(map(repr, model.layers))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _named(g, name):
    """Make the last node's output the graph's output ``name``; returns it."""
    g.nodes[-1].output[0] = name
    return name


def _estimator_outputs(estimator, classifier, g, helper, out):
    """``label`` and ``probabilities`` of a classifier, ``Y`` of a regressor: the estimator's outputs ``out`` through
    the head of the loss it trains with (the row of :data:`fastnn.registry.LOSSES` for its ``out_activation_``)."""
    head = next(row.onnx for row in LOSSES if row.out_activation == estimator.out_activation_)
    n, elem, int64 = estimator.n_outputs_, _tensor_type(g.dtype), _tensor_type(np.int64)
    if not classifier:
        out = out if head is None else head(out, g)
        if n == 1:
            g.nodes.append(helper.make_node("Squeeze", [out, g.const("axis", [1], np.int64)], ["Y"], name="output"))
            return [helper.make_tensor_value_info("Y", elem, ["batch"])]
        g.nodes.append(helper.make_node("Identity", [out], ["Y"], name="output"))
        return [helper.make_tensor_value_info("Y", elem, ["batch", n])]
    if n > 1 and estimator.out_activation_ == "logistic":  # multi-label: independent sigmoids, 0/1 indicator
        head(out, g)
        above = g.node("Greater", [_named(g, "probabilities"), g.const("half", [0.5])], "above")
        g.nodes.append(helper.make_node("Cast", [above], ["label"], name="label", to=int64))
        return [helper.make_tensor_value_info("label", int64, ["batch", n]),
                helper.make_tensor_value_info("probabilities", elem, ["batch", n])]
    classes = np.asarray(estimator.classes_)
    if classes.dtype.kind in "USO":
        classes = classes.astype(str).astype(object)
    elif classes.dtype.kind in "iu":
        classes = classes.astype(np.int64)
    if n == 1:  # binary: one logistic unit, probabilities [1 - p, p]
        p = head(out, g)
        g.nodes.append(helper.make_node("Concat", [g.node("Sub", [g.const("one", [[1.0]]), p], "q"), p],
                                        ["probabilities"], name="probabilities", axis=1))
        above = g.node("Greater", [p, g.const("half", [[0.5]])], "above")
        flat = g.node("Squeeze", [above, g.const("axis", [1], np.int64)], "above_flat")
        index = g.node("Cast", [flat], "class_index", to=int64)
    else:
        index = g.node("ArgMax", [out], "class_index", axis=1, keepdims=0)
        head(out, g)
        _named(g, "probabilities")
    g.nodes.append(helper.make_node("Gather", [g.const("classes", classes, classes.dtype), index], ["label"],
                                    name="label", axis=0))
    return [helper.make_tensor_value_info("label", _tensor_type(classes.dtype), ["batch"]),
            helper.make_tensor_value_info("probabilities", elem, ["batch", len(classes)])]


def _target_outputs(model, g, helper, out):
    """``label``/``probabilities`` for a ``Labels`` target, ``Y`` in the target's units for a ``Standardize``."""
    from fastnn import preprocessing as pre  # noqa: PLC0415
    from fastnn.layers import Softmax  # noqa: PLC0415

    target, elem = model.target, _tensor_type(model.dtype)
    if isinstance(target, pre.Standardize):
        y = g.node("Add", [g.node("Mul", [g.node("Cast", [out], "outputs", to=_tensor_type(np.float64)),
                                          g.const("std", target.std_, np.float64)]),
                           g.const("mean", target.mean_, np.float64)], "units")
        g.nodes.append(helper.make_node("Cast", [y], ["Y"], name="output", to=elem))
        return [helper.make_tensor_value_info("Y", elem, ["batch", model.n_outputs])]
    classes = target.classes_
    if classes.dtype.kind == "O":
        classes = classes.astype(str).astype(object)
    if isinstance(model.layers[-1], Softmax):
        g.nodes.append(helper.make_node("Identity", [out], ["probabilities"], name="probabilities"))
    else:
        LOSSES["SoftmaxCrossEntropy"].onnx(out, g)  # the head of the loss a Labels target trains with
        _named(g, "probabilities")
    index = g.node("ArgMax", [out], "class_index", axis=1, keepdims=0)
    g.nodes.append(helper.make_node("Gather", [g.const("classes", classes, classes.dtype), index], ["label"],
                                    name="label", axis=0))
    return [helper.make_tensor_value_info("label", _tensor_type(classes.dtype), ["batch"]),
            helper.make_tensor_value_info("probabilities", elem, ["batch", len(classes)])]


def export_onnx(model, path):
    """Write ``model`` (a ``Sequential`` or a fitted ``MLPClassifier``/``MLPRegressor``) to ``path`` as ONNX.

    See the module documentation for the graph's inputs and outputs. Returns the ``onnx.ModelProto`` written.
    """
    check("path", path, PATH)
    proto = to_onnx(model)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto
