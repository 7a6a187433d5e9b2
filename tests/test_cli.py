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
    (["predict", "m.npz"], "required: --out"),
    (["export", "m.npz"], "required: OUT"),
    (["train", "--target", "y"], "--target applies to --data files only"),
    (["train", "--test-data", "t.csv"], "--test-data applies to --data files only"),
    (["train", "--task", "regression"], "--task regression needs --data"),
    (["train", "--data", "d.csv", "--dataset", "mnist"], "--data replaces the built-in dataset; drop --dataset"),
    (["train", "--data", "d.csv", "--no-download"], "drop --download/--no-download"),
    (["train", "--data", "d.npz", "--target", "y"], "a .npz holds its target as the array y"),
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
    code, out, err = run(capsys, *argv, "--dataset", "mnist", "--data-dir", empty, "--no-download")
    assert_error((code, out, err), "mnist", str(empty), "Pass --download")
    assert "download=True" not in err  # the command line's words, not the Python API's


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
    assert_error(train(capsys, data_dir, "--validation-split", "0.001"), "--validation-split 0.001 leaves 0 of 200")


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
    monkeypatch.setattr(fn.train, "fit", interrupted)  # fastnn train calls the loop itself
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


# -- your own data: --data FILE.npz / FILE.csv --target COLUMN ------------------------------------------------
def blobs(n=240, seed=0):
    """Three classes in 4 features, separable enough for a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 0.5, (n, 4)) + np.eye(3, 4)[y] * 3
    return X, y


def write_csv(path, X, y, target="label", at=2):
    """X's columns f0, f1, ... with the target column inserted at position ``at``."""
    names = [f"f{i}" for i in range(X.shape[1])]
    names.insert(at, target)
    lines = [",".join(names)]
    for row, t in zip(X, y):
        cells = [repr(float(v)) for v in row]
        cells.insert(at, str(t))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def own(capsys, *argv):
    return run(capsys, *argv, "--backend", "numpy")


def test_npz_train_evaluate_predict_round_trip(capsys, tmp_path):
    X, y = blobs()
    np.savez(tmp_path / "train.npz", X=X[:200], y=y[:200])
    np.savez(tmp_path / "test.npz", X=X[200:], y=y[200:])
    code, out, err = own(capsys, "train", "--data", tmp_path / "train.npz", "--test-data", tmp_path / "test.npz",
                         "--hidden", "16", "--epochs", "5", "--batch-size", "20", "--lr", "0.01", "--seed", "0",
                         "--save", tmp_path / "m.npz", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"] == str(tmp_path / "train.npz") and result["test_accuracy"] > 0.9
    assert "4-16-3" in err  # features and classes come from the file
    code, out, err = own(capsys, "evaluate", tmp_path / "m.npz", "--data", tmp_path / "test.npz", "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["n_samples"] == 40 and evaluated["test_accuracy"] == result["test_accuracy"]
    assert evaluated["test_loss"] == pytest.approx(result["test_loss"], rel=1e-12)

    code, out, err = own(capsys, "predict", tmp_path / "m.npz", "--data", tmp_path / "test.npz",
                         "--out", tmp_path / "p.csv")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"wrote 40 predictions to {tmp_path / 'p.csv'}"
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "label,prob_0,prob_1,prob_2" and len(lines) == 41
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    logits = fn.load(tmp_path / "m.npz").predict(X[200:]).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert np.array_equal(table[:, 0], logits.argmax(axis=1))
    np.testing.assert_allclose(table[:, 1:], probs, rtol=1e-8, atol=1e-9)  # 9 significant digits
    assert np.mean(table[:, 0] == y[200:]) == pytest.approx(result["test_accuracy"])


def test_predict_writes_through_the_atomic_writer_and_removes_a_killed_writers_temp_file(capsys, tmp_path):
    X, y = blobs()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert own(capsys, "train", "--data", tmp_path / "d.npz", "--hidden", "4", "--epochs", "1",
               "--save", tmp_path / "m.npz", "-q")[0] == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".p.csv.{int(dead.stdout)}-0a1b2c3d.tmp"  # what a predict killed mid-write leaves
    stale.write_text("label,prob_0\n0,")
    (tmp_path / "p.csv").write_text("an older file")
    code, out, err = own(capsys, "predict", tmp_path / "m.npz", "--data", tmp_path / "d.npz", "--out",
                         tmp_path / "p.csv")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["d.npz", "m.npz", "p.csv"]
    assert (tmp_path / "p.csv").read_text().startswith("label,prob_0,prob_1,prob_2\n")


def test_csv_target_column_anywhere_trains_as_the_npz(capsys, tmp_path):
    X, y = blobs(120)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    write_csv(tmp_path / "d.csv", X, y, target="species", at=1)
    common = ["--hidden", "8", "--epochs", "2", "--seed", "3", "-q"]
    assert own(capsys, "train", "--data", tmp_path / "d.npz", "--save", tmp_path / "a.npz", *common)[0] == 0
    code, out, err = own(capsys, "train", "--data", tmp_path / "d.csv", "--target", "species",
                         "--save", tmp_path / "b.npz", *common)
    assert code == 0, err
    assert out.startswith("train_loss: ")  # no test data: the final metrics are on the training data
    a, b = fn.load(tmp_path / "a.npz"), fn.load(tmp_path / "b.npz")
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    # predict takes the CSV with or without its target column
    np.savetxt(tmp_path / "features.csv", X, delimiter=",", header="f0,f1,f2,f3", comments="", fmt="%.17g")
    assert own(capsys, "predict", tmp_path / "b.npz", "--data", tmp_path / "features.csv",
               "--out", tmp_path / "p.csv")[0] == 0
    assert own(capsys, "predict", tmp_path / "b.npz", "--data", tmp_path / "d.csv", "--target", "species",
               "--out", tmp_path / "q.csv")[0] == 0
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "q.csv").read_text()


def test_regression_from_npz(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    Y = np.stack([X @ [1.0, -2.0, 0.5], X[:, 0] ** 2], axis=1)
    np.savez(tmp_path / "r.npz", X=X, y=Y)
    code, out, err = own(capsys, "train", "--data", tmp_path / "r.npz", "--task", "regression", "--hidden", "16",
                         "--epochs", "4", "--seed", "0", "--save", tmp_path / "m.npz", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= {"train_loss"} and "train_accuracy" not in result
    assert set(result["history"]) == {"loss", "lr"}
    code, out, err = own(capsys, "evaluate", tmp_path / "m.npz", "--data", tmp_path / "r.npz", "--task", "regression")
    assert code == 0, err
    assert out.strip() == f"test_loss: {result['train_loss']:.4f} - test_r2: {result['train_r2']:.4f}"
    assert own(capsys, "predict", tmp_path / "m.npz", "--data", tmp_path / "r.npz", "--task", "regression",
               "--out", tmp_path / "p.csv")[0] == 0
    np.savez(tmp_path / "r1.npz", X=X, y=Y[:, 0])
    assert own(capsys, "train", "--data", tmp_path / "r1.npz", "--task", "regression", "--epochs", "1",
               "--save", tmp_path / "m1.npz", "-q")[0] == 0
    for command in (["evaluate"], ["predict", "--out", tmp_path / "q.csv"]):
        assert_error(own(capsys, command[0], tmp_path / "m1.npz", "--data", tmp_path / "r1.npz", *command[1:]),
                     "the model has 1 output, but a classifier has one per class", "pass --task regression")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "prediction_0,prediction_1" and len(lines) == 151
    np.testing.assert_allclose(np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1),
                               fn.load(tmp_path / "m.npz").predict(X), rtol=1e-6)


def test_predict_on_the_builtin_test_split(capsys, data_dir, tmp_path):
    fn.Sequential(fn.Linear(784, 10, seed=0), fn.Softmax()).save(tmp_path / "m.npz")
    code, out, err = run(capsys, "predict", tmp_path / "m.npz", "--data-dir", data_dir, "--out", tmp_path / "p.csv")
    assert code == 0, err
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert table.shape == (50, 11)
    np.testing.assert_allclose(table[:, 1:].sum(axis=1), 1, rtol=1e-6)  # a final Softmax's outputs, as they are


def test_plot_option_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    X, y = blobs(100)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    code, out, err = own(capsys, "train", "--data", tmp_path / "d.npz", "--epochs", "3", "--validation-split",
                         "0.2", "--plot", tmp_path / "curves.png")
    assert code == 0, err
    assert f"drew the learning curves to {tmp_path / 'curves.png'}" in out
    from tests.test_plot import png_info

    width, height, colours = png_info(tmp_path / "curves.png")
    assert (width, height) == (900, 360) and colours > 2


BAD_CSV = {
    "ragged.csv": ("a,b,label\n1,2,0\n3,4\n", "ragged.csv: line 3: 2 fields, but the header has 3 columns"),
    "nan.csv": ("a,b,label\n1,2,0\n\n3,2,1\n4,inf,0\n", "nan.csv: line 5, column 'b': inf is not a finite"),
    "hole.csv": ("a,b,label\n1,,0\n", "hole.csv: column 'b': no values (every cell is empty)"),
    "nolabel.csv": ("a,b,label\n1,2,0\n\n3,2,\n", "nolabel.csv: line 4, column 'label': empty"),
    "void.csv": ("", "void.csv: empty file; expected a header row"),
    "header.csv": ("a,b,label\n", "header.csv: no data rows after the header"),
    "twice.csv": ("a,a,label\n1,2,0\n", "twice.csv: line 1: column names ['a'] appear more than once"),
    "notarget.csv": ("a,b,c\n1,2,0\n", "notarget.csv: --target 'label' is not a column; the header has: a, b, c"),
    "alone.csv": ("label\n0\n1\n", "alone.csv: no feature columns"),
    "float.csv": ("a,label\n1,0\n2,1.5\n", "float.csv: line 3, column 'label': 1.5 is not a class label"),
    "oneclass.csv": ("a,label\n1,0\n2,0\n", "oneclass.csv: every target is 0; classification needs at least two"),
    "unnamed.csv": ("a,,label\n1,2,0\n2,3,1\n", "unnamed.csv: line 1: column 2 has no name"),
    "noindex.csv": (",a,label\n1,2,0\n1,3,1\n", "noindex.csv: line 1: column 1 has no name, and it is not a pandas"),
}


@pytest.mark.parametrize("name", sorted(BAD_CSV) + ["latin1.csv"])
def test_bad_csv_names_line_and_column(capsys, tmp_path, name):
    content, message = BAD_CSV.get(name, ("a,label\n1,0\nr\xe9sum\xe9,1\n", "latin1.csv: not UTF-8 text: byte 0xe9"))
    (tmp_path / name).write_text(content, encoding="latin-1")
    code, out, err = own(capsys, "train", "--data", tmp_path / name, "--target", "label", "--epochs", "1")
    assert_error((code, out, err), message)
    assert "Epoch" not in out


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.ones((4, 2))}, "no array 'y'; expected X (n_samples, n_features) and y, found ['X']"),
    ({"features": np.ones((4, 2)), "y": np.zeros(4)}, "no array 'X'"),
    ({"X": np.ones(4), "y": np.zeros(4)}, "array X has shape (4,); expected 2-D"),
    ({"X": np.ones((4, 2)), "y": np.zeros(3)}, "array y has shape (3,); expected (4,) or (4, n_targets)"),
    ({"X": np.array([["a", "b"]] * 2), "y": np.zeros(2)}, "array X has dtype <U1; expected numbers"),
    ({"X": np.ones((4, 2)), "y": np.zeros((4, 2))}, "y has shape (4, 2); classification needs one class label"),
])
def test_bad_npz(capsys, tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    assert_error(own(capsys, "train", "--data", tmp_path / "d.npz"), f"{tmp_path / 'd.npz'}: {message}")


def test_data_file_faults(capsys, tmp_path):
    assert_error(own(capsys, "train", "--data", tmp_path / "none.npz"), "none.npz: No such file")
    assert_error(own(capsys, "train", "--data", tmp_path / "none.csv", "--target", "y"), "none.csv: No such file")
    (tmp_path / "d.txt").write_text("1 2 3\n")
    assert_error(own(capsys, "train", "--data", tmp_path / "d.txt"), "d.txt: expected a .npz (arrays X and y), a .csv")
    (tmp_path / "fake.npz").write_bytes(b"not a zip")
    assert_error(own(capsys, "train", "--data", tmp_path / "fake.npz"), "fake.npz: ")
    np.save(tmp_path / "single.npy", np.ones(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    assert_error(own(capsys, "train", "--data", tmp_path / "single.npz"), "holds a single .npy array")


def test_data_that_does_not_fit_the_model(capsys, tmp_path):
    X, y = blobs(60)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savez(tmp_path / "wide.npz", X=np.ones((5, 7)), y=np.zeros(5, int))
    np.savez(tmp_path / "more.npz", X=X[:5], y=np.arange(5))
    fn.Sequential(fn.Linear(4, 3, seed=0)).save(tmp_path / "m.npz")
    assert_error(own(capsys, "evaluate", tmp_path / "m.npz", "--data", tmp_path / "wide.npz"),
                 "wide.npz: 7 features per sample, but", "takes 4 inputs")
    assert_error(own(capsys, "evaluate", tmp_path / "m.npz", "--data", tmp_path / "more.npz"),
                 "label 4 out of range; expected labels in [0, 3)")
    assert_error(own(capsys, "train", "--data", tmp_path / "d.npz", "--test-data", tmp_path / "wide.npz"),
                 "wide.npz: 7 features, but the training data has 4")
    assert_error(own(capsys, "train", "--data", tmp_path / "d.npz", "--test-data", tmp_path / "more.npz"),
                 "more.npz: sample 3: 3 is not one of the model's classes [0, 1, 2]")


@pytest.mark.parametrize("python, cli", [
    ("Pass download=True or put them in one of these directories.",
     "Pass --download (the default; drop --no-download) or put them in one of these directories."),
    ("pass download=True to fetch them", "Pass --download (the default; drop --no-download) to fetch them"),
    ("with download=False nothing is fetched", "with --no-download nothing is fetched"),
])
def test_dataset_messages_in_the_command_lines_words(python, cli):
    from fastnn.cli import _cli_words

    assert _cli_words(python) == cli


def test_readme_command_lines_parse():
    """Every `fastnn ...` line of the README's shell blocks is a valid command line for this parser."""
    import re
    import shlex

    from fastnn.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [line.split(" #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
             for line in block.splitlines() if line.startswith("fastnn ")]
    assert len(lines) >= 6
    for line in lines:
        argv = shlex.split(line)[1:]
        if argv[0] == "COMMAND":
            continue
        build_parser().parse_args(argv)  # exits 2, failing the test, on an unknown option or a bad value


def test_train_ctrl_c_keeps_the_work_and_resume_finishes_it(tmp_path):
    """SIGINT mid-run: exit 130, the model of the last completed epoch saved, the checkpoint named; the same
    command with --resume ends with exactly the weights of an uninterrupted run."""
    import signal
    import time

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 20)).astype(np.float32)
    np.savez(tmp_path / "train.npz", X=X, y=(X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def train(tag, *extra):
        return [sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "train.npz"), "--hidden", "64,64",
                "--epochs", "60", "--batch-size", "16", "--seed", "1", "--save", str(tmp_path / f"{tag}.npz"),
                "--checkpoint", str(tmp_path / f"{tag}.ckpt"), *extra]

    subprocess.run(train("reference"), env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(train("run"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "run.ckpt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (out, err)
    assert "interrupted: saved the model after" in out + err and "--resume" in out + err
    interrupted = fn.load(tmp_path / "run.npz")  # the last completed epoch, written whole
    assert all(np.isfinite(p.data).all() for p in interrupted.parameters())
    subprocess.run(train("run", "--resume"), env=env, check=True, capture_output=True, timeout=600)
    for a, b in zip(fn.load(tmp_path / "run.npz").parameters(), fn.load(tmp_path / "reference.npz").parameters()):
        np.testing.assert_array_equal(a.data, b.data)
