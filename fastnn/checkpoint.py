"""Checkpoints: everything ``fit`` needs to continue a run exactly where it stopped, and which run that is.

One file, written atomically at the end of every epoch by ``fit(checkpoint=PATH)`` through the model
writer of :mod:`fastnn.io` (so a kill at any moment leaves the previous checkpoint intact): the
architecture and weights, the optimizer's hyper-parameters and state arrays, the schedulers', the
shuffling generator's state, the epoch, the ``History``, the early-stopping state, every other stateful
callback's (:mod:`fastnn.callbacks`: each through its own ``state_dict``), and the run's
*fingerprint* (:func:`fingerprint`). ``fit(..., checkpoint=PATH, resume=True)`` continues from it bit for
bit (same backend and BLAS thread count), and only the run it belongs to: a fingerprint that differs is
refused field by field unless the fields are named in ``allow_changes``.

While a fit writes a checkpoint it holds an exclusive lock on ``PATH.lock`` (:func:`locked`), so a second
job given the same path fails at once, naming the holder; the lock goes with the process, whatever ends it.
"""
import contextlib
import copy
import datetime
import hashlib
import json
import os
import socket
import warnings

import numpy as np

from fastnn import io as _io
from fastnn._check import INT, NUMBER, Interval, meets
from fastnn.callbacks import get_state, set_state

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; checkpoints still work, unlocked
    fcntl = None

__all__ = ["write_checkpoint", "read_checkpoint", "fingerprint", "locked", "FINGERPRINT_FIELDS"]

_STATE = "checkpoint.json"
_KIND = "fastnn-checkpoint"
_SAMPLE_ROWS = 256  # rows hashed for the data's fingerprint, evenly spaced: cheap for any size, memmaps too

# What a run is: a checkpoint continues only a fit that agrees on every one of these (or is allowed not to).
FINGERPRINT_FIELDS = ("dtype", "loss", "optimizer", "batch_size", "shuffle", "seed", "clip_grad_norm",
                      "data.shape", "data.dtype", "data.hash", "targets.hash", "sample_weight.hash", "validation",
                      "schedulers", "early_stopping")


def _sample_hash(a):
    """A hex digest of ``a``'s shape, dtype and up to ``_SAMPLE_ROWS`` evenly spaced rows; None for None."""
    if a is None:
        return None
    a = np.asarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([list(a.shape), a.dtype.str]).encode())
    if a.shape[0]:
        rows = np.unique(np.linspace(0, a.shape[0] - 1, min(a.shape[0], _SAMPLE_ROWS)).astype(np.int64))
        h.update(np.ascontiguousarray(a[rows]).tobytes())
    return h.hexdigest()


def _plain(value):
    """``value`` as it comes back from JSON (tuples as lists), for comparing a fresh run with a saved one."""
    return json.loads(json.dumps(value, allow_nan=False, default=str))


def fingerprint(model, loss, optimizer, X, T, sample_weight, *, batch_size, shuffle, seed, clip_grad_norm,
                validation, schedulers, early_stopping):
    """The run ``fit`` is starting, as a dict of :data:`FINGERPRINT_FIELDS` with JSON values.

    ``X``, ``T`` and ``sample_weight`` are the training data as fit was given it (before a validation split);
    ``validation`` is the split fraction, or the ``(X_val, y_val[, w_val])`` tuple, or None. The optimizer's
    settings are those it starts with, before a checkpoint's are put on it.
    """
    if isinstance(validation, (tuple, list)):
        validation = {"shape": list(np.shape(validation[0])), "hash": _sample_hash(validation[0]),
                      "targets": _sample_hash(validation[1])}
    return _plain({
        "dtype": str(model.dtype),
        "loss": {"class": type(loss).__name__, **loss.get_config()},
        "optimizer": {"class": type(optimizer).__name__, **optimizer.get_config()},
        "batch_size": batch_size, "shuffle": bool(shuffle), "seed": seed, "clip_grad_norm": clip_grad_norm,
        "data.shape": list(X.shape), "data.dtype": np.dtype(X.dtype).str, "data.hash": _sample_hash(X),
        "targets.hash": _sample_hash(T), "sample_weight.hash": _sample_hash(sample_weight),
        "validation": validation or None,
        "schedulers": [type(s).__name__ for s in schedulers],
        "early_stopping": None if early_stopping is None else early_stopping.get_config(),
    })


def _differences(saved, now, allow):
    """``["field: checkpoint X, this fit Y", ...]`` for the fields of ``now`` that ``saved`` differs in and
    ``allow`` does not name; an optimizer setting is its own field (``optimizer.lr``)."""
    out = []
    for field in FINGERPRINT_FIELDS:
        a, b = saved.get(field), now[field]
        if field == "optimizer" and isinstance(a, dict) and a.get("class") == b["class"]:
            out += [f"optimizer.{k}: checkpoint {a.get(k)!r}, this fit {v!r}" for k, v in b.items()
                    if a.get(k) != v and f"optimizer.{k}" not in allow and field not in allow]
        elif field == "seed" and b is None:
            continue  # fit(seed=None) asks for no particular seed; the checkpoint's generator state continues
        elif a != b and field not in allow:
            out.append(f"{field}: checkpoint {a!r}, this fit {b!r}")
    return out


def check_allow_changes(allow, optimizer):
    """Validate ``fit``'s ``allow_changes`` (field names); return them as a frozenset."""
    if isinstance(allow, str):
        allow = [allow]
    try:
        allow = frozenset(allow or ())
    except TypeError:
        raise TypeError(f"allow_changes must be a list of field names, got {allow!r}") from None
    known = set(FINGERPRINT_FIELDS) | {f"optimizer.{k}" for k in optimizer.get_config()}
    unknown = sorted(str(a) for a in allow - known)
    if unknown:
        raise ValueError(f"allow_changes names unknown fields {unknown}; the fields are {sorted(known)}")
    return allow


def write_checkpoint(path, model, optimizer, *, epoch, history, rng, schedulers, early_stopping, callbacks=(),
                     run=None):
    """Write the state after ``epoch`` (0-based, completed) of the run ``run`` (its :func:`fingerprint`) to
    ``path``, atomically. ``callbacks`` are the fit's other stateful callbacks (:func:`fastnn.callbacks.stateful`),
    each saved through its ``state_dict``."""
    opt_config, opt_arrays = optimizer.state_dict()
    arrays = {f"model.{name}": p.data for name, p in model.named_parameters()}
    arrays.update({f"optimizer.{name}": a for name, a in opt_arrays.items()})
    stopping = None
    if early_stopping is not None:
        stopping, best = early_stopping.state_dict()
        arrays.update({f"early_stopping.{name}": w for name, w in best.items()})
    saved = []
    for i, cb in enumerate(callbacks):
        state, cb_arrays, paired = get_state(cb)
        arrays.update({f"callbacks.{i}.{name}": a for name, a in cb_arrays.items()})
        saved.append({"class": type(cb).__name__, "state": state, "paired": paired})
    state = {
        "kind": _KIND, "epoch": epoch, "run": run,
        "optimizer": {"class": type(optimizer).__name__, "config": opt_config},
        "schedulers": [{"class": type(s).__name__, "state": s.state_dict()} for s in schedulers],
        "rng": rng.bit_generator.state,
        "history": history.state_dict()[0],
        "early_stopping": stopping,
        "callbacks": saved,
    }
    arrays[_STATE] = np.frombuffer(json.dumps(state, allow_nan=False).encode(), np.uint8)
    _io.write_model(path, model.get_config(), arrays)


def _is_int(v):
    return meets(v, Interval(INT))


def _is_number(v):
    return meets(v, NUMBER)


def _validate(state, path):
    """Raise ``ValueError`` naming the first field of ``state`` that is missing or of the wrong kind."""
    def bad(field, expected):
        value = state
        for key in field.split("."):
            value = value.get(key, "<missing>") if isinstance(value, dict) else "<missing>"
        return ValueError(f"{path}: checkpoint field {field!r} must be {expected}, got {value!r:.80}")

    if not _is_int(state.get("epoch")) or state["epoch"] < 0:
        raise bad("epoch", "an integer >= 0 (the last completed epoch)")
    opt = state.get("optimizer")
    if not isinstance(opt, dict) or not isinstance(opt.get("class"), str):
        raise bad("optimizer.class", "the optimizer's class name")
    if not isinstance(opt.get("config"), dict):
        raise bad("optimizer.config", "a dict of the optimizer's settings")
    scheds = state.get("schedulers")
    if not isinstance(scheds, list) or not all(isinstance(s, dict) and isinstance(s.get("class"), str)
                                                and isinstance(s.get("state"), dict) for s in scheds):
        raise bad("schedulers", "a list of {'class': name, 'state': dict}")
    if not isinstance(state.get("rng"), dict) or not isinstance(state["rng"].get("bit_generator"), str):
        raise bad("rng", "a NumPy bit generator's state")
    hist = state.get("history")
    if not isinstance(hist, dict):
        raise bad("history", "a dict")
    epochs = hist.get("epoch")
    if not isinstance(epochs, list) or epochs != list(range(len(epochs))) or len(epochs) != state["epoch"] + 1:
        raise bad("history.epoch", f"the list 0..{state['epoch']} (one entry per completed epoch)")
    logs = hist.get("history")
    if not isinstance(logs, dict) or not all(isinstance(v, list) and len(v) == len(epochs)
                                             and all(_is_number(x) for x in v) for v in logs.values()):
        raise bad("history.history", f"a dict of lists of {len(epochs)} numbers")
    if not (hist.get("stopped_epoch") is None or _is_int(hist["stopped_epoch"])
            and 0 <= hist["stopped_epoch"] <= state["epoch"]):
        raise bad("history.stopped_epoch", f"None or an epoch in 0..{state['epoch']}")
    es = state.get("early_stopping")
    if es is not None and not (isinstance(es, dict) and set(es) == {"best", "best_epoch", "wait"}
                               and (es["best"] is None or _is_number(es["best"]))
                               and (es["best_epoch"] is None or _is_int(es["best_epoch"]))
                               and _is_int(es["wait"]) and es["wait"] >= 0):
        raise bad("early_stopping", "None or {'best': number, 'best_epoch': int, 'wait': int >= 0}")
    if state.get("run") is not None and not isinstance(state["run"], dict):
        raise bad("run", "the run's fingerprint (a dict)")
    cbs = state.get("callbacks", [])  # absent from checkpoints written before callbacks were saved
    if not isinstance(cbs, list) or not all(isinstance(c, dict) and isinstance(c.get("class"), str) and "state" in c
                                            and isinstance(c.get("paired"), bool) for c in cbs):
        raise bad("callbacks", "a list of {'class': name, 'state': ..., 'paired': bool}")


def read_checkpoint(path, model, optimizer, *, schedulers, early_stopping, history=None, callbacks=(), run=None,
                    allow_changes=()):
    """Check that ``path`` is a checkpoint of this model, optimizer, schedulers and stateful ``callbacks``, and of
    the run ``run`` (this fit's :func:`fingerprint`, fields in ``allow_changes`` excepted); restore them, and
    ``history`` when given; return ``(epoch, history_state, rng_state)``. Every field is checked before anything
    is modified, and a restore that fails half-way is undone: a file that does not fit raises ``ValueError`` and
    changes nothing.
    """
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
    _validate(state, path)
    if state["optimizer"]["class"] != type(optimizer).__name__:
        raise ValueError(f"{path}: checkpoint of a {state['optimizer']['class']} optimizer; fit got "
                         f"{type(optimizer).__name__}")
    _check_same_objects(path, state, schedulers, early_stopping, callbacks)
    if run is not None:
        if state.get("run") is None:
            warnings.warn(f"{path}: a checkpoint from before checkpoints recorded their run; resuming without "
                          "checking that it is this run's", stacklevel=4)
        else:
            differ = _differences(state["run"], run, allow_changes)
            if differ:
                raise ValueError(f"{path}: a checkpoint of another run; it differs from this fit in "
                                 + "; ".join(differ) + ". Resume with the settings and data it was written with, "
                                 "or name the fields you mean to change in allow_changes (fastnn train "
                                 "--allow-change FIELD)")
    try:
        rng_check = getattr(np.random, state["rng"]["bit_generator"])()
        rng_check.state = state["rng"]
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: checkpoint field 'rng' is not a NumPy bit generator's state ({exc})") from None
    best = {str(i): arrays[f"early_stopping.{i}"] for i in range(len(params)) if f"early_stopping.{i}" in arrays}
    if best and [b.shape for b in best.values()] != [p.data.shape for p in params.values()]:
        raise ValueError(f"{path}: checkpoint's early-stopping weights do not match the model's parameters")

    others = [c for c in (history, early_stopping) if c is not None]
    undo = _Snapshot(optimizer, schedulers, others + list(callbacks))
    field = "schedulers"
    try:
        for sched, saved_state in zip(schedulers, state["schedulers"]):
            sched.load_state_dict(saved_state["state"])
        # After the schedulers, which put their own last values on the optimizer: its saved ones win, except
        # the settings the caller allowed to change, which are this fit's.
        field = "optimizer"
        opt_arrays = {k[len("optimizer."):]: a for k, a in arrays.items() if k.startswith("optimizer.")}
        mine = optimizer.get_config()
        optimizer.load_state_dict(state["optimizer"]["config"], opt_arrays)
        for key in mine:
            if f"optimizer.{key}" in allow_changes or "optimizer" in allow_changes:
                setattr(optimizer, key, mine[key])
        optimizer.hyper()  # every setting checked as the step will read it
        if early_stopping is not None:
            field = "early_stopping"
            early_stopping.load_state_dict(state["early_stopping"], best)
        field = "callbacks"
        for i, (cb, entry) in enumerate(zip(callbacks, state.get("callbacks", []))):
            prefix = f"callbacks.{i}."
            cb_arrays = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
            set_state(cb, entry["state"], cb_arrays, entry["paired"])
        if history is not None:
            field = "history"
            history.load_state_dict(state["history"], {})
    except (TypeError, ValueError, KeyError) as exc:
        undo.restore()
        raise ValueError(f"{path}: checkpoint field {field!r} does not fit this fit: {exc}") from None
    for name, p in params.items():
        p.data[...] = arrays[name]
    return state["epoch"], state["history"], state["rng"]


def _check_same_objects(path, state, schedulers, early_stopping, callbacks):
    """Raise ``ValueError`` unless the checkpoint has the fit's kinds of schedulers, early stopping and stateful
    callbacks (a checkpoint from before callbacks were saved has none recorded, and is not asked)."""
    saved = [s["class"] for s in state["schedulers"]]
    if saved != [type(s).__name__ for s in schedulers]:
        raise ValueError(f"{path}: checkpoint has schedulers {saved}; fit got {[type(s).__name__ for s in schedulers]}")
    saved = [c["class"] for c in state.get("callbacks", [])]
    if "callbacks" in state and saved != [type(c).__name__ for c in callbacks]:
        raise ValueError(f"{path}: checkpoint has stateful callbacks {saved}; fit got "
                         f"{[type(c).__name__ for c in callbacks]}")
    if (state["early_stopping"] is None) != (early_stopping is None):
        raise ValueError(f"{path}: early stopping was {'off' if state['early_stopping'] is None else 'on'} in the "
                         "checkpointed run; resume with the same setting")


class _Snapshot:
    """The optimizer's, schedulers' and stateful callbacks' state, to put back when a restore fails half-way."""

    def __init__(self, optimizer, schedulers, callbacks):
        config, arrays = optimizer.state_dict()
        self.optimizer, self.opt = optimizer, (config, {k: a.copy() for k, a in arrays.items()})
        self.schedulers = [(s, s.state_dict()) for s in schedulers]
        self.callbacks = []
        for cb in callbacks:
            state, cb_arrays, paired = get_state(cb)
            self.callbacks.append((cb, copy.deepcopy(state), {k: a.copy() for k, a in cb_arrays.items()}, paired))

    def restore(self):
        for s, st in self.schedulers:
            s.load_state_dict(st)
        self.optimizer.load_state_dict(*self.opt)
        for cb, state, arrays, paired in self.callbacks:
            set_state(cb, state, arrays, paired)


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on ``path`` + ``.lock`` for the block, or raise ``BlockingIOError`` at once
    naming the process that holds it. The lock file says who holds it and is removed on leaving; a process
    that dies, even by SIGKILL, releases the lock with it (``flock``, local file systems)."""
    if fcntl is None:
        yield
        return
    lock_path = os.fspath(path) + ".lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "a process starting up"
            os.close(fd)
            raise BlockingIOError(f"{os.fspath(path)} is in use by another training run ({holder}; lock file "
                                  f"{lock_path}): wait for it to end, or give this run another checkpoint "
                                  "path") from None
        try:
            ours = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            ours = False
        if ours:
            break
        os.close(fd)  # its holder removed the file as we opened it: lock the one at the path now
    since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)
    try:
        yield
    finally:
        try:
            os.unlink(lock_path)  # while still holding it: a process that opened it meanwhile retries
        except OSError:
            pass
        os.close(fd)
