"""fastnn.estimators beyond one process: GridSearchCV on a dask cluster, dask-ml's Incremental on a dask array.

Two single-threaded worker processes (Numba and BLAS at one thread each, so the 2 cores are not
oversubscribed). The kernels are compiled, or loaded from Numba's on-disk cache, in this process first;
each worker then loads them from that cache once, before any task, instead of compiling on its first fit.
"""
import os
from unittest import mock

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
pytest.importorskip("dask_ml")

import joblib  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastnn.estimators import MLPClassifier  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ONE_THREAD = {name: "1" for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}


def _warm():
    """Run one tiny fit: loads every kernel a fit and predict use (from the on-disk cache if warm)."""
    import numba  # noqa: PLC0415  (imported in the worker)

    X = np.random.default_rng(0).standard_normal((8, 3))
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=1).fit(X, np.arange(8) % 2).predict_proba(X)
    return {"NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"), "numba_threads": numba.get_num_threads()}


@pytest.fixture(scope="module")
def client():
    _warm()  # populate the cache here, so the workers only read it
    # Pre-spawn: in the environment before a worker imports Numba or a BLAS. The nanny writes them into
    # *this* process's os.environ to spawn and never restores it; left there, NUMBA_NUM_THREADS=1 breaks
    # later tests in this process ("Cannot set NUMBA_NUM_THREADS ... once the threads have been launched").
    with mock.patch.dict(os.environ), dask.config.set({"distributed.nanny.pre-spawn-environ": ONE_THREAD}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        settings = c.run(_warm)
        assert len(settings) == 2
        assert all(s == {"NUMBA_NUM_THREADS": "1", "numba_threads": 1} for s in settings.values()), settings
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X.astype(np.float32), y, random_state=0, stratify=y)


def test_grid_search_on_dask_equals_local(client, digits):
    Xtr, Xte, ytr, yte = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=15, random_state=0))
    grid = {"mlpclassifier__learning_rate_init": [1e-3, 1e-2], "mlpclassifier__alpha": [1e-4, 1e-1]}
    local = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(Xtr, ytr)
    with joblib.parallel_config(backend="dask"), distributed.get_task_stream(client) as tasks:
        remote = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(Xtr, ytr)
    assert {t["worker"] for t in tasks.data} == set(client.scheduler_info()["workers"])  # both did work
    # Each (candidate, fold) fit ran in a worker process; same seeds, same kernels -> the same scores.
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert remote.best_params_ == local.best_params_
    assert remote.score(Xte, yte) == local.score(Xte, yte) > 0.9


def test_incremental_on_dask_array_equals_local_partial_fit(client, digits):
    import dask.array as da  # noqa: PLC0415
    from dask_ml.wrappers import Incremental  # noqa: PLC0415

    Xtr, Xte, ytr, yte = digits
    Xtr, Xte = Xtr / 16, Xte / 16
    X, y = da.from_array(Xtr, chunks=(300, -1)), da.from_array(ytr, chunks=300)
    est = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)
    inc = Incremental(est, scoring="accuracy", shuffle_blocks=False)
    with distributed.get_task_stream(client) as tasks:
        for _ in range(5):  # each Incremental.partial_fit is one pass, one partial_fit per block
            inc.partial_fit(X, y, classes=np.arange(10))
    fits = [t for t in tasks.data if "fit-" in str(t["key"])]  # dask-ml's chain of partial_fit tasks
    assert len(fits) >= 5 * X.numblocks[0]
    local = MLPClassifier(**est.get_params())
    for _ in range(5):
        for s in range(0, len(Xtr), 300):
            local.partial_fit(Xtr[s:s + 300], ytr[s:s + 300], classes=np.arange(10))
    fitted = inc.estimator_
    assert len(fitted.loss_curve_) == 5 * X.numblocks[0]
    np.testing.assert_array_equal(fitted.predict_proba(Xte), local.predict_proba(Xte))
    assert inc.score(da.from_array(Xte, chunks=200), da.from_array(yte, chunks=200)) > 0.9
