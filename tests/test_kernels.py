"""Every Numba kernel against its NumPy twin: float32/float64, odd shapes, n=1, d=1, strided inputs."""
import inspect
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.kernels import (codes, get_backend, layout, numba_cpu, numba_losses, numpy_losses, numpy_ref, step_numba,
                            step_numpy)
from tests.conftest import DTYPES, tol

# The compiled kernels as fastnn runs them: the prebuilt exports (fastnn.kernels.aot) where a call fits their
# signatures, Numba's JIT of the same source for the rest (strided views here) or where nothing is built.
COMPILED = get_backend("numba")

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")


def _array(rng, shape, dtype, strided, scale=1.0):
    """A random array; with ``strided`` it is a non-contiguous view (every other column)."""
    if not strided or len(shape) == 1:
        return (rng.standard_normal(shape) * scale).astype(dtype)
    wide = (rng.standard_normal((shape[0], 2 * shape[1])) * scale).astype(dtype)
    return wide[:, ::2]


def _probs(rng, n, d, dtype, strided):
    z = rng.standard_normal((n, d))
    s = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return _array(rng, (n, d), dtype, strided) * 0 + s.astype(dtype)


def _cases(rng, n, d, k, dtype, strided):
    """(kernel name, positional args without outputs, output shapes) for every kernel."""
    X, W, b = _array(rng, (n, d), dtype, strided), _array(rng, (d, k), dtype, strided), _array(rng, (k,), dtype, False)
    g, y = _array(rng, (n, k), dtype, strided), _array(rng, (n, k), dtype, strided)
    labels = rng.integers(0, k, n)
    T = np.eye(k, dtype=dtype)[labels]
    P = _probs(rng, n, k, dtype, strided)
    cases = [("matmul", (X, W), [(n, k)])]
    cases += [("linear_forward", (X, W, b, act, 0.1), [(n, k)]) for act in codes.ACTIVATION_CODES]
    cases += [("activation_forward", (act, 0.3, y * 3), [(n, k)]) for act in codes.ACTIVATION_CODES]
    cases += [("dropout", (y, 0.4, rng.integers(2**64, dtype=np.uint64), int(rng.integers(1000))), [(n, k)])]
    cases += [("linear_backward", (X, W, g), [(d, k), (k,), (n, d)])]
    for name in ("relu", "sigmoid", "tanh", "softmax"):
        cases += [(name + "_forward", (y,), [(n, k)]), (name + "_backward", (np.abs(y) - 0.3, g), [(n, k)])]
    for w in (np.zeros(0), rng.random(n) * (rng.random(n) > 0.3)):  # unweighted; weighted with zeros
        cases += [("softmax_xent_labels", (y * 5, labels, w), [(n, k), (n, k)]),
                  ("softmax_xent_dense", (y * 5, T, w), [(n, k), (n, k)]),
                  ("softmax_xent_dense", (y, P, w), [(n, k), (n, k)]),
                  ("nll_labels", (P, labels, 1e-7, w), [(n, k)]),
                  ("nll_dense", (P, T, 1e-7, w), [(n, k)]),
                  ("nll_dense", (P, P, 1e-7, w), [(n, k)]),
                  ("mse", (y, g, w), [(n, k)]),
                  ("bce_logits", (y * 8, P, w), [(n, k)]),
                  ("bce_logits", (y * 8, T, w), [(n, k)]),
                  ("bce", (P, T, w), [(n, k)]),
                  ("bce", (P, P, w), [(n, k)])]
    return cases


def _run(module, name, args, out_shapes, dtype):
    outs = [np.zeros(s, dtype) for s in out_shapes]
    ret = getattr(module, name)(*[a.copy() if isinstance(a, np.ndarray) and a.flags.c_contiguous else a
                                  for a in args], *outs)
    return ret, outs


# One test per kernel, so that parallel workers (pytest -n) share the compilation of the many specialisations.
KERNELS = sorted({case[0] for case in _cases(np.random.default_rng(0), 2, 2, 2, np.float32, False)})


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), d=st.integers(1, 9), k=st.integers(1, 9),
       dtype=st.sampled_from(DTYPES), strided=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_kernels_match_numpy_twin(kernel, n, d, k, dtype, strided, seed):
    rng = np.random.default_rng(seed)
    for name, args, out_shapes in _cases(rng, n, d, k, dtype, strided):
        if name != kernel:
            continue
        r_nb, outs_nb = _run(COMPILED, name, args, out_shapes, dtype)
        r_np, outs_np = _run(numpy_ref, name, args, out_shapes, dtype)
        for a, b in zip(outs_nb, outs_np):
            assert a.dtype == np.dtype(dtype), name
            np.testing.assert_allclose(a, b, **tol(dtype), err_msg=f"{name} n={n} d={d} k={k}")
        if isinstance(r_np, float):
            assert isinstance(r_nb, float), name
            np.testing.assert_allclose(r_nb, r_np, rtol=1e-6 if dtype == np.float32 else 1e-12, err_msg=name)


@pytest.mark.parametrize("module", [COMPILED, numpy_ref], ids=["numba", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_without_dx(module, dtype):
    rng = np.random.default_rng(0)
    X, W, g = (rng.standard_normal(s).astype(dtype) for s in [(4, 3), (3, 2), (4, 2)])
    dW, db = np.empty((3, 2), dtype), np.empty(2, dtype)
    module.linear_backward(X, W, g, dW, db, None)
    np.testing.assert_allclose(dW, X.T @ g, **tol(dtype))
    np.testing.assert_allclose(db, g.sum(0), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(1, 1), (7, 3), (33, 255), (5, 256), (9, 257), (3, 600)])
def test_bias_gradients_are_the_column_sums_down_each_column(dtype, n, k):
    """The compiled bias gradient (linear_backward's db, linear_backward_sgd's bias step) is each column's float64
    sum taken down the column in row order, bit for bit, across the stack buffer's 256-column blocks."""
    rng = np.random.default_rng(k)
    X, W, g = (rng.standard_normal(s).astype(dtype) for s in [(n, 2), (2, k), (n, k)])
    down = np.cumsum(g, axis=0, dtype=np.float64)[-1]
    db = np.full(k, np.nan, dtype)
    numba_cpu.linear_backward(X, W, g, np.empty((2, k), dtype), db, None)
    assert np.array_equal(db, down.astype(dtype))
    b0 = rng.standard_normal(k).astype(dtype)
    b = b0.copy()
    numba_cpu.linear_backward_sgd(X, W.copy(), g, b, 0.1, 0.0, 0.01, None)
    assert np.array_equal(b, (b0 - 0.1 * (down + 0.01 * b0.astype(np.float64))).astype(dtype))


@pytest.mark.parametrize("module", [COMPILED, numpy_ref], ids=["numba", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_updates_match(module, dtype):
    """SGD/Adam kernels against the formulas written out here in float64."""
    rng = np.random.default_rng(1)
    p0, g = rng.standard_normal(7), rng.standard_normal(7)
    # SGD, momentum 0.9, Nesterov, weight decay 0.01, two steps.
    p, buf = p0.astype(dtype), np.zeros(7, dtype)
    for _ in range(2):
        module.sgd_update(p, g.astype(dtype), buf, 0.1, 0.9, 0.01, True, False)
    e, b = p0.copy(), np.zeros(7)
    for _ in range(2):
        d = g.astype(dtype) + 0.01 * e
        b = 0.9 * b + d
        e = e - 0.1 * (d + 0.9 * b)
    np.testing.assert_allclose(p, e, **tol(dtype))
    # AdamW, two steps.
    p, m, v = p0.astype(dtype), np.zeros(7, dtype), np.zeros(7, dtype)
    for t in (1, 2):
        module.adam_update(p, g.astype(dtype), m, v, t, 0.01, 0.9, 0.999, 1e-8, 0.1, True, False)
    e, mm, vv = p0.copy(), np.zeros(7), np.zeros(7)
    for t in (1, 2):
        e = e * (1 - 0.01 * 0.1)
        mm = 0.9 * mm + 0.1 * g
        vv = 0.999 * vv + 0.001 * g * g
        e = e - 0.01 * (mm / (1 - 0.9**t)) / (np.sqrt(vv / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(p, e, **tol(dtype))
    assert p.dtype == np.dtype(dtype) and m.dtype == np.dtype(dtype)



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("with_dx", [False, True])
@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (5, 7, 3), (16, 33, 9)])
def test_linear_backward_sgd_is_backward_then_sgd(dtype, strided, with_dx, n, d, k):
    """The fused backward+update equals linear_backward followed by sgd_update, in both twins."""
    rng = np.random.default_rng(n * 100 + d)
    X, g = _array(rng, (n, d), dtype, strided), _array(rng, (n, k), dtype, strided)
    W0, b0 = _array(rng, (d, k), dtype, False), _array(rng, (k,), dtype, False)
    lr, wd, wd_b = 0.05, 0.01, 0.003
    # The specification: the two unfused kernels of the NumPy twin.
    dW, db, dX_ref = np.empty_like(W0), np.empty_like(b0), np.empty((n, d), dtype)
    numpy_ref.linear_backward(X, W0, g, dW, db, dX_ref)
    W_ref, b_ref = W0.copy(), b0.copy()
    numpy_ref.sgd_update(W_ref.reshape(-1), dW.reshape(-1), np.zeros(0, dtype), lr, 0.0, wd, False, False)
    numpy_ref.sgd_update(b_ref, db, np.zeros(0, dtype), lr, 0.0, wd_b, False, False)
    for module in (COMPILED, numpy_ref):
        W, b = W0.copy(), b0.copy()
        dX = np.empty((n, d), dtype) if with_dx else None
        module.linear_backward_sgd(X, W, g, b, lr, wd, wd_b, dX)
        np.testing.assert_allclose(W, W_ref, **tol(dtype), err_msg=module.__name__)
        np.testing.assert_allclose(b, b_ref, **tol(dtype), err_msg=module.__name__)
        if with_dx:
            np.testing.assert_allclose(dX, dX_ref, **tol(dtype), err_msg=module.__name__)


def test_float32_tanh_accuracy_and_nan():
    """The compiled float32 tanh (a rational approximation) against float64 tanh over its whole range."""
    x = np.concatenate([np.linspace(-30, 30, 600_003), np.linspace(-1e-3, 1e-3, 20_001),
                        [0.0, -0.0, np.inf, -np.inf]]).astype(np.float32).reshape(-1, 8)
    out = COMPILED.tanh_forward(x, np.empty_like(x))
    exact = np.tanh(x.astype(np.float64))
    assert np.all(np.abs(out - exact) <= 3e-7 * np.maximum(np.abs(exact), 1e-30))
    x = x[:-1]  # the last row holds +-inf, which the identity GEMM would turn into inf * 0 = NaN
    lin = COMPILED.linear_forward(x, np.eye(8, dtype=np.float32), np.zeros(8, np.float32), codes.TANH, 0.0,
                                   np.empty_like(x))
    np.testing.assert_array_equal(lin, out[:-1])  # the fused epilogue is the same function
    nan = COMPILED.tanh_forward(np.array([[np.nan, 1.0]], np.float32), np.empty((1, 2), np.float32))
    assert np.isnan(nan[0, 0]) and np.isfinite(nan[0, 1])


@pytest.mark.parametrize("twin, reference", [(numba_cpu, numpy_ref), (step_numba, step_numpy)],
                         ids=["per-op", "step"])
def test_twins_export_the_same_names_and_signatures(twin, reference):
    assert twin.__all__ == reference.__all__
    for name in reference.__all__:
        compiled = getattr(twin, name)
        assert inspect.signature(compiled.py_func) == inspect.signature(getattr(reference, name)), name


def _compiled_functions(module, defined_in=None):
    """``{name: python function}`` of the compiled functions ``module`` holds (defined in ``defined_in``)."""
    return {name: obj.py_func for name, obj in vars(module).items() if hasattr(obj, "py_func")
            and obj.py_func.__module__ == (defined_in or module).__name__}


def test_the_step_twins_are_built_alike():
    """The NumPy step mirrors the compiled one: every helper step_numba defines (the loss gradient, the gather,
    the workspace and state views, ...) and every helper it takes from numba_cpu (the views of the layer table)
    and numba_losses (the loss rows, the weights) has a twin of the same name and signature, so the NumPy twin
    specifies the loss part of the step too."""
    own = _compiled_functions(step_numba)
    taken = _compiled_functions(step_numba, defined_in=numba_cpu)
    rows = _compiled_functions(step_numba, defined_in=numba_losses)
    assert {"_loss_grad", "_gather", "_work", "_state", "_clip_grad_norm", "_relu_dropout_backward"} <= set(own)
    assert {"_vec", "_mat"} <= set(taken)
    assert {"_xent_row_label", "_xent_row_dense", "_mse_row", "_bce_logits_row", "_bce_row",
            "_add_weighted"} <= set(rows)
    for twins, names in ((step_numpy, own), (numpy_ref, taken), (numpy_losses, rows)):
        for name, compiled in names.items():
            assert hasattr(twins, name), f"{twins.__name__} has no twin of {name}"
            assert inspect.signature(compiled) == inspect.signature(getattr(twins, name)), name
    for twins, names in ((numpy_ref, taken), (numpy_losses, rows)):
        # taken from numpy_ref and numpy_losses as the compiled step takes them from numba_cpu and numba_losses
        assert set(names) <= {name for name in vars(step_numpy) if getattr(twins, name, None) is vars(step_numpy)[name]}


def test_the_loss_kernels_are_built_from_the_same_row_helpers():
    """Every row helper of the compiled loss kernels has a NumPy twin of the same name and signature."""
    rows = {name: f for name, f in _compiled_functions(numba_losses).items()
            if re.search(r"_row(_|$)", name) or name in ("_weight", "_inv_weight_sum", "_add_weighted")}
    assert len(rows) == 12  # with _poisson_row
    for name, compiled in rows.items():
        assert inspect.signature(compiled) == inspect.signature(getattr(numpy_losses, name)), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["softmax_xent_labels", "softmax_xent_dense", "mse", "bce_logits", "poisson"])
def test_loss_row_helpers_alias_and_weight_like_the_compiled_ones(dtype, loss):
    """The row helpers through the NumPy step's _loss_grad against the compiled _loss_grad on one batch: same
    total, weight sum, hits and gradient, with zero weights and grad doubling as the probabilities."""
    rng = np.random.default_rng(3)
    m, k = 7, 4
    z = rng.standard_normal((m, k)).astype(dtype)
    if loss == "bce_logits":
        kind = codes.LOSS_BCE_LOGITS
    else:
        kind = {"softmax_xent_labels": codes.LOSS_SCE_LABELS, "softmax_xent_dense": codes.LOSS_SCE_DENSE,
                "mse": codes.LOSS_MSE, "poisson": codes.LOSS_POISSON}[loss]
    labels = rng.integers(0, k, 10)
    T = {codes.LOSS_MSE: rng.standard_normal((10, k)), codes.LOSS_POISSON: rng.poisson(2.0, (10, k)) * 1.0}.get(
        kind, np.eye(k)[labels])
    sw = rng.random(10)
    sw[[1, 4]] = 0
    rows = rng.permutation(10)[:m]
    got, want = np.empty_like(z), np.empty_like(z)
    for c in (1.0, 0.5):  # c: the loss's row_scale
        a = step_numpy._loss_grad(kind, z, labels, T, sw, rows, got, c)
        b = step_numba._loss_grad(kind, z, labels, T, sw, rows, want, c)
        np.testing.assert_allclose(a[0], b[0], **tol(dtype))
        assert a[1:] == pytest.approx(b[1:], rel=1e-12)
        np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", codes.ACTIVATION_CODES)
def test_act_backward_matches_twin(dtype, act):
    rng = np.random.default_rng(act)
    x = rng.uniform(-3, 3, (5, 4)).astype(dtype)
    y = numpy_ref.activation_forward(act, 0.2, x, np.empty_like(x))
    g = rng.standard_normal((5, 4)).astype(dtype)
    got, want = g.copy(), g.copy()
    COMPILED.act_backward(act, 0.2, x, y, got)
    numpy_ref.act_backward(act, 0.2, x, y, want)
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("module", [COMPILED, numpy_ref], ids=["numba", "numpy"])
@pytest.mark.parametrize("name, code", [("leaky_relu", codes.LEAKY_RELU), ("elu", codes.ELU),
                                        ("gelu", codes.GELU)])
def test_new_activations_match_torch(module, name, code):
    """float64 forward and backward against torch.nn.functional (GELU: approximate="tanh")."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    alpha = {"leaky_relu": 0.07, "elu": 1.3, "gelu": 0.0}[name]
    x = np.concatenate([np.linspace(-30, 30, 601), [-1e-300, 0.0, 1e-300]]).reshape(-1, 4)
    g = np.random.default_rng(0).standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = {"leaky_relu": lambda t: F.leaky_relu(t, alpha), "elu": lambda t: F.elu(t, alpha),
          "gelu": lambda t: F.gelu(t, approximate="tanh")}[name](xt)
    yt.backward(torch.tensor(g))
    y = module.activation_forward(code, alpha, x, np.empty_like(x))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13, atol=1e-14)  # |x| <= 30
    dx = g.copy()
    module.act_backward(code, alpha, x, y, dx)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics(p):
    """The kept fraction is 1 - p within 5 standard errors, kept values are scaled by 1/(1-p), and masks
    of neighbouring rows, offsets and keys are uncorrelated."""
    x = np.ones((400, 500), np.float32)
    out = COMPILED.dropout(x, p, 2024, 0, np.empty_like(x))
    kept = out != 0
    se = np.sqrt(p * (1 - p) / x.size)
    assert abs(kept.mean() - (1 - p)) < 5 * se
    np.testing.assert_allclose(out[kept], np.float32(1 / (1 - p)))
    for other in (COMPILED.dropout(x, p, 2025, 0, np.empty_like(x)) != 0,  # another key
                  COMPILED.dropout(x[:-1], p, 2024, 1, np.empty_like(x[:-1])) != 0):  # rows shifted by one
        both = (kept[:other.shape[0]] & other).mean()
        assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / x.size)
    assert abs(np.corrcoef(kept[:-1].ravel(), kept[1:].ravel())[0, 1]) < 0.02  # neighbouring rows
    assert abs(np.corrcoef(kept[:, 0::2].ravel(), kept[:, 1::2].ravel())[0, 1]) < 0.02  # the two halves of a hash


@pytest.mark.parametrize("module", [COMPILED, numpy_ref], ids=["numba", "numpy"])
def test_dropout_backward_by_finite_differences(module):
    """float64: d/dx sum(g * dropout(x)) with a fixed mask is dropout(g), by central differences."""
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((6, 7)), rng.standard_normal((6, 7))
    f = lambda v: float((g * module.dropout(v, 0.3, 99, 14, np.empty_like(v))).sum())  # noqa: E731
    numeric = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1e-6
        numeric[idx] = (f(x + e) - f(x - e)) / 2e-6
    np.testing.assert_allclose(module.dropout(g, 0.3, 99, 14, np.empty_like(g)), numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_clip_grad_norm_matches_torch(scale):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s) for s in [(5, 4), (4,), (4, 3), (3,)]]
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    expected = torch.nn.utils.clip_grad_norm_(tensors, scale * norm).item()
    for module in (COMPILED, numpy_ref):
        dWs, dbs = tuple(grads[i].copy() for i in (0, 2)), tuple(grads[i].copy() for i in (1, 3))
        got = module.clip_grad_norm(dWs, dbs, scale * norm)
        assert got == pytest.approx(expected, rel=1e-14)
        for mine, t in zip((dWs[0], dbs[0], dWs[1], dbs[1]), tensors):
            np.testing.assert_allclose(mine, t.grad.numpy(), rtol=1e-14)


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([1, 2, 3, 4, 5, 9, 23]), chunk=st.integers(1, 10), depth=st.integers(1, 4),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_mlp_forward_matches_twin(n, chunk, depth, dtype, seed):
    """Both twins' inference pass against each other, for batches on both sides of the compiled twin's
    row-loop limit, chunks that do and do not divide the batch, every activation code, zero inputs (which
    the row loop skips) and a network without hidden layers."""
    rng = np.random.default_rng(seed)
    sizes = [int(w) for w in rng.integers(1, 12, depth + 1)]
    Ws = tuple((rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:]))
    bs = tuple(rng.standard_normal(b).astype(dtype) for b in sizes[1:])
    acts = rng.choice(codes.ACTIVATION_CODES, depth).astype(np.int64)
    alphas = rng.uniform(0.01, 1.5, depth)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    X[rng.random(X.shape) < 0.4] = 0
    width = max(sizes[1:-1], default=0)
    outs = []
    for module in (COMPILED, numpy_ref):
        out = np.full((n, sizes[-1]), np.nan, dtype)
        dims, params = layout.param_table(Ws, bs)
        assert module.mlp_forward(X, dims, acts, alphas, params, np.full((2, chunk * width), np.nan, dtype),
                                  out) is True
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[1], **tol(dtype))
    a = X.astype(np.float64)  # and both against the layer-by-layer definition
    for W, b, act, alpha in zip(Ws, bs, acts, alphas):
        out = np.empty((n, W.shape[1]))
        a = numpy_ref.linear_forward(a, W.astype(np.float64), b.astype(np.float64), act, alpha, out)
    np.testing.assert_allclose(outs[1], a, **(tol(dtype) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)))


def _srows():
    """``fastnn_srows`` of the ahead-of-time extension through ctypes, or None without a build that has it."""
    import ctypes  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("fastnn.kernels._aot")
    try:
        f = ctypes.CDLL(spec.origin).fastnn_srows
    except (AttributeError, OSError, TypeError):
        return None
    f.restype = ctypes.c_int32
    f.argtypes = (ctypes.c_int64,) * 3 + (ctypes.c_void_p, ctypes.c_int64) * 2 + (ctypes.c_void_p,) * 2 + (
        ctypes.c_int64,)
    return f


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 4), n_in=st.integers(0, 40), n_out=st.sampled_from([1, 7, 8, 9, 16, 17, 64, 127, 128, 129,
                                                                             255, 256, 257, 300]),
       seed=st.integers(0, 2**32 - 1))
def test_rows_kernel_gives_the_loops_bits(rows, n_in, n_out, seed):
    """``fastnn_srows`` (C, the outputs in registers) against the JIT's loop it stands in for: the same bits, for
    output widths on both sides of a vector and of a pass (AVX2 128, AVX-512 256 columns), zero, -0.0 and NaN
    inputs (NaN reaches every output, zeros are skipped); nothing written outside the outputs. Both directly and
    through the JIT's ``_affine_rows``, which calls it under the name registered by ``_blas``."""
    srows = _srows()
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n_in)).astype(np.float32)
    X[rng.random(X.shape) < 0.4] = 0
    if n_in > 2:
        X[0, 1], X[-1, 2] = -0.0, (np.nan if seed % 3 == 0 else X[-1, 2])
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    expected = np.full((rows, n_out), np.nan, np.float32)
    numba_cpu._affine_rows_loop(X, W, b, expected)
    through_jit = np.full((rows, n_out), np.nan, np.float32)
    numba_cpu._affine_rows(X, W, b, through_jit)
    np.testing.assert_array_equal(through_jit, expected)
    if srows is None:
        pytest.skip("no ahead-of-time build with fastnn_srows")
    padded = np.full((rows, n_out + 5), 7.0, np.float32)  # a wider row: the 5 columns after each must stay
    done = srows(rows, n_out, n_in, X.ctypes.data, max(1, n_in), W.ctypes.data, n_out, b.ctypes.data,
                 padded.ctypes.data, n_out + 5)
    if not done:
        pytest.skip("fastnn_srows declines on this CPU (no AVX2 and FMA): the loop runs")
    np.testing.assert_array_equal(padded[:, :n_out], expected)
    assert (padded[:, n_out:] == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [codes.RELU, codes.SIGMOID, codes.TANH, codes.IDENTITY])
@pytest.mark.parametrize("n", [1, 3, 40])
@pytest.mark.parametrize("module", [COMPILED, numpy_ref])
def test_mlp_forward_says_whether_the_first_pre_activations_were_finite(module, n, act, dtype):
    """``mlp_forward``'s answer, which lets ``predict`` skip reading X to check it: True for finite X; False for a
    NaN, inf or -inf anywhere in X (also where ReLU, sigmoid or tanh would map it to a finite output, and where
    it meets zero weights, ``inf * 0`` being NaN), on the row loop (n <= 4) and the BLAS path, in the first or a
    later chunk; False also for finite X whose products overflow."""
    rng = np.random.default_rng(n)
    Ws = (rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal((5, 2)).astype(dtype))
    Ws[0][4] = 0  # input 4 meets only zero weights
    bs = (rng.standard_normal(5).astype(dtype), np.zeros(2, dtype))
    dims, params = layout.param_table(Ws, bs)
    acts = np.array([act, codes.IDENTITY])

    def run(X):
        return module.mlp_forward(X, dims, acts, np.zeros(2), params, np.empty((2, 5 * 16), dtype),
                                  np.empty((n, 2), dtype))

    X = rng.standard_normal((n, 6)).astype(dtype)
    assert run(X) is True
    for value in (np.nan, np.inf, -np.inf):
        for i, j in ((0, 0), (n - 1, 4), (n // 2, 5)):
            bad = X.copy()
            bad[i, j] = value
            assert run(bad) is False, (value, i, j)
    huge = np.full((n, 6), np.finfo(dtype).max, dtype)
    assert run(huge) is False


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_forward_gives_the_bits_of_its_layers(dtype):
    """The forward's first layer, split into its product, the finiteness check and the bias-and-activation pass,
    gives the bits of ``linear_forward`` (one call), as every later layer does."""
    rng = np.random.default_rng(3)
    sizes = (30, 17, 9, 4)
    Ws = tuple((rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:]))
    bs = tuple(rng.standard_normal(b).astype(dtype) for b in sizes[1:])
    for acts in ([codes.RELU, codes.TANH, codes.IDENTITY], [codes.SIGMOID, codes.LEAKY_RELU, codes.IDENTITY],
                 [codes.GELU, codes.ELU, codes.IDENTITY]):
        alphas = np.array([0.1, 0.3, 0.0])
        X = rng.standard_normal((50, sizes[0])).astype(dtype)
        dims, params = layout.param_table(Ws, bs)
        out = np.empty((50, sizes[-1]), dtype)
        assert COMPILED.mlp_forward(X, dims, np.array(acts), alphas, params, np.empty((2, 50 * 17), dtype), out)
        a = X
        for W, b, act, alpha in zip(Ws, bs, acts, alphas):
            a = COMPILED.linear_forward(a, W, b, act, alpha, np.empty((50, W.shape[1]), dtype))
        np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("module", [COMPILED, numpy_ref])
def test_mlp_forward_propagates_nan(module, n):
    """A NaN input reaches the output through ReLU on both paths (the row loop and BLAS), as np.maximum does."""
    rng = np.random.default_rng(0)
    Ws = tuple(rng.standard_normal(s).astype(np.float32) for s in ((5, 4), (4, 3)))
    bs = tuple(np.zeros(s, np.float32) for s in (4, 3))
    X = rng.standard_normal((n, 5)).astype(np.float32)
    X[0, 2] = np.nan
    dims, params = layout.param_table(Ws, bs)
    out = np.empty((n, 3), np.float32)
    assert module.mlp_forward(X, dims, np.array([codes.RELU, codes.IDENTITY]), np.zeros(2), params,
                              np.empty((2, 4 * n), np.float32), out) is False
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()
