"""Export a trained model to ONNX and run it with onnxruntime (needs `pip install 'fastnn[onnx]'`).

The graph's input is "X" (batch, n_features); a Sequential's output is "Y", its predict(). A fitted
MLPClassifier exports too, with outputs "label" and "probabilities". From the command line:
`fastnn export model.npz model.onnx`.

    python examples/onnx_export.py           # a few seconds
"""
import os
import warnings

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_digits

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLES_QUICK") == "1"
# Few epochs on purpose: silence the warning a fit stopped by max_iter gives, as scikit-learn's does.
warnings.filterwarnings("ignore", message="Stochastic Optimizer: Maximum iterations")

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)

model = fn.Sequential(fn.Linear(64, 32, seed=0), fn.Tanh(), fn.Linear(32, 10, seed=1), fn.Softmax())
model.fit(X, y, loss=fn.NLLLoss(), optimizer=fn.Adam(model.parameters(), lr=1e-2), epochs=3 if QUICK else 20,
          batch_size=32, seed=0, verbose=0)

fn.export_onnx(model, "digits.onnx")
session = ort.InferenceSession("digits.onnx", providers=["CPUExecutionProvider"])
(probabilities,) = session.run(None, {"X": X})
print("onnxruntime output:", session.get_outputs()[0].name, probabilities.shape, probabilities.dtype)
print("largest difference from model.predict:", float(np.abs(probabilities - model.predict(X)).max()))
print(f"accuracy of the ONNX graph: {(probabilities.argmax(axis=1) == y).mean():.3f}")

classifier = fn.MLPClassifier(hidden_layer_sizes=(32,), max_iter=5 if QUICK else 50, random_state=0).fit(X, y)
fn.export_onnx(classifier, "digits_classifier.onnx")
labels, proba = ort.InferenceSession("digits_classifier.onnx").run(None, {"X": X})
print("MLPClassifier graph: labels agree with predict():", bool((labels == classifier.predict(X)).all()))
