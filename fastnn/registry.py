"""One table per concept: every activation, loss and optimizer of fastnn is one row, and every consumer reads it.

* :data:`ACTIVATIONS` -- names, cls, init, sklearn, onnx; code, needs_input. Read by the compiled step's planner
  (:mod:`fastnn.fused`), the CLI (``--activation``), the estimators (``activation``), export and the kernel
  benchmarks.
* :data:`LOSSES` -- names, cls, codes, sklearn, out_activation, onnx. Read by ``fit(loss=name)``, the planner,
  the estimators (``MLPRegressor(loss=...)``) and export (an estimator's output head).
* :data:`OPTIMIZERS` -- names, cls, sklearn; code. Read by the planner, the CLI (``--optimizer``) and the
  estimators (``solver``).

A row's ``code`` is its class's own (``ReLU.code``, ``SGD.kind``: what the object describes itself to the compiled
step with) and ``needs_input`` is :data:`fastnn.kernels.codes.NEEDS_INPUT_MASK`'s bit, so the kernels' constants
stay the one source of the numbers. Looking up a name no row has raises :class:`UnknownName`, listing the names.
``tests/test_registry.py`` walks every row through every consumer.
"""
from dataclasses import dataclass

from fastnn import layers, losses, onnx_nodes, optim
from fastnn.kernels import codes

__all__ = ["Activation", "Loss", "Optimizer", "Table", "UnknownName", "ACTIVATIONS", "LOSSES", "OPTIMIZERS"]


class UnknownName(KeyError, ValueError):
    """A name no row of a table has; the message lists the names it knows."""

    def __str__(self):
        return self.args[0]


class Table:
    """Rows by each of their names (``ACTIVATIONS["logistic"]``) or by exact class (:meth:`of`); iterating gives
    the rows in order."""

    def __init__(self, what, rows):
        self.what, self.rows = what, tuple(rows)
        self._by_name, self._by_class = {}, {}
        for row in self.rows:
            for name in row.names:
                if name in self._by_name:
                    raise ValueError(f"two {what} rows are named {name!r}")
                self._by_name[name] = row
            if row.cls is not None:
                self._by_class[row.cls] = row

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __contains__(self, name):
        return isinstance(name, str) and name in self._by_name

    def __getitem__(self, name):
        if name not in self:
            raise UnknownName(f"unknown {self.what} {name!r}; expected one of {', '.join(self.names())}")
        return self._by_name[name]

    def names(self):
        """Every name of every row, sorted."""
        return tuple(sorted(self._by_name))

    def of(self, obj):
        """The row of ``obj``'s exact class (``obj`` an instance or a class), or None: a subclass may compute
        something else."""
        return self._by_class.get(obj if isinstance(obj, type) else type(obj))

    def classes(self):
        return tuple(self._by_class)

    def sklearn(self):
        """``{scikit-learn's name: row}`` for the rows scikit-learn has."""
        return {row.sklearn: row for row in self.rows if row.sklearn}


@dataclass(frozen=True)
class Activation:
    """A hidden activation.

    names : tuple of str
        Every name it goes by (the first is fastnn's); scikit-learn's among them.
    cls : type or None
        Its layer; None for the identity (no layer: the Linear's outputs as they are).
    init : str
        The initialiser (:mod:`fastnn.init`) of the ``Linear`` before it, where fastnn chooses (the CLI).
    sklearn : str or None
        ``MLPClassifier``/``MLPRegressor``'s ``activation`` name, None where scikit-learn has none.
    onnx : callable or None
        ``builder(layer, x, graph) -> output name`` (:mod:`fastnn.onnx_nodes`).
    """

    names: tuple
    cls: type
    init: str
    sklearn: str = None
    onnx: object = None

    @property
    def code(self):
        """The ``codes`` activation code of ``linear_forward``'s epilogue and the compiled step."""
        return codes.IDENTITY if self.cls is None else self.cls.code

    @property
    def needs_input(self):
        """Whether its derivative needs its input (kept by the layer and the step), not only its output."""
        return bool(codes.NEEDS_INPUT_MASK >> self.code & 1)


@dataclass(frozen=True)
class Loss:
    """A loss.

    names : tuple of str
        Its class name (``fit(loss=...)``), then scikit-learn's name where it has one.
    cls : type
    codes : tuple of int
        The ``codes.LOSS_*`` its :meth:`~fastnn.losses.Loss.step_code` gives (for labels, for dense targets); empty
        when the compiled step has no fused form of it.
    sklearn : str or None
        ``MLPRegressor``'s ``loss`` name.
    out_activation : str or None
        scikit-learn's ``out_activation_`` for which the estimators train with this loss (the head fused in).
    onnx : callable or None
        ``head(x, graph) -> output name``: what :meth:`~fastnn.losses.Loss.output` computes; None where the outputs
        mean themselves.
    """

    names: tuple
    cls: type
    codes: tuple
    sklearn: str = None
    out_activation: str = None
    onnx: object = None


@dataclass(frozen=True)
class Optimizer:
    """An optimizer: ``names`` (the CLI's ``--optimizer``), ``cls``, ``sklearn`` (the estimators' ``solver``, None where scikit-learn
    has none)."""

    names: tuple
    cls: type
    sklearn: str = None

    @property
    def code(self):
        """The ``codes.OPT_*`` update rule of the compiled step."""
        return self.cls.kind


ACTIVATIONS = Table("activation", [
    Activation(("identity",), None, "glorot", "identity"),
    Activation(("relu",), layers.ReLU, "he", "relu", onnx_nodes.elementwise("Relu")),
    Activation(("sigmoid", "logistic"), layers.Sigmoid, "glorot", "logistic", onnx_nodes.elementwise("Sigmoid")),
    Activation(("tanh",), layers.Tanh, "glorot", "tanh", onnx_nodes.elementwise("Tanh")),
    Activation(("leaky_relu",), layers.LeakyReLU, "he", None,
               onnx_nodes.elementwise("LeakyRelu", alpha="negative_slope")),
    Activation(("elu",), layers.ELU, "he", None, onnx_nodes.elu),
    Activation(("gelu",), layers.GELU, "he", None, onnx_nodes.gelu_tanh),
])

LOSSES = Table("loss", [
    Loss(("SoftmaxCrossEntropy",), losses.SoftmaxCrossEntropy, (codes.LOSS_SCE_LABELS, codes.LOSS_SCE_DENSE),
         out_activation="softmax", onnx=onnx_nodes.head("Softmax", "probabilities", axis=-1)),
    Loss(("NLLLoss",), losses.NLLLoss, ()),
    Loss(("MSELoss", "squared_error"), losses.MSELoss, (codes.LOSS_MSE,), "squared_error", "identity"),
    Loss(("BCEWithLogitsLoss",), losses.BCEWithLogitsLoss, (codes.LOSS_BCE_LOGITS,), out_activation="logistic",
         onnx=onnx_nodes.head("Sigmoid", "probabilities")),
    Loss(("BCELoss",), losses.BCELoss, (codes.LOSS_BCE,)),
    Loss(("PoissonLoss", "poisson"), losses.PoissonLoss, (codes.LOSS_POISSON,), "poisson", "exp",
         onnx_nodes.head("Exp", "mean")),
])

OPTIMIZERS = Table("optimizer", [
    Optimizer(("sgd",), optim.SGD, "sgd"),
    Optimizer(("adam",), optim.Adam, "adam"),
    Optimizer(("adamw",), optim.AdamW),
])
