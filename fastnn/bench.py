"""Run fastnn's benchmark suites and report them: markdown tables of medians and ratios, and a PNG chart.

The suites (pytest-benchmark) ship with the package, in ``fastnn/benchmarks``, so they run from an installed fastnn
as from a checkout. :func:`run` times one in a subprocess and writes pytest-benchmark's JSON; :func:`render` turns
such a JSON into markdown and, optionally, a chart (the tables and the chart: :mod:`fastnn.benchmarks.report`).
``fastnn bench`` and ``scripts/bench_report.py`` are thin layers over both.
"""
import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path

from fastnn.benchmarks.report import (FRAMEWORKS, PEERS, WORKLOAD_FRAMEWORKS, BenchError, check_dependencies,
                                      epoch_rows, epoch_table, kernel_pairs, kernel_table, load, other_table, plot,
                                      report, sgemm_rates, workload_rows, workload_table)

__all__ = ["BenchError", "SUITES", "PEERS", "FRAMEWORKS", "WORKLOAD_FRAMEWORKS", "check_dependencies",
           "find_bench_dir", "run", "load", "kernel_pairs", "kernel_table", "epoch_rows", "epoch_table",
           "sgemm_rates", "workload_rows", "workload_table", "other_table", "report", "plot", "render", "main"]

SUITES = {"kernels": "test_bench_kernels.py", "epoch": "test_bench_epoch.py", "workloads": "test_bench_workloads.py",
          "all": "."}
_PYTEST_STATUS = {1: "some benchmarks failed", 2: "interrupted", 5: "no benchmark matched the selection"}


# -- running ---------------------------------------------------------------------------------------------
def find_bench_dir(bench_dir=None, suite="all"):
    """The benchmarks directory: ``bench_dir``, or by default the suite installed with fastnn (``fastnn/benchmarks``).

    Raises :class:`BenchError` if it, or the file ``suite`` runs, is not there.
    """
    path = Path(bench_dir) if bench_dir is not None else Path(__file__).resolve().parent / "benchmarks"
    if not (path / "conftest.py").is_file() or not (path / SUITES[suite]).exists():
        wanted = "conftest.py" + ("" if suite == "all" else f" and {SUITES[suite]}")
        where = f"--bench-dir {path}" if bench_dir is not None else f"{path} (inside the fastnn package)"
        raise BenchError(f"{where}: no fastnn benchmark suite there ({wanted}); the benchmarks ship with fastnn "
                         f"as fastnn/benchmarks/: reinstall fastnn if they are missing, or pass --bench-dir "
                         f"DIR/fastnn/benchmarks of a source checkout")
    return path.resolve()


def _import_root(path):
    """The directory from which ``path``'s package imports: the first ancestor that is not a package itself."""
    while (path / "__init__.py").is_file():
        path = path.parent
    return path


def run(json_path, suite="kernels", bench_dir=None, *, k=None, threads=None, pytest_args=(), stream=None):
    """Time one suite with pytest-benchmark in a subprocess, writing its JSON to ``json_path``.

    Runs ``python -m pytest <bench_dir>/<suite file> --benchmark-enable --benchmark-json=<json_path> -q
    -p no:cacheprovider -m "slow or not slow" [-k K] [pytest_args]`` from the directory the suite's package
    imports from (a checkout's root, whose ``pyproject.toml`` then applies, or site-packages; never the fastnn
    package itself, whose ``io.py`` and ``tables.py`` would shadow other modules); the ``-m`` keeps the rows a
    correctness run marks ``slow``.

    Parameters
    ----------
    json_path : str or path
    suite : {"kernels", "epoch", "workloads", "all"}
    bench_dir : str or path, optional
        See :func:`find_bench_dir`.
    k : str, optional
        pytest ``-k`` expression selecting benchmarks by id, e.g. ``"relu_backward and bs16"``.
    threads : int, optional
        BLAS threads per benchmark (``FASTNN_BENCH_THREADS``; unset: the libraries' defaults).
    pytest_args : sequence of str
        Further pytest options, e.g. ``["--benchmark-max-time=0.1"]``.
    stream : file-like, optional
        Where pytest's output goes as it comes (e.g. ``sys.stderr``); by default it is kept back, and its end
        quoted if the run fails.
    """
    check_dependencies(run=True)
    bench_dir = find_bench_dir(bench_dir, suite)
    cmd = [sys.executable, "-m", "pytest", str(bench_dir / SUITES[suite]), "--benchmark-enable",
           f"--benchmark-json={Path(json_path).resolve()}", "--benchmark-columns=median,iqr,rounds", "-q",
           "-p", "no:cacheprovider", "-m", "slow or not slow", *(["-k", k] if k else []), *pytest_args]
    # pytest's lines arrive as they are written, not in blocks. Not an xdist worker's variables (a bench run from
    # inside a parallel test run): pytest-benchmark would take them for its own run's and time nothing.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")} | {"PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["FASTNN_BENCH_THREADS"] = str(threads)
    tail = collections.deque(maxlen=25)
    with subprocess.Popen(cmd, cwd=_import_root(bench_dir), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        try:
            for line in proc.stdout:
                tail.append(line)
                if stream is not None:
                    stream.write(line)
                    stream.flush()
        except KeyboardInterrupt:
            proc.terminate()
            raise
    if proc.returncode != 0:
        why = _PYTEST_STATUS.get(proc.returncode, "pytest failed")
        selection = f"suite {suite!r}" + (f", -k {k!r}" if k else "")
        output = " (its output is above)" if stream is not None else ":\n" + "".join(tail).rstrip()
        raise BenchError(f"{why} ({selection}; pytest exit status {proc.returncode}){output}")


def render(json_path, out_md=None, out_png=None, kernel_suite=None):
    """Report a pytest-benchmark JSON: return the markdown, also written to ``out_md``; draw ``out_png``.

    ``kernel_suite`` keeps one kernel parametrisation (``"full"`` or ``"ci"``, see :func:`kernel_pairs`).
    Raises :class:`BenchError` if the file holds no benchmark to report.
    """
    benchmarks = load(json_path)
    text = report(benchmarks, kernel_suite)
    if not text:
        raise BenchError(f"{json_path}: no fastnn kernel, epoch or workload benchmarks found")
    if out_md is not None:
        Path(out_md).write_text(text)
    if out_png is not None:
        plot(benchmarks, out_png, kernel_suite)
    return text


def main(argv=None):
    """``scripts/bench_report.py``: report an existing JSON (the markdown goes to ``--out-md``, else stdout)."""
    parser = argparse.ArgumentParser(description="Summarise a pytest-benchmark JSON of fastnn's benchmarks as "
                                                 "markdown tables and a PNG chart.")
    parser.add_argument("json", help="pytest-benchmark JSON (--benchmark-json=...)")
    parser.add_argument("--out-md", help="write the markdown tables here (default: print them)")
    parser.add_argument("--out-png", help="write the chart here")
    parser.add_argument("--suite", choices=("full", "ci"), help="only this kernel parametrisation")
    args = parser.parse_args(argv)
    try:
        text = render(args.json, args.out_md, args.out_png, args.suite)
    except (BenchError, OSError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    if args.out_md is None:
        print(text)
    return 0
