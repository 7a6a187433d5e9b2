"""``fastnn evaluate``: a saved model's loss and accuracy (or R²) on test data."""
import fastnn as fn
from fastnn.cli.common import compute_metrics, eval_data

__all__ = ["run"]


def run(args, say):
    model = fn.load(args.model)
    X, y, name = eval_data(args, model, say)
    metrics = compute_metrics(model, X, y, args.task, args.data, args.batch_size)
    return {"model": args.model, "dataset": name, "n_samples": len(y), **{f"test_{k}": v for k, v in metrics.items()}}

