"""Learning curves of a :class:`fastnn.History`: one panel per metric, the validation curve beside the training one.

matplotlib is an optional extra (``pip install fastnn[plot]``), imported on first use only.
"""
import os

import numpy as np

__all__ = ["plot_history"]

_TITLES = {"loss": "loss", "accuracy": "accuracy", "lr": "learning rate"}


def _matplotlib():
    try:
        import matplotlib  # noqa: PLC0415  (optional, and slow to import)
        import matplotlib.axes  # noqa: PLC0415
    except ImportError:
        raise ImportError("plotting a History needs matplotlib, an optional extra of fastnn: "
                          "pip install 'fastnn[plot]' (or pip install matplotlib)") from None
    return matplotlib


def _constant_lr(history):
    """The learning rate if it never changed (then it is a note, not a panel), else None."""
    values = history.history.get("lr")
    return values[0] if values and all(v == values[0] for v in values) else None


def _panels(history):
    """``[(name, [keys drawn in it]), ...]``: ``val_<name>`` joins ``<name>``'s panel; order of first appearance.
    A constant learning rate gets no panel."""
    panels = {}
    for key in history.history:
        if key == "lr" and _constant_lr(history) is not None:
            continue
        base = key[4:] if key.startswith("val_") and key[4:] in history.history else key
        panels.setdefault(base, []).append(key)
    return list(panels.items())


def plot_history(history, path=None, ax=None):
    """Draw ``history``'s curves per epoch and return the matplotlib ``Figure``; see :meth:`fastnn.History.plot`."""
    matplotlib = _matplotlib()
    panels = _panels(history)
    if not history.epoch or not panels:
        raise ValueError("this History has no epochs to plot (fit has not completed an epoch)")
    if ax is None:
        if path is None:  # for a screen: pyplot's figure, so plt.show() and notebooks display it
            import matplotlib.pyplot as plt  # noqa: PLC0415

            fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
        else:  # for a file: no pyplot, no global state, no display needed
            from matplotlib.figure import Figure  # noqa: PLC0415

            fig = Figure(figsize=(4.5 * len(panels), 3.6))
            axes = fig.subplots(1, len(panels), squeeze=False)
        axes = list(axes[0])
    else:
        axes = [ax] if isinstance(ax, matplotlib.axes.Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
        names = [name for name, _ in panels]
        if len(axes) != len(panels) or not all(isinstance(a, matplotlib.axes.Axes) for a in axes):
            raise ValueError(f"ax must be {len(panels)} matplotlib Axes, one per panel {names}, got {ax!r}")
        fig = axes[0].figure
    epochs = np.asarray(history.epoch) + 1  # 1-based, as fit prints them
    for a, (name, keys) in zip(axes, panels):
        for key in keys:
            a.plot(epochs, history.history[key], marker="o", markersize=3,
                   label="validation" if key.startswith("val_") else "training")
        a.set_title(_TITLES.get(name, name))
        a.set_xlabel("epoch")
        if name == "lr":
            values = np.asarray(history.history[name], dtype=float)
            if np.all(values > 0) and values.max() > 10 * values.min():
                a.set_yscale("log")
        elif len(keys) > 1:
            a.legend()
        a.grid(True, alpha=0.3)
        if len(epochs) < 12:
            a.set_xticks(epochs)
    notes = []
    if _constant_lr(history) is not None:
        notes.append(f"learning rate {_constant_lr(history):g}")
    if history.stopped_epoch is not None:
        notes.append(f"stopped after epoch {history.stopped_epoch + 1}")
    if notes:
        fig.suptitle("; ".join(notes), fontsize="medium")
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig
