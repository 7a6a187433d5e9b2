"""Every script in examples/ runs to the end, on shrunken data (FASTNN_EXAMPLES_QUICK=1), and prints what it claims."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name, tmp_path, *args):
    """Run examples/<name> in ``tmp_path`` (it writes its files there) with this checkout's fastnn first."""
    env = {**os.environ, "FASTNN_EXAMPLES_QUICK": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_example_has_a_test():
    tested = {"quickstart.py", "gradcheck_loop.py", "sklearn_pipeline.py", "dask_search.py", "learning_curves.py",
              "onnx_export.py", "checkpoint_resume.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", tmp_path)
    assert out.startswith("data: Fashion-MNIST") or out.startswith("data: synthetic stand-in")
    assert "Epoch 2/2" in out and "test accuracy 0." in out
    assert "reloaded: the same predictions" in out and (tmp_path / "quickstart_model.npz").exists()


def test_gradcheck_loop(tmp_path):
    out = run_example("gradcheck_loop.py", tmp_path)
    assert "gradcheck, worst relative error per parameter" in out
    final = [line for line in out.splitlines() if line.startswith("epoch")][-1]
    assert float(final.rsplit(" ", 1)[1]) > 0.9  # the spirals are learnt: a linear model gets about 0.5


def test_sklearn_pipeline(tmp_path):
    pytest.importorskip("sklearn")
    out = run_example("sklearn_pipeline.py", tmp_path)
    assert out.count("{'mlpclassifier__") == 5  # four candidates and the best
    assert float(out.strip().rsplit(" ", 1)[1]) > 0.8


@pytest.mark.slow
def test_dask_search(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("sklearn")
    out = run_example("dask_search.py", tmp_path)
    assert "12 fits on 2 workers" in out and "cross-validated accuracy 0." in out


def test_learning_curves(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    out = run_example("learning_curves.py", tmp_path, "lc.png")
    assert "wrote lc.png: 3 panels (loss, accuracy, learning rate)" in out
    assert (tmp_path / "lc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_onnx_export(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("sklearn")
    out = run_example("onnx_export.py", tmp_path)
    difference = float(out.split("largest difference from model.predict: ")[1].split()[0])
    assert difference < 1e-5
    assert "labels agree with predict(): True" in out


def test_checkpoint_resume(tmp_path):
    out = run_example("checkpoint_resume.py", tmp_path)
    assert "resumed at epoch 4 and trained to epoch 6" in out
    assert "weights equal to the uninterrupted run: True" in out
