"""Numba options live in fastnn/_config.py only; caching degrades gracefully."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn

PACKAGE = pathlib.Path(fastnn.__file__).parent


def test_numba_options_only_in_config():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_config.py":
            continue
        text = path.read_text()
        if re.search(r"\b(fastmath|cache|parallel)\s*=", text) or re.search(r"numba\.(njit|jit)\b|from numba import .*\b(n?jit)\b", text):
            offenders.append(path.name)
    assert not offenders, f"Numba options or decorators outside _config.py: {offenders}"


def test_no_nnan_ninf_flags():
    from fastnn import _config

    assert not {"nnan", "ninf", "fast"} & set(_config.FAST_FLAGS)


def _run(code, **env):
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                          timeout=300)


def test_cache_switch_off():
    r = _run("from fastnn import _config; print(_config.CACHE)", FASTNN_CACHE="0")
    assert r.stdout.strip() == "False", r.stderr


def test_bad_env_value_is_reported():
    r = _run("import fastnn._config", FASTNN_CACHE="maybe")
    assert r.returncode != 0 and "FASTNN_CACHE must be 0 or 1, got 'maybe'" in r.stderr


def test_uncacheable_falls_back_with_warning(tmp_path):
    """A kernel whose source has no writable cache location still compiles, with a warning."""
    code = """
        import warnings, numpy as np
        warnings.simplefilter("always")
        from fastnn._config import jit
        src = "def f(x):\\n    return x + 1\\n"
        ns = {}
        exec(compile(src, "<no file>", "exec"), ns)   # no source file -> Numba has no cache locator
        with warnings.catch_warnings(record=True) as w:
            g = jit(ns["f"])
        print(g(np.float64(1.0)), [str(x.message)[:40] for x in w])
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2.0") and "cannot cache" in r.stdout, r.stdout


# -- the on-disk cache heals itself -------------------------------------------------------------------------------
DAMAGES = {  # kernel name -> what is done to its cache files
    "truncated_data": lambda nbi, nbc, donor: nbc.write_bytes(nbc.read_bytes()[:50]),
    "random_data": lambda nbi, nbc, donor: nbc.write_bytes(os.urandom(4096)),
    "garbage_index": lambda nbi, nbc, donor: nbi.write_bytes(b"garbage\n"),
    "empty_index": lambda nbi, nbc, donor: nbi.write_bytes(b""),
    # Another function's entry: Numba alone loads it without complaint and runs the donor in its place.
    "foreign_data": lambda nbi, nbc, donor: nbc.write_bytes(donor.read_bytes()),
}
KERNELS = "from fastnn._config import jit\n" + "".join(
    f"\n\n@jit\ndef {name}(x):\n    return x + {i}.0\n" for i, name in enumerate(["donor", *DAMAGES]))
CALL = """
import sys, warnings
warnings.simplefilter("always")
sys.path.insert(0, sys.argv[1])
import kernels
names = ["donor"] + sys.argv[2:]
print(*[getattr(kernels, n)(0.0) for n in names], *[sum(getattr(kernels, n).stats.cache_hits.values()) for n in names])
"""


def _call_kernels(tmp_path, env=None):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(PACKAGE.parent), **(env or {})}
    r = subprocess.run([sys.executable, "-c", CALL, str(tmp_path), *DAMAGES], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n = len(DAMAGES) + 1
    return [float(v) for v in r.stdout.split()[:n]], [int(v) for v in r.stdout.split()[n:]], r.stderr


def test_damaged_cache_entries_are_recompiled_with_one_warning(tmp_path):
    """Five kinds of damage, one kernel each, in one process: right results, one warning naming the cache
    directory, and the next process is served from the repaired cache without a word."""
    (tmp_path / "kernels.py").write_text(KERNELS)
    expected = [float(i) for i in range(len(DAMAGES) + 1)]
    values, hits, _ = _call_kernels(tmp_path)
    assert values == expected and set(hits) == {0}  # compiled and saved
    files = {p.name: p for p in (tmp_path / "cache").rglob("*.nb?")}
    path = {(name, kind): next(p for n, p in files.items() if n.startswith(f"kernels.{name}-") and n.endswith(kind))
            for name in ["donor", *DAMAGES] for kind in (".nbi", ".nbc")}
    for name, damage in DAMAGES.items():
        damage(path[name, ".nbi"], path[name, ".nbc"], path["donor", ".nbc"])
    values, hits, err = _call_kernels(tmp_path)
    assert values == expected  # without the check, foreign_data would return the donor's 0.0
    assert hits == [1] + [0] * len(DAMAGES)
    assert err.count("RuntimeWarning") == 1 and "damaged or foreign Numba cache entry" in err
    assert str(tmp_path / "cache") in err
    values, hits, err = _call_kernels(tmp_path)  # healed
    assert values == expected and set(hits) == {1} and "Warning" not in err


def test_unwritable_cache_dir_is_reported_not_relocated(tmp_path):
    """A NUMBA_CACHE_DIR that cannot be created (a file is in the way; root ignores chmod) is named in a
    warning, and nothing is written next to the kernels' source instead."""
    (tmp_path / "kernels.py").write_text(KERNELS)
    (tmp_path / "blocker").write_text("")
    values, hits, err = _call_kernels(tmp_path, {"NUMBA_CACHE_DIR": str(tmp_path / "blocker" / "cache")})
    assert values == [float(i) for i in range(len(DAMAGES) + 1)] and set(hits) == {0}
    assert err.count("RuntimeWarning") == 1
    assert f"NUMBA_CACHE_DIR={tmp_path / 'blocker' / 'cache'} is not writable" in err
    assert not (tmp_path / "__pycache__").exists() or not list((tmp_path / "__pycache__").glob("*.nb?"))


# -- threads ------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_thread_limits(monkeypatch):
    from fastnn import _config

    monkeypatch.setattr(_config, "BLAS_THREADS", None)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(_config, "_blas_limit_in_force", lambda: None)
    monkeypatch.setattr(_config, "_cgroup_limit", lambda: None)
    return _config


def test_threads_by_batch_size(no_thread_limits):
    assert no_thread_limits.blas_threads(16) == 1
    assert no_thread_limits.blas_threads(256) == 8


def test_threads_by_the_work_of_a_gemm_call(no_thread_limits):
    """A second thread only where the largest layer's GEMM call has the work for it: the 64-wide deep net and the
    tabular net (32-64-64-1) at their batch sizes stay on one, a 128-wide net at batch 32 takes every thread."""
    c = no_thread_limits
    assert c.blas_threads(64, 64 * 64) == c.blas_threads(32, 64 * 64) == 1
    assert c.blas_threads(32, 128 * 128) == c.blas_threads(64, 784 * 128) == 8
    assert c.blas_threads(256, 64 * 64) == 8  # 1M multiply-adds a call
    assert c.blas_threads(16, 1024 * 1024) == 1  # the batch rule still holds
    assert c.blas_threads(32) == 8  # no width given: as before


def test_the_compiled_step_and_predict_ask_with_the_networks_width(monkeypatch):
    """fit's compiled step (the load-following rule) and a many-row predict (the machine's rule: its bits must
    not follow the load) pass the largest layer's inputs x outputs to the thread rule."""
    from fastnn import _config, _cpu

    asked, asked_fixed = [], []
    real, real_fixed = _cpu.threads_now, _config.blas_threads
    monkeypatch.setattr(_cpu, "threads_now", lambda b, w=None: asked.append((b, w)) or real(b, w))
    import fastnn as fn
    from fastnn import inference

    monkeypatch.setattr(inference, "blas_threads", lambda b, w=None: asked_fixed.append((b, w)) or real_fixed(b, w))
    model = fn.Sequential(fn.Linear(6, 20), fn.ReLU(), fn.Linear(20, 3))
    X, y = np.zeros((40, 6), np.float32), np.zeros(40, np.int64)
    h = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=1,
                  batch_size=8, verbose=0)
    assert h.fast_path and (8, 120) in asked and not asked_fixed
    model.predict(X)
    assert asked_fixed == [(40, 120)]


@pytest.mark.parametrize("limit", [
    lambda mp, c: mp.setenv("OPENBLAS_NUM_THREADS", "3"),
    lambda mp, c: mp.setenv("OMP_NUM_THREADS", "3,2"),
    lambda mp, c: mp.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 7}),
    lambda mp, c: mp.setattr(c, "_blas_limit_in_force", lambda: 3),
    lambda mp, c: mp.setattr(c, "_cgroup_limit", lambda: 3),
], ids=["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "affinity", "threadpoolctl", "cgroup quota"])
def test_each_user_limit_is_honoured(no_thread_limits, monkeypatch, limit):
    limit(monkeypatch, no_thread_limits)
    assert no_thread_limits.blas_threads(256) == 3
    assert no_thread_limits.blas_threads(16) == 1


def test_unreadable_foreign_variables_are_ignored(no_thread_limits, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")
    assert no_thread_limits.blas_threads(256) == 8


def test_fastnn_blas_threads_wins(no_thread_limits, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setattr(no_thread_limits, "BLAS_THREADS", 4)
    assert no_thread_limits.blas_threads(16) == no_thread_limits.blas_threads(256) == 4


def test_threadpoolctl_limit_is_read_live():
    """The real probe: a threadpoolctl limit in force caps the step's threads, and lifting it lifts the cap."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastnn import _config

    import fastnn.kernels  # noqa: F401  (loads NumPy's and SciPy's OpenBLAS)

    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert _config._blas_limit_in_force() == 1
        assert _config.thread_limit() == 1
    quota = _config.cgroup_cpus() or len(os.sched_getaffinity(0))
    assert _config.thread_limit() == min(len(os.sched_getaffinity(0)), _config._blas_limit_in_force(), quota)


def _cgroups(tmp_path, mounts, cgroup, files):
    """Made-up ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` (``{tmp}`` in them is ``tmp_path``) and cgroup
    files under ``tmp_path``; returns the two paths."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    info, groups = tmp_path / "mountinfo", tmp_path / "cgroup"
    info.write_text("".join(line.replace("{tmp}", str(tmp_path)) + "\n" for line in mounts))
    groups.write_text("".join(line + "\n" for line in cgroup))
    return groups, info


V2 = "30 23 0:27 / {tmp}/cg2 rw,nosuid - cgroup2 cgroup2 rw"
V1 = "32 31 0:29 / {tmp}/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct"


@pytest.mark.parametrize("mounts, cgroup, files, expected", [
    # cgroup v2: the smallest quota on the way up; "max" is none; 1.5 CPUs round down to one thread
    ([V2], ["0::/a/b"], {"cg2/a/b/cpu.max": "max 100000\n", "cg2/a/cpu.max": "150000 100000\n",
                         "cg2/cpu.max": "400000 100000\n"}, 1),
    ([V2], ["0::/a"], {"cg2/a/cpu.max": "250000 100000\n"}, 2),
    ([V2], ["0::/a"], {"cg2/a/cpu.max": "max 100000\n"}, None),
    ([V2], ["0::/a"], {"cg2/a/cpu.max": "50000 100000\n"}, 1),  # half a CPU: still one thread
    # cgroup v1, cpu and cpuacct mounted together; -1 is no quota
    (["33 31 0:30 / {tmp}/cpuacct rw - cgroup cgroup rw,cpuacct", V1],
     ["5:cpuacct:/x", "4:cpu,cpuacct:/docker/x"],
     {"cpu/docker/x/cpu.cfs_quota_us": "300000\n", "cpu/docker/x/cpu.cfs_period_us": "100000\n",
      "cpuacct/x/cpu.cfs_quota_us": "100000\n", "cpuacct/x/cpu.cfs_period_us": "100000\n"}, 3),
    ([V1], ["4:cpu,cpuacct:/docker/x"], {"cpu/docker/x/cpu.cfs_quota_us": "-1\n",
                                         "cpu/docker/x/cpu.cfs_period_us": "100000\n"}, None),
    # inside a container: the hierarchy's root is the container's cgroup, mounted as the mount point itself
    (["32 31 0:29 /docker/x {tmp}/cpu rw - cgroup cgroup rw,cpu"], ["4:cpu:/docker/x"],
     {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),
    # a cgroup outside the mount's root (another namespace's): the mount point's own quota, nothing outside it
    (["32 31 0:29 /docker/x {tmp}/cpu rw - cgroup cgroup rw,cpu"], ["4:cpu:/docker/xy"],
     {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n",
      "xy/cpu.cfs_quota_us": "900000\n", "xy/cpu.cfs_period_us": "100000\n"}, 1),
    ([V2], ["0::/a"], {}, None),  # no files
    ([V2], ["0::/a"], {"cg2/a/cpu.max": "lots\n"}, None),  # unreadable
    ([], ["0::/a"], {}, None),  # no cgroup file system mounted
], ids=["v2-nested", "v2", "v2-max", "v2-half", "v1", "v1-none", "v1-container", "v1-outside", "missing", "garbage", "unmounted"])
def test_cgroup_cpus_reads_the_quota(tmp_path, mounts, cgroup, files, expected):
    from fastnn import _config

    groups, info = _cgroups(tmp_path, mounts, cgroup, files)
    assert _config.cgroup_cpus(groups, info) == expected
    assert _config.cgroup_cpus(tmp_path / "nowhere", info) is None


def _quota_cgroup():
    """A writable cgroup-v1 cpu hierarchy to make a child in (root on a machine that mounts one), or None."""
    base = "/sys/fs/cgroup/cpu"
    return base if os.path.isdir(base) and os.access(base, os.W_OK) and \
        os.path.exists(os.path.join(base, "cpu.cfs_quota_us")) else None


@pytest.mark.skipif(_quota_cgroup() is None or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a writable cgroup-v1 cpu hierarchy (root) and two CPUs")
def test_a_real_cpu_quota_caps_the_threads(tmp_path):
    """A child process in a cgroup with a one-CPU quota (``docker --cpus=1``) on a machine of several CPUs gets one
    BLAS thread for a large batch, though its affinity shows every CPU."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    group = os.path.join(_quota_cgroup(), f"fastnn-test-{os.getpid()}")
    try:
        os.mkdir(group)
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup here: {exc}")
    try:
        try:
            for name in ("cpu.cfs_period_us", "cpu.cfs_quota_us"):
                with open(os.path.join(group, name), "w") as f:
                    f.write("100000")
        except OSError as exc:
            pytest.skip(f"cannot set a cgroup's CPU quota here: {exc}")
        code = ("import os; open(%r, 'w').write(str(os.getpid())); from fastnn import _config; "
                "print(_config.cgroup_cpus(), _config.blas_threads(256), len(os.sched_getaffinity(0)))"
                % os.path.join(group, "cgroup.procs"))
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                               "FASTNN_BLAS_THREADS")}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        quota, threads, cpus = out.stdout.split()
        assert quota == "1" and threads == "1" and int(cpus) >= 2, out.stdout  # affinity alone: every CPU
    finally:
        os.rmdir(group)


def test_limit_blas_for_takes_the_steps_threads_and_puts_the_setting_back():
    """The limiter the estimators use: the thread count blas_threads chooses for the rows, in force inside the
    block (blas_libraries, a fresh look, sees it), and the user's setting back after."""
    from fastnn import _config

    import fastnn.kernels  # noqa: F401  (loads NumPy's OpenBLAS)

    before = [info["num_threads"] for info in _config.blas_libraries()]
    assert before and all(info["filepath"] for info in _config.blas_libraries())
    with _config.limit_blas_for(_config.MIN_BATCH_FOR_THREADS - 1):
        assert {info["num_threads"] for info in _config.blas_libraries()} == {_config.blas_threads(16)}
    assert [info["num_threads"] for info in _config.blas_libraries()] == before


def test_only_config_talks_to_threadpoolctl():
    """One owner of BLAS threads: every other module of the package asks fastnn._config. Not the benchmark suites:
    they set every framework's pools (PyTorch's, JAX's) per benchmark, libraries loaded after _config's
    controller was made, so a fresh threadpoolctl limit is theirs."""
    package = pathlib.Path(fastnn.__file__).parent
    users = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if p.parent.name != "benchmarks"
                   and re.search(r"^\s*(import threadpoolctl|from threadpoolctl)", p.read_text(), re.M))
    assert users == ["_config.py"]


def test_taskset_and_openblas_variable_in_a_fresh_process():
    code = "from fastnn import _config; import fastnn.kernels; print(_config.blas_threads(256))"
    r = _run(code, OPENBLAS_NUM_THREADS="1")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) > 1:
        r = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300, env={k: v for k, v in os.environ.items() if "NUM_THREADS" not in k})
        assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
