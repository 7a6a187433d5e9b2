"""The small integer codes shared by both kernel twins and the objects that describe themselves to them.

Numba compiles a branch per code, so each code is a module-level integer constant. Layers, losses and
optimizers hold their code (``ReLU.code``, ``Loss.step_code``, ``Optimizer.describe()``); names map to them in one
place, the rows of :mod:`fastnn.registry`.
"""
import numpy as np

__all__ = ["IDENTITY", "RELU", "SIGMOID", "TANH", "LEAKY_RELU", "ELU", "GELU", "ACTIVATION_CODES", "NEEDS_INPUT",
           "NEEDS_INPUT_MASK",
           "H_LR", "H_MOMENTUM", "H_NESTEROV", "H_BETA1", "H_BETA2", "H_EPS", "H_DECOUPLED", "H_CLIP_NORM",
           "H_VELOCITY", "H_EPS_HAT", "H_SAMPLE_DECAY", "H_LOSS_SCALE",
           "LOSS_SCE_LABELS", "LOSS_SCE_DENSE", "LOSS_MSE", "LOSS_BCE_LOGITS", "LOSS_BCE", "LOSS_POISSON", "OPT_SGD",
           "OPT_ADAM",
           "HYPER", "pack_hyper", "P_W", "P_B", "P_DW", "P_DB", "P_S1W", "P_S1B", "P_S2W", "P_S2B", "N_PARAM_SLOTS",
           "O_H", "O_Z", "O_D", "O_G", "N_WORK_SLOTS", "RAW_F32", "RAW_F64", "RAW_U8", "RAW_I32", "RAW_I64",
           "RAW_DTYPES"]

# Activations: the fused epilogue of ``linear_forward`` and the step's backward through it. ``alpha`` is
# the one parameter some take (LeakyReLU's negative slope, ELU's alpha). Most differentiate from their
# output; those in NEEDS_INPUT from their input, which the step then keeps. Both step twins test a code by
# ``NEEDS_INPUT_MASK >> code & 1``: an integer global is a compile-time constant to Numba.
IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, ELU, GELU = 0, 1, 2, 3, 4, 5, 6
ACTIVATION_CODES = (IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, ELU, GELU)
NEEDS_INPUT = (ELU, GELU)
NEEDS_INPUT_MASK = sum(1 << code for code in NEEDS_INPUT)

# Losses the training step computes fused with its gradient w.r.t. the last layer's pre-activation:
# softmax cross-entropy (labels or dense targets), MSE, sigmoid + BCE on logits, and BCE on the output of
# a last-layer Sigmoid (its backward folded in), and half the Poisson deviance of log-rates.
LOSS_SCE_LABELS, LOSS_SCE_DENSE, LOSS_MSE, LOSS_BCE_LOGITS, LOSS_BCE, LOSS_POISSON = 0, 1, 2, 3, 4, 5

# Update rules of the training step.
OPT_SGD, OPT_ADAM = 0, 1

# Columns of the step's ``hyper`` array (one row per batch, so a schedule may change any of them from
# batch to batch), by name. Weight decay is not here: the step takes one per parameter.
# ``clip_norm`` (0: off) is fit's gradient clipping by global norm, applied before the update.
# ``velocity`` (SGD), ``eps_hat`` (Adam) and ``sample_decay`` are the optimizers' scikit-learn options
# (:class:`fastnn.optim.SGD`, :class:`fastnn.optim.Adam`); ``loss_scale`` is the loss's factor on each row's
# loss and gradient (:meth:`fastnn.losses.Loss.row_scale`: 1 for a mean over the outputs).
HYPER = ("lr", "momentum", "nesterov", "beta1", "beta2", "eps", "decoupled", "clip_norm", "velocity", "eps_hat",
         "sample_decay", "loss_scale")
(H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_DECOUPLED, H_CLIP_NORM, H_VELOCITY, H_EPS_HAT,
 H_SAMPLE_DECAY, H_LOSS_SCALE) = range(len(HYPER))


def pack_hyper(values, out=None):
    """``values`` (a dict of :data:`HYPER` names to numbers; missing ones are 0, ``loss_scale`` 1) as one float64
    row of the step's ``hyper`` array, written into ``out`` when given."""
    unknown = set(values) - set(HYPER)
    if unknown:
        raise KeyError(f"unknown hyper-parameters {sorted(unknown)}; the step knows {list(HYPER)}")
    row = np.empty(len(HYPER), np.float64) if out is None else out
    for i, name in enumerate(HYPER):
        row[i] = values.get(name, 1.0 if name == "loss_scale" else 0.0)
    return row


# The compiled step's layer tables, whose shapes do not depend on the network, so that one compiled step serves
# every depth. ``params[l, P_*]`` is the address of layer ``l``'s array (0 for an empty one): weights, bias,
# their gradients, and the optimizer's two states for each (SGD's momentum buffer in S1; Adam's m in S1, v in
# S2). They stay the layers' and the optimizer's own arrays: nothing is copied in or out of a fit.
P_W, P_B, P_DW, P_DB, P_S1W, P_S1B, P_S2W, P_S2B = range(8)
N_PARAM_SLOTS = 8
# ``woff[l, O_*]`` is the offset, in the step's one flat workspace, of row 0 of layer ``l``'s activations H
# (H[0]: the gathered batch), pre-activations Z, dropped-out input D and gradient G (-1 where it has none).
O_H, O_Z, O_D, O_G = range(4)
N_WORK_SLOTS = 4

# The dtype of training data that is not the model's, which the step reads as bytes and converts batch by batch
# (so the data is never copied whole and the step's signature does not depend on it).
RAW_F32, RAW_F64, RAW_U8, RAW_I32, RAW_I64 = range(5)
RAW_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8), np.dtype(np.int32),
              np.dtype(np.int64))
