"""fastnn.selection: the folds, and the choice of epochs and weight decay by cross-validation."""
import numpy as np
import pytest

import fastnn as fn
from fastnn import selection


@pytest.mark.parametrize("n, k", [(10, 5), (11, 5), (105, 5), (7, 2)])
@pytest.mark.parametrize("stratify", [False, True])
def test_folds_partition_the_rows(n, k, stratify):
    y = np.arange(n) % 3
    parts = selection.folds(y, k, seed=0, stratify=stratify)
    assert len(parts) == k
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    if stratify:  # each class spread over the folds within one row
        for c in range(3):
            counts = [int(np.sum(y[p] == c)) for p in parts]
            assert max(counts) - min(counts) <= 1


def test_folds_depend_on_the_seed_only():
    y = np.arange(50) % 2
    a, b, c = (selection.folds(y, 5, seed=s, stratify=True) for s in (1, 1, 2))
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


@pytest.mark.parametrize("k", [1, 0, 11])
def test_folds_refuse_impossible_counts(k):
    with pytest.raises(ValueError, match=f"cross-validation needs 2 <= folds <= rows, got {k} folds for 10 rows"):
        selection.folds(np.zeros(10), k, seed=0, stratify=False)


def _problem(n=120, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (X[:, :1] + noise * rng.normal(size=(n, 1)))
    return X, y


def _build(decay):
    model = fn.Sequential(fn.Linear(5, 32, seed=0, dtype="float64"), fn.ReLU(), fn.Linear(32, 1, seed=1, dtype="float64"))
    return model, fn.Adam(model.parameters(), lr=1e-2, weight_decay=decay)


def test_cross_validate_returns_the_minimum_of_the_mean_fold_curves():
    X, y = _problem()
    choice = selection.cross_validate(_build, X, y, fn.MSELoss(), epochs=30, batch_size=16, seed=0,
                                      stratify=False, weight_decays=(0.0, 0.1))
    assert set(choice.curves) == {0.0, 0.1} and all(len(c) == 30 for c in choice.curves.values())
    best = min(choice.curves, key=lambda d: choice.curves[d].min())
    assert choice.weight_decay == best
    assert choice.epochs == int(np.argmin(choice.curves[best])) + 1
    assert choice.loss == choice.curves[best].min()
    # Recomputed by hand: the folds' validation curves, weighted by fold size, for the chosen decay
    total = np.zeros(30)
    for held in selection.folds(y, selection.FOLDS, 0, False):
        rest = np.setdiff1d(np.arange(len(y)), held)
        model, optimizer = _build(choice.weight_decay)
        h = model.fit(X[rest], y[rest], loss=fn.MSELoss(), optimizer=optimizer, epochs=30, batch_size=16, seed=0,
                      validation_data=(X[held], y[held]), verbose=0)
        total += np.asarray(h.history["val_loss"]) * len(held)
    np.testing.assert_allclose(choice.curves[choice.weight_decay], total / len(y), rtol=1e-12)


def test_cross_validate_stops_early_on_noise_and_late_on_signal():
    """Pure noise: the best epoch comes early (the network only learns to overfit); a clean signal: late."""
    X, y = _problem(noise=0.0)
    clean = selection.cross_validate(_build, X, y, fn.MSELoss(), epochs=60, batch_size=16, seed=0, stratify=False,
                                     weight_decays=(0.0,))
    rng = np.random.default_rng(1)
    noisy = selection.cross_validate(_build, X, rng.normal(size=y.shape), fn.MSELoss(), epochs=60, batch_size=16,
                                     seed=0, stratify=False, weight_decays=(0.0,))
    assert clean.epochs > 40 and noisy.epochs < 20


def test_cross_validate_reports_each_weight_decay():
    X, y = _problem()
    seen = []
    selection.cross_validate(_build, X, y, fn.MSELoss(), epochs=5, batch_size=32, seed=0, stratify=False,
                             weight_decays=(0.0, 0.01), on_result=lambda *a: seen.append(a))
    assert [d for d, _, _ in seen] == [0.0, 0.01] and all(1 <= e <= 5 and v > 0 for _, e, v in seen)


def test_every_fold_trains_on_the_compiled_step(monkeypatch):
    from fastnn import train as fit_loop

    histories = []
    fit = fit_loop.fit

    def recording(*args, **kwargs):
        histories.append(fit(*args, **kwargs))
        return histories[-1]

    monkeypatch.setattr(fit_loop, "fit", recording)
    X, y = _problem()
    selection.cross_validate(_build, X, y, fn.MSELoss(), epochs=3, batch_size=32, seed=0, stratify=False,
                             weight_decays=(0.0, 0.1))
    assert len(histories) == 2 * selection.FOLDS and all(h.fast_path for h in histories)
