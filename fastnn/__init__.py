"""fastnn: multilayer perceptrons trained on the CPU with hand-derived gradients and Numba kernels."""
from fastnn.export import export_onnx
from fastnn.gradcheck import gradcheck
from fastnn.kernels import backend, get_backend, set_backend
from fastnn.layers import ELU, GELU, Dropout, Layer, LeakyReLU, Linear, Parameter, ReLU, Sigmoid, Softmax, Tanh
from fastnn.losses import BCELoss, BCEWithLogitsLoss, Loss, MSELoss, NLLLoss, PoissonLoss, SoftmaxCrossEntropy
from fastnn.model import Sequential
from fastnn.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from fastnn import preprocessing
from fastnn.preprocessing import Labels, Standardize, Table
from fastnn.callbacks import EarlyStopping, History
from fastnn.train import TrainingTerminated

load = Sequential.load

__version__ = "0.1.0"

__all__ = [
    "Layer", "Linear", "Parameter", "ReLU", "Sigmoid", "Softmax", "Tanh", "LeakyReLU", "ELU", "GELU",
    "Loss", "MSELoss", "NLLLoss", "SoftmaxCrossEntropy", "BCEWithLogitsLoss", "BCELoss", "PoissonLoss",
    "Sequential", "load",
    "Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "Dropout",
    "EarlyStopping", "History", "TrainingTerminated",
    "backend", "get_backend", "set_backend",
    "gradcheck", "export_onnx",
    "preprocessing", "Standardize", "Table", "Labels",
    "MLPClassifier", "MLPRegressor",
    "__version__",
]


def __getattr__(name):
    # The scikit-learn estimators load on first use: scikit-learn is an optional extra.
    if name in ("MLPClassifier", "MLPRegressor"):
        from fastnn import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
