"""The one place Numba options live.

Every ``@njit`` in fastnn is made by :func:`jit`, so caching, fastmath and
parallelism are decided here and nowhere else (``tests/test_config.py`` fails
if a ``fastmath=``/``cache=``/``parallel=`` keyword appears in another module).

Environment overrides, read once at import:

``FASTNN_CACHE=0``
    Do not write or read Numba's on-disk cache.
``FASTNN_FASTMATH=0``
    Compile the matmul-style loops without any fastmath flag (and without the
    on-disk cache, which would otherwise serve code compiled with them).
``FASTNN_BLAS=numpy|numba``
    Which BLAS the compiled kernels call: NumPy's OpenBLAS (default, faster at the
    network's shapes; falls back to Numba's when NumPy's has no ILP64 CBLAS) or the
    one Numba's ``np.dot`` uses (SciPy's). See :mod:`fastnn.kernels._blas`.
``FASTNN_GEMM=auto|avx2|blas``
    Who multiplies the float32 matrices of the ahead-of-time kernels: ``auto`` (default) is fastnn's own
    AVX-512 GEMM where the CPU has AVX-512 (:mod:`fastnn.kernels._aot_gemm.c`), NumPy's OpenBLAS elsewhere;
    ``avx2`` is fastnn's own GEMM with its AVX2 kernels on any AVX2 CPU (the same bits as the AVX-512 ones, at
    any thread count; 0.7-1.0x OpenBLAS's epochs on an AVX2 EPYC, docs/performance.md); ``blas`` is always
    NumPy's OpenBLAS. float64 is always OpenBLAS's.
``FASTNN_BLAS_THREADS=N``
    BLAS threads for the compiled training step (default: chosen by batch size
    within the user's limits, see :func:`blas_threads`). ``1`` makes results
    independent of the machine's core count.

The on-disk cache heals itself: an entry Numba cannot read (truncated, garbage,
written by something else) is reported once, removed and recompiled, and a
``NUMBA_CACHE_DIR`` that cannot be written is reported instead of being replaced,
silently, by the package directory.
"""
import contextlib
import os
import tempfile
import threading
import time
import warnings

from fastnn._check import POSITIVE_INT, Options, parse

__all__ = ["CACHE", "FAST_FLAGS", "BLAS", "GEMM", "BLAS_THREADS", "env_flag", "blas_threads", "thread_limit",
           "cgroup_cpus", "limit_blas", "limit_blas_for", "blas_libraries", "jit"]


def env_flag(name, default):
    """The boolean environment variable ``name`` (0/1, false/true, no/yes, off/on), ``default`` when unset."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"0", "false", "no", "off"}:
        return False
    if value in {"1", "true", "yes", "on"}:
        return True
    raise ValueError(f"{name} must be 0 or 1, got {value!r}")


_FASTMATH = env_flag("FASTNN_FASTMATH", True)
# Numba's cache index keys on the source file, not on compile options: code cached
# with the fastmath flags would be loaded even with them off, so that mode compiles afresh.
CACHE = env_flag("FASTNN_CACHE", True) and _FASTMATH


def _env_int(name):
    value = os.environ.get(name, "").strip()
    return parse(value, POSITIVE_INT, name=name) if value else None


BLAS = parse(os.environ.get("FASTNN_BLAS", "").strip().lower() or "numpy", Options("numpy", "numba"),
             name="FASTNN_BLAS")
GEMM = parse(os.environ.get("FASTNN_GEMM", "").strip().lower() or "auto", Options("auto", "avx2", "blas"),
             name="FASTNN_GEMM")
BLAS_THREADS = _env_int("FASTNN_BLAS_THREADS")
# A second BLAS thread pays from batch 32; at 16 it gains little on a quiet machine and, with one
# core busy elsewhere, costs several times that (docs/performance.md, "What made it fast").
MIN_BATCH_FOR_THREADS = 32
# ... and only where a GEMM call has the work for two: batch rows x the largest layer's inputs x outputs. A 64-wide
# net's 64 x 64 x 64 calls gained nothing from a second thread (one-thread and two-thread fits alike), a 128-wide
# net's 32 x 128 x 128 gained 1.4x (docs/performance.md, "The BLAS threads of a narrow net").
MIN_WORK_FOR_THREADS = 400_000


def _env_threads(name):
    """A positive thread count from a foreign variable (``OMP_NUM_THREADS="4,2"`` counts 4), or None if
    unset or unreadable: the libraries that own these variables ignore such values too."""
    first = os.environ.get(name, "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


# -- BLAS threads: the one module that talks to threadpoolctl ----------------------------------------------
def blas_libraries():
    """threadpoolctl's description of each BLAS library loaded now (``filepath``, ``num_threads``, ...).

    A fresh look at every call (milliseconds), unlike the limiter's controller, which is made once: for code that
    must see a library loaded since, such as finding NumPy's ``cblas_?gemm`` (:mod:`fastnn.kernels._cblas`).
    """
    import threadpoolctl  # noqa: PLC0415

    return [info for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]


_controller = None


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once: inspecting them costs milliseconds."""
    global _controller
    if _controller is None:
        import threadpoolctl  # noqa: PLC0415

        _controller = threadpoolctl.ThreadpoolController()
    return _controller


def _blas_libs():
    """threadpoolctl's controller of each loaded BLAS library: reading or setting one's thread count is a direct
    call into the library, where ``ThreadpoolController.limit`` inspects every library again at each call."""
    return [lib for lib in _blas_controller().lib_controllers if lib.user_api == "blas"]


def _blas_counts(libraries):
    counts = [lib.get_num_threads() for lib in libraries]
    counts = [n for n in counts if isinstance(n, int) and n > 0]
    return min(counts) if counts else None


def _set_blas(libraries, n_threads):
    for lib in libraries:
        if lib.get_num_threads() != n_threads:
            lib.set_num_threads(n_threads)


# The BLAS limits of the fits running now, in every thread: the libraries hold one setting for the whole process,
# so it is the smallest asked for while several overlap, and the user's own is put back when the last one ends.
_limits, _limits_lock, _before_limits = [], threading.Lock(), {}


@contextlib.contextmanager
def limit_blas(n_threads):
    """Cap every loaded BLAS at ``n_threads`` inside the block; safe when blocks overlap in several threads."""
    libraries = _blas_libs()
    with _limits_lock:
        if not _limits:
            _before_limits["counts"] = [lib.get_num_threads() for lib in libraries]
            _before_limits["count"] = _blas_counts(libraries)
        _limits.append(n_threads)
        _set_blas(libraries, min(_limits))
    try:
        yield
    finally:
        with _limits_lock:
            _limits.remove(n_threads)
            if _limits:
                _set_blas(libraries, min(_limits))
            else:
                for lib, n in zip(libraries, _before_limits.pop("counts")):
                    if lib.get_num_threads() != n:
                        lib.set_num_threads(n)


def limit_blas_for(rows):
    """:func:`limit_blas` at the threads the training step takes now for GEMMs of ``rows`` rows
    (:func:`fastnn._cpu.threads_now`: :func:`blas_threads`, fewer while other processes keep CPUs busy)."""
    from fastnn._cpu import threads_now  # noqa: PLC0415  (_cpu reads this module's settings)

    return limit_blas(threads_now(rows))


def _blas_limit_in_force():
    """The fewest threads any loaded BLAS is set to by the user (a threadpoolctl limit, OPENBLAS_NUM_THREADS read
    when the library loaded, ``openblas_set_num_threads``), or None when none is known. While fastnn's own
    :func:`limit_blas` holds, what was in force before it."""
    try:
        with _limits_lock:
            if _limits:
                return _before_limits["count"]
        return _blas_counts(_blas_libs())
    except Exception:  # noqa: BLE001 - an optional probe: no limit known is the answer then
        return None


def cgroup_cpus(cgroup="/proc/self/cgroup", mountinfo="/proc/self/mountinfo"):
    """The whole CPUs this process's cgroups allow it (a CPU quota: ``docker --cpus``, a Kubernetes CPU limit,
    systemd's ``CPUQuota``), the smallest over its cgroup and each parent up to the mount; None without a quota or
    where none can be read (not Linux). cgroup v2's ``cpu.max`` and v1's ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, found where ``mountinfo`` says the hierarchy is mounted.

    Rounded down, at least 1: under a quota every thread of the cgroup stops once it is spent, so a quota of 1.5 CPUs
    gives a two-thread GEMM 75 % of each period, no faster than one thread (a 1-CPU quota made two threads 1.55x
    slower than one, docs/performance.md); affinity alone shows the whole machine."""
    try:
        with open(cgroup) as f:
            paths = [line.rstrip("\n").split(":", 2) for line in f]
        with open(mountinfo) as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    found = []
    for fields in mounts:
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype, options = fields[dash + 1], fields[dash + 3].split(",") if len(fields) > dash + 3 else []
        root, point = fields[3], fields[4]
        for _, controllers, path in (p for p in paths if len(p) == 3):
            if fstype == "cgroup2" and controllers == "":
                files = ("cpu.max",)
            elif fstype == "cgroup" and "cpu" in controllers.split(",") and "cpu" in options:
                files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
            else:
                continue
            inside = path == root or path.startswith(root.rstrip("/") + "/")
            here = os.path.normpath(os.path.join(point, os.path.relpath(path, root) if inside else "."))
            while True:  # this cgroup, then each parent up to the mount point
                cpus = _quota(here, files)
                if cpus is not None:
                    found.append(cpus)
                if here == point:
                    break
                here = os.path.dirname(here)
    return min(found) if found else None


def _quota(directory, files):
    """``floor(quota / period)`` (at least 1) of one cgroup directory, or None (no quota, no such files)."""
    try:
        values = []
        for name in files:
            with open(os.path.join(directory, name)) as f:
                values += f.read().split()
        quota, period = values[0], values[1] if len(values) > 1 else ""
        if quota in ("max", "-1") or not period.isdigit() or int(period) <= 0 or not quota.isdigit():
            return None
        return max(1, int(quota) // int(period))
    except (OSError, IndexError):
        return None


_cgroup_seen = [float("-inf"), None]  # (when read, cgroup_cpus() then): reread at most every second


def _cgroup_limit():
    now = time.monotonic()
    if now - _cgroup_seen[0] > 1.0:
        _cgroup_seen[:] = [now, cgroup_cpus()]
    return _cgroup_seen[1]


def thread_limit():
    """The most threads the user allows this process: the smallest of the CPUs it may run on
    (``os.sched_getaffinity``, e.g. under ``taskset``), the whole CPUs of its cgroups' CPU quota
    (:func:`cgroup_cpus`), ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and the thread count the loaded BLAS is
    limited to now (threadpoolctl)."""
    if hasattr(os, "sched_getaffinity"):
        limits = [len(os.sched_getaffinity(0))]
    else:
        limits = [os.cpu_count() or 1]
    limits += [n for n in (_cgroup_limit(), _env_threads("OPENBLAS_NUM_THREADS"), _env_threads("OMP_NUM_THREADS"),
                           _blas_limit_in_force()) if n is not None]
    return max(1, min(limits))


def blas_threads(batch_size, width=None):
    """BLAS threads for a training step on batches of ``batch_size`` rows of a network whose largest layer
    has ``width`` weights (inputs x outputs; None: not known, as if large).

    One level of parallelism at a time: the Numba kernels run serially, and BLAS gets
    every thread :func:`thread_limit` allows only for batches of :data:`MIN_BATCH_FOR_THREADS`
    or more whose largest GEMM call has :data:`MIN_WORK_FOR_THREADS` multiply-adds or more.
    ``FASTNN_BLAS_THREADS`` overrides both. Results are bit-identical for the
    same seed, backend and thread count; a different count sums in a different order.
    """
    if BLAS_THREADS is not None:
        return BLAS_THREADS
    if batch_size < MIN_BATCH_FOR_THREADS or (width is not None and batch_size * width < MIN_WORK_FOR_THREADS):
        return 1
    return thread_limit()


# LLVM flags for loops that may reassociate and contract sums. ``nnan`` and
# ``ninf`` are deliberately absent: with them ``np.isnan`` folds to False and a
# diverging run would hide its NaNs, so every kernel may use this set.
FAST_FLAGS = frozenset({"nsz", "arcp", "contract", "reassoc"}) if _FASTMATH else frozenset()


_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)




_cache_dir_checked = {}


def _unwritable_cache_dir():
    """``NUMBA_CACHE_DIR`` and why it cannot be written, or None (unset, or writable)."""
    import numba  # noqa: PLC0415

    folder = numba.config.CACHE_DIR
    if not folder or folder in _cache_dir_checked:
        return _cache_dir_checked.get(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # the test Numba's locator makes
        problem = None
    except OSError as exc:
        problem = (folder, exc.strerror or str(exc))
    _cache_dir_checked[folder] = problem
    return problem


def jit(fn=None, *, fast=False, parallel=False, inline=False):
    """Compile ``fn`` with fastnn's Numba options.

    Parameters
    ----------
    fn : callable
        A function that only loops over the arrays it is given.
    fast : bool
        Allow :data:`FAST_FLAGS` (reassociation, FMA contraction).
    parallel : bool
        Compile with ``parallel=True`` so ``numba.prange`` splits loops.
    inline : bool
        Inline ``fn`` into every caller at Numba's level (``inline="always"``): for the per-row helpers of a loop,
        which LLVM left as calls (a 32-row MSE gradient: 0.56 against 0.17 us). The body then takes its caller's
        fastmath flags, so only callers without ``fast`` use such helpers.

    Notes
    -----
    When no cache directory is writable (read-only site-packages and no
    writable home), or ``NUMBA_CACHE_DIR`` is set but not writable, the function
    is compiled uncached, with a warning, instead of failing to import or
    writing elsewhere. Damaged cache entries are recompiled (:class:`fastnn._cache.HealingCache`).
    """
    if fn is None:
        return lambda f: jit(f, fast=fast, parallel=parallel, inline=inline)
    import numba  # noqa: PLC0415  (only the JIT's modules call this)
    # error_model="numpy": x / 0 gives inf/nan as in the NumPy twins, instead of a
    # ZeroDivisionError check per division that also stops LLVM vectorising the loop.
    options = {"nogil": True, "error_model": "numpy", "fastmath": set(FAST_FLAGS) if fast else False,
               "parallel": parallel, "inline": "always" if inline else "never"}
    dispatcher = numba.njit(cache=False, **options)(fn)
    if not CACHE:
        return dispatcher
    unwritable = _unwritable_cache_dir()
    if unwritable:
        # Numba would fall back to the package's __pycache__ without a word.
        _warn_once(("unwritable",) + unwritable,
                   f"fastnn: NUMBA_CACHE_DIR={unwritable[0]} is not writable ({unwritable[1]}); compiling "
                   "without an on-disk cache. Make it writable, point it elsewhere, or set FASTNN_CACHE=0.")
        return dispatcher
    try:
        from fastnn._cache import HealingCache  # noqa: PLC0415  (imports Numba's caching)

        dispatcher._cache = HealingCache(fn)  # what Dispatcher.enable_caching does, with our cache class
    except RuntimeError as exc:
        warnings.warn(
            f"fastnn: Numba cannot cache {fn.__qualname__} ({exc}); compiling without a cache. "
            "Set NUMBA_CACHE_DIR to a writable directory to keep compiled kernels.",
            RuntimeWarning,
            stacklevel=2,
        )
    return dispatcher
