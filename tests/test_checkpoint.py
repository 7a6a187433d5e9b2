"""Checkpoints and exact resume; Ctrl-C keeps the work; SIGKILL at random moments loses nothing."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fn
from fastnn import lr_scheduler
from fastnn.checkpoint import read_checkpoint

# One script for the in-process and the killed runs: a run with every kind of state a checkpoint keeps.
SCRIPT = textwrap.dedent("""
    import sys, numpy as np, fastnn as fn
    from fastnn import lr_scheduler

    def run(epochs, checkpoint=None, resume=False, callbacks=(), n=300):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, 8)).astype(np.float32)
        y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.int64) + (X[:, 2] > 1)
        model = fn.Sequential(fn.Linear(8, 16, seed=1), fn.ReLU(), fn.Dropout(0.2), fn.Linear(16, 3, seed=2))
        opt = fn.Adam(model.parameters(), lr=1e-2)
        schedulers = [lr_scheduler.StepLR(opt, step_size=2, gamma=0.7),
                      lr_scheduler.CosineAnnealingLR(opt, T_max=200, interval="batch")]
        h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=opt, epochs=epochs, batch_size=16, seed=3,
                      verbose=0, validation_split=0.2, early_stopping=fn.EarlyStopping(patience=50),
                      callbacks=[*schedulers, *callbacks], checkpoint=checkpoint, resume=resume)
        return model, h

    if __name__ == "__main__":
        model, h = run(int(sys.argv[1]), sys.argv[2], resume=True, n=int(sys.argv[4]))
        # atomically: a signal landing after fit returned, while the result is written, must not leave half a file
        from fastnn.io import atomic_write
        with atomic_write(sys.argv[3]) as f:
            np.savez(f, *[p.data for p in model.parameters()], loss=np.array(h.history["loss"]))
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "train_run.py"
    path.write_text(SCRIPT)
    return path


def _run_module(script):
    namespace = {"__name__": "train_run"}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    return namespace["run"]


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


def test_resume_is_bit_identical(script, tmp_path):
    run = _run_module(script)
    full_model, full = run(12)
    ckpt = tmp_path / "run.ckpt"
    run(5, ckpt)  # "killed" after 5 epochs
    model, h = run(12, ckpt, resume=True)
    assert full.fast_path and h.fast_path  # checkpoints, dropout and both schedules on the compiled step
    for a, b in zip(_weights(model), _weights(full_model)):
        np.testing.assert_array_equal(a, b)
    assert h.history == full.history and h.epoch == full.epoch == list(range(12))
    model, h = run(12, ckpt, resume=True)  # resuming a finished run trains nothing more
    for a, b in zip(_weights(model), _weights(full_model)):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_run_is_refused_untouched(script, tmp_path):
    run = _run_module(script)
    ckpt = tmp_path / "run.ckpt"
    run(2, ckpt)
    model = fn.Sequential(fn.Linear(8, 4), fn.ReLU(), fn.Linear(4, 3))
    before = _weights(model)
    with pytest.raises(ValueError, match="checkpoint of another architecture"):
        model.fit(np.zeros((10, 8), np.float32), np.zeros(10, np.int64), loss=fn.SoftmaxCrossEntropy(),
                  optimizer=fn.Adam(model.parameters()), checkpoint=ckpt, resume=True, verbose=0)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        model.fit(np.zeros((10, 8), np.float32), np.zeros(10, np.int64), loss=fn.SoftmaxCrossEntropy(),
                  optimizer=fn.Adam(model.parameters()), resume=True, verbose=0)
    with pytest.raises(ValueError, match="not a valid fastnn model file"):
        (tmp_path / "junk.ckpt").write_bytes(b"PK\x03\x04 not a zip")
        model.fit(np.zeros((10, 8), np.float32), np.zeros(10, np.int64), loss=fn.SoftmaxCrossEntropy(),
                  optimizer=fn.Adam(model.parameters()), checkpoint=tmp_path / "junk.ckpt", resume=True, verbose=0)


@pytest.mark.parametrize("general", [False, True], ids=["compiled", "layer-by-layer"])
def test_ctrl_c_keeps_the_last_completed_epoch(script, tmp_path, monkeypatch, general):
    """SIGINT mid-epoch: KeyboardInterrupt (not SystemError) carrying the history, the model and optimizer
    back at the end of the last completed epoch, which is exactly what the checkpoint holds."""
    if general:
        from fastnn import fused
        monkeypatch.setattr(fused, "make_runner", lambda *a, **k: None)
    run = _run_module(script)
    ckpt = tmp_path / "run.ckpt"
    calls = []

    class Interrupt:  # a Ctrl-C arriving while the third epoch trains
        def on_epoch_begin(self, epoch, logs):
            calls.append(epoch)
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="after 2 completed epochs") as info:
        run(6, ckpt, callbacks=[Interrupt()])
    assert info.value.history.epoch == [0, 1]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    model, _ = run(2)
    fresh = fn.Sequential(fn.Linear(8, 16), fn.ReLU(), fn.Dropout(0.2), fn.Linear(16, 3))
    opt = fn.Adam(fresh.parameters())
    read_checkpoint(ckpt, fresh, opt, schedulers=[lr_scheduler.StepLR(opt, step_size=2, gamma=0.7),
                                                   lr_scheduler.CosineAnnealingLR(opt, T_max=200, interval="batch")],
                    early_stopping=fn.EarlyStopping(patience=50))
    for a, b in zip(_weights(model), _weights(fresh)):
        np.testing.assert_array_equal(a, b)


def _kill_and_resume(script, tmp_path, kills, seed, n=8_000, sig=signal.SIGKILL):
    """Kill training processes with ``sig`` at random moments and resume each time, until ``kills`` kills
    landed; every run that gets to the end must equal an uninterrupted one bit for bit, and whatever
    checkpoint is on disk must read back whole. A SIGTERM must end the process with 143 (fit took it), or
    with -15 before fit began. Returns the counts."""
    rng = np.random.default_rng(seed)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    reference = tmp_path / "reference.npz"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), "12", str(tmp_path / "ref.ckpt"), str(reference), str(n)],
                   env=env, check=True, timeout=300)
    duration = time.perf_counter() - start
    want = np.load(reference)
    ckpt, out = tmp_path / "killed.ckpt", tmp_path / "killed.npz"
    counts = {"trials": 0, "killed": 0, "completed runs": 0, "lost": 0}
    completed = True
    while counts["killed"] < kills and counts["trials"] < 4 * kills:
        counts["trials"] += 1
        proc = subprocess.Popen([sys.executable, str(script), "12", str(ckpt), str(out), str(n)], env=env)
        time.sleep(rng.uniform(0.1, duration))
        if proc.poll() is None:
            proc.send_signal(sig)
            counts["killed"] += 1
        proc.wait(timeout=300)
        if sig == signal.SIGTERM:
            assert proc.returncode in (0, 143, -signal.SIGTERM), proc.returncode
            counts["taken by fit"] = counts.get("taken by fit", 0) + (proc.returncode == 143)
        completed = False
        if ckpt.exists():  # never half-written: whatever is there reads back whole
            model = fn.Sequential(fn.Linear(8, 16), fn.ReLU(), fn.Dropout(0.2), fn.Linear(16, 3))
            opt = fn.Adam(model.parameters())
            read_checkpoint(ckpt, model, opt, schedulers=[lr_scheduler.StepLR(opt, step_size=2),
                                                          lr_scheduler.CosineAnnealingLR(opt, T_max=200,
                                                                                         interval="batch")],
                            early_stopping=fn.EarlyStopping())
        if out.exists():  # this run of resumptions got to the end: compare, then start another
            got = np.load(out)
            counts["completed runs"] += 1
            counts["lost"] += any(not np.array_equal(got[k], want[k]) for k in want.files)
            out.unlink()
            ckpt.unlink()
            completed = True
    if not completed:  # finish the last run of resumptions
        subprocess.run([sys.executable, str(script), "12", str(ckpt), str(out), str(n)], env=env, check=True,
                       timeout=300)
        got = np.load(out)
        counts["completed runs"] += 1
        counts["lost"] += any(not np.array_equal(got[k], want[k]) for k in want.files)
    # A kill between a write's temporary file and its rename leaves the file; the next save removes it, so
    # none is left once the last run of resumptions has finished.
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert counts["lost"] == 0, counts
    return counts


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_signal_at_random_moments_then_resume(script, tmp_path, sig):
    counts = _kill_and_resume(script, tmp_path, kills=3, seed=0, sig=sig)
    assert counts["killed"] == 3 and counts["completed runs"] >= 1, counts


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_signal_at_random_moments_then_resume_many(script, tmp_path, sig):
    counts = _kill_and_resume(script, tmp_path, kills=25, seed=1, sig=sig)
    print(counts)
    assert counts["killed"] == 25 and counts["completed runs"] >= 1, counts
