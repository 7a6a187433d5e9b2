"""fastnn._cpu: the CPUs other processes keep busy, and the BLAS thread count each compiled call takes from it."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn as fn
from fastnn import _config, _cpu


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _sampler(busy, own, clock, cpus=(0, 1), running=(0,)):
    return _cpu.Sampler(cpus=cpus, busy=lambda: busy[0], own=lambda: own[0], clock=clock,
                        running=lambda: running[0])


def test_read_busy_sums_the_busy_fields_of_the_given_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 1 5 100 7 0 2 3 4 0\n"
                    "cpu0 100 10 50 1000 70 0 20 30 40 0\n"
                    "cpu1 200 0 100 900 0 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    hz = _cpu._HZ
    assert _cpu.read_busy([0], stat) == pytest.approx((100 + 10 + 50 + 20 + 30) / hz)  # idle, iowait, guest out
    assert _cpu.read_busy([0, 1], stat) == pytest.approx((210 + 300) / hz)
    assert _cpu.read_busy([0], tmp_path / "missing") is None


def _task(tasks, tid, name, state):
    (tasks / str(tid)).mkdir()
    (tasks / str(tid) / "stat").write_text(f"{tid} ({name}) {state} 1 {tid} {tid} 0 -1 4194560 100 0\n")


def test_read_running_counts_other_processes_running_threads(tmp_path):
    stat, tasks = tmp_path / "stat", tmp_path / "task"
    stat.write_text("cpu  10 1 5 100 7 0 2 3 4 0\nctxt 99\nprocs_running 4\nprocs_blocked 1\n")
    tasks.mkdir()
    _task(tasks, 11, "python", "R")  # the reading thread
    _task(tasks, 12, "x) R (y", "S")  # a sleeping thread whose name holds ") R ("
    _task(tasks, 13, "openblas", "R")  # an idle BLAS thread spinning
    assert _cpu.read_running(stat, tasks) == 2
    stat.write_text("procs_running 2\n")  # this process's two running threads: nobody else
    assert _cpu.read_running(stat, tasks) == 0
    stat.write_text("procs_running 1\n")  # the reading thread alone: the tasks are not read at all
    assert _cpu.read_running(stat, tmp_path / "missing") == 0
    stat.write_text("cpu  10 1 5 100 7 0 2 3 4 0\n")  # no such line
    assert _cpu.read_running(stat, tasks) is None
    assert _cpu.read_running(tmp_path / "missing", tasks) is None
    assert _cpu.read_running(stat, tmp_path / "missing") is None


def test_sampler_counts_what_others_used_between_readings():
    busy, own, clock = [100.0], [5.0], Clock()
    s = _sampler(busy, own, clock)
    assert s() is None  # one reading: no interval yet
    clock.t, busy[0], own[0] = 1.0, 101.5, 5.5  # 1.5 CPU-seconds busy, 0.5 of them this process's
    assert s() == pytest.approx(1.0)
    clock.t, busy[0] = 1.01, 103.0  # sooner than MIN_INTERVAL: the last figure, no new reading
    assert s() == pytest.approx(1.0)
    clock.t, busy[0], own[0] = 2.0, 110.0, 5.5  # more than the machine has: clamped to its 2 CPUs
    assert s() == 2.0
    clock.t, busy[0], own[0] = 3.0, 110.3, 5.8  # only this process: nobody else
    assert s() == pytest.approx(0.0, abs=1e-9)


def test_recent_averages_over_the_window_and_forgets_what_is_long_past():
    busy, own, clock = [0.0], [0.0], Clock()
    s = _sampler(busy, own, clock)
    assert s.recent() is None  # one reading
    for _ in range(5):  # a neighbour on one CPU for half a second, in 0.1 s steps
        clock.t += 0.1
        busy[0] += 0.1
        s()
    assert s.recent() == pytest.approx(1.0)
    for _ in range(5):  # then quiet for half a second: it was here a moment ago
        clock.t += 0.1
        s()
    assert s.recent() == pytest.approx(0.5)
    for _ in range(10):
        clock.t += 0.1
        s()
    assert s.recent() == pytest.approx(0.0, abs=1e-9)
    clock.t += 10 * _cpu.WINDOW  # nothing read for a long time: unknown, not an average over the gap
    busy[0] += 5.0
    assert s.recent() is None
    clock.t += 0.2
    assert s.recent() == pytest.approx(0.0, abs=1e-9)


def test_an_unreadable_machine_is_not_guessed_at():
    s = _cpu.Sampler(cpus=[0, 1], busy=lambda: None)
    assert s() is None and s.recent() is None and not s.readable


@pytest.fixture
def shared(monkeypatch):
    """The process's sampler replaced by one whose readings the test sets; two CPUs, no user limits."""
    busy, own, clock, running = [0.0], [0.0], Clock(), [0]
    sampler = _sampler(busy, own, clock, running=running)
    monkeypatch.setattr(_cpu, "_sampler", sampler)
    monkeypatch.setattr(_config, "BLAS_THREADS", None)
    monkeypatch.setattr(_config, "thread_limit", lambda: 2)

    def load(others, seconds=0.5):  # others' CPUs for that long, read every 0.1 s as a fit's calls do
        running[0] = int(round(others))
        for _ in range(int(round(seconds / 0.1))):
            clock.t += 0.1
            busy[0] += others * 0.1
            sampler()

    load.running = running
    return sampler, load, clock


def test_threads_now_glances_at_running_threads_until_it_has_an_interval(shared):
    sampler, load, clock = shared
    running = load.running
    assert _cpu.threads_now(64) == 2  # the first call: nobody else running at this instant
    running[0] = 1
    assert _cpu.threads_now(64) == 1  # one other thread running: it holds one of the two CPUs
    running[0] = 5
    assert _cpu.threads_now(64) == 1
    running[0] = None
    assert _cpu.threads_now(64) == 1  # nothing readable: one thread, for one short call
    load(0.0)
    running[0] = 1  # an interval of a quiet machine overrules the glance
    assert _cpu.threads_now(64) == 2
    clock.t += 3 * _cpu.WINDOW  # a pause: what the readings say is long past, and the glance decides again
    assert _cpu.threads_now(64) == 1
    running[0] = 0
    clock.t += 3 * _cpu.WINDOW
    assert _cpu.threads_now(64) == 2
    assert _cpu.threads_now(16) == 1  # small batches: one thread whatever the load


def test_threads_now_leaves_the_cpus_others_hold(shared):
    sampler, load, clock = shared
    load(0.0)
    assert _cpu.threads_now(64) == 2  # a quiet machine: every thread
    assert _cpu.threads_now(16) == 1  # small batches: one thread whatever the load
    load(0.2, seconds=2 * _cpu.WINDOW)
    assert _cpu.threads_now(64) == 2  # a fifth of a CPU busy elsewhere still counts as free
    load(1.0, seconds=2 * _cpu.WINDOW)
    assert _cpu.threads_now(64) == 1  # a neighbour on one of the two CPUs
    load(0.0, seconds=0.4 * _cpu.WINDOW)
    assert _cpu.threads_now(64) == 1  # gone for a moment: the last second still holds it
    load(0.0, seconds=_cpu.WINDOW)
    assert _cpu.threads_now(64) == 2


def test_a_fixed_thread_count_ignores_the_load(shared, monkeypatch):
    sampler, load, clock = shared
    sampler()
    load(2.0)
    monkeypatch.setattr(_config, "BLAS_THREADS", 2)
    assert _cpu.threads_now(64) == 2


def test_predict_gives_the_same_bits_whatever_the_load(shared):
    """fit's BLAS threads follow the load; predict's do not: OpenBLAS sums in another order on another thread
    count (a 500-row predict of 784-128-64-10 moved by up to 2.8e-6 between one and two threads, measured), and
    the same model must predict the same rows the same from call to call. (The quick start's check of its
    reloaded model failed 2 times in 12 on a 2-CPU machine while predict followed the load.)"""
    sampler, load, clock = shared
    model = fn.Sequential(fn.Linear(784, 128, seed=0), fn.ReLU(), fn.Linear(128, 10, seed=1))
    X = np.random.default_rng(0).random((1500, 784)).astype(np.float32)
    first = model.predict(X)
    for others, fit_threads in ((1.0, 1), (0.0, 2), (1.0, 1)):
        load(others, seconds=2 * _cpu.WINDOW)
        assert _cpu.threads_now(1024, 784 * 128) == fit_threads  # the load is seen: fit's calls follow it
        np.testing.assert_array_equal(model.predict(X), first)
        np.testing.assert_array_equal(model.predict(X, batch_size=256)[:256], model.predict(X[:256]))


def test_pace_goes_back_to_one_thread_after_a_slow_call(shared):
    sampler, load, clock = shared
    sampler()
    load(0.0)
    pace = _cpu.Pace(64, clock=clock)
    assert pace.threads() == 2
    pace.record(1, 0.10, 100)  # 1 ms a batch on one thread
    pace.record(2, 0.50, 100)  # 5 ms on two: a neighbour /proc/stat does not show
    load(0.0)
    assert pace.threads() == 1
    load(0.0, seconds=_cpu.RETRY)
    assert pace.threads() == 2  # tried again later
    pace.record(2, 0.06, 100)
    assert pace.threads() == 2  # faster than one thread: kept


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(_cpu.allowed_cpus()) < 2,
                    reason="needs Linux's /proc/stat and two CPUs")
def test_a_real_neighbour_is_seen_and_fit_still_trains(monkeypatch):
    monkeypatch.setattr(_config, "BLAS_THREADS", None)
    sampler = _cpu.Sampler()
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        sampler()
        time.sleep(0.5)
        assert sampler() >= 0.7  # the spinning process, whatever this one does
        assert _cpu.read_running() >= 1  # and it is running at this instant
        monkeypatch.setattr(_cpu, "_sampler", sampler)
        n = _cpu.threads_now(256)
        assert 1 <= n <= len(sampler.cpus) - 1
        rng = np.random.default_rng(0)
        X, y = rng.random((2000, 32), dtype=np.float32), rng.integers(0, 3, 2000)
        m = fn.Sequential(fn.Linear(32, 64, seed=0), fn.ReLU(), fn.Linear(64, 3, seed=1))
        h = m.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(m.parameters(), lr=0.1), epochs=2,
                  batch_size=256, seed=0, verbose=0)
        assert h.fast_path and np.isfinite(h.history["loss"]).all()
        assert m.predict(X[:300]).shape == (300, 3)
    finally:
        proc.kill()
        proc.wait()
