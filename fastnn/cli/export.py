"""``fastnn export``: a saved model as an ONNX graph."""
import fastnn as fn
from fastnn.cli.common import Failure, check_out_path

__all__ = ["run"]


def run(args, say):
    from fastnn import export  # noqa: PLC0415  (onnx is an optional extra)

    check_out_path(args.out, "OUT")
    model = fn.load(args.model)
    try:
        graph = export.export_onnx(model, args.out)
    except ImportError as exc:
        raise Failure(str(exc)) from None
    return {"model": args.model, "out": args.out, "opset": export.OPSET, "nodes": len(graph.graph.node)}

