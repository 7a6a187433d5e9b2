"""ONNX export: every layer's builder, the estimators, the command; checked by onnx.checker, run by onnxruntime."""
import math

import numpy as np
import pytest

import fastnn as fn
from fastnn import export
from tests.conftest import run

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-5


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def inputs(n_features, dtype, n=33, seed=0):
    return np.random.default_rng(seed).normal(0, 2, (n, n_features)).astype(dtype)


def assert_close(actual, expected, dtype):
    # 1e-5 relative; the absolute floor is a few ulps of the outputs' scale, for entries that are ~0.
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=4 * np.finfo(dtype).eps * max(scale, 1.0))


# Layers the compiled step will support but main may not have yet: when fastnn has the class, the real one is
# tested; until then a stand-in with the same class name, hyperparameter and the documented formula.
class _StandIn(fn.Layer):
    def __init__(self, **config):
        self._config = config

    def get_config(self):
        return dict(self._config)

    def _forward(self, X):
        return self.formula(X, **self._config).astype(X.dtype)


def stand_in(name, formula):
    return getattr(fn, name, None) or type(name, (_StandIn,), {"formula": staticmethod(formula)})


LeakyReLU = stand_in("LeakyReLU", lambda x, negative_slope: np.where(x > 0, x, negative_slope * x))
ELU = stand_in("ELU", lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))))
GELU = stand_in("GELU", lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))))
Dropout = stand_in("Dropout", lambda x, p: x)


def every_layer(dtype):
    """One network through every builder of export.BUILDERS."""
    widths = [6, 9, 8, 7, 6, 5, 5, 4, 3]
    lin = [fn.Linear(a, b, seed=i, dtype=dtype, init="glorot") for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    return fn.Sequential(lin[0], fn.ReLU(), lin[1], fn.Sigmoid(), lin[2], fn.Tanh(),
                         lin[3], LeakyReLU(negative_slope=0.2), lin[4], ELU(alpha=0.7), lin[5], GELU(),
                         lin[6], Dropout(p=0.5), lin[7], fn.Softmax())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layer_matches_onnxruntime(tmp_path, dtype):
    model = every_layer(dtype)
    assert {type(layer) for layer in model} == set(export.BUILDERS)  # a new builder needs a test here
    path = tmp_path / "m.onnx"
    proto = fn.export_onnx(model, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert proto.opset_import[0].version == export.OPSET == 17
    assert [node.op_type for node in proto.graph.node][:2] == ["Gemm", "Relu"]
    X = inputs(6, dtype)
    (Y,) = session(path).run(None, {"X": X})
    assert Y.dtype == dtype and Y.shape == (33, 3)
    assert_close(Y, model.predict(X), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trained_logits_model_round_trips_through_save(tmp_path, dtype):
    rng = np.random.default_rng(1)
    X = inputs(10, dtype, n=200)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    model = fn.Sequential(fn.Linear(10, 16, seed=0, dtype=dtype), fn.ReLU(), fn.Linear(16, 3, seed=1, dtype=dtype))
    model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=1e-2), epochs=3,
              batch_size=32, seed=0, verbose=0)
    model.save(tmp_path / "m.npz")
    fn.export_onnx(fn.load(tmp_path / "m.npz"), tmp_path / "m.onnx")
    Xn = inputs(10, dtype, seed=rng.integers(1 << 30))
    (Y,) = session(tmp_path / "m.onnx").run(None, {"X": Xn})
    assert_close(Y, model.predict(Xn), dtype)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # three epochs suffice for a graph
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [[0, 1, 2], ["cat", "dog"], [-1.0, 2.0, 7.0]], ids=["int", "str", "float"])
def test_classifier_exports_labels_and_probabilities(tmp_path, dtype, classes):
    pytest.importorskip("sklearn")
    X = inputs(4, np.float64, n=120)
    y = np.asarray(classes)[np.digitize(X[:, 0], [-0.5, 0.5]) % len(classes)]
    clf = fn.MLPClassifier((8,), max_iter=3, random_state=0, dtype=dtype)
    clf.fit(X, y)
    path = tmp_path / "clf.onnx"
    fn.export_onnx(clf, path)
    sess = session(path)
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    label, proba = sess.run(None, {"X": X.astype(dtype)})
    assert np.array_equal(label, clf.predict(X))
    assert proba.dtype == dtype
    assert_close(proba, clf.predict_proba(X), dtype)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_multilabel_and_poisson_heads_export(tmp_path):
    """The estimators' other output activations: independent sigmoids (multi-label) and exp (Poisson)."""
    pytest.importorskip("sklearn")
    X = inputs(4, np.float64, n=60)
    Y = (X[:, :3] > 0).astype(int)
    clf = fn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, Y)
    fn.export_onnx(clf, tmp_path / "ml.onnx")
    label, proba = session(tmp_path / "ml.onnx").run(None, {"X": X})
    assert np.array_equal(label, clf.predict(X))
    assert_close(proba, clf.predict_proba(X), np.float64)
    reg = fn.MLPRegressor(loss="poisson", hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, np.exp(X[:, 0]))
    fn.export_onnx(reg, tmp_path / "poisson.onnx")
    (out,) = session(tmp_path / "poisson.onnx").run(None, {"X": X})
    assert_close(out, reg.predict(X), np.float64)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
@pytest.mark.parametrize("n_targets", [1, 2])
def test_regressor_exports_predict(tmp_path, n_targets):
    pytest.importorskip("sklearn")
    X = inputs(3, np.float64, n=80)
    Y = X[:, :n_targets] * 2 + 1
    reg = fn.MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
    reg.fit(X, Y.ravel() if n_targets == 1 else Y)
    fn.export_onnx(reg, tmp_path / "reg.onnx")
    dtype = reg.coefs_[0].dtype  # scikit-learn's rule: float64 X trains (and exports) in float64
    (out,) = session(tmp_path / "reg.onnx").run(None, {"X": X.astype(dtype)})
    expected = reg.predict(X)
    assert out.shape == expected.shape
    assert_close(out, expected, dtype)


def test_errors_name_the_problem(tmp_path):
    class Custom(fn.Layer):
        pass

    with pytest.raises(ValueError, match="cannot export layer 1, Custom\\(\\): no ONNX builder for Custom"):
        fn.export_onnx(fn.Sequential(fn.Linear(2, 2, seed=0), Custom()), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="takes a fastnn.Sequential"):
        fn.export_onnx(object(), tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fn.export_onnx(fn.Sequential(fn.Linear(2, 2, seed=0)), tmp_path / "no" / "x.onnx")
    sklearn = pytest.importorskip("sklearn")
    assert sklearn
    with pytest.raises(ValueError, match="not fitted yet"):
        fn.export_onnx(fn.MLPClassifier(), tmp_path / "x.onnx")
    assert not any(p.suffix == ".onnx" or p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_command_line_export(capsys, tmp_path):
    model = fn.Sequential(fn.Linear(5, 4, seed=0), fn.Tanh(), fn.Linear(4, 2, seed=1))
    model.save(tmp_path / "m.npz")
    code, out, err = run(capsys, "export", tmp_path / "m.npz", tmp_path / "m.onnx")
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'm.onnx'} (3 ONNX nodes, opset 17)"
    X = inputs(5, np.float32)
    assert_close(session(tmp_path / "m.onnx").run(None, {"X": X})[0], model.predict(X), np.float32)
    code, out, err = run(capsys, "export", tmp_path / "missing.npz", tmp_path / "m2.onnx")
    assert code == 1 and "missing.npz: No such file" in err and not (tmp_path / "m2.onnx").exists()
