"""``Sequential``: a stack of layers with forward, backward and parameter access."""
import numpy as np

from fastnn._validation import check_matrix
from fastnn.layers import LAYERS, Layer

__all__ = ["Sequential"]


class Sequential:
    """Layers applied in order.

    Parameters
    ----------
    *layers : Layer
        E.g. ``Sequential(Linear(784, 128), ReLU(), Linear(128, 10))``.
        Consecutive ``Linear`` widths and dtypes are checked here, once.
    """

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        width, dtype = None, None
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} must be a fastnn Layer, got {type(layer).__name__}")
            n_in = layer._n_in()
            if n_in is None:
                continue
            if width is not None and n_in != width:
                raise ValueError(f"layer {i} ({type(layer).__name__}) expects {n_in} inputs but the "
                                 f"layer before it gives {width}")
            if dtype is not None and layer._dtype() != dtype:
                raise TypeError(f"layer {i} has dtype {layer._dtype()}, expected {dtype} like the layers before it")
            width, dtype = layer.out_features, layer._dtype()
        self.layers = list(layers)
        self._output_shape = None

    # -- structure ---------------------------------------------------------------
    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential(\n{inner}\n)"

    @property
    def n_features_in(self):
        """Input width, from the first layer that fixes one (``None`` for activations only)."""
        return next((layer._n_in() for layer in self.layers if layer._n_in() is not None), None)

    @property
    def n_outputs(self):
        return next((layer.out_features for layer in reversed(self.layers) if layer._n_in() is not None), None)

    @property
    def dtype(self):
        """dtype of the parameters (float32 or float64), ``None`` without parameters."""
        params = self.parameters()
        return params[0].data.dtype if params else None

    def parameters(self):
        """All :class:`Parameter` objects, in layer order."""
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self):
        """``[("0.W", Parameter), ("0.b", Parameter), ...]``, prefixed by layer index."""
        return [(f"{i}.{p.name}", p) for i, layer in enumerate(self.layers) for p in layer.parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` in place; returns ``self``."""
        for layer in self.layers:
            layer._astype(dtype)
        return self

    # -- math --------------------------------------------------------------------
    def forward(self, X):
        """Run the batch through every layer.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in)

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), in the model's dtype.
        """
        out = self._forward(check_matrix(X, "X", n_features=self.n_features_in, dtype=self.dtype))
        self._output_shape = out.shape
        return out

    __call__ = forward

    def backward(self, grad_output):
        """Back-propagate ``dL/d(output)``: fill every ``Parameter.grad``, return ``dL/dX``.

        Parameters
        ----------
        grad_output : array_like of the last forward output's shape

        Returns
        -------
        ndarray of shape (n_samples, n_features_in)
        """
        if self._output_shape is None:
            raise RuntimeError("Sequential.backward() called before forward()")
        g = check_matrix(grad_output, "grad_output", dtype=self.dtype, finite=False)
        if g.shape != self._output_shape:
            raise ValueError(f"grad_output has shape {g.shape}, expected {self._output_shape} "
                             "(the last forward's output)")
        return self._backward(g, need_input_grad=True)

    def _forward(self, X):
        for layer in self.layers:
            X = layer._forward(X)
        return X

    def _backward(self, g, need_input_grad=False):
        # The first layer's dX = g W^T is a full GEMM nobody needs while training.
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i]._backward(g, need_input_grad or i > 0)
        return g

    def get_config(self):
        return [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers]

    def copy(self):
        """An independent copy (parameters copied, caches dropped)."""
        clone = Sequential(*[LAYERS[c["class"]](**{k: v for k, v in c["config"].items() if k != "init"})
                             for c in self.get_config()])
        for dst, src in zip(clone.parameters(), self.parameters()):
            dst.data = src.data.copy()
            dst.grad = src.grad.copy()
        return clone
