"""Learning curves: History.plot draws loss and accuracy per epoch, training beside validation, and the learning
rate when a scheduler changes it (needs `pip install 'fastnn[plot]'`). The same from the command line: `fastnn train --plot curves.png`.

    python examples/learning_curves.py [curves.png]   # a few seconds; writes the PNG
"""
import os
import sys

import numpy as np
from sklearn.datasets import load_digits

import fastnn as fn
from fastnn.lr_scheduler import CosineAnnealingLR

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"
path = sys.argv[1] if len(sys.argv) > 1 else "curves.png"

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)          # pixel values 0..16 -> [0, 1]
order = np.random.default_rng(0).permutation(len(X))
X, y = X[order], y[order]                # validation_split takes the last 20 %: shuffle first

epochs = 5 if QUICK else 30
model = fn.Sequential(fn.Linear(64, 64, seed=0), fn.ReLU(), fn.Linear(64, 10, seed=1))
optimizer = fn.SGD(model.parameters(), lr=0.1, momentum=0.9)
history = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=optimizer, epochs=epochs, batch_size=32,
                    validation_split=0.2, seed=0, verbose=0,
                    callbacks=[CosineAnnealingLR(optimizer, T_max=epochs)])  # lr from 0.1 down toward 0
print(history, "-> final val_accuracy", round(history.history["val_accuracy"][-1], 4))

fig = history.plot(path)                 # returns the matplotlib Figure; ax=... draws into your own Axes
print(f"wrote {path}: {len(fig.axes)} panels ({', '.join(a.get_title() for a in fig.axes)})")
