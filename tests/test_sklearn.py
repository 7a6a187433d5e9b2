"""fastnn.estimators: scikit-learn's estimator checks, equivalence with scikit-learn's MLP, and workflows."""
import pickle
import warnings

import numpy as np
import pytest
from scipy.special import softmax
from scipy import sparse
from sklearn import neural_network
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs, make_multilabel_classification, make_regression
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
LBFGS = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=50)
# Adam and sgd run on the compiled step for dense X (and batch by batch on the kernels for sparse X and sample
# weights, which the checks also pass); lbfgs on the full-batch kernels.
CHECKED = [MLPClassifier(**SMALL), MLPRegressor(**SMALL), MLPClassifier(**SMALL, solver="sgd"),
           MLPRegressor(**LBFGS)]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, random_state=0, stratify=y)


def _blobs(n=200, k=3, seed=0):
    return make_blobs(n_samples=n, centers=k, n_features=5, random_state=seed)


# -- the same model as scikit-learn ------------------------------------------------------------------------
def _pair(kind):
    if kind == "classifier":
        X, y = _blobs(n=150, k=3)
        return X, y, MLPClassifier, neural_network.MLPClassifier
    X, y = make_regression(n_samples=150, n_features=5, n_targets=2, noise=0.1, random_state=0)
    return X, y / y.std(), MLPRegressor, neural_network.MLPRegressor


def _assert_same_fit(a, b, atol, rtol):
    for mine, ref in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(mine, ref, rtol=0, atol=atol)
    # With alpha > 0 the compiled step's epoch loss carries the L2 term of the end-of-epoch weights, scikit-learn's
    # that of each batch's: rtol is loose there.
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=rtol, atol=0)
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_


@pytest.mark.parametrize("learning_rate", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_sgd_trajectory_matches_sklearn(kind, learning_rate):
    """float64, alpha=0, unshuffled, Nesterov momentum: 30 epochs on fastnn's compiled step give scikit-learn's
    weights and loss_curve_ to rounding, including the learning rate changing between epochs (SGD(velocity=True)
    keeps scikit-learn's velocity across the change)."""
    X, y, ours, theirs = _pair(kind)
    kw = dict(hidden_layer_sizes=(7,), solver="sgd", alpha=0.0, batch_size=32, shuffle=False, max_iter=30,
              learning_rate=learning_rate, learning_rate_init=0.05, power_t=0.3, momentum=0.9, random_state=3,
              tol=0.05 if learning_rate == "adaptive" else 0.0, n_iter_no_change=3)
    a, b = ours(**kw).fit(X, y), theirs(**kw).fit(X, y)
    assert a.fast_path_ and a.coefs_[0].dtype == np.float64
    _assert_same_fit(a, b, atol=5e-14, rtol=5e-14)
    assert a._optimizer.learning_rate == b._optimizer.learning_rate


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_adam_trajectory_matches_sklearn(kind):
    """Adam on the compiled step with scikit-learn's epsilon placement (on sqrt(v), not on the bias-corrected
    sqrt(v_hat): Adam(eps_hat=True)), alpha > 0 on the weights only (sample_decay=True: over each batch's rows),
    unshuffled: scikit-learn's weights over 30 epochs."""
    X, y, ours, theirs = _pair(kind)
    kw = dict(hidden_layer_sizes=(7,), solver="adam", alpha=0.5, batch_size=30, max_iter=30, epsilon=1e-3,
              learning_rate_init=0.01, random_state=3, tol=0.0, n_iter_no_change=50, shuffle=False)
    a, b = ours(**kw).fit(X, y), theirs(**kw).fit(X, y)
    assert a.fast_path_
    _assert_same_fit(a, b, atol=5e-14, rtol=2e-2)
    assert a._optimizer.t == b._optimizer.t and a._optimizer.learning_rate == pytest.approx(
        b._optimizer.learning_rate, rel=1e-15)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("case", ["weighted", "poisson", "sparse", "binary"])
def test_weighted_poisson_sparse_trajectories_match_sklearn(case, solver):
    """Sample weights (the L2 term over each batch's weight), the Poisson loss, sparse rows and the one logistic
    unit all train on the compiled step and follow scikit-learn's weights over 20 epochs in float64, unshuffled
    (a last batch smaller than the others, alpha > 0: loss_curve_ carries the L2 term of the end-of-epoch
    weights, so rtol is loose there)."""
    if case in ("weighted", "sparse", "binary"):
        X, y = _blobs(n=130, k=2 if case == "binary" else 3)
        ours, theirs, kw = MLPClassifier, neural_network.MLPClassifier, {}
    else:
        X, y = make_regression(n_samples=130, n_features=5, n_targets=2, noise=0.1, random_state=0)
        y = np.exp(y / y.std())
        ours, theirs, kw = MLPRegressor, neural_network.MLPRegressor, dict(loss="poisson")
    fit = dict(sample_weight=np.random.default_rng(0).random(len(y)) * 2) if case == "weighted" else {}
    if case == "sparse":
        X = sparse.csr_matrix(np.where(X > 0, X, 0))
    kw.update(hidden_layer_sizes=(7,), solver=solver, alpha=0.3, batch_size=32, shuffle=False, max_iter=20,
              learning_rate_init=0.01, random_state=3, tol=0.0, n_iter_no_change=50, momentum=0.9)
    a, b = ours(**kw).fit(X, y, **fit), theirs(**kw).fit(X, y, **fit)
    assert a.fast_path_
    _assert_same_fit(a, b, atol=1e-13, rtol=2e-2)


@pytest.mark.parametrize("activation", ["relu", "logistic"])
@pytest.mark.parametrize("kind", ["binary", "multilabel", "regressor", "poisson"])
def test_lbfgs_matches_sklearn(kind, activation):
    """L-BFGS on the full-batch loss and gradient from fastnn's kernels: scikit-learn's solution, with the one
    logistic unit (binary), independent sigmoids (multi-label) and the exp output (Poisson)."""
    if kind in ("binary", "multilabel"):
        X, y = (_blobs(n=80, k=2) if kind == "binary" else
                make_multilabel_classification(n_samples=80, n_classes=3, random_state=0))
        ours, theirs, kw = MLPClassifier, neural_network.MLPClassifier, {}
    else:
        X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
        y = np.exp(y / y.std()) if kind == "poisson" else y / y.std()
        ours, theirs = MLPRegressor, neural_network.MLPRegressor
        kw = dict(loss="poisson" if kind == "poisson" else "squared_error")
    kw.update(hidden_layer_sizes=(6,), activation=activation, solver="lbfgs", max_iter=15, alpha=1e-3,
              random_state=0)
    a, b = ours(**kw).fit(X, y), theirs(**kw).fit(X, y)
    assert a.n_outputs_ == b.n_outputs_ and a.out_activation_ == b.out_activation_
    assert a.n_iter_ == b.n_iter_ and a.loss_ == pytest.approx(b.loss_, rel=1e-9)
    for mine, ref in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=1e-8)
    ours_out = a.predict_proba(X) if kind in ("binary", "multilabel") else a.predict(X)
    ref_out = b.predict_proba(X) if kind in ("binary", "multilabel") else b.predict(X)
    np.testing.assert_allclose(ours_out, ref_out, rtol=1e-6, atol=1e-9)


def test_lbfgs_gradient_is_numerical_gradient():
    X, y = _blobs(n=12, k=3)
    clf = MLPClassifier(hidden_layer_sizes=(5,), activation="tanh", solver="lbfgs", max_iter=1, alpha=0.1,
                        random_state=0).fit(X, y)
    Y = np.eye(3)[y]
    theta = np.concatenate([p.ravel() for p in clf.coefs_ + clf.intercepts_])
    loss, grad = clf._loss_grad_lbfgs(theta, X, Y, None)
    eye, h = np.eye(theta.size), 1e-6
    numerical = [(clf._loss_grad_lbfgs(theta + h * e, X, Y, None)[0]
                  - clf._loss_grad_lbfgs(theta - h * e, X, Y, None)[0]) / (2 * h) for e in eye]
    np.testing.assert_allclose(grad, numerical, rtol=1e-5, atol=1e-8)


def test_sample_weight_is_repetition():
    """An integer weight is that many copies of the row (full-batch lbfgs: the same loss to rounding)."""
    X, y = _blobs(n=40, k=3)
    w = np.random.default_rng(0).integers(0, 3, len(y))
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=20, random_state=0)
    a = MLPClassifier(**kw).fit(X, y, sample_weight=w)
    b = MLPClassifier(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-9)
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-6, atol=1e-9)
    sgd = MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", max_iter=3, random_state=0)
    assert sgd.fit(X, y, sample_weight=w).fast_path_  # weighted losses train on the compiled step too
    ones = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, batch_size=10, random_state=0)
    np.testing.assert_allclose(ones.fit(X, y, sample_weight=np.ones(len(y))).predict_proba(X),
                               ones.fit(X, y).predict_proba(X), rtol=1e-10)  # batch by batch == compiled step
    with pytest.raises(ValueError, match="non-zero"):
        sgd.fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="shape"):
        sgd.fit(X, y, sample_weight=np.ones(3))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_input_equals_dense(solver):
    X, y = _blobs(n=60, k=3)
    X[X < 0] = 0
    # sgd and adam run on the compiled step for dense X and, densified a batch at a time, for sparse X; both
    # shuffle alike.
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=5, batch_size=20, random_state=0)
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(**kw).fit(sparse.csr_matrix(X), y)
    assert b.fast_path_ == (solver != "lbfgs")
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(sparse.csr_matrix(X)), rtol=1e-10)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_pickle_and_clone_keep_training_state(solver):
    """A pickled estimator names the public module and goes on with partial_fit exactly as the original (its
    optimizer state travels with it); clone gives the same parameters, unfitted."""
    X, y = _blobs()
    a = MLPClassifier(hidden_layer_sizes=(6,), solver=solver, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    data = pickle.dumps(a)
    assert b"fastnn.estimators" in data and b"MLPClassifier" in data
    b = pickle.loads(data)
    for est in (a, b):
        est.partial_fit(X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    c = clone(a)
    assert c.get_params() == a.get_params() and not hasattr(c, "coefs_")
    assert type(pickle.loads(pickle.dumps(c))) is fastnn.MLPClassifier


def test_partial_fit_hidden_for_lbfgs():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPClassifier(solver="sgd"), "partial_fit")


def test_compiled_step_divergence_continues_like_sklearn():
    """The compiled step stops on a non-finite loss; the estimator redoes that epoch on its kernels (where, as in
    scikit-learn, training goes on) and ends with scikit-learn's error about non-finite weights."""
    X, y = _blobs(n=100, k=3)
    reg = MLPRegressor(hidden_layer_sizes=(8,), activation="identity", solver="sgd", learning_rate_init=1e4,
                       max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            reg.fit(X, y.astype(float))
    assert len(reg.loss_curve_) == 5 and not np.isfinite(reg.loss_curve_[-1]) and not reg.fast_path_


def test_stopping_rule_matches_sklearn():
    """The loss never improves by tol=1e9: both stop after n_iter_no_change + 2 epochs, without a warning."""
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), tol=1e9, n_iter_no_change=3, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X, y)
        theirs = neural_network.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert len(ours.loss_curve_) == 5


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
    with pytest.raises(ValueError, match="not in `self.classes_`"):
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


def test_random_state_reproducible_and_dtypes():
    X, y = _blobs()
    a, b = (MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=1).fit(X, y) for _ in range(2))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=2).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # scikit-learn's rule: float32 X trains float32 and predicts float32; anything else float64.
    assert all(w.dtype == np.float64 for w in a.coefs_ + a.intercepts_) and a.predict_proba(X).dtype == np.float64
    f32 = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=1).fit(X.astype(np.float32), y)
    assert all(w.dtype == np.float32 for w in f32.coefs_ + f32.intercepts_)
    assert f32.predict_proba(X).dtype == np.float32
    forced = MLPRegressor(hidden_layer_sizes=(8,), max_iter=10, dtype=np.float32).fit(X, y.astype(float))
    assert forced.coefs_[0].dtype == np.float32 and forced.predict(X).dtype == np.float32
    assert isinstance(a.model_, fastnn.Sequential)  # the network before the output activation (logits)
    np.testing.assert_allclose(softmax(a.model_.predict(X), axis=1), a.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(a.predict_proba(X).sum(axis=1), 1)


def test_model_shares_assignable_coefs():
    X, y = _blobs()
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y.astype(float))
    np.testing.assert_allclose(reg.model_.predict(X).ravel(), reg.predict(X), rtol=1e-12)
    reg.coefs_[1] = np.zeros_like(reg.coefs_[1])
    reg.intercepts_[1] = np.array([3.0])
    np.testing.assert_array_equal(reg.predict(X), 3.0)


def test_binary_is_one_logistic_unit_and_string_labels():
    X, y = _blobs(k=2)
    labels = np.array(["cat", "dog"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, learning_rate_init=0.01, random_state=0)
    clf.fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog"] and clf.score(X, labels) > 0.95
    assert clf.n_outputs_ == 1 and clf.out_activation_ == "logistic" and clf.coefs_[-1].shape == (8, 1)
    p = clf.predict_proba(X)
    assert p.shape == (len(X), 2)
    np.testing.assert_allclose(p.sum(axis=1), 1)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(p[:, 1] > 0.5).astype(int)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(p))


def test_multilabel_sigmoid_outputs():
    X, Y = make_multilabel_classification(n_samples=60, n_classes=4, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.predict(X).shape == Y.shape
    assert clf.score(X, Y) > 0.9
    assert not np.allclose(clf.predict_proba(X).sum(axis=1), 1)

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
    (dict(solver="newton"), "solver"),
    (dict(learning_rate="cosine"), "learning_rate"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(max_fun=0), "max_fun"),
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
