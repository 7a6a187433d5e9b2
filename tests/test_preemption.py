"""Preemption: SIGTERM and SIGHUP (a batch scheduler, Kubernetes, a closed terminal) are taken like Ctrl-C.

Real signals to real processes: fit takes the signal between batches, puts the model back to its last completed
epoch (which the checkpoint holds), and raises ``fn.TrainingTerminated`` (a ``SystemExit`` of status 128 +
signal); ``fastnn train`` saves that epoch to ``--save`` and exits 143 / 129; a second signal ends the process at
once; ``--resume`` then finishes with exactly the weights of an uninterrupted run.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fn
from fastnn import lr_scheduler, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}
TERMINATING = [signal.SIGTERM, signal.SIGHUP]


def _data(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.int64) + (X[:, 2] > 1)


def _model():
    return fn.Sequential(fn.Linear(8, 16, seed=1), fn.ReLU(), fn.Dropout(0.2), fn.Linear(16, 3, seed=2))


def _fit(model, epochs, **kwargs):
    X, y = _data()
    opt = fn.Adam(model.parameters(), lr=1e-2)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=6 * 38, interval="batch")
    return model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=opt, epochs=epochs, batch_size=16, seed=3,
                     verbose=0, callbacks=[sched, *kwargs.pop("callbacks", [])], **kwargs)


@pytest.mark.parametrize("signum", TERMINATING, ids=lambda s: signal.Signals(s).name)
def test_fit_keeps_the_last_completed_epoch(tmp_path, capsys, signum):
    ckpt = tmp_path / "run.ckpt"

    class Sender:  # the signal arrives while the third epoch trains
        def on_epoch_begin(self, epoch, logs):
            if epoch == 2:
                os.kill(os.getpid(), signum)

    model = _model()
    with pytest.raises(fn.TrainingTerminated) as info:
        _fit(model, 6, checkpoint=ckpt, callbacks=[Sender()])
    exc = info.value
    assert isinstance(exc, SystemExit) and exc.code == 128 + signum and exc.signum == signum
    assert exc.history.epoch == [0, 1]
    assert "after 2 completed epochs" in str(exc) and str(ckpt) in str(exc)
    assert f"fastnn: training stopped by {signal.Signals(signum).name}" in capsys.readouterr().err
    assert signal.getsignal(signum) is signal.SIG_DFL  # fit's handler is gone
    reference = _model()
    _fit(reference, 2)
    for a, b in zip(model.parameters(), reference.parameters()):  # the model is back at epoch 2
        np.testing.assert_array_equal(a.data, b.data)
    resumed = _model()
    assert _fit(resumed, 6, checkpoint=ckpt, resume=True).fast_path  # signals and checkpoints on the compiled step
    full = _model()
    _fit(full, 6)
    for a, b in zip(resumed.parameters(), full.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_program_s_own_handler_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        class Sender:
            def on_epoch_begin(self, epoch, logs):
                if epoch == 1:
                    os.kill(os.getpid(), signal.SIGTERM)

        history = _fit(_model(), 3, callbacks=[Sender()])
        assert history.epoch == [0, 1, 2] and seen == [signal.SIGTERM]  # theirs ran, fit went on
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_calls_are_short_and_do_not_change_the_bits(monkeypatch):
    """The compiled epoch is cut into calls of about _CALL_SECONDS (a signal waits at most that long); how it
    is cut changes nothing: one batch per call trains the same bits as the default."""
    default = _model()
    h = _fit(default, 3)
    assert h.fast_path
    monkeypatch.setattr(train, "_CALL_SECONDS", 0.0)  # every call one batch
    cut = _model()
    h_cut = _fit(cut, 3)
    for a, b in zip(default.parameters(), cut.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert h_cut.history == h.history  # the epoch's loss is one sum over its batches, however they were cut


LONG_FIT = textwrap.dedent("""
    import sys, time, numpy as np, fastnn as fn
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400_000 if sys.argv[1] == "run" else 2_000, 32)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = fn.Sequential(fn.Linear(32, 512, seed=1), fn.ReLU(), fn.Linear(512, 512, seed=2), fn.ReLU(),
                          fn.Linear(512, 2, seed=3))

    class Slow:
        def on_epoch_begin(self, epoch, logs):
            print("training", flush=True)
        def on_epoch_end(self, epoch, logs):
            if sys.argv[1] == "sleep":  # a slow callback, during which signals are handled at once
                print("sleeping", flush=True)
                time.sleep(60)

    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.01), epochs=100,
              batch_size=16, verbose=0, callbacks=[Slow()])
""")


def _start(tmp_path, mode):
    script = tmp_path / "long_fit.py"
    script.write_text(LONG_FIT)
    proc = subprocess.Popen([sys.executable, str(script), mode], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc


def _wait_for(proc, word):
    line = proc.stdout.readline()
    while line and line.strip() != word:
        line = proc.stdout.readline()
    assert line.strip() == word, proc.communicate(timeout=60)


def test_a_signal_mid_epoch_is_taken_within_a_fraction_of_a_second(tmp_path):
    """One epoch of 25,000 batches takes many seconds; the signal is taken between two calls of ~0.1 s."""
    proc = _start(tmp_path, "run")
    _wait_for(proc, "training")
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert proc.returncode == 143, err
    assert "training stopped by SIGTERM: the model holds the weights after 0 completed epochs" in err
    assert waited < 5, waited  # generous for a loaded machine; typically ~0.1 s
    assert "Traceback" not in err


@pytest.mark.parametrize("signum", TERMINATING, ids=lambda s: signal.Signals(s).name)
def test_a_second_signal_ends_the_process_at_once(tmp_path, signum):
    proc = _start(tmp_path, "sleep")
    _wait_for(proc, "sleeping")
    proc.send_signal(signum)  # taken after the callback: fit would stop then
    time.sleep(0.2)
    proc.send_signal(signum)  # but the second one does not wait for that
    proc.communicate(timeout=30)
    assert proc.returncode == -signum  # killed by the signal itself, as without fastnn


def _train_command(tmp_path, tag, *extra):
    return [sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "train.npz"), "--hidden", "128,128",
            "--epochs", "20", "--batch-size", "16", "--seed", "1", "--save", str(tmp_path / f"{tag}.npz"),
            "--checkpoint", str(tmp_path / f"{tag}.ckpt"), *extra]


@pytest.mark.parametrize("signum", TERMINATING, ids=lambda s: signal.Signals(s).name)
def test_cli_train_saves_both_files_and_exits_by_the_convention(tmp_path, signum):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 20)).astype(np.float32)
    np.savez(tmp_path / "train.npz", X=X, y=(X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1))
    proc = subprocess.Popen(_train_command(tmp_path, "run", "-q"), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "run.ckpt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, (out, err)
    name = signal.Signals(signum).name
    assert f"fastnn: stopped by {name}: saved the model after" in err and str(tmp_path / "run.npz") in err
    assert str(tmp_path / "run.ckpt") in err and "--resume" in err and "Traceback" not in err
    saved = fn.load(tmp_path / "run.npz")  # the last completed epoch, written whole
    assert all(np.isfinite(p.data).all() for p in saved.parameters())
    if signum != signal.SIGTERM:
        return  # the same checkpoint either way: one resume suffices
    subprocess.run(_train_command(tmp_path, "run", "-q", "--resume"), env=ENV, check=True, capture_output=True,
                   timeout=600)
    subprocess.run(_train_command(tmp_path, "reference", "-q"), env=ENV, check=True, capture_output=True,
                   timeout=600)
    for a, b in zip(fn.load(tmp_path / "run.npz").parameters(), fn.load(tmp_path / "reference.npz").parameters()):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("spelling", ["same", "dot", "link"])
def test_cli_save_and_checkpoint_on_one_file_is_a_usage_error(tmp_path, capsys, spelling):
    from fastnn.cli import main

    np.savez(tmp_path / "train.npz", X=np.zeros((10, 3), np.float32), y=np.zeros(10, np.int64))
    save = tmp_path / "m.npz"
    other = {"same": save, "dot": tmp_path / "." / "m.npz", "link": tmp_path / "link.npz"}[spelling]
    if spelling == "link":
        save.write_bytes(b"")
        other.symlink_to(save)
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tmp_path / "train.npz"), "--save", str(save), "--checkpoint", str(other)])
    assert info.value.code == 2
    assert "--save and --checkpoint name the same file" in capsys.readouterr().err
    assert not save.exists() or save.read_bytes() == b""  # untouched


def test_cli_a_run_without_seed_names_the_seed_to_resume_with(tmp_path):
    """Without --seed the default validation split is drawn afresh each run, so a resume needs the interrupted
    run's seed: the interruption message names it, and a resume without it is refused with that hint."""
    import re

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 20)).astype(np.float32)
    np.savez(tmp_path / "train.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    command = [sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "train.npz"), "--hidden", "256,256",
               "--batch-size", "16", "--save", str(tmp_path / "m.npz"), "--checkpoint", str(tmp_path / "c.ckpt"), "-q"]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "c.ckpt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    seed = re.search(r"continue with the same command with --seed (\d+) and --resume", err)
    assert seed, err
    refused = subprocess.run(command + ["--resume"], env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 1 and "resume with the --seed of the run that wrote the checkpoint" in refused.stderr
    resumed = subprocess.run(command + ["--resume", "--seed", seed.group(1)], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference = [a if a != str(tmp_path / "m.npz") else str(tmp_path / "ref.npz") for a in command]
    reference = [a if a != str(tmp_path / "c.ckpt") else str(tmp_path / "ref.ckpt") for a in reference]
    subprocess.run(reference + ["--seed", seed.group(1)], env=ENV, check=True, capture_output=True, timeout=300)
    for a, b in zip(fn.load(tmp_path / "m.npz").parameters(), fn.load(tmp_path / "ref.npz").parameters()):
        np.testing.assert_array_equal(a.data, b.data)  # exactly the uninterrupted run with that seed


def test_cli_a_signal_during_the_cross_validation_saves_nothing(tmp_path):
    """A small table is cross-validated before its final fit: a SIGTERM then leaves no file behind (no model to keep)
    and says so."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    rows = ["a,b,c,d,y"] + [",".join(f"{v:.5f}" for v in x) + f",{'yes' if x[0] > 0 else 'no'}" for x in X]
    (tmp_path / "small.csv").write_text("\n".join(rows) + "\n")
    command = [sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "small.csv"), "--target", "y",
               "--seed", "0", "--save", str(tmp_path / "m.npz"), "--checkpoint", str(tmp_path / "c.ckpt")]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # the first weight decay's folds are done: well inside the cross-validation
        lines.append(line)
        if line.startswith("  weight decay 0:"):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, "".join(lines) + out + err
    assert "chose weight decay" not in out
    assert "fastnn: stopped by SIGTERM during the cross-validation, before the final fit: nothing was saved" in err
    assert "Traceback" not in err
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "c.ckpt").exists()
