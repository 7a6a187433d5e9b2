"""Quick start: train a 784-128-64-10 MLP on Fashion-MNIST, evaluate it, save and reload it.

Uses Fashion-MNIST if it is already on this machine (Debian's dataset-fashion-mnist package, ~/.cache/fastnn, or
$FASTNN_DATA; `fastnn train` downloads it there), else a synthetic stand-in of the same shape, and says which.

    python examples/quickstart.py            # about half a minute with the data, compilation included
    FASTNN_EXAMPLES_QUICK=1 python ...       # a few seconds: 2,000 samples, 2 epochs (what the tests run)
"""
import os

import numpy as np

import fastnn as fn
from fastnn.datasets import load_fashion_mnist

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"


def synthetic(n, rng):
    """10 classes of 28x28 "images": class k brightens rows 2k..2k+2 of uniform noise."""
    y = rng.integers(0, 10, n)
    X = rng.uniform(0, 0.3, (n, 784)).astype(np.float32)
    for k in range(10):
        X[y == k, 56 * k:56 * k + 84] += 0.6
    return X, y


try:
    (X, y), (X_test, y_test) = load_fashion_mnist(download=False)
    print(f"data: Fashion-MNIST, {len(X)} training and {len(X_test)} test images")
except FileNotFoundError:
    rng = np.random.default_rng(0)
    (X, y), (X_test, y_test) = synthetic(60_000, rng), synthetic(10_000, rng)
    print("data: synthetic stand-in (Fashion-MNIST is not on this machine; `fastnn train` downloads it)")
if QUICK:
    X, y, X_test, y_test = X[:2000], y[:2000], X_test[:500], y_test[:500]

model = fn.Sequential(fn.Linear(784, 128, seed=0), fn.ReLU(),
                      fn.Linear(128, 64, seed=1), fn.ReLU(),
                      fn.Linear(64, 10, seed=2))
history = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.Adam(model.parameters(), lr=1e-3),
                    epochs=2 if QUICK else 10, batch_size=64, validation_split=0.1,
                    early_stopping=fn.EarlyStopping(patience=3), seed=0)
print("validation accuracy per epoch:", [round(a, 4) for a in history.history["val_accuracy"]])

metrics = model.evaluate(X_test, y_test, fn.SoftmaxCrossEntropy())
print(f"test loss {metrics['loss']:.4f}, test accuracy {metrics['accuracy']:.4f}")

model.save("quickstart_model.npz")
again = fn.load("quickstart_model.npz")
assert np.array_equal(again.predict(X_test), model.predict(X_test))
print("saved to quickstart_model.npz and reloaded: the same predictions")
