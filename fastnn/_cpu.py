"""How many of this process's CPUs the rest of the machine keeps busy: what a BLAS thread count must leave room for.

A BLAS call split over two threads finishes when its slower half does. With another process keeping one of two
cores busy, one half waits a scheduler time slice for its core, call after call, and a shuffled epoch that takes
0.4 s on one thread takes seconds on two (issue 18; ``docs/performance.md``, "A busy machine").

Linux counts every CPU's busy time since boot in ``/proc/stat`` and this process's own (all its threads) in
``os.times()``. Their difference over an interval, divided by its length, is how many of the CPUs this process may
run on others used meanwhile -- a neighbour's work, the hypervisor's ``steal`` -- whatever this process did. A
reading is a file read, so :func:`others` samples at most every :data:`MIN_INTERVAL` seconds and otherwise returns
the last figure. Elsewhere (no ``/proc/stat``) it returns None: no neighbour known. Until two readings span an
interval (a process's first calls, the first after a pause), :func:`read_running` glances at how many of others'
threads are running at that instant instead.
"""
import collections
import os
import threading
import time

from fastnn import _config

__all__ = ["Pace", "threads_now", "others", "allowed_cpus", "read_busy", "read_running", "Sampler", "MIN_INTERVAL",
           "WINDOW"]

# Shorter than a training call (~0.1 s), longer than a few scheduler ticks (10 ms): /proc/stat counts in ticks.
MIN_INTERVAL = 0.05
# The seconds over which others' CPU use is averaged (see Sampler.recent).
WINDOW = 1.0
# Pace: how much slower per batch a call on several threads may run than one on one thread, and for how long one
# that did keeps the fit on one thread.
SLOWER, RETRY = 1.1, 2.0


def allowed_cpus():
    """The CPUs this process may run on (``taskset``, cgroups' cpusets), as /proc/stat names them."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def read_busy(cpus, path="/proc/stat"):
    """Seconds the CPUs ``cpus`` have spent busy since boot (user, nice, system, irq, softirq, steal), from
    ``path``; None if it cannot be read. Guest time is already inside user time and is not added again."""
    wanted = {f"cpu{c}".encode() for c in cpus}
    ticks = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:
                    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
                    ticks += user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        return None
    return ticks / _HZ


def read_running(path="/proc/stat", tasks="/proc/self/task"):
    """How many threads of other processes are running or waiting for a CPU at this instant: ``procs_running``
    of ``path`` (the whole machine's, this reading thread included) less this process's threads in state R under
    ``tasks`` (an idle OpenBLAS thread spinning for work is one of them); None if either cannot be read. One
    glance, for a choice that cannot wait for an interval of :func:`read_busy`."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    total = int(line.split()[1])
                    break
            else:
                return None
        if total <= 1:  # this thread alone: no need to read the others' states (~20 us a thread)
            return 0
        mine = 0
        for tid in os.listdir(tasks):
            try:
                with open(os.path.join(tasks, tid, "stat"), "rb") as f:
                    stat = f.read()
            except OSError:  # a thread that ended meanwhile
                continue
            close = stat.rfind(b")")  # the name in parentheses may hold spaces and parentheses
            mine += stat[close + 2:close + 3] == b"R"
    except (OSError, ValueError):
        return None
    return max(0, total - mine)


def _own_seconds():
    t = os.times()
    return t.user + t.system


try:
    _HZ = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _HZ = 100


class Sampler:
    """Others' CPUs, from readings at most every ``min_interval`` seconds. ``busy``, ``own`` and ``clock`` are the
    three readings (replaceable in tests): the machine's busy seconds on ``cpus``, this process's CPU seconds, and
    a monotonic clock; ``running`` is the glance :func:`threads_now` takes while they know nothing yet."""

    def __init__(self, cpus=None, busy=None, own=_own_seconds, clock=time.monotonic, min_interval=MIN_INTERVAL,
                 running=read_running):
        self.cpus = allowed_cpus() if cpus is None else list(cpus)
        self._busy = busy if busy is not None else (lambda: read_busy(self.cpus))
        self.running = running  # others' threads running at this instant (read_running), or None
        self._own, self._clock, self.min_interval = own, clock, min_interval
        self._lock = threading.Lock()
        self._readings = collections.deque()  # (clock, busy, own), spanning about the last WINDOW seconds
        self.value = None  # CPUs others used between the last two readings, or None before two
        self.readable = True  # False once the machine's busy time could not be read (no /proc/stat)

    def _used(self, a, b):
        return min(float(len(self.cpus)), max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / (b[0] - a[0])))

    def _read(self):
        now = self._clock()
        if self._readings and now - self._readings[-1][0] < self.min_interval:
            return
        busy = self._busy()
        if busy is None:
            self.readable = False
            return
        self._readings.append((now, busy, self._own()))
        if len(self._readings) >= 2:
            self.value = self._used(self._readings[-2], self._readings[-1])

    def __call__(self):
        """CPUs others used between the last two readings (taking one now if due)."""
        with self._lock:
            self._read()
            return self.value

    def recent(self, window=WINDOW):
        """CPUs others used on average over about the last ``window`` seconds (taking a reading now if due), or None
        without two readings in the last 2 ``window``: a neighbour that paused a moment ago is likely to be back,
        and one short interval is too coarse to trust (/proc/stat counts in scheduler ticks)."""
        with self._lock:
            self._read()
            r = self._readings
            now = r[-1][0] if r else self._clock()
            while len(r) >= 2 and r[1][0] <= now - window:  # keep one reading from before the window
                r.popleft()
            while r and r[0][0] < now - 2 * window:  # a reading from long ago says nothing of now
                r.popleft()
            return self._used(r[0], r[-1]) if len(r) >= 2 else None


_sampler = None
_sampler_lock = threading.Lock()


def _shared():
    global _sampler
    if _sampler is None:
        with _sampler_lock:
            if _sampler is None:
                _sampler = Sampler()
    return _sampler


def others():
    """How many CPUs (a float) other processes used since the last call that measured (at least
    :data:`MIN_INTERVAL` ago), or the last figure; None before the first interval or without ``/proc/stat``."""
    return _shared()()


def threads_now(batch_size, width=None):
    """BLAS threads for a compiled call on batches of ``batch_size`` rows of a network whose largest layer has
    ``width`` weights (None: not known), asked before every call:
    :func:`fastnn._config.blas_threads`, lowered to the CPUs other processes have left free over the last
    :data:`WINDOW` seconds (a CPU counts as free while they use at most a quarter of it), and one thread while
    nothing is known yet (a process's first calls, or the first after a pause of 2 :data:`WINDOW` seconds) lowered
    by the other processes' threads running at that instant (:func:`read_running`; one thread if that cannot be
    read either). ``FASTNN_BLAS_THREADS`` fixes the count whatever the load."""
    n = _config.blas_threads(batch_size, width)
    if n == 1 or _config.BLAS_THREADS is not None:
        return n
    sampler = _shared()
    busy = sampler.recent()
    if busy is None:
        if not sampler.readable:
            return n
        running = sampler.running()
        return 1 if running is None else max(1, min(n, len(sampler.cpus) - running))
    return max(1, min(n, int(len(sampler.cpus) - busy + 0.25)))


class Pace:
    """One fit's thread choice, checked against what its calls took: a call on several threads that ran
    :data:`SLOWER` times slower per batch than the last one-thread call sends the next calls back to one thread
    for :data:`RETRY` seconds, whatever ``/proc/stat`` says (a neighbour it cannot see: another container's, the
    hypervisor's). ``clock`` is replaceable in tests."""

    def __init__(self, batch_size, width=None, clock=time.monotonic):
        self.batch_size, self.width, self._clock = batch_size, width, clock
        self._last = {}  # threads -> (clock, seconds per batch) of the last call on that many

    def threads(self):
        n = threads_now(self.batch_size, self.width)
        if n > 1:
            mine, one = self._last.get(n), self._last.get(1)
            if mine and one and self._clock() - mine[0] < RETRY and mine[1] > SLOWER * one[1]:
                return 1
        return n

    def record(self, threads, seconds, batches):
        if batches > 0:
            self._last[threads] = (self._clock(), seconds / batches)
