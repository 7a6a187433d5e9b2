"""Bad input gets a clear error naming expected vs got, and changes nothing."""
import numpy as np
import pytest

import fastnn as fn


@pytest.fixture
def model():
    return fn.Sequential(fn.Linear(4, 3, seed=0), fn.ReLU(), fn.Linear(3, 3, seed=1))


def _snapshot(model):
    return [(p.data.copy(), p.grad.copy()) for p in model.parameters()]


def _assert_unchanged(model, snap):
    for (d, g), p in zip(snap, model.parameters()):
        np.testing.assert_array_equal(d, p.data)
        np.testing.assert_array_equal(g, p.grad)


@pytest.mark.parametrize("X, error, match", [
    (np.ones(4), ValueError, r"2-D .* got 1-D"),
    (np.ones((2, 4, 1)), ValueError, r"got 3-D"),
    (np.ones((2, 5)), ValueError, r"5 features per sample, expected 4"),
    (np.ones((0, 4)), ValueError, r"empty batch"),
    (np.array([[1, 2, np.nan, 4.0]]), ValueError, r"NaN .* index \(0, 2\)"),
    (np.array([[1, np.inf, 3, 4.0]]), ValueError, r"inf"),
    (np.array([["a", "b", "c", "d"]]), TypeError, r"numbers .* got dtype <U1"),
    (np.array([[object()] * 4]), TypeError, r"numbers"),
    ("abcd", TypeError, r"numeric array, got str"),
    (None, TypeError, r"numeric array, got NoneType"),
])
def test_bad_X(model, backend, X, error, match):
    snap = _snapshot(model)
    with pytest.raises(error, match=match):
        model.forward(X)
    with pytest.raises(error, match=match):
        model[0].forward(X)
    _assert_unchanged(model, snap)


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1]), r"2 labels but the prediction has 3 rows"),
    (np.array([0, 1, 3]), r"label 3 out of range; expected labels in \[0, 3\)"),
    (np.array([0, -1, 2]), r"negative label -1"),
    (np.array([0, 1.5, 2]), r"non-integer value 1.5"),
    (np.array([0, np.nan, 2]), r"NaN"),
    (np.eye(4)[:3], r"shape \(3, 4\), expected \(3, 3\) .* width 4, expected 3"),
    (np.eye(3)[:2], r"target has 2 rows but the prediction has 3"),
    (np.array([[0, 1, 2]]).T, r"shape \(3, 1\), expected \(3, 3\)"),
    (-np.eye(3), r"negative entries"),
])
@pytest.mark.parametrize("loss", [fn.SoftmaxCrossEntropy, fn.NLLLoss], ids=lambda c: c.__name__)
def test_bad_labels(backend, loss, y, match):
    P = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match=match):
        loss().forward(P, y)


def test_labels_accept_integral_floats_and_lists():
    assert fn.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), [2.0, 0.0]) == pytest.approx(np.log(3))


def test_nll_rejects_logits():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*SoftmaxCrossEntropy"):
        fn.NLLLoss().forward(np.array([[2.0, -1.0]]), [0])


def test_bad_mse_targets():
    with pytest.raises(ValueError, match=r"shape \(2, 3\), expected \(2, 2\)"):
        fn.MSELoss().forward(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"NaN"):
        fn.MSELoss().forward(np.zeros((2, 1)), [0.0, np.nan])
    assert fn.MSELoss().forward(np.zeros((2, 1)), [1.0, 3.0]) == pytest.approx(5.0)  # 1-D target, 1 output


def test_bad_prediction_for_loss():
    with pytest.raises(ValueError, match="NaN"):
        fn.SoftmaxCrossEntropy().forward(np.array([[np.nan, 0.0]]), [0])
    with pytest.raises(ValueError, match="2-D"):
        fn.MSELoss().forward(np.zeros(3), np.zeros(3))


def test_backward_errors_leave_grads_untouched(model):
    model.forward(np.ones((2, 4)))
    model.backward(np.ones((2, 3)))
    snap = _snapshot(model)
    with pytest.raises(ValueError, match=r"grad_output has shape \(2, 4\), expected \(2, 3\)"):
        model.backward(np.ones((2, 4)))
    with pytest.raises(TypeError, match="numbers"):
        model.backward(np.array([["x"] * 3] * 2))
    _assert_unchanged(model, snap)
    with pytest.raises(RuntimeError, match="before forward"):
        fn.SoftmaxCrossEntropy().backward()
    with pytest.raises(RuntimeError, match="before forward"):
        fn.Sequential(fn.ReLU()).backward(np.ones((1, 1)))


def test_bad_construction():
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\) expects 5 inputs but the layer before it gives 3"):
        fn.Sequential(fn.Linear(4, 3), fn.ReLU(), fn.Linear(5, 2))
    with pytest.raises(TypeError, match="layer 1 must be a fastnn Layer, got ufunc"):
        fn.Sequential(fn.Linear(4, 3), np.tanh)
    with pytest.raises(TypeError, match="dtype"):
        fn.Sequential(fn.Linear(4, 3), fn.Linear(3, 2, dtype=np.float64))
    with pytest.raises(ValueError, match="at least one layer"):
        fn.Sequential()
    with pytest.raises(ValueError, match="in_features must be an integer >= 1, got 0"):
        fn.Linear(0, 3)
    with pytest.raises(TypeError, match=r"out_features must be an integer >= 1, got 2.5 \(float\)"):
        fn.Linear(3, 2.5)
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        fn.Linear(3, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="init must be"):
        fn.Linear(3, 2, init="orthogonal")
    with pytest.raises(ValueError, match="eps"):
        fn.NLLLoss(eps=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_the_finiteness_check_finds_every_bad_value_and_passes_large_finite_ones(dtype, layout):
    """check_finite's fast path (the sum of squares) and its fallback (min and max) agree: huge finite values,
    whose squares overflow, pass; one NaN or inf anywhere is named with its index."""
    from fastnn._validation import check_finite

    def arrange(a):
        if layout == "F":
            return np.asfortranarray(a)
        return np.repeat(a, 2, axis=1)[:, ::2] if layout == "strided" else a

    big = np.finfo(dtype).max / 2
    check_finite(arrange(np.full((50, 7), big, dtype)), "X")  # squares and sums overflow; the values are finite
    check_finite(arrange(np.full((50, 7), -big, dtype)), "X")
    for bad, kind in ((np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")):
        for where in ((0, 0), (31, 4), (49, 6)):
            a = np.ones((50, 7), dtype)
            a[where] = bad
            with pytest.raises(ValueError, match=rf"X contains {kind} \(first at index \({where[0]}, {where[1]}\)\)"):
                check_finite(arrange(a), "X")


class _Watched(np.ndarray):
    """An array that fails the test if anything reduces it."""

    def _scanned(self, *args, **kwargs):
        raise AssertionError("check_finite scanned an array it need not read")

    min = max = dot = _scanned


def test_the_finiteness_check_reads_no_integers():
    from fastnn._validation import check_finite

    for dtype in (np.uint8, np.int32, np.int64, np.bool_):
        check_finite(np.ones((3, 4), dtype).view(_Watched), "X")
    with pytest.raises(AssertionError, match="scanned"):  # the watch works: a float array is read
        check_finite(np.ones((3, 4), np.float32).view(_Watched), "X")


class _OnePass(np.ndarray):
    """An array whose min and max fail the test: only the one-pass sum of squares may read it."""

    def _two_passes(self, *args, **kwargs):
        raise AssertionError("check_finite took min and max")

    min = max = _two_passes


def test_the_finiteness_check_reads_finite_data_once_in_either_order():
    from fastnn._validation import check_finite

    for a in (np.ones((3, 4), np.float32), np.asfortranarray(np.ones((3, 4)))):
        check_finite(a.view(_OnePass), "X")
    with pytest.raises(AssertionError, match="min and max"):  # the watch works: strided data takes them
        check_finite(np.ones((3, 8))[:, ::2].view(_OnePass), "X")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 2500])
@pytest.mark.parametrize("value, match", [(np.nan, r"NaN"), (np.inf, r"inf"), (-np.inf, r"inf")])
def test_predict_finds_a_nonfinite_X_after_the_forward(backend, dtype, n, value, match):
    """``predict`` runs an X in the model's dtype and layout before checking it, and checks it (the same error as
    for any other X) when the forward says the first layer's pre-activations were not all finite: -inf too,
    which ReLU would turn into 0, and in any row, the batches' last included. Nothing is returned, nothing in
    the model changes."""
    model = fn.Sequential(fn.Linear(4, 3, seed=0, dtype=dtype), fn.ReLU(), fn.Linear(3, 2, seed=1, dtype=dtype))
    snap = _snapshot(model)
    X = np.random.default_rng(0).standard_normal((n, 4)).astype(dtype)
    expected = model.predict(X)
    for i, j in ((0, 0), (n - 1, 3)):
        bad = X.copy()
        bad[i, j] = value
        with pytest.raises(ValueError, match=match + rf".*\({i}, {j}\)"):
            model.predict(bad, batch_size=1000)
    _assert_unchanged(model, snap)
    np.testing.assert_array_equal(model.predict(X), expected)


def test_predict_of_a_finite_X_whose_products_overflow_is_not_an_error(backend):
    """A finite X may still overflow the first layer (the forward then says "not finite"): X is checked, found
    finite, and the outputs are returned as computed, as before; so are a model's own NaN weights."""
    model = fn.Sequential(fn.Linear(4, 3, seed=0), fn.ReLU(), fn.Linear(3, 2, seed=1))
    model[0].W.data[...] = 1
    huge = np.full((5, 4), np.finfo(np.float32).max, np.float32)
    out = model.predict(huge)
    assert out.shape == (5, 2) and not np.isfinite(out).all()
    model[0].W.data[0, 0] = np.nan
    out = model.predict(np.ones((7, 4), np.float32))
    assert np.isnan(out).any()
