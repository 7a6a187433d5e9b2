"""Start-up cost: what a new user runs, each case in a fresh interpreter, on a machine seeing it for the first
time and on every later run.

Every child is a new ``sys.executable`` with ``NUMBA_CACHE_DIR`` pointing at a new, empty temporary directory
("first run on a machine"), then a second child with that directory kept ("every later run"). fastnn builds
its training step and predict ahead of time at install (``fastnn.kernels._aot``), so neither run should
import Numba or compile anything; with ``FASTNN_AOT=0`` (or a missing or stale build) fastnn falls back to
Numba's JIT and the first run compiles into the empty cache, the later one loads it.

Cases (the child's own clock, ``time.perf_counter()`` taken before any import of the framework):

1. fastnn: ``import fastnn`` -> build 784-128-64-10 -> one trained epoch of 4,096 random float32 rows
   (Adam, batch 64, seed 0) -> ``predict`` of 100 rows. The child also reports ``import fastnn`` alone,
   whether ``numba`` was imported, and ``History.compiled_by``.
2. The same workload in JAX: the epoch under ``jax.jit`` as a ``jax.lax.scan`` over the shuffled batches,
   Adam written out, then a jitted forward of 100 rows (``JAX_PLATFORMS=cpu``; JAX's persistent compilation
   cache is off by default, so its later run compiles again, as a user's would).
3. The same in PyTorch eager (``torch.nn.Sequential``, ``torch.optim.Adam``, ``torch.randperm`` batches).
4. In one fastnn process (empty Numba cache), after one warm-up fit as in 1: six more fits of other networks
   on 2,048 rows of 32 features (depths 1 to 5, five activations, dropout, three losses, three optimizers,
   sample weights); their total seconds and the Numba compilations they caused.
5. ``MLPClassifier(max_iter=50, random_state=0).fit`` on the digits, fastnn's against scikit-learn's, timed
   from the estimator's import (after ``sklearn.datasets`` is imported and the data loaded, which both
   share) to the end of ``fit``.

Targets (issue "Zero-compile start", fastnn's ahead-of-time build): first run <= 1.0 s, later runs <= 0.4 s,
``import fastnn`` <= 0.25 s, the six fits <= 1.5 s with zero compilations, the digits fit faster than
scikit-learn's. Asserted only when benchmarks are enabled and the ahead-of-time path is expected (no
``FASTNN_AOT=0``), since a timing belongs to a benchmark run, not to a correctness run. The default run
(``--benchmark-disable -m 'not slow'``) has only :func:`test_first_fit`: case 1 once, checking that the child
succeeds on the expected code path. The rest is marked ``slow``; under ``--benchmark-disable`` it runs one
round, checks what each child reports and prints the table, asserting no timing.

``python fastnn/benchmarks/test_bench_startup.py`` prints the whole table (3 rounds) without pytest.
``FASTNN_BENCH_THREADS=N`` (see ``fastnn/benchmarks/conftest.py``) is passed to the children as the usual BLAS and
OpenMP thread variables; unset, they run with the libraries' defaults, as a user's would.
"""
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

TARGETS = {"first": 1.0, "later": 0.4, "import": 0.25, "fits": 1.5}
ROUNDS = 3  # rounds when timing (benchmarks enabled, or the script); one under --benchmark-disable
FRAMEWORKS = {"fastnn": "fastnn", "jax": "JAX (jit + scan)", "torch": "PyTorch eager"}
STATES = {"first": "first run (empty Numba cache)", "later": "every later run"}
TIMEOUT = 600  # seconds per child: a first JIT run on a busy 2-core machine compiles for a minute or more

# Case 1's workload after ``import fastnn as fn``; the warm-up of case 4 runs the very same lines.
FASTNN_WORKLOAD = """\
import numpy as np
rng = np.random.default_rng(0)
X = rng.random((4096, 784), dtype=np.float32)
y = rng.integers(0, 10, 4096)
m = fn.Sequential(fn.Linear(784, 128, seed=0), fn.ReLU(), fn.Linear(128, 64, seed=1), fn.ReLU(),
                  fn.Linear(64, 10, seed=2))
h = m.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(m.parameters(), lr=1e-3), batch_size=64,
          verbose=0, seed=0)
out = m.predict(X[:100])
"""

# The clock starts on the first line, before anything of fastnn (or NumPy, which it imports) is loaded.
FASTNN_CHILD = """\
import time; t0 = time.perf_counter()
import fastnn as fn
import_seconds = time.perf_counter() - t0
""" + FASTNN_WORKLOAD + """\
seconds = time.perf_counter() - t0
import json, sys
print(json.dumps({"seconds": seconds, "import_seconds": import_seconds, "numba_imported": "numba" in sys.modules,
                  "compiled_by": h.compiled_by, "fast_path": h.fast_path, "loss": float(h.history["loss"][-1]),
                  "predict_shape": list(out.shape)}))
"""

JAX_CHILD = textwrap.dedent("""\
    import time; t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.random((4096, 784), dtype=np.float32)
    y = rng.integers(0, 10, 4096)
    B, LR, B1, B2, EPS = 64, 1e-3, 0.9, 0.999, 1e-8
    # He-normal weights and zero biases as fastnn's Linear; drawn by NumPy so that jax.random's own compiles
    # do not count against JAX.
    params = [(jnp.asarray(np.random.default_rng(seed).standard_normal((n_in, n_out), dtype=np.float32)
                           * np.float32(np.sqrt(2.0 / n_in))), jnp.zeros(n_out, jnp.float32))
              for n_in, n_out, seed in ((784, 128, 0), (128, 64, 1), (64, 10, 2))]

    def forward(params, x):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss_fn(params, x, t):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(forward(params, x)), t[:, None], axis=1))

    @jax.jit
    def epoch(params, m, v, step, X, y, batches):
        def body(carry, idx):  # one batch: rows gathered from the permutation, then a hand-written Adam step
            params, m, v, step = carry
            loss, g = jax.value_and_grad(loss_fn)(params, X[idx], y[idx])
            step = step + 1.0
            m = jax.tree_util.tree_map(lambda m, g: B1 * m + (1 - B1) * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: B2 * v + (1 - B2) * g * g, v, g)
            c1, c2 = 1 - B1 ** step, 1 - B2 ** step
            params = jax.tree_util.tree_map(lambda p, m, v: p - LR * (m / c1) / (jnp.sqrt(v / c2) + EPS),
                                            params, m, v)
            return (params, m, v, step), loss

        (params, m, v, step), losses = jax.lax.scan(body, (params, m, v, step), batches)
        return params, m, v, step, losses.mean()

    # The shuffled epoch: n // B batches of a permutation, the last partial batch dropped (4,096 rows at batch
    # 64 leave none, so every row is seen as in fastnn and PyTorch).
    n_batches = X.shape[0] // B
    batches = np.random.default_rng(0).permutation(X.shape[0])[:n_batches * B].reshape(n_batches, B).astype(np.int32)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    params, m, v, step, loss = epoch(params, zeros, zeros, jnp.float32(0), jnp.asarray(X), jnp.asarray(y),
                                     jnp.asarray(batches))
    out = jax.jit(forward)(params, jnp.asarray(X[:100])).block_until_ready()
    seconds = time.perf_counter() - t0
    import json
    print(json.dumps({"seconds": seconds, "loss": float(loss), "predict_shape": list(out.shape)}))
""")

TORCH_CHILD = textwrap.dedent("""\
    import time; t0 = time.perf_counter()
    import torch
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.random((4096, 784), dtype=np.float32)
    y = rng.integers(0, 10, 4096)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(0)  # torch.nn.Linear's own initialisation, as a PyTorch user gets it
    m = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(),
                            torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(Xt.shape[0], generator=torch.Generator().manual_seed(0))
    losses = []
    for start in range(0, Xt.shape[0], 64):
        idx = perm[start:start + 64]
        opt.zero_grad()
        loss = loss_fn(m(Xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = m(Xt[:100])
    seconds = time.perf_counter() - t0
    import json
    print(json.dumps({"seconds": seconds, "loss": sum(losses) / len(losses), "predict_shape": list(out.shape)}))
""")

CHILDREN = {"fastnn": FASTNN_CHILD, "jax": JAX_CHILD, "torch": TORCH_CHILD}

# Case 4. The six networks differ in every way the compiled step is specialised by at run time: depth, each
# activation, dropout, the loss (and its target's kind), the optimizer, sample weights.
FITS_CHILD = """\
import contextlib, gc, json, sys, time
import fastnn as fn
""" + FASTNN_WORKLOAD + textwrap.dedent("""\
    warmup = {"compiled_by": h.compiled_by, "numba_imported": "numba" in sys.modules}

    rng = np.random.default_rng(1)
    n, L = 2048, fn.Linear
    X = rng.random((n, 32), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    one, three = rng.random((n, 1), dtype=np.float32), rng.random((n, 3), dtype=np.float32)
    binary = (rng.random((n, 1)) < 0.5).astype(np.float32)
    weights = rng.random(n)
    FITS = [  # (what, layers, loss, target, optimizer, sample_weight)
        ("1 Linear, softmax cross-entropy, SGD momentum", lambda: [L(32, 10, seed=0)],
         fn.SoftmaxCrossEntropy, labels, lambda p: fn.SGD(p, lr=0.01, momentum=0.9), None),
        ("2 Linear, Tanh, softmax cross-entropy, Adam, sample_weight",
         lambda: [L(32, 64, seed=0), fn.Tanh(), L(64, 10, seed=1)],
         fn.SoftmaxCrossEntropy, labels, lambda p: fn.Adam(p, lr=1e-3), weights),
        ("3 Linear, GELU, Dropout(0.2), Sigmoid, MSE, SGD momentum",
         lambda: [L(32, 64, seed=0), fn.GELU(), fn.Dropout(0.2, seed=0), L(64, 32, seed=1), fn.Sigmoid(),
                  L(32, 1, seed=2)],
         fn.MSELoss, one, lambda p: fn.SGD(p, lr=0.01, momentum=0.9), None),
        ("4 Linear, LeakyReLU, BCE with logits, AdamW",
         lambda: [L(32, 48, seed=0), fn.LeakyReLU(), L(48, 48, seed=1), fn.LeakyReLU(), L(48, 24, seed=2),
                  fn.LeakyReLU(), L(24, 1, seed=3)],
         fn.BCEWithLogitsLoss, binary, lambda p: fn.AdamW(p, lr=1e-3), None),
        ("5 Linear, ELU, Dropout(0.2), softmax cross-entropy, AdamW",
         lambda: [L(32, 64, seed=0), fn.ELU(), L(64, 64, seed=1), fn.ELU(), L(64, 32, seed=2), fn.ELU(),
                  L(32, 16, seed=3), fn.ELU(), fn.Dropout(0.2, seed=1), L(16, 10, seed=4)],
         fn.SoftmaxCrossEntropy, labels, lambda p: fn.AdamW(p, lr=1e-3), None),
        ("3 Linear, Sigmoid, Tanh, MSE on 3 outputs, Adam",
         lambda: [L(32, 32, seed=0), fn.Sigmoid(), L(32, 16, seed=1), fn.Tanh(), L(16, 3, seed=2)],
         fn.MSELoss, three, lambda p: fn.Adam(p, lr=1e-3), None),
    ]

    # Numba's compile events can be recorded only if Numba is already loaded: importing it just to count
    # would add its own import to the fits timed.
    numba_before = "numba" in sys.modules
    if numba_before:
        from numba.core import event
        recording = event.install_recorder("numba:compile")
    else:
        recording = contextlib.nullcontext()
    fits = []
    t0 = time.perf_counter()
    with recording as recorder:
        for what, layers, loss, target, optimizer, sample_weight in FITS:
            t = time.perf_counter()
            model = fn.Sequential(*layers())
            hist = model.fit(X, target, loss=loss(), optimizer=optimizer(model.parameters()), batch_size=64,
                             verbose=0, seed=0, sample_weight=sample_weight)
            fits.append({"what": what, "seconds": time.perf_counter() - t, "compiled_by": hist.compiled_by,
                         "fast_path": hist.fast_path, "loss": float(hist.history["loss"][-1])})
    seconds = time.perf_counter() - t0
    if numba_before:  # one START event per dispatcher compile (a load from the on-disk cache sends none)
        compilations, counted = sum(1 for _, ev in recorder.buffer if ev.is_start), "numba:compile events"
    elif "numba" in sys.modules:  # loaded during the fits: every cache miss of every dispatcher happened in them
        from numba.core.dispatcher import Dispatcher
        compilations = sum(sum(o.stats.cache_misses.values()) for o in gc.get_objects() if isinstance(o, Dispatcher))
        counted = "numba imported during the fits: dispatchers' cache misses"
    else:
        compilations, counted = 0, "numba never imported"
    print(json.dumps({"seconds": seconds, "compilations": compilations, "counted": counted, "fits": fits,
                      "warmup": warmup, "numba_imported": "numba" in sys.modules}))
""")

# Case 5. Importing sklearn.datasets and loading the digits come before the clock: both estimators need
# them, and they are scikit-learn's cost, not the estimator's. The clock then covers the estimator's import.
DIGITS_CHILD = textwrap.dedent("""\
    import json, sys, time, warnings
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    X, y = load_digits(return_X_y=True)
    warnings.simplefilter("ignore", ConvergenceWarning)  # 50 iterations do not converge, by design
    t0 = time.perf_counter()
    from {module} import MLPClassifier
    clf = MLPClassifier(max_iter=50, random_state=0).fit(X, y)
    seconds = time.perf_counter() - t0
    compiled_by = sys.modules["fastnn.kernels"].compiled_by() if "fastnn.kernels" in sys.modules else None
    print(json.dumps({{"seconds": seconds, "accuracy": float(clf.score(X, y)), "compiled_by": compiled_by,
                      "fast_path": getattr(clf, "fast_path_", None), "numba_imported": "numba" in sys.modules}}))
""")
DIGITS = {"fastnn": "fastnn", "sklearn": "sklearn.neural_network"}


# -- running children ----------------------------------------------------------------------------------------
def _env(cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "JAX_PLATFORMS": "cpu"}
    limit = os.environ.get("FASTNN_BENCH_THREADS", "").strip()
    if limit:
        env.update(OMP_NUM_THREADS=limit, OPENBLAS_NUM_THREADS=limit, MKL_NUM_THREADS=limit)
    return env


def _run_child(code, cache_dir):
    """Run ``code`` in a new interpreter with ``NUMBA_CACHE_DIR=cache_dir``; its last stdout line, parsed.

    The result's ``"stderr"`` keeps what the child said there (fastnn's reason for using the JIT, if any).
    """
    out = subprocess.run([sys.executable, "-c", code], env=_env(cache_dir), capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, f"child failed ({out.returncode}):\n{out.stderr}"
    lines = out.stdout.strip().splitlines()
    assert lines, f"child printed nothing:\n{out.stderr}"
    result = json.loads(lines[-1])
    result["stderr"] = out.stderr.strip()
    return result


def expected_compiler():
    """``"jit"`` where the environment turns the ahead-of-time kernels off (``FASTNN_AOT=0`` and the other
    variables :mod:`fastnn.kernels.aot` reads), else ``"aot"``: what a child with this environment must use."""
    # fastnn's own reading of the variables, so that the list cannot drift from it; it loads no Numba.
    from fastnn.kernels.aot import _env_off  # noqa: PLC0415

    return "jit" if _env_off() else "aot"


def _first_fit(cache_dir):
    """Seconds of case 1 (import -> trained epoch -> predict) in a new interpreter with ``NUMBA_CACHE_DIR=cache_dir``,
    asserting that the child ran and trained on the compiled step."""
    result = _run_child(FASTNN_CHILD, cache_dir)
    assert result["fast_path"], result
    return result["seconds"]


def startup_round(framework, cache_dir):
    """Case 1, 2 or 3 twice: ``{"first": result, "later": result}``, the first with ``cache_dir`` empty (it is
    created if missing), the second with what the first left in it."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    assert not any(Path(cache_dir).iterdir()), f"{cache_dir} is not empty"
    return {state: _run_child(CHILDREN[framework], cache_dir) for state in STATES}


def fits_round(cache_dir):
    """Case 4 with ``cache_dir`` empty: ``{"seconds", "compilations", "counted", "fits", ...}``."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return _run_child(FITS_CHILD, cache_dir)


def digits_round(cache_dir):
    """Case 5: ``{"fastnn": first run, "fastnn later": same cache kept, "sklearn": result}``."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return {"fastnn": _run_child(DIGITS_CHILD.format(module=DIGITS["fastnn"]), cache_dir),
            "fastnn later": _run_child(DIGITS_CHILD.format(module=DIGITS["fastnn"]), cache_dir),
            "sklearn": _run_child(DIGITS_CHILD.format(module=DIGITS["sklearn"]), cache_dir)}


def installed(framework):
    return framework == "fastnn" or importlib.util.find_spec(framework) is not None


# -- checks and the table ------------------------------------------------------------------------------------
def check_fastnn(result):
    """Assert what case 1's child must report whatever the timing: the expected code path (with the child's
    stderr, where fastnn says why it uses the JIT), no Numba on the ahead-of-time path, a finite loss."""
    want = expected_compiler()
    assert result["compiled_by"] == want, (
        f"fit ran on {result['compiled_by']!r}, expected {want!r} (FASTNN_AOT={os.environ.get('FASTNN_AOT')!r}); "
        f"a missing or stale ahead-of-time build makes it 'jit' (fastnn says why). Child's stderr:\n{result['stderr']}")
    if want == "aot":
        assert not result["numba_imported"], "numba was imported on the ahead-of-time path"
    assert result["fast_path"]
    check_workload(result)


def check_workload(result):
    assert math.isfinite(result["loss"]) and result["predict_shape"] == [100, 10], result


def _summary(values):
    """``median (min–max)`` in seconds."""
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def _seconds(results, key="seconds"):
    return [r[key] for r in results]


def format_table(results, rounds):
    """The markdown table and the lines under it, from ``results`` as :func:`measure_all` returns them."""
    lines = [f"Seconds, median (min–max) over {rounds} round(s), each a fresh `{Path(sys.executable).name}` process.",
             "", "| import → one trained epoch (4,096 rows, 784-128-64-10, Adam) → predict | "
             + " | ".join(FRAMEWORKS.values()) + " |", "|---|" + "---|" * len(FRAMEWORKS)]
    for state, label in STATES.items():
        cells = []
        for framework in FRAMEWORKS:
            runs = results.get("startup", {}).get(framework)
            cells.append(_summary(_seconds(runs[state])) if runs else "not installed" if not installed(framework)
                         else "not measured")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    fastnn = results.get("startup", {}).get("fastnn")
    if fastnn:
        runs = fastnn["first"] + fastnn["later"]
        paths = sorted({r["compiled_by"] for r in runs})
        numba = "yes" if any(r["numba_imported"] for r in runs) else "no"
        lines.append(f"- `import fastnn`: {_summary(_seconds(runs, 'import_seconds'))} (all runs); "
                     f"compiled_by: {', '.join(paths)}; numba imported: {numba}")
    fits = results.get("fits")
    if fits:
        counts = sorted({r["compilations"] for r in fits})
        counted = sorted({r["counted"] for r in fits})
        lines.append(f"- six more fits in one process after a warm-up fit (2,048 rows x 32, 1 epoch, batch 64, "
                     f"empty Numba cache): {_summary(_seconds(fits))}; Numba compilations: "
                     f"{', '.join(map(str, counts))} ({'; '.join(counted)})")
    digits = results.get("digits")
    if digits:
        lines.append("- digits `MLPClassifier(max_iter=50, random_state=0).fit` (from the estimator's import): "
                     f"fastnn {_summary(_seconds(r['fastnn'] for r in digits))} first run, "
                     f"{_summary(_seconds(r['fastnn later'] for r in digits))} later; "
                     f"scikit-learn {_summary(_seconds(r['sklearn'] for r in digits))}")
    return "\n".join(lines)


def measure_all(rounds, tmp_dir):
    """Every case ``rounds`` times, each round in new subdirectories of ``tmp_dir``."""
    def fresh(name, i):
        return Path(tmp_dir) / f"{name}-{i}"

    results = {"startup": {}}
    for framework in FRAMEWORKS:
        if installed(framework):
            runs = [startup_round(framework, fresh(framework, i)) for i in range(rounds)]
            results["startup"][framework] = {state: [r[state] for r in runs] for state in STATES}
    results["fits"] = [fits_round(fresh("fits", i)) for i in range(rounds)]
    if installed("sklearn"):
        results["digits"] = [digits_round(fresh("digits", i)) for i in range(rounds)]
    return results


# -- tests ---------------------------------------------------------------------------------------------------
_RESULTS = {"startup": {}}  # what the slow tests measured, for test_startup_table


def _timed(config):
    # Imported here, not at the top: ``python fastnn/benchmarks/test_bench_startup.py`` runs without the repository
    # root on sys.path and without the conftest's Numba import.
    from fastnn.benchmarks.conftest import benchmarks_disabled  # noqa: PLC0415

    return not benchmarks_disabled(config)


def _rounds(config):
    return ROUNDS if _timed(config) else 1


def _targets_apply(config):
    """Targets are the ahead-of-time build's: asserted when timing, unless ``FASTNN_AOT=0`` asked for the JIT."""
    return _timed(config) and expected_compiler() == "aot"


def test_first_fit(tmp_path):
    """Case 1 once with an empty Numba cache: the child succeeds, on the ahead-of-time kernels (without
    importing Numba) unless the environment asks for the JIT."""
    cache_dir = tmp_path / "numba-cache"
    cache_dir.mkdir()
    check_fastnn(_run_child(FASTNN_CHILD, cache_dir))


@pytest.mark.slow  # a fresh interpreter per run, JAX and PyTorch imports: seconds each
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_import_epoch_predict(benchmark, request, tmp_path_factory, framework):
    """Cases 1-3: each round a first run (empty Numba cache) and a later run (the cache it left)."""
    if not installed(framework):
        pytest.skip(f"{framework} is not installed: its column of the start-up table is left out")
    runs = []
    benchmark.group = "start-up: import -> epoch -> predict (s, first + later run)"
    benchmark.pedantic(lambda: runs.append(startup_round(framework, tmp_path_factory.mktemp(f"cache-{framework}"))),
                       rounds=_rounds(request.config), iterations=1)
    measured = {state: [r[state] for r in runs] for state in STATES}
    _RESULTS["startup"][framework] = measured
    for result in measured["first"] + measured["later"]:
        (check_fastnn if framework == "fastnn" else check_workload)(result)
    info = {f"{state}_s": _seconds(measured[state]) for state in STATES}
    if framework == "fastnn":
        info["import_s"] = _seconds(measured["first"] + measured["later"], "import_seconds")
        info["compiled_by"] = measured["first"][0]["compiled_by"]
        info["numba_imported"] = any(r["numba_imported"] for r in measured["first"] + measured["later"])
    benchmark.extra_info.update(framework=framework, **info,
                                **{f"{k}_median_s": statistics.median(v) for k, v in info.items() if k.endswith("_s")})
    if framework == "fastnn" and _targets_apply(request.config):
        for key in ("first", "later", "import"):
            median = statistics.median(info[f"{key}_s"])
            assert median <= TARGETS[key], f"fastnn {key}: median {median:.2f} s, target {TARGETS[key]} s"


@pytest.mark.slow
def test_six_fits(benchmark, request, tmp_path_factory):
    """Case 4: six different networks fitted after a warm-up fit, in one process with an empty Numba cache."""
    runs = []
    benchmark.group = "start-up: six more fits after the first (s)"
    benchmark.pedantic(lambda: runs.append(fits_round(tmp_path_factory.mktemp("cache-fits"))),
                       rounds=_rounds(request.config), iterations=1)
    _RESULTS["fits"] = runs
    want = expected_compiler()
    for run in runs:
        assert run["warmup"]["compiled_by"] == want, run
        for fit in run["fits"]:
            assert fit["fast_path"] and fit["compiled_by"] == want and math.isfinite(fit["loss"]), fit
    seconds = _seconds(runs)
    benchmark.extra_info.update(seconds=seconds, median_s=statistics.median(seconds),
                                compilations=[r["compilations"] for r in runs], counted=runs[0]["counted"],
                                per_fit_s=[[f["seconds"] for f in r["fits"]] for r in runs],
                                fits=[f["what"] for f in runs[0]["fits"]])
    if _targets_apply(request.config):
        assert statistics.median(seconds) <= TARGETS["fits"], f"six fits: {seconds} s, target {TARGETS['fits']} s"
        assert all(r["compilations"] == 0 for r in runs), [r["compilations"] for r in runs]


@pytest.mark.slow
def test_digits_vs_sklearn(benchmark, request, tmp_path_factory):
    """Case 5: the digits fit, fastnn's estimator (first and later run) against scikit-learn's."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (fastnn[sklearn])")
    runs = []
    benchmark.group = "start-up: digits MLPClassifier fit (s)"
    benchmark.pedantic(lambda: runs.append(digits_round(tmp_path_factory.mktemp("cache-digits"))),
                       rounds=_rounds(request.config), iterations=1)
    _RESULTS["digits"] = runs
    for run in runs:
        for who, result in run.items():
            assert result["accuracy"] > 0.9, (who, result)  # both learn the digits in 50 epochs
        assert run["fastnn"]["compiled_by"] == expected_compiler(), run["fastnn"]
    info = {who: _seconds(r[who] for r in runs) for who in runs[0]}
    benchmark.extra_info.update({f"{who.replace(' ', '_')}_s": s for who, s in info.items()})
    if _targets_apply(request.config):
        fastnn, sklearn = statistics.median(info["fastnn"]), statistics.median(info["sklearn"])
        assert fastnn < sklearn, f"digits fit: fastnn {fastnn:.2f} s, scikit-learn {sklearn:.2f} s"


@pytest.mark.slow
def test_startup_table(request, tmp_path_factory, capsys):
    """Print the markdown table of the runs above (measuring whatever they did not, e.g. under ``-k``)."""
    rounds = _rounds(request.config)

    def fresh(name):
        return tmp_path_factory.mktemp(f"cache-table-{name}")

    for framework in FRAMEWORKS:
        if framework not in _RESULTS["startup"] and installed(framework):
            runs = [startup_round(framework, fresh(framework)) for _ in range(rounds)]
            _RESULTS["startup"][framework] = {state: [r[state] for r in runs] for state in STATES}
    if "fits" not in _RESULTS:
        _RESULTS["fits"] = [fits_round(fresh("fits")) for _ in range(rounds)]
    if "digits" not in _RESULTS and installed("sklearn"):
        _RESULTS["digits"] = [digits_round(fresh("digits")) for _ in range(rounds)]
    with capsys.disabled():
        print("\n" + format_table(_RESULTS, rounds) + "\n")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="fastnn-startup-") as tmp:
        print(format_table(measure_all(ROUNDS, tmp), ROUNDS))
