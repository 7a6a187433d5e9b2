"""The README's Python snippets run as pasted and print what the README says they print; its test command is CI's."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
QUICK_START = next(b for b in BLOCKS if "load_fashion_mnist" in b)
SKLEARN = next(b for b in BLOCKS if "GridSearchCV" in b and "LocalCluster" not in b)
DASK = next(b for b in BLOCKS if "LocalCluster" in b)
# The output the README shows for the quick start: the first fenced block after it.
CLAIMED = re.search(r"```\n(.*?)```", README.split(QUICK_START + "```\n", 1)[1], re.S).group(1)

# Small stand-in for Fashion-MNIST in the default run: 2,000 + 500 "images" of ten learnable classes.
SMALL_DATA = '''
import numpy as np
import fastnn.datasets

def _small(data_dir=None, *, download=True):
    rng = np.random.default_rng(0)
    def split(n):
        y = rng.integers(0, 10, n)
        X = rng.uniform(0, 0.3, (n, 784)).astype(np.float32)
        for k in range(10):
            X[y == k, 56 * k:56 * k + 84] += 0.6
        return X, y
    return split(2000), split(500)

fastnn.datasets.load_fashion_mnist = _small
'''


def run_python(code, tmp_path, name="snippet.py"):
    """Run ``code`` as a script in ``tmp_path`` with this checkout's fastnn first on the path."""
    (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, name], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout, proc.stderr


EPOCH = re.compile(r"^Epoch (\d+)/10 - \S+s - loss: [\d.]+ - accuracy: [\d.]+ - val_loss: [\d.]+ - "
                   r"val_accuracy: [\d.]+(?: - .*)?$", re.M)  # then, say, the learning rate
METRICS = re.compile(r"^\{'loss': ([\d.]+), 'accuracy': ([\d.]+)\}$", re.M)
LABELS = re.compile(r"^\[\d( \d){4}\] \[\d( \d){4}\]$", re.M)


def test_readme_test_command_is_the_one_ci_runs():
    command = 'python -m pip install -e ".[test]" && python -m pytest -n auto'
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_claimed_output_has_the_shape_the_checks_expect():
    assert [int(n) for n in EPOCH.findall(CLAIMED.replace("…s", "0.3s"))] == [1, 10]
    assert METRICS.search(CLAIMED) and LABELS.search(CLAIMED)


def test_quick_start_runs_as_pasted_on_small_data(tmp_path):
    out, _ = run_python(SMALL_DATA + QUICK_START, tmp_path)
    assert [int(n) for n in EPOCH.findall(out)] == list(range(1, 11))
    loss, accuracy = map(float, METRICS.search(out).groups())
    assert accuracy > 0.9  # the stand-in is easy; chance is 0.1
    assert LABELS.search(out)
    assert (tmp_path / "model.npz").exists()


@pytest.mark.slow
def test_quick_start_on_fashion_mnist_prints_the_claimed_figures(tmp_path):
    from fastnn.datasets import load_fashion_mnist

    try:
        load_fashion_mnist(download=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not on this machine (CI installs dataset-fashion-mnist)")
    out, _ = run_python(QUICK_START, tmp_path)
    claimed = float(METRICS.search(CLAIMED).group(2))
    # Bit for bit on the machine that measured it; float32 BLAS kernels differ between CPUs, hence the margin.
    assert float(METRICS.search(out).group(2)) == pytest.approx(claimed, abs=0.01)


def test_sklearn_snippet(tmp_path):
    pytest.importorskip("sklearn")
    out, err = run_python(SKLEARN, tmp_path)
    params, score = re.fullmatch(r"(\{'mlpclassifier__hidden_layer_sizes': \(\d+,\)\}) (0\.\d+)\n", out).groups()
    assert float(score) > 0.85
    assert "Warning" not in err  # as pasted, it converges and prints only its line


@pytest.mark.slow
def test_dask_snippet(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("sklearn")
    out, _ = run_python(DASK, tmp_path)
    assert re.fullmatch(r"\{'mlpclassifier__hidden_layer_sizes': \(\d+,\)\} 0\.\d+\n", out)
