"""The training loop: batching, metrics, validation, signals, checkpoints, progress. Thin by design.

The work of a run of batches is one call of a :class:`fastnn.core.TrainingCore`, built once per
``fit``: the compiled step of :mod:`fastnn.fused` when the model, loss and
optimizer allow it, else the layer-by-layer path.
"""
import contextlib
import os
import signal
import sys
import threading
import time

import numpy as np

from fastnn._check import (BOOL, FRACTION, INT, NONE, PATH, POSITIVE, POSITIVE_INT, SEED, Instance, Interval,
                           Options, check)
from fastnn.callbacks import EarlyStopping, History, stateful
from fastnn.core import TrainingCore, accuracy_units, hits, labels_for_accuracy
from fastnn.checkpoint import check_allow_changes, fingerprint, locked, read_checkpoint, write_checkpoint
from fastnn.inference import predict, predict_checked, probabilities
from fastnn._validation import check_matrix, check_sample_weight, class_weights_for
from fastnn.losses import Loss
from fastnn.lr_scheduler import LRScheduler, ReduceLROnPlateau
from fastnn.optim import Optimizer
from fastnn.registry import LOSSES

# History, EarlyStopping (fastnn.callbacks), predict and probabilities (fastnn.inference) are importable from here
# as they were before those modules.
__all__ = ["History", "EarlyStopping", "TrainingTerminated", "fit", "predict", "probabilities", "evaluate"]

# The compiled step trains this long per call (sized from the call before): a signal is taken within about
# this time, at a cost of one more call per such stretch (tens of microseconds).
_CALL_SECONDS = 0.1
_FIRST_CALL_BATCHES = 8
# Signals fit takes between batches, keeping the last completed epoch: Ctrl-C, a scheduler's or Kubernetes'
# SIGTERM, a closed terminal's SIGHUP.
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class TrainingTerminated(SystemExit):
    """Raised by ``fit`` when SIGTERM or SIGHUP stopped it between batches.

    The model, optimizer and schedulers hold the last completed epoch (so does the checkpoint, if any). A
    ``SystemExit`` whose code is ``128 + signal`` (143 for SIGTERM, 129 for SIGHUP), the status a process
    killed by the signal reports to a shell: uncaught, the program ends as the sender asked, after fit has
    printed :attr:`message` to stderr.

    Attributes
    ----------
    signum : int
    history : History
        The epochs completed so far.
    message : str
    """

    def __init__(self, signum, message, history):
        super().__init__(128 + signum)
        self.signum, self.message, self.history = signum, message, history

    def __str__(self):
        return self.message


def resolve_loss(loss):
    loss = check("loss", loss, Instance(Loss, what="a fastnn Loss"), Options(*LOSSES.names()))
    return LOSSES[loss].cls() if isinstance(loss, str) else loss


def _check_data(model, loss, X, y, name, convert=True):
    X = check_matrix(X, f"X{name}", n_features=model.n_features_in, dtype=model.dtype, convert=convert)
    T = loss.check_target(y, (X.shape[0], model.n_outputs), X.dtype, f"y{name}")
    return X, T


def _weights(loss, T, sample_weight, class_weight, name, n_classes=None):
    """The per-sample weights ``fit`` trains with (None: unweighted): ``sample_weight`` times the class weights."""
    w = None if sample_weight is None else check_sample_weight(sample_weight, T.shape[0], f"sample_weight{name}")
    if class_weight is not None:
        if loss.accuracy == "argmax":
            labels = labels_for_accuracy(T)
        elif loss.accuracy == "binary" and T.shape[1] == 1:
            labels, n_classes = (T[:, 0] > 0.5).astype(np.int64), 2
        else:
            raise ValueError(f"class_weight needs a classification loss with one class per sample; "
                             f"{type(loss).__name__} with {T.shape[1:]} targets has none")
        cw = class_weights_for(class_weight, labels, n_classes)
        w = cw if w is None else w * cw
    if w is not None and not w.sum() > 0:
        raise ValueError(f"sample_weight{name} sums to 0: no sample would count")
    return w


def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True, validation_data=None,
        validation_split=0.0, early_stopping=None, seed=None, verbose=1, callbacks=None, sample_weight=None,
        class_weight=None, clip_grad_norm=None, checkpoint=None, resume=False, allow_changes=None):
    """Train ``model`` in place; see :meth:`fastnn.Sequential.fit` for the parameters."""
    shuffle, seed = check("shuffle", shuffle, BOOL), check("seed", seed, SEED)
    loss, epochs, batch_size, early_stopping, callbacks, schedulers, max_norm, allow_changes = _check_options(
        model, loss, optimizer, epochs, batch_size, verbose, validation_data, validation_split, early_stopping,
        callbacks, clip_grad_norm, checkpoint, resume, allow_changes)
    # Another dtype (float64 data for a float32 model, uint8 pixels, a memmap) is converted batch by batch
    # inside the step: the data is never copied whole.
    X, T = _check_data(model, loss, X, y, "", convert=False)
    sw = _weights(loss, T, sample_weight, class_weight, "", model.n_outputs)
    run_id = None if checkpoint is None else fingerprint(
        model, loss, optimizer, X, T, sw, batch_size=batch_size, shuffle=shuffle, seed=seed,
        clip_grad_norm=max_norm, validation=validation_data if validation_data is not None else validation_split,
        schedulers=schedulers, early_stopping=early_stopping)
    X, T, sw, validation = _split_validation(model, loss, X, T, sw, validation_data, validation_split)

    model.fit_loss = loss  # predict_proba's default: what the outputs mean
    n = X.shape[0]
    total_weight = n if sw is None else float(sw.sum())
    history = History()
    core = TrainingCore(model, loss, optimizer, X, T, sw, batch_size, max_norm)
    history.fast_path, history.fallback = core.fast_path, core.fallback
    rng = np.random.default_rng(seed)
    if early_stopping is not None:
        early_stopping.start(validation is not None)
    saved = stateful(callbacks)  # what the checkpoint keeps of the callbacks besides History and EarlyStopping
    for cb in callbacks:
        if hasattr(cb, "set_optimizer"):
            cb.set_optimizer(optimizer)
    per_batch = [s for s in schedulers if s.interval == "batch"]
    after_step = (lambda: [s.step() for s in per_batch]) if per_batch else None
    # One run at a time on a checkpoint path: a second fails here, naming the first, before touching anything.
    with locked(checkpoint) if checkpoint is not None else contextlib.nullcontext(), \
            _deferred_interrupts() as interrupted:
        first = 0
        if resume and os.path.exists(checkpoint):  # no file yet: the run starts, and checkpoints, afresh
            done, _, rng.bit_generator.state = read_checkpoint(
                checkpoint, model, optimizer, schedulers=schedulers, early_stopping=early_stopping, history=history,
                callbacks=saved, run=run_id, allow_changes=allow_changes)
            first = epochs if history.stopped_epoch is not None else done + 1
        for epoch in range(first, epochs):
            start = time.perf_counter()
            for cb in callbacks:
                if hasattr(cb, "on_epoch_begin"):
                    cb.on_epoch_begin(epoch, {})
            lr = optimizer.current_lr()
            order = rng.permutation(n) if shuffle else np.arange(n)
            epoch_seed = int(rng.integers(2**63, dtype=np.uint64)) if core.dropouts else 0  # keys the dropout masks
            at_start = _EpochStart(model, optimizer, schedulers)
            bar = _progress(core.n_batches, epoch, epochs, verbose)
            batch_losses, correct = _train_epoch(core, order, after_step, epoch_seed, bar, interrupted, at_start,
                                                 (history, epoch, epochs, checkpoint))
            logs = _epoch_logs(model, loss, T, float(batch_losses.sum()) / total_weight, correct, validation, lr)
            history.append(epoch, logs)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.2f}s - "
                      + " - ".join(f"{k}: {v:.4g}" if k == "lr" else f"{k}: {v:.4f}" for k, v in logs.items()),
                      flush=True)
            for sched in schedulers:
                if isinstance(sched, ReduceLROnPlateau):
                    sched.step(_monitored(sched, logs, validation is not None))
                elif sched.interval == "epoch":
                    sched.step()
            stop = early_stopping is not None and early_stopping.update(epoch, logs, model.parameters())
            stop = any([bool(cb.on_epoch_end(epoch, dict(logs))) for cb in callbacks
                        if hasattr(cb, "on_epoch_end")]) or stop
            if stop:
                history.stopped_epoch = epoch
            if checkpoint is not None:
                write_checkpoint(checkpoint, model, optimizer, epoch=epoch, history=history, rng=rng,
                                 schedulers=schedulers, early_stopping=early_stopping, callbacks=saved, run=run_id)
            if interrupted():
                raise _interruption(history, epoch + 1, checkpoint, interrupted())
            if stop:
                break
    if early_stopping is not None:
        early_stopping.restore_best(model.parameters())
    return history


def _epoch_logs(model, loss, T, mean_loss, correct, validation, lr):
    """An epoch's ``History`` entry: loss, accuracy, the validation metrics, the learning rate it started with."""
    logs = {"loss": mean_loss}
    if loss.accuracy is not None:
        logs["accuracy"] = correct / accuracy_units(loss, T)
    if validation is not None:
        logs.update({f"val_{k}": v for k, v in evaluate(model, *validation[:2], loss, sample_weight=validation[2],
                                                           _checked=True).items()})
    logs["lr"] = lr
    return logs


def _check_options(model, loss, optimizer, epochs, batch_size, verbose, validation_data, validation_split,
                   early_stopping, callbacks, clip_grad_norm, checkpoint, resume, allow_changes):
    """fit's options, checked: ``(loss, epochs, batch_size, early_stopping, callbacks, schedulers, max_norm,
    allow_changes)``."""
    loss = resolve_loss(loss)
    check("optimizer", optimizer, Instance(Optimizer, what="a fastnn Optimizer (SGD, Adam, AdamW)"))
    mine = {id(p) for p in model.parameters()}
    if not mine <= {id(p) for p in optimizer.params}:
        raise ValueError("optimizer does not hold this model's parameters; build it with model.parameters()")
    epochs = check("epochs", epochs, POSITIVE_INT)
    batch_size = check("batch_size", batch_size, POSITIVE_INT)
    check("verbose", verbose, Interval(INT, 0, 2))
    validation_split = check("validation_split", validation_split, FRACTION)
    if validation_data is not None and validation_split:
        raise ValueError("pass validation_data or validation_split, not both")
    early_stopping = check("early_stopping", early_stopping, NONE, Instance(EarlyStopping, what="an EarlyStopping"),
                           Interval(INT, 0, None))
    if isinstance(early_stopping, int):  # the patience
        early_stopping = EarlyStopping(patience=early_stopping)
    callbacks, schedulers = _split_callbacks(callbacks, optimizer)
    max_norm = check("clip_grad_norm", clip_grad_norm, NONE, POSITIVE)
    check("checkpoint", checkpoint, NONE, PATH)
    if check("resume", resume, BOOL) and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH: the file a previous fit(checkpoint=PATH) wrote")
    allow_changes = check_allow_changes(allow_changes, optimizer)
    if allow_changes and not resume:
        raise ValueError("allow_changes applies to resume=True: the fields a resumed run may change")
    return loss, epochs, batch_size, early_stopping, callbacks, schedulers, max_norm, allow_changes


def _split_validation(model, loss, X, T, sw, validation_data, validation_split):
    """``(X, T, sw, validation)``: the rows to train on and ``(X_val, T_val, sw_val)`` (or None), checked."""
    swv = None
    if validation_split:
        # Keras' convention: the last fraction of the data, before any shuffling.
        n_val = int(round(X.shape[0] * validation_split))
        if not 0 < n_val < X.shape[0]:
            raise ValueError(f"validation_split={validation_split} leaves {n_val} of {X.shape[0]} samples "
                             "for validation; expected at least one on each side")
        validation_data = (X[-n_val:].astype(model.dtype), T[-n_val:])
        X, T = X[:-n_val], T[:-n_val]
        if sw is not None:
            sw, swv = sw[:-n_val], sw[-n_val:]
            if not sw.sum() > 0:
                raise ValueError("sample_weight sums to 0 on the training part of validation_split")
    if validation_data is None:
        return X, T, sw, None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a pair (X_val, y_val) or a triple (X_val, y_val, "
                         "sample_weight_val)")
    Xv, Tv = _check_data(model, loss, validation_data[0], validation_data[1], "_val")
    if len(validation_data) == 3:
        swv = _weights(loss, Tv, validation_data[2], None, "_val")
    return X, T, sw, (Xv, Tv, swv)


def _train_epoch(core, order, after_step, epoch_seed, bar, interrupted, at_start, where):
    """One epoch's batches on the core: ``(batch loss sums, right answers)``. ``where`` is ``(history, epoch,
    epochs, checkpoint)``, for the errors a divergence or a signal raises.

    Layer by layer, a batch per call. Compiled, calls of about _CALL_SECONDS each (about 50 per epoch with a
    progress bar), so a signal is taken within that time, never mid-update.
    """
    history, epoch, epochs, checkpoint = where
    n_batches, model = core.n_batches, core.model
    batch_losses, correct = np.empty(n_batches), 0  # summed once: the same sum however the epoch is cut
    chunk = 1 if not core.fast_path else _FIRST_CALL_BATCHES if bar is None else max(1, n_batches // 50)
    b0 = 0
    while b0 < n_batches:
        b1 = min(b0 + chunk, n_batches)
        called = time.perf_counter()
        sums, _, c, done = _in_training_mode(model, core.run, order, b0, b1, after_step, epoch_seed)
        if done < b1 - b0:
            _diverged(model, at_start.params, sums[done], epoch, epochs, b0 + done, n_batches, history)
        if core.fast_path and bar is None:
            each = (time.perf_counter() - called) / max(done, 1)  # seconds per batch
            chunk = max(1, int(_CALL_SECONDS / each)) if each > 0 else n_batches
        batch_losses[b0:b0 + done] = sums[:done]
        correct += c
        if bar is not None:
            bar.update(done)
        if interrupted():
            at_start.restore()
            raise _interruption(history, epoch, checkpoint, interrupted())
        b0 = b1
    if bar is not None:
        bar.close()
    if core.fast_path:
        history.compiled_by = core.compiled_by
    return batch_losses, correct


class _EpochStart:
    """The parameters, optimizer state and schedulers as an epoch starts: what an interrupted epoch returns to."""

    def __init__(self, model, optimizer, schedulers):
        self.model, self.optimizer, self.schedulers = model, optimizer, schedulers
        self.params = [p.data.copy() for p in model.parameters()]
        config, arrays = optimizer.state_dict()
        self.optimizer_state = (config, {k: a.copy() for k, a in arrays.items()})
        self.scheduler_states = [s.state_dict() for s in schedulers]

    def restore(self):
        for p, w in zip(self.model.parameters(), self.params):
            p.data[...] = w
        for s, state in zip(self.schedulers, self.scheduler_states):
            s.load_state_dict(state)
        self.optimizer.load_state_dict(*self.optimizer_state)  # after the schedulers: its own values win


@contextlib.contextmanager
def _deferred_interrupts():
    """Within the block, Ctrl-C (SIGINT), SIGTERM and SIGHUP only record the signal, which ``fit`` checks
    between batches (the block yields a function returning it, or None), so the model is never left
    half-updated. A second signal acts at once: a second Ctrl-C raises ``KeyboardInterrupt``, a second SIGTERM
    or SIGHUP ends the process as the signal would have. Only signals whose handler is still Python's default
    are taken (a handler of the program's own, or an ignored SIGHUP under ``nohup``, is left alone), and only in
    the main thread, where Python runs signal handlers."""
    defaults = {signal.SIGINT: signal.default_int_handler}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    mine = [s for s in _SIGNALS if signal.getsignal(s) is defaults.get(s, signal.SIG_DFL)]
    pending = []

    def handler(signum, frame):
        if not pending:
            pending.append(signum)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for s in mine:
        signal.signal(s, handler)
    try:
        yield lambda: pending[0] if pending else None
    finally:
        for s in mine:
            signal.signal(s, defaults.get(s, signal.SIG_DFL))


def _interruption(history, completed, checkpoint, signum):
    """What ``fit`` raises when ``signum`` stopped it: ``KeyboardInterrupt`` for Ctrl-C, else
    :class:`TrainingTerminated`; either carries the ``History`` so far."""
    name = signal.Signals(signum).name
    where = f"; the checkpoint {checkpoint} holds it" if checkpoint is not None and completed else ""
    message = (f"training {'interrupted' if signum == signal.SIGINT else 'stopped by ' + name}: the model holds "
               f"the weights after {completed} completed epoch{'s' if completed != 1 else ''}{where}")
    if signum == signal.SIGINT:
        exc = KeyboardInterrupt(message)
        exc.history = history
        return exc
    print(f"fastnn: {message}", file=sys.stderr, flush=True)
    return TrainingTerminated(signum, message, history)


def _in_training_mode(model, run, *args):
    """``run(*args)`` with the model in training mode (Dropout active), its previous mode restored after."""
    previous = [layer.training for layer in model.layers]
    model.train()
    try:
        return run(*args)
    finally:
        for layer, mode in zip(model.layers, previous):
            layer.training = mode


def _split_callbacks(callbacks, optimizer):
    """``(callbacks, schedulers)``: learning-rate schedulers among ``callbacks`` are stepped by fit itself."""
    plain, schedulers = [], []
    for cb in list(callbacks or []):
        if isinstance(cb, LRScheduler):
            if cb.optimizer is not optimizer:
                raise ValueError(f"{type(cb).__name__} was built on another optimizer than the one passed to fit")
            schedulers.append(cb)
        elif any(callable(getattr(cb, name, None)) for name in ("on_epoch_begin", "on_epoch_end")):
            plain.append(cb)
        else:
            raise TypeError(f"callback {cb!r} has neither on_epoch_begin(epoch, logs) nor "
                            "on_epoch_end(epoch, logs), and is not a learning-rate scheduler")
    return plain, schedulers


def _monitored(sched, logs, has_validation):
    key = sched.monitor or ("val_loss" if has_validation else "loss")
    if key not in logs:
        raise ValueError(f"ReduceLROnPlateau monitors {key!r}, which fit does not report; available: {sorted(logs)}")
    return logs[key]


def _progress(total, epoch, epochs, verbose):
    """A per-batch bar only when asked for and stderr is a terminal: logs never fill with bars."""
    if verbose < 2 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415  (only needed interactively)

    return tqdm(total=total, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=False, file=sys.stderr)


def _diverged(model, snapshot, value, epoch, epochs, b, n_batches, history):
    # The loss is checked before the update, so the current weights produced the
    # last finite step; they are kept unless they themselves overflowed.
    where = "the weights from before this batch"
    if not all(np.isfinite(p.data).all() for p in model.parameters()):
        for p, w in zip(model.parameters(), snapshot):
            p.data[...] = w
        where = "the weights from the start of this epoch (the last step overflowed them)"
    err = FloatingPointError(f"loss became {value} at epoch {epoch + 1}/{epochs}, batch {b + 1}/{n_batches}; "
                             f"training stopped and the model keeps {where}. Try a lower learning rate.")
    err.history = history
    raise err


def evaluate(model, X, y, loss, batch_size=1024, sample_weight=None, _checked=False):
    """Mean loss (and accuracy for classification losses) over ``(X, y)``.

    With ``sample_weight`` the loss is the weighted mean ``sum w_i l_i / sum w_i``; accuracy stays the
    plain fraction of right answers.

    Returns
    -------
    dict
        ``{"loss": float}`` plus ``"accuracy"`` for classification losses.
    """
    loss = resolve_loss(loss)
    if not _checked:
        X, y = _check_data(model, loss, X, y, "")
        sample_weight = None if sample_weight is None else _weights(loss, y, sample_weight, None, "")
    out = predict_checked(model, X, check("batch_size", batch_size, POSITIVE_INT))
    result = {"loss": loss.value(out, y, sample_weight)}
    if loss.accuracy is not None:
        result["accuracy"] = hits(loss, out, y) / accuracy_units(loss, y)
    return result
