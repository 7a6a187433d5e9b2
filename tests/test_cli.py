"""The ``fastnn`` command line, run in-process on a tiny IDX dataset (never the network, never the real data)."""
import dataclasses
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn import datasets
from tests.conftest import run

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_gz(array, code):
    """IDX as the format defines it: 00 00, type code, ndim, big-endian uint32 dims, data; then gzip."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def learnable_split(rng, n):
    """Class k lights rows 2k..2k+2 on a noisy background, so a few epochs separate the classes."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k:2 * k + 3] = 220
    return images, labels


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No $FASTNN_DATA, an empty cache, no system directories, mirrors that refuse connections locally."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, env in (("fashion-mnist", "FASTNN_FASHION_MNIST_MIRROR"), ("mnist", "FASTNN_MNIST_MIRROR")):
        monkeypatch.setenv(env, "http://127.0.0.1:9/")
        monkeypatch.setitem(datasets._SPECS, name, dataclasses.replace(datasets._SPECS[name], system_dirs=()))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """200 training and 50 test images in the four .gz files the loaders look for."""
    directory = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    arrays = (*learnable_split(rng, 200), *learnable_split(rng, 50))
    for stem, array in zip(STEMS, arrays, strict=True):
        (directory / (stem + ".gz")).write_bytes(idx_gz(array, 0x08))
    return str(directory)


def train(capsys, data_dir, *extra):
    return run(capsys, "train", "--data-dir", data_dir, "--hidden", "16", "--epochs", "3", "--batch-size", "20",
               "--seed", "0", "--backend", "numpy", *extra)


def final_line(out):
    return out.strip().splitlines()[-1]


def test_train_save_evaluate_round_trip(capsys, data_dir, tmp_path):
    model = tmp_path / "m.npz"
    code, out, err = run(capsys, "train", "--data-dir", data_dir, "--hidden", "32,16", "--epochs", "4",
                         "--batch-size", "20", "--lr", "1e-2", "--seed", "0", "--save", model)  # numba backend
    assert code == 0, err
    assert [line.split(" - ")[0] for line in out.splitlines() if line.startswith("Epoch")] == \
        [f"Epoch {i}/4" for i in range(1, 5)]
    assert f"saved model to {model}" in out
    last = final_line(out)
    assert last.startswith("test_loss: ") and " - test_accuracy: " in last
    assert float(last.rsplit(" ", 1)[1]) > 0.8  # the tiny data is learnable: chance is 0.1

    code, out_eval, err = run(capsys, "evaluate", model, "--data-dir", data_dir)
    assert code == 0, err
    assert out_eval.strip() == last  # the saved model scores exactly what train reported

    loaded = fn.load(model)
    assert [type(layer).__name__ for layer in loaded] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [layer.out_features for layer in loaded if isinstance(layer, fn.Linear)] == [32, 16, 10]
    assert loaded.n_features_in == 784


def test_json_output_parses_and_progress_goes_to_stderr(capsys, data_dir, tmp_path):
    model = tmp_path / "m.npz"
    code, out, err = train(capsys, data_dir, "--json", "--validation-split", "0.2", "--save", model)
    assert code == 0, err
    result = json.loads(out)  # stdout is exactly one JSON object
    assert "Epoch 3/3" in err and "saved model" in err
    assert result["model"] == str(model) and result["dataset"] == "fashion-mnist" and result["epochs"] == 3
    assert set(result["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in result["history"].values())

    code, out, err = run(capsys, "evaluate", model, "--data-dir", data_dir, "--json", "--backend", "numpy")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["n_samples"] == 50
    assert evaluated["test_accuracy"] == result["test_accuracy"]
    assert evaluated["test_loss"] == pytest.approx(result["test_loss"], rel=1e-12)


def test_same_seed_same_model_and_layers_get_distinct_streams(capsys, data_dir, tmp_path):
    paths = [tmp_path / name for name in ("a.npz", "b.npz", "c.npz")]
    for path, seed in zip(paths, ("5", "5", "6")):
        assert train(capsys, data_dir, "--hidden", "16,16", "--seed", seed, "--save", path, "-q")[0] == 0
    a, b, c = ([p.data for p in fn.load(path).parameters()] for path in paths)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # Each layer has its own stream: with one shared seed, the 16x16 layer's He weights would be the first
    # 256 draws of the first layer's, rescaled from sqrt(2/784) to sqrt(2/16).
    assert not np.allclose(a[0].ravel()[:256] * np.sqrt(784 / 16), a[2].ravel(), rtol=1e-4)


def test_quiet_prints_only_the_result(capsys, data_dir):
    code, out, err = train(capsys, data_dir, "--quiet")
    assert code == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith("test_loss: ")


def test_empty_hidden_is_softmax_regression_in_float64(capsys, data_dir, tmp_path):
    model = tmp_path / "m.npz"
    assert train(capsys, data_dir, "--hidden", "", "--dtype", "float64", "--save", model)[0] == 0
    loaded = fn.load(model)
    assert len(loaded) == 1 and loaded.n_features_in == 784 and loaded.n_outputs == 10
    assert loaded.dtype == np.float64


@pytest.mark.parametrize("optimizer, extra", [("sgd", ["--momentum", "0.9", "--lr", "0.05"]),
                                              ("adamw", ["--weight-decay", "0.1"]),
                                              ("adam", ["--activation", "tanh", "--early-stopping", "0"])])
def test_optimizers_and_options_train(capsys, data_dir, optimizer, extra):
    code, out, err = train(capsys, data_dir, "--optimizer", optimizer, "--json", *extra)
    assert code == 0, err
    assert 1 <= json.loads(out)["epochs"] <= 3


def test_evaluate_model_ending_in_softmax_uses_nll(capsys, data_dir, tmp_path):
    logits = fn.Sequential(fn.Linear(784, 10, seed=0))
    probs = fn.Sequential(fn.Linear(784, 10, seed=0), fn.Softmax())
    logits.save(tmp_path / "logits.npz")
    probs.save(tmp_path / "probs.npz")
    results = []
    for name in ("logits.npz", "probs.npz"):
        code, out, err = run(capsys, "evaluate", tmp_path / name, "--data-dir", data_dir, "--json")
        assert code == 0, err
        results.append(json.loads(out))
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["test_loss"] == pytest.approx(results[1]["test_loss"], rel=1e-5)


# -- bad command lines: argparse's errors, exit status 2 ------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "--hidden", "128,x"], "'x'"),
    (["train", "--hidden", "0"], "'0'"),
    (["train", "--hidden", "128,,64"], "''"),
    (["train", "--hidden", "-5"], "'-5'"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "2.5"], "--batch-size"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "fast"], "--lr"),
    (["train", "--validation-split", "1"], "--validation-split"),
    (["train", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["train", "--dataset", "cifar10"], "invalid choice: 'cifar10'"),
    (["train", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["train", "--verbose", "3"], "invalid choice: 3"),
    (["train", "--quiet", "--verbose", "2"], "not allowed with argument"),
    (["train", "--optimizer", "adam", "--momentum", "0.9"], "--momentum applies only to --optimizer sgd"),
    (["train", "--no-such-option"], "unrecognized arguments"),
    (["evaluate"], "required: MODEL"),
    ([], "required: COMMAND"),
])
def test_bad_command_line_exits_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "usage: fastnn" in err and message in err


# -- errors found while running: exit status 1, one line, no traceback -----------------------------------
def assert_error(result, *fragments):
    code, out, err = result
    assert code == 1
    assert err.startswith("fastnn: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_missing_model_file(capsys, data_dir, tmp_path):
    assert_error(run(capsys, "evaluate", tmp_path / "nope.npz", "--data-dir", data_dir),
                 "nope.npz", "No such file")


def test_corrupt_model_file(capsys, data_dir, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is no zip archive")
    assert_error(run(capsys, "evaluate", bad, "--data-dir", data_dir), "not a valid fastnn model file")


def test_model_of_the_wrong_width(capsys, data_dir, tmp_path):
    fn.Sequential(fn.Linear(100, 10, seed=0)).save(tmp_path / "narrow.npz")
    assert_error(run(capsys, "evaluate", tmp_path / "narrow.npz", "--data-dir", data_dir),
                 "maps 100 inputs to 10 outputs", "784 inputs")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_data_without_download(capsys, tmp_path, command):
    fn.Sequential(fn.Linear(784, 10, seed=0)).save(tmp_path / "m.npz")
    argv = ["evaluate", tmp_path / "m.npz"] if command == "evaluate" else ["train"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(run(capsys, *argv, "--dataset", "mnist", "--data-dir", empty, "--no-download"),
                 "mnist", str(empty))


def test_malformed_data_file(capsys, data_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for stem in STEMS:
        (broken / (stem + ".gz")).write_bytes(Path(data_dir, stem + ".gz").read_bytes())
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_gz(np.zeros(7, np.uint8), 0x08))
    assert_error(train(capsys, str(broken)), "expected 50 labels")


def test_save_directory_missing_fails_before_training(capsys, data_dir, tmp_path):
    code, out, err = train(capsys, data_dir, "--save", tmp_path / "no" / "m.npz")
    assert_error((code, out, err), "does not exist")
    assert "Epoch" not in out


def test_validation_split_too_small_for_the_data(capsys, data_dir):
    assert_error(train(capsys, data_dir, "--validation-split", "0.001"), "validation_split")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_divergence_reports_and_keeps_the_old_file(capsys, data_dir, tmp_path, backend):
    model = tmp_path / "m.npz"
    model.write_bytes(b"an older model")
    # An lr this large overflows float32 weights on the first step, so the next loss is not finite.
    code, out, err = train(capsys, data_dir, "--optimizer", "sgd", "--lr", "1e30", "--save", model,
                           "--backend", backend)
    assert_error((code, out, err), "training diverged", "nothing was saved")
    assert model.read_bytes() == b"an older model"
    assert os.listdir(tmp_path).count("m.npz") == 1 and not any(n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_ctrl_c_exits_130_and_saves_nothing(capsys, data_dir, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fn.Sequential, "fit", interrupted)
    model = tmp_path / "m.npz"
    code, out, err = train(capsys, data_dir, "--save", model)
    assert code == 130 and err == "fastnn: interrupted\n"
    assert not model.exists()


# -- the installed command: python -m fastnn ---------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [(["--help"], ["train", "evaluate", "Exit status"]),
                                            (["train", "--help"], ["--hidden", "--optimizer", "--save"]),
                                            (["--version"], [fn.__version__])])
def test_python_dash_m(argv, expected):
    proc = subprocess.run([sys.executable, "-m", "fastnn", *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert all(word in proc.stdout for word in expected)


def test_python_dash_m_bad_argument_exits_2():
    proc = subprocess.run([sys.executable, "-m", "fastnn", "train", "--hidden", "128,x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1].startswith("fastnn train: error: argument --hidden:")
