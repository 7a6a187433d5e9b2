"""The same GridSearchCV, its fits spread over a Dask cluster (needs `pip install 'fastnn[dask]'`).

Here a LocalCluster of two single-threaded worker processes; point Client at a real scheduler
("tcp://host:8786") to use a cluster. The `if __name__ == "__main__":` guard is required: worker processes
re-import this file, and without it each would start a cluster of its own ("Nanny failed to start").

    python examples/dask_search.py           # about half a minute, most of it starting the workers
"""
import os
import warnings

import dask
import joblib
from dask.distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastnn import MLPClassifier

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"
# Few epochs on purpose: silence the warning a fit stopped by max_iter gives, as scikit-learn's does.
warnings.filterwarnings("ignore", message="Stochastic Optimizer: Maximum iterations")
# One Numba and one BLAS thread per worker process, so the workers do not oversubscribe the cores.
ONE_THREAD = {name: "1" for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def warm_up():
    """One tiny fit: loads the compiled kernels from Numba's on-disk cache before the real work."""
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=1).fit([[0.0], [1.0]], [0, 1])


if __name__ == "__main__":
    X, y = load_digits(return_X_y=True)
    warm_up()  # compile (or load) the kernels here once, so the workers only read Numba's cache
    with dask.config.set({"distributed.nanny.pre-spawn-environ": ONE_THREAD}), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(warm_up)
        pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=10 if QUICK else 40, random_state=0))
        grid = {"mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
                "mlpclassifier__learning_rate_init": [1e-3, 1e-2]}
        with joblib.parallel_config(backend="dask"):
            search = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(X, y)
        print(f"{len(search.cv_results_['params']) * 3} fits on {len(client.scheduler_info()['workers'])} workers")
        print(f"best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")
