"""History, EarlyStopping and the state protocol checkpoints save callbacks through (fastnn.callbacks)."""
import json

import numpy as np
import pytest

import fastnn as fn
from fastnn import callbacks, train
from fastnn.checkpoint import read_checkpoint


def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    y = rng.integers(0, 3, n)
    return (centers[y] + 0.8 * rng.standard_normal((n, 2))).astype(np.float32), y


def _model():
    return fn.Sequential(fn.Linear(2, 8, seed=0), fn.ReLU(), fn.Linear(8, 3, seed=1))


def test_the_old_imports_still_work():
    assert fn.History is train.History is callbacks.History
    assert fn.EarlyStopping is train.EarlyStopping is callbacks.EarlyStopping
    from fastnn.inference import predict, probabilities

    assert train.predict is predict and train.probabilities is probabilities


def test_history_state_dict_round_trip():
    h = callbacks.History()
    h.append(0, {"loss": 1.5, "accuracy": 0.25})
    h.append(1, {"loss": 1.25, "accuracy": 0.5})
    h.stopped_epoch = 1
    state, arrays = h.state_dict()
    assert arrays == {} and json.loads(json.dumps(state)) == state  # JSON values only
    again = callbacks.History()
    again.load_state_dict(json.loads(json.dumps(state)), arrays)
    assert (again.history, again.epoch, again.stopped_epoch) == (h.history, h.epoch, h.stopped_epoch)
    again.append(2, {"loss": 1.0, "accuracy": 0.75})
    assert h.epoch == [0, 1] and h.history["loss"] == [1.5, 1.25]  # loaded lists are copies


def _params(values):
    return [fn.layers.Parameter(np.full(3, v, np.float32)) for v in values]


def test_early_stopping_state_dict_round_trip_continues_alike():
    """An EarlyStopping restored mid-wait decides every later epoch as the original does."""
    losses = [1.0, 0.8, 0.85, 0.9, 0.79, 0.95, 0.97, 0.99]
    original = fn.EarlyStopping(patience=2)
    original.start(has_validation=False)
    for epoch, value in enumerate(losses[:4]):
        assert not original.update(epoch, {"loss": value}, _params([value]))
    assert (original.best_, original.best_epoch_, original.wait_) == (0.8, 1, 2)
    state, arrays = original.state_dict()
    assert json.loads(json.dumps(state)) == state and list(arrays) == ["0"]
    restored = fn.EarlyStopping(patience=2)
    restored.start(has_validation=False)
    restored.load_state_dict(state, {k: a.copy() for k, a in arrays.items()})
    decisions = []
    for es in (original, restored):
        decisions.append([es.update(e, {"loss": v}, _params([v])) for e, v in enumerate(losses[4:], 4)])
    assert decisions[0] == decisions[1] == [False, False, False, True]
    for es in (original, restored):
        target = _params([0.0])
        es.restore_best(target)
        np.testing.assert_array_equal(target[0].data, np.full(3, 0.79, np.float32))


def test_early_stopping_without_restoring_keeps_no_weights():
    es = fn.EarlyStopping(patience=0, restore_best_weights=False)
    es.start(has_validation=True)
    assert es.monitor_ == "val_loss"
    es.update(0, {"val_loss": 1.0}, _params([1.0]))
    assert es.state_dict()[1] == {}
    target = _params([5.0])
    es.restore_best(target)
    assert target[0].data[0] == 5.0
    with pytest.raises(ValueError, match="monitors 'val_loss'"):
        es.update(1, {"loss": 1.0}, _params([1.0]))


class _Counter:
    """A user callback of PyTorch Lightning's form: ``state_dict() -> dict``."""

    def __init__(self):
        self.seen = 0

    def on_epoch_end(self, epoch, logs):
        self.seen += 1

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


class _Trace:
    """A user callback of fastnn's form: ``(state, arrays)``."""

    def __init__(self):
        self.trace = np.zeros(0)

    def on_epoch_end(self, epoch, logs):
        self.trace = np.append(self.trace, logs["loss"])

    def state_dict(self):
        return {"n": len(self.trace)}, {"trace": self.trace}

    def load_state_dict(self, state, arrays):
        assert arrays["trace"].shape == (state["n"],)
        self.trace = arrays["trace"].copy()


def test_stateful_picks_the_callbacks_with_both_methods():
    class OnlyHalf:
        def state_dict(self):
            return {}

    counter, trace = _Counter(), _Trace()
    assert callbacks.stateful([counter, OnlyHalf(), object(), trace]) == [counter, trace]
    counter.seen = 4
    state, arrays, paired = callbacks.get_state(counter)
    assert (state, arrays, paired) == ({"seen": 4}, {}, False)
    other = _Counter()
    callbacks.set_state(other, state, arrays, paired)
    assert other.seen == 4
    trace.trace = np.array([1.0, 2.0])
    state, arrays, paired = callbacks.get_state(trace)
    assert paired and state == {"n": 2}
    again = _Trace()
    callbacks.set_state(again, state, arrays, paired)
    np.testing.assert_array_equal(again.trace, [1.0, 2.0])


def _fit(epochs, checkpoint=None, resume=False):
    """A run whose validation labels are noise, so early stopping waits and then stops, with two stateful
    callbacks of the user's."""
    X, y = _blobs()
    rng = np.random.default_rng(1)
    model = _model()
    es, counter, trace = fn.EarlyStopping(patience=3), _Counter(), _Trace()
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=0.05),
                  epochs=epochs, verbose=0, seed=0, early_stopping=es, callbacks=[counter, trace],
                  validation_data=(X[:30], rng.integers(0, 3, 30)), checkpoint=checkpoint, resume=resume)
    return model, h, es, counter, trace


def test_a_resume_mid_wait_stops_where_the_uninterrupted_run_stops(tmp_path):
    model, full, es, counter, trace = _fit(200)
    assert full.stopped_epoch is not None and len(full.epoch) < 200
    # Stop the first part while early stopping is waiting: the resumed run must carry on its count.
    waiting = es.best_epoch_ + 1
    assert waiting < full.stopped_epoch
    ckpt = tmp_path / "run.ckpt"
    _fit(waiting + 1, ckpt)
    resumed_model, resumed, es2, counter2, trace2 = _fit(200, ckpt, resume=True)
    assert resumed.epoch == full.epoch and resumed.stopped_epoch == full.stopped_epoch
    assert resumed.history == full.history
    assert (es2.best_, es2.best_epoch_, es2.wait_) == (es.best_, es.best_epoch_, es.wait_)
    assert counter2.seen == counter.seen == len(full.epoch)
    np.testing.assert_array_equal(trace2.trace, trace.trace)
    for a, b in zip(resumed_model.parameters(), model.parameters()):  # the best epoch's, restored
        np.testing.assert_array_equal(a.data, b.data)


def test_a_checkpoint_of_other_stateful_callbacks_is_refused_untouched(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    _fit(2, ckpt)
    model = _model()
    opt = fn.Adam(model.parameters(), lr=0.05)
    counter = _Counter()
    with pytest.raises(ValueError, match=r"stateful callbacks \['_Counter', '_Trace'\]; fit got \['_Counter'\]"):
        read_checkpoint(ckpt, model, opt, schedulers=[], early_stopping=fn.EarlyStopping(), callbacks=[counter])
    assert counter.seen == 0


def test_a_callback_state_that_does_not_load_is_undone(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    _fit(2, ckpt)

    class Picky(_Counter):
        def load_state_dict(self, state):
            if state["seen"] != 7:  # takes back only its own state
                raise ValueError("not mine")
            self.seen = state["seen"]

    model = _model()
    opt = fn.Adam(model.parameters(), lr=0.05)
    es, trace = fn.EarlyStopping(), _Trace()
    es.start(True)
    history = fn.History()
    first = Picky()
    first.seen = 7
    Picky.__name__ = "_Counter"  # the class name the checkpoint recorded
    with pytest.raises(ValueError, match="checkpoint field 'callbacks'"):
        read_checkpoint(ckpt, model, opt, schedulers=[], early_stopping=es, history=history, callbacks=[first, trace])
    assert first.seen == 7 and es.best_ is None and history.epoch == [] and trace.trace.shape == (0,)
