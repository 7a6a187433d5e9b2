"""A training loop written by hand -- forward, loss, backward, optimizer step -- after checking the gradients.

fastnn's layers have hand-derived backward rules; fn.gradcheck compares them with float64 central differences.
`Sequential.fit` runs the same step compiled; this loop shows what it does, one batch at a time.

    python examples/gradcheck_loop.py        # a few seconds
"""
import os

import numpy as np

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"
rng = np.random.default_rng(0)

# 1. Gradients: worst relative error of every parameter's (and the input's) analytic gradient, in float64.
small = fn.Sequential(fn.Linear(5, 4, seed=0, dtype=np.float64), fn.Tanh(),
                      fn.Linear(4, 3, seed=1, dtype=np.float64), fn.Softmax())
errors = fn.gradcheck(small, fn.NLLLoss(), rng.normal(size=(6, 5)), np.array([0, 1, 2, 0, 1, 2]))
print("gradcheck, worst relative error per parameter:", {k: f"{v:.1e}" for k, v in errors.items()})
assert max(errors.values()) < 1e-6

# 2. Data: two interleaved spirals, a classic that a linear model cannot separate.
n = 500 if QUICK else 2000
t = rng.uniform(0.5, 3 * np.pi, n)
label = rng.integers(0, 2, n)
X = np.stack([t * np.cos(t + np.pi * label), t * np.sin(t + np.pi * label)], axis=1) / 10
X = (X + rng.normal(0, 0.02, X.shape)).astype(np.float32)

# 3. The loop.
model = fn.Sequential(fn.Linear(2, 64, seed=0), fn.ReLU(), fn.Linear(64, 64, seed=1), fn.ReLU(),
                      fn.Linear(64, 2, seed=2))
loss = fn.SoftmaxCrossEntropy()
optimizer = fn.Adam(model.parameters(), lr=1e-2)
epochs, batch_size = (30 if QUICK else 100), 32
for epoch in range(epochs):
    order = rng.permutation(n)
    total = 0.0
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        logits = model.forward(X[idx])            # caches what backward needs
        total += loss.forward(logits, label[idx]) * len(idx)
        model.backward(loss.backward())           # fills p.grad for every parameter
        optimizer.step()                          # updates p.data from p.grad
    if (epoch + 1) % 10 == 0:
        accuracy = (model.predict(X).argmax(axis=1) == label).mean()
        print(f"epoch {epoch + 1:3d}: loss {total / n:.4f}, training accuracy {accuracy:.3f}")
