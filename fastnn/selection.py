"""Choosing how long to train and how much weight decay, by k-fold cross-validation: what ``fastnn train`` does on
a small table when no ``--epochs`` is given.

On a table of a few hundred rows a 10 % validation split holds a few dozen, and the epoch it picks is noise: on
iris (105 training rows, 10 held out) early stopping on the split reached test accuracies from 0.73 to 0.98 over
six seeds. Here every row is held out once: the network is trained on each fold's complement for a
fixed number of epochs, once per weight decay, and the validation losses of the folds are averaged epoch by epoch.
The weight decay and epoch with the lowest mean validation loss win; the caller then trains on all rows for that
many epochs (``docs/design.md``, "Small tables").

    choice = cross_validate(build, X, y, loss, epochs=500, batch_size=64, seed=0, stratify=True)
    model, optimizer = build(choice.weight_decay)
    fit(model, X, y, loss=loss, optimizer=optimizer, epochs=choice.epochs, ...)
"""
import contextlib
import signal
import threading
from dataclasses import dataclass, field

import numpy as np

from fastnn import train as fit_loop

__all__ = ["Choice", "cross_validate", "folds", "FOLDS", "WEIGHT_DECAYS", "MAX_ROWS"]

FOLDS = 5
# L2 strengths tried: none, mild, strong. Diabetes (a noisy 309-row regression) wants 0.1, iris and wine 0-0.01.
WEIGHT_DECAYS = (0.0, 1e-2, 1e-1)
# Tables with fewer training rows than this are cross-validated (a 10 % split would hold < 200 rows).
MAX_ROWS = 2000


@dataclass
class Choice:
    """The winner (``weight_decay``, ``epochs``, its mean validation ``loss``) and, per weight decay tried, the mean
    validation loss after each epoch (``curves``)."""

    weight_decay: float
    epochs: int
    loss: float
    curves: dict = field(default_factory=dict)


def folds(y, k, seed, stratify):
    """``k`` disjoint arrays of row indices covering ``range(len(y))``, sizes within one of each other; with
    ``stratify``, each class is dealt out across the folds in turn, so every fold holds it in proportion."""
    n = len(y)
    if not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= folds <= rows, got {k} folds for {n} rows")
    rng = np.random.default_rng(seed)
    if not stratify:
        return [np.sort(f) for f in np.array_split(rng.permutation(n), k)]
    # Classes one after another, each shuffled, then row i goes to fold i % k: each class spreads evenly.
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    return [np.sort(order[i::k]) for i in range(k)]


def cross_validate(build, X, y, loss, *, epochs, batch_size, seed, stratify, k=FOLDS,
                   weight_decays=WEIGHT_DECAYS, on_result=None):
    """Train ``build(weight_decay) -> (model, optimizer)`` on each fold's complement for ``epochs`` epochs per
    weight decay and return the :class:`Choice` of lowest mean validation loss (the earlier epoch and the smaller
    decay on ties). ``seed`` draws the folds and shuffles every fit alike; ``on_result(weight_decay, epochs, loss)``
    is called after each weight decay. Errors of a fit propagate; SIGTERM and SIGHUP raise
    :class:`fastnn.TrainingTerminated` (``history`` None) at once, Ctrl-C ``KeyboardInterrupt``."""
    everything = np.arange(len(y))
    splits = [(np.setdiff1d(everything, held, assume_unique=True), held) for held in folds(y, k, seed, stratify)]
    curves = {}
    with _terminations_raise():
        for decay in weight_decays:
            curves[decay] = _mean_curve(build, decay, X, y, splits, loss, epochs, batch_size, seed)
            if on_result is not None:
                best = int(np.argmin(curves[decay]))
                on_result(decay, best + 1, float(curves[decay][best]))
    decay = min(curves, key=lambda d: curves[d].min())  # min keeps the first (smallest) decay on ties
    best = int(np.argmin(curves[decay]))  # argmin keeps the first epoch on ties
    return Choice(weight_decay=decay, epochs=best + 1, loss=float(curves[decay][best]), curves=curves)


def _mean_curve(build, decay, X, y, splits, loss, epochs, batch_size, seed):
    """The validation loss after each epoch, averaged over the folds: ``splits`` pairs each fold's complement
    (trained on) with the fold (held out), every row held out once."""
    total = np.zeros(epochs)
    for rest, held in splits:
        model, optimizer = build(decay)
        history = fit_loop.fit(model, X[rest], y[rest], loss=loss, optimizer=optimizer, epochs=epochs,
                               batch_size=batch_size, validation_data=(X[held], y[held]), seed=seed, verbose=0)
        total += np.asarray(history.history["val_loss"], np.float64) * len(held)
    return total / len(y)


@contextlib.contextmanager
def _terminations_raise():
    """SIGTERM and SIGHUP raise :class:`fastnn.TrainingTerminated` at once within the block (in the main thread,
    where their handler is still the default): the folds' models are scratch, nothing is kept, and a signal
    between two fits must not end the process unannounced. Ctrl-C raises ``KeyboardInterrupt`` as always."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mine = [s for s in fit_loop._SIGNALS if s != signal.SIGINT and signal.getsignal(s) is signal.SIG_DFL]

    def handler(signum, frame):
        name = signal.Signals(signum).name
        raise fit_loop.TrainingTerminated(signum, f"cross-validation stopped by {name}", None)

    for s in mine:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s in mine:
            signal.signal(s, signal.SIG_DFL)
