"""Layers: they hold parameters and caches; the math is in :mod:`fastnn.kernels`.

Each layer caches only what its backward needs: ``Linear`` its input,
activations their *output* (ReLU' from y > 0, sigmoid' = y(1 - y),
tanh' = 1 - y^2, softmax's JVP from S), as scikit-learn's MLP does.
"""
import contextvars
from typing import NamedTuple

import numpy as np

from fastnn import init as _init
from fastnn._check import FRACTION, NON_NEGATIVE, POSITIVE_INT, SEED, Instance, Options, check
from fastnn._validation import as_float_dtype, check_matrix
from fastnn.kernels import get_backend
from fastnn.kernels import codes

# True while predict/evaluate run layer by layer (in this thread or task only): Dropout is the identity and no
# layer keeps a cache, so inference never writes to a model another thread may be using or training.
INFERENCE = contextvars.ContextVar("fastnn_inference", default=False)

__all__ = ["Parameter", "Layer", "LayerSpec", "Linear", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU",
           "Softmax", "Dropout", "LAYERS"]


class LayerSpec(NamedTuple):
    """What the compiled step and the compiled predict need from a layer, as of now (:meth:`Layer.describe`).

    Attributes
    ----------
    kind : {"linear", "activation", "dropout"}
    code : int
        The ``codes`` activation code (``codes.IDENTITY`` for the other kinds).
    alpha : float
        The activation's one parameter (LeakyReLU's slope, ELU's alpha; 0 otherwise).
    p : float
        The dropout probability (0 for the other kinds).
    params : tuple of Parameter
        ``(W, b)`` for ``Linear``, else empty.
    """

    kind: str
    code: int
    alpha: float
    p: float
    params: tuple


# Counts the changes a cached plan depends on: a layer dropping its kept spec (an attribute ``describe`` reads was
# set) and a Parameter's ``data`` replaced. A plan checked in full while it read n still holds, while it reads n,
# for the same layer list (fastnn.inference._forward_plan: the check a single-row predict would otherwise repeat).
# Counted after each change is made, so a check that read the count saw every change counted up to it (two threads
# counting at once may count one: the count still moves, which is all a plan asks).
CHANGES = 0


def _changed():
    global CHANGES
    CHANGES += 1


class Parameter:
    """A trainable array and its gradient, of equal shape and dtype.

    Attributes
    ----------
    data : ndarray
    grad : ndarray
        Filled (overwritten, not accumulated) by the owning layer's backward.
    name : str
    """

    def __init__(self, data, name=""):
        self.name = check("name", name, Instance(str))
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name == "data":
            _changed()  # after the change: a plan checked before this count went up is checked again

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class. Subclasses implement ``_forward``/``_backward`` on validated arrays.

    ``training`` (False unless set by ``Sequential.train()`` or by ``fit`` while it runs) switches
    layers that behave differently while training (``Dropout``).
    """

    training = False
    _spec = None  # the last describe(), kept while what it holds is unchanged
    # The attributes describe() reads: setting one drops the kept spec. A kept spec is then always the current
    # one, and a caller holding it may skip describe() (fastnn.fused.still, at every predict).
    _DESCRIBED = frozenset()

    def __setattr__(self, name, value):
        described = name in self._DESCRIBED
        if described:
            object.__setattr__(self, "_spec", None)
        object.__setattr__(self, name, value)
        if described:
            _changed()  # after the change (see CHANGES)

    def __delattr__(self, name):
        described = name in self._DESCRIBED
        if described:
            object.__setattr__(self, "_spec", None)
        object.__delattr__(self, name)
        if described:
            _changed()

    def describe(self):
        """The :class:`LayerSpec` the compiled step needs, from the current attributes; None when the layer has no
        form there. Asked at every call: the same object comes back while nothing it holds has changed, so a
        caller may tell a change by identity."""
        return None

    def forward(self, X):
        """Validate ``X`` of shape (n_samples, n_in) and return the layer's output."""
        return self._forward(check_matrix(X, "X", n_features=self._n_in(), dtype=self._dtype()))

    def backward(self, dy):
        """Given ``dy = dL/d(output)``, fill parameter gradients and return ``dL/d(input)``."""
        out = self._output_shape()
        dy = check_matrix(dy, "grad_output", dtype=self._dtype(), finite=False)
        if dy.shape != out:
            raise ValueError(f"grad_output has shape {dy.shape}, expected {out} (the last forward's output)")
        return self._backward(dy, True)

    def parameters(self):
        return []

    def get_config(self):
        """Constructor keywords that rebuild this layer (used by save/load)."""
        return {}

    def _n_in(self):
        return None

    def _dtype(self):
        return None

    def _output_shape(self):
        raise NotImplementedError

    def _clear_cache(self):
        """Drop what forward cached for backward."""

    def _astype(self, dtype):
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = np.zeros_like(p.data)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Linear(Layer):
    """Affine layer on row-major batches.

    .. math:: h = X W + b,\\quad dW = X^T g,\\quad db = \\textstyle\\sum_{rows} g,\\quad dX = g W^T

    Parameters
    ----------
    in_features, out_features : int
    init : str or callable
        Weight initialiser (see :mod:`fastnn.init`); the bias starts at zero.
    seed : int, numpy.random.Generator or None
    dtype : float32 or float64

    Attributes
    ----------
    W : Parameter of shape (in_features, out_features)
    b : Parameter of shape (out_features,)
    """

    _DESCRIBED = frozenset({"W", "b"})

    def __init__(self, in_features, out_features, *, init="he", seed=None, dtype=np.float32):
        self.in_features = check("in_features", in_features, POSITIVE_INT)
        self.out_features = check("out_features", out_features, POSITIVE_INT)
        dtype = as_float_dtype(dtype)
        rng = np.random.default_rng(check("seed", seed, SEED))
        W = np.asarray(_init.get_initializer(init)(rng, self.in_features, self.out_features, dtype))
        if W.shape != (self.in_features, self.out_features):
            raise ValueError(f"init returned shape {W.shape}, expected {(self.in_features, self.out_features)}")
        self.init = _init.name_of(init)
        self.W = Parameter(W.astype(dtype), "W")
        self.b = Parameter(np.zeros(self.out_features, dtype), "b")
        self._X = None

    def parameters(self):
        return [self.W, self.b]

    def describe(self):
        spec = self._spec
        if spec is None or spec.params[0] is not self.W or spec.params[1] is not self.b:
            spec = self._spec = LayerSpec("linear", codes.IDENTITY, 0.0, 0.0, (self.W, self.b))
        return spec

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "init": self.init, "dtype": np.dtype(self.dtype).name}

    @property
    def dtype(self):
        return self.W.data.dtype

    def _n_in(self):
        return self.in_features

    def _dtype(self):
        return self.dtype

    def _output_shape(self):
        return (self._X.shape[0], self.out_features)

    def _clear_cache(self):
        self._X = None

    def _forward(self, X, act=codes.IDENTITY):
        if not INFERENCE.get():
            self._X = X
        out = np.empty((X.shape[0], self.out_features), self.dtype)
        return get_backend().linear_forward(X, self.W.data, self.b.data, act, 0.0, out)

    def _backward(self, dy, need_dX):
        dX = np.empty_like(self._X) if need_dX else None
        get_backend().linear_backward(self._X, self.W.data, dy, self.W.grad, self.b.grad, dX)
        return dX


class _Activation(Layer):
    """Element-wise (or row-wise) layer that caches its output ``y`` (and its input, when its
    derivative needs it: ``codes.NEEDS_INPUT``).

    Subclasses set ``code`` (the activation code the compiled step and ``linear_forward`` know) and,
    for the activations with kernels of their own, ``_kernels``; ``alpha`` is the one parameter some take.
    """

    code = None
    alpha = 0.0
    _DESCRIBED = frozenset({"code", "alpha"})

    def __init__(self):
        self._x = self._y = None

    @staticmethod
    def _kernels(K):
        """``(forward(x, out), backward(y, g, out))`` kernels of backend module ``K``, or None for the
        generic ``activation_forward``/``act_backward``."""
        return None

    def describe(self):
        spec = self._spec
        if spec is None or spec.alpha != self.alpha or spec.code != self.code:
            self._spec = spec = None if self.code is None else LayerSpec("activation", self.code, float(self.alpha),
                                                                         0.0, ())
        return spec

    def _output_shape(self):
        return self._y.shape

    def _clear_cache(self):
        self._x = self._y = None

    def _forward(self, X):
        K = get_backend()
        kernels = self._kernels(K)
        out = np.empty_like(X)
        if kernels is not None:
            y = kernels[0](X, out)
        else:
            y = K.activation_forward(self.code, self.alpha, X, out)
        if not INFERENCE.get():
            self._x = X if kernels is None and self.code in codes.NEEDS_INPUT else None
            self._y = y
        return y

    def _backward(self, dy, need_dX):
        K = get_backend()
        kernels = self._kernels(K)
        if kernels is not None:
            return kernels[1](self._y, dy, np.empty_like(dy))
        g = dy.copy()
        K.act_backward(self.code, self.alpha, self._x if self._x is not None else self._y, self._y, g)
        return g


class ReLU(_Activation):
    """:math:`y = \\max(x, 0)`, :math:`dx = g \\cdot [x > 0]`."""

    code = codes.RELU

    @staticmethod
    def _kernels(K):
        return K.relu_forward, K.relu_backward


class Sigmoid(_Activation):
    """:math:`y = 1 / (1 + e^{-x})`, :math:`dx = g \\, y (1 - y)`."""

    code = codes.SIGMOID

    @staticmethod
    def _kernels(K):
        return K.sigmoid_forward, K.sigmoid_backward


class Tanh(_Activation):
    """:math:`y = \\tanh x`, :math:`dx = g (1 - y^2)`."""

    code = codes.TANH

    @staticmethod
    def _kernels(K):
        return K.tanh_forward, K.tanh_backward


class Softmax(_Activation):
    """Row-wise softmax; backward is the Jacobian-vector product, no n x n Jacobian.

    .. math:: S = e^{x - \\max x} / \\textstyle\\sum e^{x - \\max x},\\quad dx = S \\odot (g - \\langle g, S \\rangle)
    """

    @staticmethod
    def _kernels(K):
        return K.softmax_forward, K.softmax_backward


class LeakyReLU(_Activation):
    """:math:`y = x` if :math:`x > 0` else :math:`\\alpha x`; :math:`dx = g` or :math:`\\alpha g`.

    Parameters
    ----------
    negative_slope : float, >= 0
        The slope for negative inputs (``y > 0`` exactly where ``x > 0`` then, so backward reads ``y``).
    """

    code = codes.LEAKY_RELU

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.alpha = check("negative_slope", negative_slope, NON_NEGATIVE)

    def get_config(self):
        return {"negative_slope": self.alpha}


class ELU(_Activation):
    """:math:`y = x` if :math:`x > 0` else :math:`\\alpha (e^x - 1)`; :math:`dx = g` or :math:`g \\alpha e^x`."""

    code = codes.ELU

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check("alpha", alpha, NON_NEGATIVE)

    def get_config(self):
        return {"alpha": self.alpha}


class GELU(_Activation):
    """GELU, the tanh approximation (PyTorch's ``GELU(approximate="tanh")``).

    .. math:: y = \\tfrac12 x (1 + \\tanh u),\\; u = \\sqrt{2/\\pi} (x + 0.044715 x^3),\\;
              dx = g \\left(\\tfrac12 (1 + \\tanh u) + \\tfrac12 x (1 - \\tanh^2 u) \\sqrt{2/\\pi} (1 + 3 \\cdot 0.044715 x^2)\\right)
    """

    code = codes.GELU

    def __init__(self, approximate="tanh"):
        super().__init__()
        # the erf form has no kernel
        self.approximate = check("approximate", approximate, Options("tanh"))

    def get_config(self):
        return {"approximate": self.approximate}


class Dropout(Layer):
    """Inverted dropout: while training, each input is zeroed with probability ``p`` and the rest scaled
    by ``1 / (1 - p)``; the identity in ``predict``/``evaluate`` and whenever ``training`` is False.

    .. math:: y = x \\odot M / (1 - p),\\quad dx = g \\odot M / (1 - p),\\quad M_{ij} = [u(key, ij) \\ge p]

    The mask is a function of a key and each element's row and column (:func:`fastnn.kernels.numpy_ref.dropout`),
    so ``fit(seed=...)`` reproduces it bit for bit, on the compiled step and layer by layer alike.

    Parameters
    ----------
    p : float in [0, 1)
    seed : int, numpy.random.Generator or None
        Draws the masks of forward calls outside ``fit`` (hand-written loops in training mode).
    """

    _DESCRIBED = frozenset({"p"})

    def __init__(self, p=0.5, *, seed=None):
        self.p = check("p", p, FRACTION)
        self._rng = np.random.default_rng(check("seed", seed, SEED))
        self._key = None  # (key, row offset) for the next forward, set by fit; else drawn from _rng
        self._mask_key = None
        self._shape = None

    def describe(self):
        spec = self._spec
        if spec is None or spec.p != self.p:
            spec = self._spec = LayerSpec("dropout", codes.IDENTITY, 0.0, float(self.p), ())
        return spec

    def get_config(self):
        return {"p": self.p}

    def _output_shape(self):
        return self._shape

    def _clear_cache(self):
        self._mask_key = self._shape = None

    def set_mask_key(self, key, row):
        """Draw the next forward's mask from stream ``key`` at row offset ``row``, as the compiled step does."""
        self._key = (key, row)

    @staticmethod
    def stream_key(seed, layer):
        """The mask stream of the Dropout before Linear number ``layer``, for an epoch's ``seed``:
        splitmix64's finaliser of ``seed + (layer + 1) * golden``, so the layers' streams are unrelated."""
        mask = 2**64 - 1
        z = (int(seed) + (layer + 1) * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    def _forward(self, X):
        if INFERENCE.get():
            return X
        self._shape = X.shape
        if not self.training or self.p == 0:
            self._mask_key = None
            return X
        key, row = self._key if self._key is not None else (int(self._rng.integers(2**63, dtype=np.uint64)), 0)
        self._key = None
        self._mask_key = (key, row)
        return get_backend().dropout(X, self.p, np.uint64(key), row, np.empty_like(X))

    def _backward(self, dy, need_dX):
        if self._mask_key is None:
            return dy
        key, row = self._mask_key
        return get_backend().dropout(dy, self.p, np.uint64(key), row, np.empty_like(dy))


# Every layer by its class name, as saved files name them (the activations by name: fastnn.registry.ACTIVATIONS).
LAYERS = {cls.__name__: cls for cls in (Linear, ReLU, Sigmoid, Tanh, LeakyReLU, ELU, GELU, Softmax, Dropout)}
