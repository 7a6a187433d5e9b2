"""CI check: the fused Numba kernels, the shuffled training epoch and the single-row predict must stay
faster than their NumPy twins by a margin.

Runs the ``kernel_ci`` benchmarks (fixed bs=64 shapes) and the ``workload_ci`` ones (a shuffled epoch
of 784-128-64-10 at batch 64, a single-row predict: ``fastnn/benchmarks/test_bench_workloads.py``)
single-threaded in a subprocess, pairs each Numba median with its NumPy twin's median *from the same
run*, and compares the ratio with ``fastnn/benchmarks/kernel_thresholds.json`` (case -> largest acceptable
Numba/NumPy ratio). Absolute times
are never compared, so a slow or busy machine does not fail the check; a kernel that loses its fusion
or vectorisation does. Exit status 1 when a ratio exceeds its threshold or a thresholded case was not
measured.

Usage::

    python scripts/check_kernel_ratios.py                 # run the benchmarks, then check
    python scripts/check_kernel_ratios.py --json ci.json  # check an existing run
    python scripts/check_kernel_ratios.py --repeat 1      # one run (default: median ratio of 7 runs)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import kernel_pairs, load  # noqa: E402  (sibling script, not an installed package)

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = ROOT / "fastnn" / "benchmarks" / "kernel_thresholds.json"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "NUMBA_NUM_THREADS": "1", "FASTNN_BENCH_THREADS": "1", "FASTNN_BLAS_THREADS": "1"}


def run_benchmarks(json_path, max_time=0.1):
    """Time the ``kernel_ci`` and ``workload_ci`` cases single-threaded into ``json_path``; return pytest's exit code."""
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "fastnn" / "benchmarks" / "test_bench_kernels.py"),
           str(ROOT / "fastnn" / "benchmarks" / "test_bench_workloads.py"), "-m", "kernel_ci or workload_ci",
           "-q", "-p", "no:cacheprovider", "--benchmark-enable", f"--benchmark-json={json_path}",
           f"--benchmark-max-time={max_time}", "--benchmark-min-rounds=20", "--benchmark-columns=median,iqr,rounds",
           "--benchmark-sort=name"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **SINGLE_THREAD}, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-5000:], sep="\n", file=sys.stderr)
    return proc.returncode


def check(ratio_runs, max_ratio):
    """Compare the median over runs of each case's Numba/NumPy ratio with its threshold.

    Parameters
    ----------
    ratio_runs : list of dict
        One ``{case: ratio}`` per run.
    max_ratio : dict
        ``{case: largest acceptable ratio}``.

    Returns
    -------
    (lines, failures) : list of str, list of str
        A printable table and the cases that failed (over the threshold or not measured).
    """
    lines = [f"{'kernel case':<26} {'Numba/NumPy':>11} {'max':>6}  {'runs':<24} status"]
    failures = []
    for case in sorted(set(max_ratio) | {c for run in ratio_runs for c in run}):
        runs = [run[case] for run in ratio_runs if case in run]
        limit = max_ratio.get(case)
        ratio = statistics.median(runs) if runs else None
        if limit is None:
            status = "(no threshold)"
        elif ratio is None:
            status, failures = "FAIL: not measured", failures + [case]
        elif ratio > limit:
            status, failures = "FAIL", failures + [case]
        else:
            status = "ok"
        shown = "–" if ratio is None else f"{ratio:.3f}"
        lines.append(f"{case:<26} {shown:>11} {limit if limit is not None else '–':>6}  "
                     f"{' '.join(f'{r:.3f}' for r in runs):<24} {status}")
    return lines, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", nargs="+", help="check these pytest-benchmark JSON files instead of running")
    parser.add_argument("--repeat", type=int, default=7,
                        help="benchmark runs whose median ratio is checked (default 7, ~10 s each: three noisy "
                             "runs cannot fail it)")
    parser.add_argument("--thresholds", default=str(THRESHOLDS), help="JSON with a 'max_ratio' mapping")
    parser.add_argument("--max-time", type=float, default=0.1, help="seconds per benchmark (pytest-benchmark)")
    parser.add_argument("--keep-json", help="directory to keep each run's JSON in")
    args = parser.parse_args(argv)
    max_ratio = json.loads(Path(args.thresholds).read_text())["max_ratio"]

    paths = [Path(p) for p in args.json or []]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0 if args.json else args.repeat):
            path = Path(args.keep_json or tmp) / f"kernel_ci_{i}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            code = run_benchmarks(path, args.max_time)
            if code != 0:
                print(f"kernel benchmarks failed (pytest exit {code}), output above", file=sys.stderr)
                return 2
            paths.append(path)
        ratio_runs = [{r["case"]: r["ratio"] for r in kernel_pairs(load(p), suite="ci")} for p in paths]

    lines, failures = check(ratio_runs, max_ratio)
    print("\n".join(lines))
    if failures:
        print(f"\nFAILED: {', '.join(failures)} (over the threshold or not measured)\n"
              f"thresholds: {args.thresholds}; a ratio is Numba median / NumPy median within one run")
        return 1
    print(f"\nall {len(max_ratio)} thresholded kernel ratios within bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
