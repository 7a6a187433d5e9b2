"""Checkpoints: everything ``fit`` needs to continue a run exactly where it stopped.

One file, written atomically at the end of every epoch by ``fit(checkpoint=PATH)`` through the model
writer of :mod:`fastnn.io` (so a kill at any moment leaves the previous checkpoint intact): the
architecture and weights, the optimizer's hyper-parameters and state arrays, the schedulers', the
shuffling generator's state, the epoch, the ``History`` and the early-stopping state. ``fit(...,
checkpoint=PATH, resume=True)`` continues from it bit for bit (same backend and BLAS thread count).
"""
import json

import numpy as np

from fastnn import io as _io

__all__ = ["write_checkpoint", "read_checkpoint"]

_STATE = "checkpoint.json"
_KIND = "fastnn-checkpoint"


def write_checkpoint(path, model, optimizer, *, epoch, history, rng, schedulers, early_stopping):
    """Write the state after ``epoch`` (0-based, completed) to ``path``, atomically."""
    opt_config, opt_arrays = optimizer.state_dict()
    arrays = {f"model.{name}": p.data for name, p in model.named_parameters()}
    arrays.update({f"optimizer.{name}": a for name, a in opt_arrays.items()})
    stopping = None
    if early_stopping is not None:
        stopping = {"best": early_stopping.best_, "best_epoch": early_stopping.best_epoch_,
                    "wait": early_stopping._wait}
        if early_stopping._best_weights is not None:
            arrays.update({f"early_stopping.{i}": w for i, w in enumerate(early_stopping._best_weights)})
    state = {
        "kind": _KIND, "epoch": epoch,
        "optimizer": {"class": type(optimizer).__name__, "config": opt_config},
        "schedulers": [{"class": type(s).__name__, "state": s.state_dict()} for s in schedulers],
        "rng": rng.bit_generator.state,
        "history": {"history": history.history, "epoch": history.epoch, "stopped_epoch": history.stopped_epoch},
        "early_stopping": stopping,
    }
    arrays[_STATE] = np.frombuffer(json.dumps(state, allow_nan=False).encode(), np.uint8)
    _io.write_model(path, model.get_config(), arrays)


def read_checkpoint(path, model, optimizer, *, schedulers, early_stopping):
    """Check that ``path`` is a checkpoint of this model, optimizer and schedulers, restore them, and
    return ``(epoch, history_state, rng_state)``; nothing is modified when the file does not fit."""
    architecture, arrays = _io.read_model(path)
    if _STATE not in arrays:
        raise ValueError(f"{path}: a model file, not a fastnn checkpoint (no {_STATE})")
    try:
        state = json.loads(arrays.pop(_STATE).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged checkpoint state: {exc}") from None
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        raise ValueError(f"{path}: not a fastnn checkpoint")
    if architecture != model.get_config():
        raise ValueError(f"{path}: checkpoint of another architecture ({architecture}); this model is "
                         f"{model.get_config()}")
    params = {f"model.{name}": p for name, p in model.named_parameters()}
    for name, p in params.items():
        a = arrays.get(name)
        if a is None or a.shape != p.data.shape or a.dtype != p.data.dtype:
            raise ValueError(f"{path}: checkpoint parameter {name} does not match the model's {p!r}")
    if state["optimizer"]["class"] != type(optimizer).__name__:
        raise ValueError(f"{path}: checkpoint of a {state['optimizer']['class']} optimizer; fit got "
                         f"{type(optimizer).__name__}")
    saved = [s["class"] for s in state["schedulers"]]
    if saved != [type(s).__name__ for s in schedulers]:
        raise ValueError(f"{path}: checkpoint has schedulers {saved}; fit got {[type(s).__name__ for s in schedulers]}")
    if (state["early_stopping"] is None) != (early_stopping is None):
        raise ValueError(f"{path}: early stopping was {'off' if state['early_stopping'] is None else 'on'} in the "
                         "checkpointed run; resume with the same setting")
    for sched, saved_state in zip(schedulers, state["schedulers"]):
        sched.load_state_dict(saved_state["state"])
    # After the schedulers, which put their own last values on the optimizer: its saved ones win.
    opt_arrays = {k[len("optimizer."):]: a for k, a in arrays.items() if k.startswith("optimizer.")}
    optimizer.load_state_dict(state["optimizer"]["config"], opt_arrays)
    for name, p in params.items():
        p.data[...] = arrays[name]
    if early_stopping is not None:
        es = state["early_stopping"]
        early_stopping.best_, early_stopping.best_epoch_ = es["best"], es["best_epoch"]
        early_stopping._wait = es["wait"]
        best = [arrays[f"early_stopping.{i}"] for i in range(len(params)) if f"early_stopping.{i}" in arrays]
        early_stopping._best_weights = best or None
    return state["epoch"], state["history"], state["rng"]
