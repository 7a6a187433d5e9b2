"""Numba options live in fastnn/_config.py only; caching degrades gracefully."""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

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
