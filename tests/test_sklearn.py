"""fastnn.estimators: scikit-learn's estimator checks, equivalence with scikit-learn's MLP, and workflows."""
import warnings

import numpy as np
import pytest
from sklearn import neural_network
from sklearn.datasets import load_digits, make_blobs, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnn
from fastnn.estimators import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Small and quick, yet enough epochs for the score thresholds of check_classifiers_train/check_regressors_train.
SMALL = dict(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01)
CHECKED = [MLPClassifier(**SMALL), MLPRegressor(**SMALL),
           MLPClassifier(**SMALL, dtype=np.float64), MLPRegressor(**SMALL, dtype=np.float64)]


def _expected_failures(estimator):
    if np.dtype(estimator.dtype) == np.float32:
        # The check compares predictions on the whole X with predictions on slices at atol=1e-7; float32
        # GEMMs block differently for different row counts, so outputs may differ by one ulp (~1e-7).
        # The float64 instances pass it.
        return {"check_methods_subset_invariance": "float32 outputs differ by one ulp between batch sizes"}
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, random_state=0, stratify=y)


def _blobs(n=200, k=3, seed=0):
    return make_blobs(n_samples=n, centers=k, n_features=5, random_state=seed)


# -- the same model as scikit-learn ------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_one_epoch_matches_sklearn(kind, solver):
    """Same random_state -> same initial weights; one full-batch step -> the same weights as scikit-learn.

    This pins the weight init, the alpha -> weight_decay mapping (large alpha) and the loss scale
    (scikit-learn steps along n_outputs times the gradient of half the MSE it reports). fastnn's
    weight_decay also decays the biases: under SGD that moves them by lr*(1+momentum)*alpha/n*|b| < 1e-3
    here; under Adam a bias whose data gradient is zero moves by up to lr, so only weights are compared.
    """
    if kind == "classifier":
        X, y = _blobs(n=60, k=3)
        ours, theirs = MLPClassifier, neural_network.MLPClassifier
    else:
        X, y = make_regression(n_samples=60, n_features=5, n_targets=2, noise=0.1, random_state=0)
        y /= y.std()
        ours, theirs = MLPRegressor, neural_network.MLPRegressor
    kw = dict(hidden_layer_sizes=(7,), solver=solver, alpha=0.5, batch_size=60, shuffle=False, max_iter=1,
              learning_rate_init=0.05, momentum=0.9, random_state=3)
    a, b = ours(**kw, dtype=np.float64).fit(X, y), theirs(**kw).fit(X, y)
    for mine, ref in zip(a.coefs_, b.coefs_):
        # Adam: where |g| ~ eps the two eps placements differ (fastnn's eps is on sqrt(v_hat)).
        np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=1e-7 if solver == "sgd" else 1e-4)
    if solver == "sgd":
        for mine, ref in zip(a.intercepts_, b.intercepts_):
            np.testing.assert_allclose(mine, ref, atol=1e-3)
    # loss_curve_ evaluates the penalty with the weights after the step, scikit-learn before it.
    assert a.loss_curve_[0] == pytest.approx(b.loss_curve_[0], rel=5e-3)


def test_stopping_rule_matches_sklearn():
    """The loss never improves by tol=1e9: both stop after n_iter_no_change + 2 epochs, without a warning."""
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), tol=1e9, n_iter_no_change=3, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X, y)
        theirs = neural_network.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert len(ours.loss_curve_) == len(ours.history_.epoch) == 5


def test_early_stopping_keeps_best_validation_weights():
    X, y = _blobs(n=300)
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, n_iter_no_change=2, max_iter=100,
                        learning_rate_init=0.05, random_state=0).fit(X, y)
    assert clf.n_iter_ < 100 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    with pytest.raises(ValueError, match="early_stopping"):
        clf.partial_fit(X, y)


def test_convergence_warning_at_max_iter():
    X, y = _blobs()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\)"):
        MLPClassifier(max_iter=2, random_state=0).fit(X, y)


# -- workflows ------------------------------------------------------------------------------------------------
def test_digits_accuracy():
    Xtr, Xte, ytr, yte = _digits()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, learning_rate_init=3e-3, random_state=0))
    assert pipe.fit(Xtr, ytr).score(Xte, yte) >= 0.95


def test_grid_search_over_pipeline():
    Xtr, Xte, ytr, yte = _digits()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=10, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__learning_rate_init": [1e-4, 3e-3],
                                 "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2).fit(Xtr, ytr)
    assert search.best_params_["mlpclassifier__learning_rate_init"] == 3e-3
    assert search.score(Xte, yte) > 0.9


def test_partial_fit_loop_improves():
    Xtr, Xte, ytr, yte = _digits()
    Xtr, Xte = Xtr / 16, Xte / 16
    clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(Xtr[:100], ytr[:100])
    scores = []
    for epoch in range(6):
        for s in range(0, len(Xtr), 300):
            clf.partial_fit(Xtr[s:s + 300], ytr[s:s + 300], classes=np.arange(10) if epoch == s == 0 else None)
        scores.append(clf.score(Xte, yte))
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 6 * -(-len(Xtr) // 300)
    assert scores[-1] > scores[0] + 0.1 and scores[-1] > 0.9
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(Xtr[:10], np.full(10, 11))


def test_warm_start_continues():
    X, y = _blobs()
    cold = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    warm = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, warm_start=True).fit(X, y)
    first = [w.copy() for w in warm.coefs_]
    warm.fit(X, y)
    assert len(warm.loss_curve_) == 10 and warm.n_iter_ == 5
    assert warm.loss_curve_[5] < warm.loss_curve_[0]  # continued, not restarted
    assert not np.array_equal(warm.coefs_[0], first[0])
    cold.fit(X, y)  # without warm_start, fit starts over
    assert len(cold.loss_curve_) == 5 and np.array_equal(cold.coefs_[0], first[0])
    with pytest.raises(ValueError, match="same classes"):
        warm.fit(X[y < 2], y[y < 2])


def test_random_state_reproducible_and_float32():
    X, y = _blobs()
    a, b = (MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=1).fit(X, y) for _ in range(2))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=2).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    assert isinstance(a.model_, fastnn.Sequential) and isinstance(a.history_, fastnn.History)
    assert a.history_.fast_path  # the estimator's model, loss and optimizer qualify for the compiled step
    assert a.model_.dtype == np.float32 and all(w.dtype == np.float32 for w in a.coefs_ + a.intercepts_)
    assert a.predict_proba(X).dtype == np.float64
    np.testing.assert_allclose(a.predict_proba(X).sum(axis=1), 1)


def test_binary_string_labels_and_decision_function():
    X, y = _blobs(k=2)
    labels = np.array(["cat", "dog"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, learning_rate_init=0.01, random_state=0)
    clf.fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog"] and clf.score(X, labels) > 0.95
    d, p = clf.decision_function(X), clf.predict_proba(X)
    assert d.shape == (len(X),) and p.shape == (len(X), 2)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(d > 0).astype(int)])
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-d)), rtol=1e-12)
    with pytest.raises(ValueError, match="multi-label"):
        clf.fit(X, np.stack([y, 1 - y], axis=1))


@pytest.mark.parametrize("two_d", [False, True])
def test_regressor_shapes_and_score(two_d):
    X, y = make_regression(n_samples=300, n_features=6, n_targets=2 if two_d else 1, noise=1.0, random_state=0)
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(32,), max_iter=200,
                                                       learning_rate_init=0.01, random_state=0))
    pred = reg.fit(X, y / y.std()).predict(X)
    assert pred.shape == y.shape and pred.dtype == np.float64
    assert reg.score(X, y / y.std()) > 0.95


@pytest.mark.parametrize("params, match", [
    (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes"),
    (dict(activation="softplus"), "activation"),
    (dict(solver="lbfgs"), "lbfgs is not supported"),
    (dict(alpha=-1), "alpha"),
    (dict(batch_size=0), "batch_size"),
    (dict(learning_rate_init=0), "learning_rate_init"),
    (dict(max_iter=2.5), "max_iter"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(dtype=np.int32), "dtype"),
])
def test_bad_parameters_raise_at_fit(params, match):
    X, y = _blobs(n=20)
    est = MLPClassifier(**params)  # scikit-learn's contract: __init__ only stores
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_bad_input_messages():
    X, y = _blobs(n=20)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 5 features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, y + 0.5)
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.where(X > 0, np.nan, X))
