"""The tables through which the compiled step and the compiled predict reach a network's arrays.

Their shapes and types do not depend on the network, so one compiled function per dtype serves every
depth and width (``docs/design.md``, "One signature per dtype"). The kernels trust these tables; the
functions here build them only from arrays they have checked, and are the only place that should.
"""
import math

import numpy as np

from fastnn.kernels.codes import (N_PARAM_SLOTS, N_WORK_SLOTS, NEEDS_INPUT, O_D, O_G, O_H, O_Z, P_B, P_DB, P_DW,
                                  P_S1B, P_S1W, P_S2B, P_S2W, P_W)

__all__ = ["param_table", "workspace"]


def _address(a, name, dtype, shape, flat=False):
    """``a``'s data address after checking it is exactly what the kernels will read there: ``shape``, or with
    ``flat`` a 1-D array of as many values or an empty one (address 0: the rule keeps no such state)."""
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"{name} must be a writeable C-contiguous {dtype} ndarray, got "
                        f"{type(a).__name__} {getattr(a, 'dtype', '')}")
    if flat and a.ndim == 1 and a.size == 0:
        return 0
    if a.shape != ((math.prod(shape),) if flat else shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return a.ctypes.data


def param_table(Ws, bs, dWs=None, dbs=None, S1=None, S2=None):
    """``(dims, params)`` for layers of weights ``Ws[l]`` (n_in, n_out) and biases ``bs[l]``.

    ``dWs``/``dbs`` are the gradient buffers, shaped alike; ``S1``/``S2`` the optimizer's flat states in the
    order W0, b0, W1, b1, ... (empty arrays where a rule keeps none). All must be C-contiguous in ``Ws[0]``'s
    dtype, consecutive layers' widths must chain. Raises ``TypeError``/``ValueError`` naming the array.
    """
    L = len(Ws)
    if L == 0 or len(bs) != L:
        raise ValueError(f"expected as many biases as weights (at least one), got {len(bs)} and {L}")
    dtype = Ws[0].dtype
    if any(not isinstance(W, np.ndarray) or W.ndim != 2 for W in Ws):
        raise ValueError("every weight matrix must be a 2-D ndarray")
    dims = np.array([Ws[0].shape[0]] + [W.shape[1] for W in Ws], np.int64)
    params = np.zeros((L, N_PARAM_SLOTS), np.int64)
    for l in range(L):
        w_shape, b_shape = (int(dims[l]), int(dims[l + 1])), (int(dims[l + 1]),)
        params[l, P_W] = _address(Ws[l], f"W[{l}]", dtype, w_shape)
        params[l, P_B] = _address(bs[l], f"b[{l}]", dtype, b_shape)
        for slot, arrays, name, shape in ((P_DW, dWs, "dW", w_shape), (P_DB, dbs, "db", b_shape)):
            if arrays is not None:
                params[l, slot] = _address(arrays[l], f"{name}[{l}]", dtype, shape)
        for state, name, slots in ((S1, "S1", (P_S1W, P_S1B)), (S2, "S2", (P_S2W, P_S2B))):
            if state is not None:
                for k, (slot, shape) in enumerate(zip(slots, (w_shape, b_shape))):
                    params[l, slot] = _address(state[2 * l + k], f"{name}[{2 * l + k}]", dtype, shape, flat=True)
    return dims, params


def workspace(dims, acts, drops, rows, dtype):
    """``(work, woff)``: one flat buffer holding, for batches of up to ``rows`` rows, each layer's activations
    ``H`` (``H[0]``: the gathered batch), the pre-activations ``Z`` of codes in ``NEEDS_INPUT``, the
    dropped-out inputs ``D`` where ``drops[l] > 0`` and the gradients ``G``; ``woff[l, O_*]`` their offsets."""
    L = len(acts)
    woff = np.full((L + 1, N_WORK_SLOTS), -1, np.int64)
    size = 0
    for l in range(L + 1):
        wanted = {O_H: True, O_Z: l > 0 and acts[l - 1] in NEEDS_INPUT, O_D: l < L and drops[l] > 0, O_G: l > 0}
        for slot, needed in wanted.items():
            if needed:
                woff[l, slot] = size
                size += rows * int(dims[l])
    return np.empty(size, dtype), woff
