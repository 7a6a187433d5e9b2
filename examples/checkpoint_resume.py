"""Checkpoint and resume: fit(checkpoint=PATH) writes the whole training state after every epoch, atomically;
fit(checkpoint=PATH, resume=True) continues from it, ending with exactly the weights an uninterrupted run
would have. The same from the command line: `fastnn train ... --checkpoint run.ckpt [--resume]`.

    python examples/checkpoint_resume.py      # a few seconds
"""
import os

import numpy as np
from sklearn.datasets import load_digits

import fastnn as fn
from fastnn.lr_scheduler import StepLR

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"
EPOCHS = 6 if QUICK else 20

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)


def train(epochs, checkpoint=None, resume=False):
    """The same run each time: the same initial weights, seed, optimizer and schedule."""
    model = fn.Sequential(fn.Linear(64, 64, seed=0), fn.ReLU(), fn.Dropout(0.1), fn.Linear(64, 10, seed=1))
    optimizer = fn.Adam(model.parameters(), lr=1e-2)
    history = model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=optimizer, epochs=epochs, batch_size=32,
                        seed=0, verbose=0, callbacks=[StepLR(optimizer, step_size=2, gamma=0.5)],
                        checkpoint=checkpoint, resume=resume)
    return model, history


uninterrupted, _ = train(EPOCHS)

if os.path.exists("run.ckpt"):
    os.remove("run.ckpt")
train(EPOCHS // 2, checkpoint="run.ckpt")    # stands for a run killed after half its epochs
model, history = train(EPOCHS, checkpoint="run.ckpt", resume=True)
print(f"resumed at epoch {EPOCHS // 2 + 1} and trained to epoch {len(history.epoch)}")

same = all(np.array_equal(a.data, b.data) for a, b in zip(model.parameters(), uninterrupted.parameters()))
print("weights equal to the uninterrupted run:", same)
