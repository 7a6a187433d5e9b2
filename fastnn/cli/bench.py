"""``fastnn bench``: run a benchmark suite (or read a run's JSON) and print its markdown tables."""
import os
import sys
import tempfile

from fastnn import bench
from fastnn.cli.common import UsageError, check_out_path

__all__ = ["run"]


def run(args, say):
    run_options = [name for name, value in (("--suite", args.suite), ("-k", args.k), ("--threads", args.threads),
                                            ("--bench-dir", args.bench_dir), ("--json", args.json_path),
                                            ("pytest arguments", args.pytest_args)) if value]
    if args.from_json is not None and run_options:
        raise UsageError(f"--from-json reports an existing run and runs nothing; it takes no {', '.join(run_options)}")
    outputs = {"--json": args.json_path, "--out-md": args.out_md, "--out-png": args.out_png}
    for option, path in outputs.items():
        if path is not None:
            check_out_path(path, option)
    bench.check_dependencies(run=args.from_json is None, png=args.out_png is not None)
    if args.from_json is not None:
        text = bench.render(args.from_json, args.out_md, args.out_png)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            json_path = args.json_path or os.path.join(tmp, "bench.json")
            bench.run(json_path, args.suite or "kernels", args.bench_dir, k=args.k, threads=args.threads,
                      pytest_args=args.pytest_args, stream=None if args.verbose == 0 else sys.stderr)
            text = bench.render(json_path, args.out_md, args.out_png)
    for path in outputs.values():
        if path is not None:
            say(f"wrote {path}")
    return {"markdown": text, "json": args.json_path, "out_md": args.out_md, "out_png": args.out_png}

