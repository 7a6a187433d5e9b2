"""The kernels built ahead of time (fastnn.kernels.aot): used without Numba, one signature per dtype, the same
bits as the JIT, and never used stale or on the wrong CPU."""
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn.kernels import aot  # not numba_cpu or step_numba: a child process imports _fits from here

ROOT = Path(__file__).resolve().parents[1]
AOT_OFF = os.environ.get("FASTNN_AOT", "").strip().lower() in {"0", "false", "no", "off"}


def _run(code, env=None, timeout=900, root=ROOT):
    """Run ``code`` in a new interpreter, fastnn imported from ``root``; (stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=root)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def test_every_export_is_a_kernel_with_as_many_arguments():
    from fastnn.kernels import numba_cpu, step_numba  # noqa: PLC0415

    for name, (_, out_arg) in aot.EXPORTS.items():
        kernel = getattr(step_numba if name == "train_batches" else numba_cpu, name)
        params = inspect.signature(kernel.py_func).parameters
        for code in aot.DTYPES:
            for _, sig in aot.signatures(name, code):
                assert len(aot.arguments(sig)) == len(params), name
                assert out_arg is None or aot.arguments(sig)[out_arg].startswith(f"{code}["), name


def test_the_installed_build_is_used():
    """The README's install builds the kernels; a test run on an installation without them says why."""
    if AOT_OFF:
        pytest.skip("FASTNN_AOT=0")
    assert aot.load() is not None, aot.reason()
    assert fn.kernels.compiled_by() == "aot"


# A fit, predict, evaluate and predict_proba of each kind the defaults reach, a layer-by-layer fit, the estimators'
# sgd/adam/lbfgs with and without sample weights.
WORKFLOW = """
    import sys, warnings, numpy as np, fastnn as fn
    assert "numba" not in sys.modules, "import fastnn imported Numba"
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 12), dtype=np.float32), rng.integers(0, 3, 300)
    m = fn.Sequential(fn.Linear(12, 16, seed=0), fn.ReLU(), fn.Dropout(0.1), fn.Linear(16, 3, seed=1))
    h = m.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(m.parameters()), epochs=2, verbose=0,
              validation_split=0.2, seed=0)
    m.predict(X[:1]); m.predict(X); m.predict_proba(X); m.evaluate(X, y, fn.SoftmaxCrossEntropy())
    r = fn.Sequential(fn.Linear(12, 8, seed=0, dtype=np.float64), fn.Tanh(), fn.Linear(8, 1, seed=1, dtype=np.float64))
    r.fit(X.astype(np.uint8), X[:, 0], loss=fn.MSELoss(), optimizer=fn.SGD(r.parameters(), lr=0.01, momentum=0.9),
          verbose=0, sample_weight=np.ones(300), validation_data=(X, X[:, 0]))
    g = fn.Sequential(fn.Linear(12, 16, seed=0), fn.Tanh(), fn.Dropout(0.1), fn.Linear(16, 3, seed=1), fn.Softmax())
    assert not g.fit(X, y, loss=fn.NLLLoss(), optimizer=fn.AdamW(g.parameters()), verbose=0).fast_path  # layer by layer
    g.predict(X); g.evaluate(X, y, fn.NLLLoss())
    from fastnn import MLPClassifier, MLPRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y).predict(X)
        MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y, sample_weight=np.ones(300))
        for solver in ("adam", "sgd"):
            c = MLPClassifier((8,), solver=solver, max_iter=3, random_state=0, early_stopping=True).fit(X, y)
            c.predict(X); c.predict_proba(X); c.score(X, y)
            MLPRegressor(hidden_layer_sizes=(8,), solver=solver, max_iter=3, random_state=0).fit(X, X[:, 0]).predict(X)
    print(h.compiled_by, "numba" in sys.modules)
"""


def test_fit_predict_evaluate_layer_by_layer_and_estimators_never_import_numba():
    if AOT_OFF:
        pytest.skip("FASTNN_AOT=0")
    out, err = _run(WORKFLOW)
    assert out.split() == ["aot", "False"], err
    assert "fastnn:" not in err, err  # no fallback was needed, so nothing was said


def test_a_call_the_build_does_not_cover_goes_to_the_jit_and_says_so():
    """A strided output buffer is no export's signature: the JIT computes it, one line on stderr says why."""
    code = """
        import numpy as np
        from fastnn.kernels import get_backend, numpy_ref
        x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
        out = np.zeros((4, 10), np.float32)[:, ::2]
        got = get_backend().softmax_forward(x, out)
        assert got is out
        np.testing.assert_allclose(out, numpy_ref.softmax_forward(x, np.empty_like(x)), rtol=1e-6)
        get_backend().softmax_forward(x, out)
    """
    _, err = _run(code)
    if not AOT_OFF:
        assert err.count("softmax_forward: no ahead-of-time build for this call (argument 1") == 1, err


def _copy_package(tmp_path):
    dst = tmp_path / "fastnn"
    shutil.copytree(ROOT / "fastnn", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


REASON = "from fastnn.kernels import aot; print(aot.reason())"


@pytest.mark.skipif(AOT_OFF, reason="FASTNN_AOT=0")
def test_a_stale_build_is_not_used(tmp_path):
    """An editable install after a pull: the kernel sources no longer hash to the build's, so the JIT runs."""
    root = _copy_package(tmp_path)
    out, _ = _run(REASON, root=root)
    assert out.strip() == "None"
    step = root / "fastnn" / "kernels" / "step_numba.py"
    step.write_text(step.read_text() + "\n# changed\n")
    out, err = _run(REASON + "; import fastnn.kernels as K; print(K.compiled_by())", root=root)
    assert "stale" in out and out.split()[-1] == "jit"
    assert err.count("fastnn: using Numba's JIT for the kernels: the ahead-of-time build is stale") == 1


def test_fastnn_aot_0_uses_the_jit_and_says_why():
    out, err = _run(REASON + "; import fastnn.kernels as K; print(K.compiled_by())", env={"FASTNN_AOT": "0"})
    assert "FASTNN_AOT=0" in out and out.split()[-1] == "jit"
    assert err.count("FASTNN_AOT=0") == 1


@pytest.mark.skipif(AOT_OFF, reason="FASTNN_AOT=0")
def test_a_build_for_another_cpu_is_not_used(monkeypatch):
    monkeypatch.setattr(aot, "cpu_flags", lambda: [])  # this CPU "lacks" every flag the build machine had
    module, reason = aot._open()
    assert module is None and "another CPU" in reason, reason


def _fits(dtype):
    """Fits and predicts across depths 1-8, every activation, dropout, each loss and optimizer, weights."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(dtype)
    acts = [fn.ReLU, fn.Tanh, fn.Sigmoid, fn.LeakyReLU, fn.ELU, fn.GELU]
    losses = [(fn.SoftmaxCrossEntropy(), rng.integers(0, 3, 64), 3),
              (fn.SoftmaxCrossEntropy(), np.eye(3)[rng.integers(0, 3, 64)], 3),
              (fn.MSELoss(), rng.standard_normal((64, 2)), 2),
              (fn.BCEWithLogitsLoss(), (rng.random((64, 2)) > 0.5).astype(float), 2)]
    optimizers = [lambda p: fn.SGD(p, lr=0.01), lambda p: fn.SGD(p, lr=0.01, momentum=0.9), fn.Adam, fn.AdamW]
    for depth in range(1, 9):
        loss, y, k = losses[depth % len(losses)]
        layers, width = [], 6
        for i in range(depth - 1):
            if depth % 2:
                layers.append(fn.Dropout(0.2))
            layers += [fn.Linear(width, 5, seed=i, dtype=dtype), acts[(depth + i) % len(acts)]()]
            width = 5
        model = fn.Sequential(*layers, fn.Linear(width, k, seed=9, dtype=dtype))
        h = model.fit(X, y, loss=loss, optimizer=optimizers[depth % 4](model.parameters()), batch_size=16,
                      verbose=0, seed=depth, sample_weight=np.ones(64) if depth % 3 == 0 else None,
                      clip_grad_norm=1.0 if depth == 4 else None, validation_split=0.25)
        assert h.fast_path
        model.predict(X[:1])
        model.predict(X)


COUNT = """
    import sys, numpy as np
    from numba.core import event
    sys.path.insert(0, {tests!r})
    from test_aot import _fits
    from fastnn.kernels import step_numba, numba_cpu

    counts = []
    class Count(event.Listener):
        def on_start(self, ev):
            counts.append(ev.data["dispatcher"].py_func.__name__)
        def on_end(self, ev):
            pass
    with event.install_listener("numba:compile", Count()):
        for dtype in (np.float32, np.float64):
            _fits(dtype)
            first = counts.count("train_batches"), counts.count("mlp_forward")
            del counts[:]
            _fits(dtype)
            print(dtype.__name__, first, len(counts))
    print(len(step_numba.train_batches.signatures), len(numba_cpu.mlp_forward.signatures))
"""


def test_no_compilation_across_networks_with_the_build():
    """Every network of the matrix trains and predicts with zero Numba compilations (Numba is not even loaded)."""
    if AOT_OFF:
        pytest.skip("FASTNN_AOT=0: the JIT's count is test_one_jit_signature_per_dtype")
    out, err = _run(f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import numpy as np\n"
                    "from test_aot import _fits\n_fits(np.float32); _fits(np.float64)\n"
                    "print('numba' in sys.modules)")
    assert out.strip() == "False", err


@pytest.mark.slow  # compiles the JIT's step for both dtypes from an empty cache: about a minute
def test_one_jit_signature_per_dtype(tmp_path):
    """On the JIT, the step and predict compile once per dtype (the first fit), then never again for any network
    of the matrix: their argument types do not depend on the network."""
    out, err = _run(COUNT.format(tests=str(ROOT / "tests")), env={"FASTNN_AOT": "0", "NUMBA_CACHE_DIR": str(tmp_path)})
    lines = out.split("\n")
    assert lines[0] == "float32 (1, 1) 0", out
    assert lines[1] == "float64 (1, 1) 0", out
    assert lines[2] == "2 2", out


SAME_BITS = """
    import hashlib, numpy as np, fastnn as fn
    from fastnn import lr_scheduler
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 10), dtype=np.float32), rng.integers(0, 3, 200)
    digest = hashlib.sha256()
    for dtype in (np.float32, np.float64):
        for case in range(4):
            m = fn.Sequential(fn.Linear(10, 12, seed=0, dtype=dtype), [fn.ReLU, fn.GELU, fn.Tanh, fn.ELU][case](),
                              fn.Dropout(0.2), fn.Linear(12, 3, seed=1, dtype=dtype))
            opt = [fn.Adam(m.parameters()), fn.SGD(m.parameters(), lr=0.05, momentum=0.9), fn.AdamW(m.parameters()),
                   fn.SGD(m.parameters(), lr=0.05)][case]
            sched = lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=30, interval="batch")
            data = [X, X.astype(np.float64), (X * 255).astype(np.uint8), X][case]
            h = m.fit(data, y, loss=fn.SoftmaxCrossEntropy(), optimizer=opt, epochs=2, batch_size=16, seed=3,
                      verbose=0, callbacks=[sched] if case == 0 else None, clip_grad_norm=0.5 if case == 1 else None,
                      sample_weight=rng.random(200) if case == 2 else None)
            for p in m.parameters():
                digest.update(p.data.tobytes())
            digest.update(m.predict(X).tobytes())
    print(h.compiled_by, digest.hexdigest())
"""


@pytest.mark.slow  # the JIT side compiles the step for both dtypes
@pytest.mark.skipif(AOT_OFF, reason="FASTNN_AOT=0")
def test_aot_and_jit_train_the_same_bits():
    """Same seed, data, dtype, GEMM and thread count: the prebuilt step and the JIT's give bit-identical weights
    and predictions (dropout, a per-batch schedule, momentum, clipping, sample weights, data of three dtypes). The
    JIT's kernels multiply with NumPy's BLAS, so the prebuilt ones are told to as well (``FASTNN_GEMM=blas``: by
    default they use fastnn's own float32 GEMM where the CPU has AVX-512, tests/test_gemm.py)."""
    env = {"FASTNN_BLAS_THREADS": "1", "FASTNN_GEMM": "blas"}
    aot_out, _ = _run(SAME_BITS, env=env)
    jit_out, _ = _run(SAME_BITS, env={**env, "FASTNN_AOT": "0"})
    assert aot_out.split()[0] == "aot" and jit_out.split()[0] == "jit"
    assert aot_out.split()[1] == jit_out.split()[1]
