"""A checkpoint knows its run: a fingerprint refused field by field, a lock per path, every field validated.

Each case is one way a real deployment gets it wrong (two jobs on one path, a resume with other data, seed,
batch size or loss, a hand-edited or truncated state), tried on real files and, for the lock, real processes.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fn
from fastnn import io as fio
from fastnn import lr_scheduler
from fastnn.checkpoint import FINGERPRINT_FIELDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}


def data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)


def model_and_opt(lr=1e-2):
    model = fn.Sequential(fn.Linear(6, 12, seed=1), fn.ReLU(), fn.Linear(12, 3, seed=2))
    return model, fn.Adam(model.parameters(), lr=lr)


def fit(path, epochs=2, *, n=2000, data_seed=0, batch_size=32, loss="SoftmaxCrossEntropy", seed=5, lr=1e-2,
        resume=False, **kwargs):
    model, opt = model_and_opt(lr)
    X, y = data(n, data_seed)
    if loss == "MSELoss":
        y = np.eye(3, dtype=np.float32)[y]
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch_size, seed=seed,
                        verbose=0, checkpoint=path, resume=resume, **kwargs)
    return model, opt, history


def state_of(model, opt):
    config, arrays = opt.state_dict()
    return [p.data.copy() for p in model.parameters()], config, {k: a.copy() for k, a in arrays.items()}


def assert_same_state(a, b):
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    assert a[1] == b[1]
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k])


@pytest.mark.parametrize("change, fields", [
    ({"n": 1500}, ["data.shape", "data.hash", "targets.hash"]),
    ({"data_seed": 1}, ["data.hash", "targets.hash"]),
    ({"batch_size": 64}, ["batch_size"]),
    ({"loss": "MSELoss"}, ["loss", "targets.hash"]),
    ({"seed": 6}, ["seed"]),
    ({"lr": 0.1}, ["optimizer.lr"]),
    ({"clip_grad_norm": 1.0}, ["clip_grad_norm"]),
    ({"validation_split": 0.1}, ["validation"]),
], ids=lambda v: ",".join(v) if isinstance(v, list) else None)
def test_resume_refuses_another_run_naming_each_field(tmp_path, change, fields):
    path = tmp_path / "run.ckpt"
    fit(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="a checkpoint of another run") as info:
        fit(path, 4, resume=True, **change)
    message = str(info.value)
    for field in fields:
        assert f"{field}: checkpoint " in message, message
    named = {f for f in FINGERPRINT_FIELDS if f"{f}: checkpoint" in message}
    named |= {f for f in ["optimizer.lr"] if f"{f}: checkpoint" in message}
    assert named == set(fields), message  # each field that differs, and only those
    assert path.read_bytes() == before


def test_a_refused_resume_leaves_the_model_and_optimizer_untouched(tmp_path):
    path = tmp_path / "run.ckpt"
    fit(path)
    model, opt = model_and_opt()
    before = state_of(model, opt)
    X, y = data(1500)
    with pytest.raises(ValueError, match="data.shape"):
        model.fit(X, y, loss="SoftmaxCrossEntropy", optimizer=opt, epochs=4, batch_size=32, seed=5, verbose=0,
                  checkpoint=path, resume=True)
    assert_same_state(before, state_of(model, opt))


def test_allow_changes_continues_with_the_new_settings(tmp_path):
    path = tmp_path / "run.ckpt"
    fit(path)
    model, opt, history = fit(path, 4, resume=True, lr=0.05, batch_size=64,
                              allow_changes=["optimizer.lr", "batch_size"])
    assert history.epoch == [0, 1, 2, 3] and opt.lr == 0.05 and history.fast_path
    assert history.history["lr"][2:] == [0.05, 0.05]
    # The checkpoint now records the new settings: the same resume needs no allowance any more.
    fit(path, 5, resume=True, lr=0.05, batch_size=64)
    with pytest.raises(ValueError, match="unknown fields"):
        fit(path, 6, resume=True, lr=0.05, batch_size=64, allow_changes=["learning_rate"])
    with pytest.raises(ValueError, match="applies to resume=True"):
        fit(tmp_path / "other.ckpt", allow_changes=["batch_size"])


def test_more_data_with_allow_changes(tmp_path):
    path = tmp_path / "run.ckpt"
    fit(path, n=1500)
    _, _, history = fit(path, 3, n=2000, resume=True, allow_changes=["data.shape", "data.hash", "targets.hash"])
    assert history.epoch == [0, 1, 2]


def test_seed_none_continues_the_checkpoint_s_generator(tmp_path):
    path = tmp_path / "run.ckpt"
    fit(path, 4, seed=5)
    full = fit(tmp_path / "full.ckpt", 4, seed=5)[0]
    path2 = tmp_path / "run2.ckpt"
    fit(path2, 2, seed=5)
    resumed = fit(path2, 4, seed=None, resume=True)[0]  # no seed asked for: the saved generator goes on
    for a, b in zip(resumed.parameters(), full.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def rewrite_state(path, edit):
    """Rewrite the checkpoint's JSON state with ``edit(state)`` (which may also delete keys)."""
    architecture, arrays = fio.read_model(path)
    state = json.loads(arrays["checkpoint.json"].tobytes().decode())
    edit(state)
    arrays["checkpoint.json"] = np.frombuffer(json.dumps(state).encode(), np.uint8)
    fio.write_model(path, architecture, arrays)


def _set(path, value):
    def edit(state):
        *keys, last = path.split("/")
        target = state
        for k in keys:
            target = target[k]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return edit


BAD_FIELDS = [
    ("rng", _set("rng", KeyError), "'rng'"),
    ("rng garbage", _set("rng", {"bit_generator": "PCG64", "state": 3}), "'rng'"),
    ("rng unknown generator", _set("rng", {"bit_generator": "os.system", "state": {}}), "'rng'"),
    ("optimizer config missing", _set("optimizer/config", KeyError), "'optimizer.config'"),
    ("optimizer config key missing", _set("optimizer/config/eps", KeyError), "'optimizer'"),
    ("optimizer lr a string", _set("optimizer/config/lr", "fast"), "'optimizer'"),
    ("optimizer lr negative", _set("optimizer/config/lr", -1.0), "'optimizer'"),
    ("epoch a string", _set("epoch", "2"), "'epoch'"),
    ("epoch negative", _set("epoch", -7), "'epoch'"),
    ("epoch a bool", _set("epoch", True), "'epoch'"),
    ("epoch beyond the history", _set("epoch", 5), "'history.epoch'"),
    ("history losses short", _set("history/history/loss", [0.5]), "'history.history'"),
    ("history loss a string", _set("history/history/loss", ["a", "b"]), "'history.history'"),
    ("history missing", _set("history", KeyError), "'history'"),
    ("stopped epoch out of range", _set("history/stopped_epoch", 9), "'history.stopped_epoch'"),
    ("schedulers not a list", _set("schedulers", {}), "'schedulers'"),
    ("run not a dict", _set("run", [1]), "'run'"),
    ("callbacks not a list", _set("callbacks", {}), "'callbacks'"),
    ("callback without its form", _set("callbacks", [{"class": "X", "state": {}}]), "'callbacks'"),
]


@pytest.mark.parametrize("case, edit, field", BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_every_field_is_validated_before_anything_is_modified(tmp_path, case, edit, field):
    path = tmp_path / "run.ckpt"
    fit(path)
    rewrite_state(path, edit)
    model, opt = model_and_opt()
    before = state_of(model, opt)
    X, y = data()
    with pytest.raises(ValueError, match=f"checkpoint field {field}"):
        model.fit(X, y, loss="SoftmaxCrossEntropy", optimizer=opt, epochs=4, batch_size=32, seed=5, verbose=0,
                  checkpoint=path, resume=True)
    assert_same_state(before, state_of(model, opt))


def test_a_bad_scheduler_or_early_stopping_state_is_undone(tmp_path):
    """Fields checked only as they are restored: the restore is rolled back, the error names the field."""
    path = tmp_path / "run.ckpt"

    def run(resume):
        model, opt = model_and_opt()
        sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        X, y = data()
        stopper = fn.EarlyStopping(patience=3)
        before = (state_of(model, opt), sched.state_dict(), stopper.state_dict()[0])
        try:
            model.fit(X, y, loss="SoftmaxCrossEntropy", optimizer=opt, epochs=4, batch_size=32, seed=5, verbose=0,
                      checkpoint=path, resume=resume, callbacks=[sched], early_stopping=stopper)
        finally:
            after = (state_of(model, opt), sched.state_dict(), stopper.state_dict()[0])
        return before, after

    run(False)
    rewrite_state(path, _set("schedulers", [{"class": "StepLR", "state": {"step_size": 1}}]))
    with pytest.raises(ValueError, match="checkpoint field 'schedulers'"):
        run(True)
    run(False)
    rewrite_state(path, _set("early_stopping/wait", -1))
    with pytest.raises(ValueError, match="checkpoint field 'early_stopping'"):
        run(True)


def test_cli_never_prints_a_traceback_for_a_bad_checkpoint(tmp_path):
    X, y = data()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    command = [sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "d.npz"), "--epochs", "2", "-q",
               "--seed", "0", "--checkpoint", str(tmp_path / "c.npz")]
    subprocess.run(command, env=ENV, check=True, capture_output=True, timeout=300)
    for edit in (_set("rng", KeyError), _set("epoch", "2"), _set("optimizer/config", KeyError)):
        subprocess.run(command, env=ENV, check=True, capture_output=True, timeout=300)
        rewrite_state(tmp_path / "c.npz", edit)
        proc = subprocess.run(command + ["--resume", "--epochs", "3"], env=ENV, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("fastnn: error: ") and "checkpoint field" in proc.stderr
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    proc = subprocess.run(command + ["--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "fastnn: error: " in proc.stderr
    # Another job's checkpoint: refused by name, with the fix.
    subprocess.run(command, env=ENV, check=True, capture_output=True, timeout=300)
    np.savez(tmp_path / "d2.npz", X=X[:1500], y=y[:1500])
    other = [a if a != str(tmp_path / "d.npz") else str(tmp_path / "d2.npz") for a in command]
    proc = subprocess.run(other + ["--resume", "--epochs", "3"], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "data.shape: checkpoint [2000, 6], this fit [1500, 6]" in proc.stderr
    assert "--allow-change" in proc.stderr


HOLDER = textwrap.dedent("""
    import sys, time
    from fastnn.checkpoint import locked
    with locked(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_job_on_the_same_path_fails_at_once_naming_the_holder(tmp_path):
    path = tmp_path / "run.ckpt"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        model, opt = model_and_opt()
        before = state_of(model, opt)
        X, y = data()
        start = time.monotonic()
        with pytest.raises(BlockingIOError, match=f"in use by another training run \\(pid {holder.pid} on "):
            model.fit(X, y, loss="SoftmaxCrossEntropy", optimizer=opt, epochs=2, verbose=0, checkpoint=path)
        assert time.monotonic() - start < 5
        assert_same_state(before, state_of(model, opt))
        assert not path.exists()
        # Through the CLI: exit 1, one line naming the holder.
        np.savez(tmp_path / "d.npz", X=X, y=y)
        proc = subprocess.run([sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "d.npz"), "-q",
                               "--checkpoint", str(path)], env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and f"pid {holder.pid}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.send_signal(signal.SIGKILL)  # the lock dies with its process, whatever kills it
        holder.wait(timeout=30)
    fit(path)  # free again
    assert path.exists() and not (tmp_path / "run.ckpt.lock").exists()  # the lock file goes with the run


def test_two_threads_on_one_path(tmp_path):
    """flock is per open file: a second fit in the same process is refused too."""
    import threading

    path = tmp_path / "run.ckpt"
    entered, release, errors = threading.Event(), threading.Event(), []

    class Hold:
        def on_epoch_end(self, epoch, logs):
            entered.set()
            release.wait(30)

    first = threading.Thread(target=lambda: fit(path, 1, callbacks=[Hold()]))
    first.start()
    assert entered.wait(60)
    try:
        fit(path, 1)
    except BlockingIOError as exc:
        errors.append(exc)
    release.set()
    first.join(60)
    assert len(errors) == 1 and f"pid {os.getpid()}" in str(errors[0])


def test_a_checkpoint_from_before_callbacks_were_saved_still_resumes(tmp_path):
    """No ``callbacks`` entry (and early stopping's best weights under their old names): the run continues, and
    ends as an uninterrupted one does."""
    path = tmp_path / "run.ckpt"
    full, _, full_history = fit(tmp_path / "full.ckpt", 4, early_stopping=fn.EarlyStopping(patience=5))
    fit(path, 2, early_stopping=fn.EarlyStopping(patience=5))
    rewrite_state(path, _set("callbacks", KeyError))
    model, _, history = fit(path, 4, resume=True, early_stopping=fn.EarlyStopping(patience=5))
    assert history.history == full_history.history
    for a, b in zip(model.parameters(), full.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
