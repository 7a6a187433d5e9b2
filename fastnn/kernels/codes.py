"""The small integer codes shared by both kernel twins and the objects that describe themselves to them.

Numba compiles a branch per code, so each code is a module-level integer constant. Layers, losses and
optimizers hold their code (``ReLU.code``, ``SoftmaxCrossEntropy``'s ``loss_code``, ``Optimizer.describe()``);
nothing else maps names to numbers.
"""
import numpy as np

__all__ = ["IDENTITY", "RELU", "SIGMOID", "TANH", "LEAKY_RELU", "ELU", "GELU", "ACTIVATION_CODES", "NEEDS_INPUT",
           "H_LR", "H_MOMENTUM", "H_NESTEROV", "H_BETA1", "H_BETA2", "H_EPS", "H_DECOUPLED", "H_CLIP_NORM",
           "LOSS_SCE_LABELS", "LOSS_SCE_DENSE", "LOSS_MSE", "LOSS_BCE_LOGITS", "LOSS_BCE", "OPT_SGD", "OPT_ADAM",
           "HYPER", "pack_hyper"]

# Activations: the fused epilogue of ``linear_forward`` and the step's backward through it. ``alpha`` is
# the one parameter some take (LeakyReLU's negative slope, ELU's alpha). Most differentiate from their
# output; those in NEEDS_INPUT from their input, which the step then keeps.
IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, ELU, GELU = 0, 1, 2, 3, 4, 5, 6
ACTIVATION_CODES = (IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, ELU, GELU)
NEEDS_INPUT = (ELU, GELU)

# Losses the training step computes fused with its gradient w.r.t. the last layer's pre-activation:
# softmax cross-entropy (labels or dense targets), MSE, sigmoid + BCE on logits, and BCE on the output of
# a last-layer Sigmoid (its backward folded in).
LOSS_SCE_LABELS, LOSS_SCE_DENSE, LOSS_MSE, LOSS_BCE_LOGITS, LOSS_BCE = 0, 1, 2, 3, 4

# Update rules of the training step.
OPT_SGD, OPT_ADAM = 0, 1

# Columns of the step's ``hyper`` array (one row per batch, so a schedule may change any of them from
# batch to batch), by name. Weight decay is not here: the step takes one per parameter.
# ``clip_norm`` (0: off) is fit's gradient clipping by global norm, applied before the update.
HYPER = ("lr", "momentum", "nesterov", "beta1", "beta2", "eps", "decoupled", "clip_norm")
(H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_DECOUPLED, H_CLIP_NORM) = range(len(HYPER))


def pack_hyper(values, out=None):
    """``values`` (a dict of :data:`HYPER` names to numbers; missing ones are 0) as one float64 row of the
    step's ``hyper`` array, written into ``out`` when given."""
    unknown = set(values) - set(HYPER)
    if unknown:
        raise KeyError(f"unknown hyper-parameters {sorted(unknown)}; the step knows {list(HYPER)}")
    row = np.empty(len(HYPER), np.float64) if out is None else out
    for i, name in enumerate(HYPER):
        row[i] = values.get(name, 0.0)
    return row
