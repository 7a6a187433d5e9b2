"""``fastnn predict``: a saved model's predictions for every row, written to a CSV file."""
import csv

import numpy as np

import fastnn as fn
from fastnn import io, preprocessing
from fastnn import inference
from fastnn.cli.common import cells, check_out_path, eval_data, label_texts

__all__ = ["run"]


def run(args, say):
    check_out_path(args.out, "--out")
    model = fn.load(args.model)
    X, _, name = eval_data(args, model, say)
    with cells(args.data):
        out = model.predict(X, batch_size=args.batch_size).astype(np.float64)
    out = out.reshape(len(out), -1)
    if args.task == "classification":
        if not isinstance(model.layers[-1], fn.Softmax):
            inference.probabilities(out, "softmax")  # in place, in float64
        if isinstance(model.target, preprocessing.Labels) and model.target.n_classes == out.shape[1]:
            names = label_texts(model.target)  # the labels as the training data wrote them
            labels = np.array(names, dtype=object)[out.argmax(axis=1)].tolist()
        else:
            names, labels = [str(k) for k in range(out.shape[1])], out.argmax(axis=1).tolist()
        header = ["label", *(f"prob_{k}" for k in names)]
        rows = zip(labels, *(out[:, k] for k in range(out.shape[1])))
    else:
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{k}" for k in range(out.shape[1])]
        rows = out
    with io.atomic_write(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([v if isinstance(v, (int, str)) else f"{v:.9g}" for v in row] for row in rows)
    say(f"{name}: {len(out)} samples through {args.model}")
    return {"model": args.model, "dataset": name, "n_samples": len(out), "out": args.out, "columns": header}

