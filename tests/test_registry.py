"""Every row of fastnn.registry through every consumer: layers, the compiled step's planner (against its NumPy twin),
fit(loss=name), the CLI, the estimators (where scikit-learn has the row), export and the kernel benchmarks."""
import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

import fastnn as fn
from fastnn import export, registry, train
from fastnn.benchmarks import test_bench_kernels
from fastnn.kernels import codes
from fastnn.registry import ACTIVATIONS, LOSSES, OPTIMIZERS

from fastnn.cli.parser import build_parser
from fastnn.cli.train import _build_optimizer
from tests.conftest import run


def _name(row):
    return row.names[0]


def _data(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def _twins(make, X, y, loss=None, optimizer=None):
    """Fit ``make()`` one epoch (float64) on the compiled step and on its NumPy twin; both histories and weights."""
    results = []
    for backend in ("numba", "numpy"):
        with fn.backend(backend):
            model = make()
            opt = (optimizer or OPTIMIZERS["sgd"]).cls(model.parameters(), lr=0.05)
            h = model.fit(X, y, loss=(loss or LOSSES["SoftmaxCrossEntropy"]).cls(), optimizer=opt, epochs=1,
                          batch_size=16, seed=0, verbose=0)
            results.append((h, [p.data.copy() for p in model.parameters()]))
    (h1, w1), (h2, w2) = results
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-12)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    return h1, h2


def _net(act, d=5, k=3, last=None):
    layers = [fn.Linear(d, 8, seed=0, dtype=np.float64)]
    layers += [] if act.cls is None else [act.cls()]
    layers += [fn.Linear(8, k, seed=1, dtype=np.float64)]
    layers += [] if last is None else [last()]
    return fn.Sequential(*layers)


# -- the tables -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", [ACTIVATIONS, LOSSES, OPTIMIZERS], ids=lambda t: t.what)
def test_lookups_by_name_and_class(table):
    for row in table:
        assert all(table[name] is row for name in row.names)
        assert row.cls is None or table.of(row.cls) is row
    with pytest.raises(registry.UnknownName, match=f"unknown {table.what} 'nope'; expected one of .*"
                                                   f"{table.rows[-1].names[0]}") as info:
        table["nope"]
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert "nope" not in table and ["list"] not in table and table.of(type("Mine", (), {})) is None


def test_every_kernel_code_has_a_row():
    assert sorted(row.code for row in ACTIVATIONS) == sorted(codes.ACTIVATION_CODES)
    assert {c for row in LOSSES for c in row.codes} == {codes.LOSS_SCE_LABELS, codes.LOSS_SCE_DENSE, codes.LOSS_MSE,
                                                        codes.LOSS_BCE_LOGITS, codes.LOSS_BCE, codes.LOSS_POISSON}
    assert {row.code for row in OPTIMIZERS} == {codes.OPT_SGD, codes.OPT_ADAM}


def test_scikit_learn_names_are_its_own():
    hidden = SkClassifier._parameter_constraints["activation"][0].options
    assert set(ACTIVATIONS.sklearn()) == set(hidden) and set(ACTIVATIONS.sklearn()) <= set(ACTIVATIONS.names())
    assert set(LOSSES.sklearn()) == set(SkRegressor._parameter_constraints["loss"][0].options)
    assert set(OPTIMIZERS.sklearn()) | {"lbfgs"} == set(SkClassifier._parameter_constraints["solver"][0].options)


# -- activations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTIVATIONS, ids=_name)
def test_activation_row(act):
    assert act.needs_input == (act.code in codes.NEEDS_INPUT)
    assert test_bench_kernels.ACTS[act.names[0]] == act.code
    if act.cls is not None:
        layer = act.cls()
        assert isinstance(layer, fn.Layer) and layer.code == act.code
        assert export.BUILDERS[act.cls] is act.onnx
    X, y = _data()
    h1, h2 = _twins(lambda: _net(act), X, y)
    assert h1.fast_path and h2.fast_path and h1.compiled_by in ("aot", "jit") and h2.compiled_by == "numpy"


def _in_the_estimators(param, row):
    """``MLPClassifier`` fitted with ``param`` set to scikit-learn's name of ``row`` (which scikit-learn's own takes
    too), or None where scikit-learn has no such row (and the estimator refuses its name)."""
    X, y = _data()
    if row.sklearn is None:
        with pytest.raises(ValueError, match=f"The '{param}' parameter of MLPClassifier must be one of"):
            fn.MLPClassifier(**{param: row.names[0]}).fit(X, y)
        return None
    kw = {"hidden_layer_sizes": (6,), param: row.sklearn, "max_iter": 2, "random_state": 0}
    SkClassifier(**kw).fit(X, y)
    return fn.MLPClassifier(**kw).fit(X, y)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=_name)
def test_activation_row_in_the_estimators(act):
    clf = _in_the_estimators("activation", act)
    if clf is None:
        return
    hidden = [type(layer) for layer in clf.model_.layers if not isinstance(layer, fn.Linear)]
    assert hidden == ([] if act.cls is None else [act.cls]) and clf.fast_path_


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation_names_in_the_cli(capsys, tmp_path, name):
    X, y = _data(40)
    np.savez(tmp_path / "d.npz", X=X.astype(np.float32), y=y)
    code, _, err = run(capsys, "train", "--data", tmp_path / "d.npz", "--epochs", "1", "--hidden", "6",
                       "--activation", name, "--save", tmp_path / "m.npz")
    assert code == 0, err
    act = ACTIVATIONS[name]
    layers = fn.load(tmp_path / "m.npz").layers
    assert [type(layer) for layer in layers if not isinstance(layer, fn.Linear)] == \
        ([] if act.cls is None else [act.cls])
    assert layers[0].init == act.init


@pytest.mark.parametrize("act", [row for row in ACTIVATIONS if row.cls is not None], ids=_name)
def test_activation_row_exports(tmp_path, act):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _net(act)
    fn.export_onnx(model, tmp_path / "m.onnx")
    X = np.random.default_rng(1).standard_normal((9, 5))
    (Y,) = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"X": X})
    # 1e-6: ONNX attributes are float32 (LeakyRelu's alpha), the rest agrees to rounding.
    np.testing.assert_allclose(Y, model.predict(X), rtol=1e-6, atol=1e-12)


# -- losses ------------------------------------------------------------------------------------------------
def _targets(loss, n, k, rng):
    """Labels for the classification losses that take them, else dense targets the loss accepts."""
    if loss.cls in (fn.SoftmaxCrossEntropy, fn.NLLLoss):
        return rng.integers(0, k, n)
    return rng.integers(0, 2, (n, k)).astype(float) if loss.cls().classification else rng.random((n, k)) * 2


def _last_layer(loss):
    """What the model ends in: the activation the loss class names (a Sigmoid for BCELoss), a Softmax for a loss
    with no compiled form (NLLLoss takes probabilities)."""
    return {codes.SIGMOID: fn.Sigmoid}.get(loss.cls.last) if loss.codes else fn.Softmax


@pytest.mark.parametrize("loss", LOSSES, ids=_name)
def test_loss_row(loss):
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((60, 5)), _targets(loss, 60, 3, rng)
    assert all(type(train.resolve_loss(name)) is loss.cls for name in loss.names)  # fit(loss=name)
    step = loss.cls().step_code(loss.cls().check_target(T, (60, 3), np.float64))
    assert (step in loss.codes) if loss.codes else step is None
    h1, h2 = _twins(lambda: _net(ACTIVATIONS["tanh"], last=_last_layer(loss)), X, T, loss=loss)
    assert h1.fast_path == h2.fast_path == bool(loss.codes)


@pytest.mark.parametrize("loss", LOSSES, ids=_name)
def test_loss_row_in_the_estimators(loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    kw = dict(hidden_layer_sizes=(6,), max_iter=2, random_state=0)
    if loss.sklearn is not None:
        y = rng.random(60) * 3
        est = fn.MLPRegressor(loss=loss.sklearn, **kw).fit(X, y)
        SkRegressor(loss=loss.sklearn, **kw).fit(X, y)  # scikit-learn's own name
        assert est.out_activation_ == loss.out_activation
    if loss.out_activation is not None:  # the loss the estimators train with for that output activation
        y = {"softmax": rng.integers(0, 3, 60), "logistic": rng.integers(0, 2, 60),
             "identity": rng.random(60), "exp": rng.random(60)}[loss.out_activation]
        est = (fn.MLPRegressor(loss=loss.sklearn, **kw) if loss.sklearn else fn.MLPClassifier(**kw)).fit(X, y)
        assert est.out_activation_ == loss.out_activation and type(est._loss()) is loss.cls


@pytest.mark.parametrize("loss", [row for row in LOSSES if row.onnx is not None], ids=_name)
def test_loss_head_exports(loss):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    g = export._Graph(onnx, np.float64)
    loss.onnx("X", g)
    g.nodes[-1].output[0] = "Y"
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(g.nodes, "head", [value("X", onnx.TensorProto.DOUBLE, ["batch", 3])],
                                   [value("Y", onnx.TensorProto.DOUBLE, ["batch", 3])], g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", export.OPSET)],
                                   ir_version=export.IR_VERSION)
    Z = np.random.default_rng(0).standard_normal((7, 3))
    (Y,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": Z})
    np.testing.assert_allclose(Y, loss.cls().output(Z.copy()), rtol=1e-12)


# -- optimizers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=_name)
def test_optimizer_row(capsys, tmp_path, opt):
    assert opt.code == opt.cls.kind
    X, y = _data()
    h1, h2 = _twins(lambda: _net(ACTIVATIONS["relu"]), X, y, optimizer=opt)
    assert h1.fast_path and h2.fast_path
    np.savez(tmp_path / "d.npz", X=X[:40].astype(np.float32), y=y[:40])
    code, _, err = run(capsys, "train", "--data", tmp_path / "d.npz", "--epochs", "1", "--hidden", "6",
                       "--optimizer", opt.names[0])
    assert code == 0, err
    args = build_parser().parse_args(["train", "--optimizer", opt.names[0]])
    assert type(_build_optimizer(args, _net(ACTIVATIONS["relu"]).parameters())) is opt.cls


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=_name)
def test_optimizer_row_in_the_estimators(opt):
    clf = _in_the_estimators("solver", opt)
    assert clf is None or (clf.fast_path_ and type(clf._optimizer.optimizer) is opt.cls)
