"""fastnn.MLPClassifier inside a scikit-learn Pipeline, tuned by GridSearchCV (needs `pip install 'fastnn[sklearn]'`).

The digits data ships with scikit-learn: 1,797 8x8 images of handwritten digits, no download.

    python examples/sklearn_pipeline.py      # about ten seconds
"""
import os
import warnings

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastnn import MLPClassifier

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"
# Few epochs on purpose: silence the warning a fit stopped by max_iter gives, as scikit-learn's does.
warnings.filterwarnings("ignore", message="Stochastic Optimizer: Maximum iterations")

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=5 if QUICK else 60, random_state=0))
grid = {"mlpclassifier__hidden_layer_sizes": [(32,), (64, 32)],
        "mlpclassifier__learning_rate_init": [1e-3, 1e-2]}
search = GridSearchCV(pipe, grid, cv=2 if QUICK else 5).fit(X_train, y_train)

for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"{score:.3f}  {params}")
print("best:", search.best_params_)
print(f"test accuracy of the refitted best pipeline: {search.score(X_test, y_test):.3f}")
