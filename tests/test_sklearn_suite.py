"""scikit-learn's own MLP test suite, run against fastnn's estimators with only the import line changed.

The file is taken at run time from the installed scikit-learn (pinned in the ``test`` extra, so the suite
cannot shift under us); nothing of scikit-learn's is copied into this repository. It runs in a
subprocess with scikit-learn's conftest (``-p sklearn.conftest``: its fixtures and random-seed handling).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT_LINE = "from sklearn.neural_network import MLPClassifier, MLPRegressor"


def _suite_source():
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    if spec is None or spec.origin is None:
        pytest.skip("the installed scikit-learn ships without its tests")
    source = Path(spec.origin).read_text()
    assert source.count(IMPORT_LINE) == 1, f"{spec.origin} no longer has the line {IMPORT_LINE!r}"
    return source.replace(IMPORT_LINE, "from fastnn import MLPClassifier, MLPRegressor")


@pytest.mark.slow
def test_sklearn_mlp_suite_passes(tmp_path):
    (tmp_path / "test_mlp_fastnn.py").write_text(_suite_source())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "sklearn.conftest", "-p", "no:cacheprovider", "-q", "-rf",
         "--rootdir", str(tmp_path), "-o", "addopts=", "test_mlp_fastnn.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    summary = out.strip().splitlines()[-1] if out.strip() else "(no output)"
    assert proc.returncode == 0 and not failed, f"{summary}\nfailing: {failed}\n\n{out[-6000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) == 59, summary
