"""Summarise a pytest-benchmark JSON of fastnn's benchmarks as markdown tables and a PNG chart.

Usage::

    python -m pytest benchmarks --benchmark-enable --benchmark-json=bench.json
    python scripts/bench_report.py bench.json --out-md table.md --out-png chart.png

Kernel rows pair the Numba and NumPy twins of one case and shape by ``extra_info`` (written by
``benchmarks/test_bench_kernels.py``); epoch rows put fastnn, the NumPy reference and PyTorch side
by side per batch size. All times are medians. The functions are importable (``load``,
``kernel_pairs``, ``kernel_table``, ``epoch_rows``, ``epoch_table``, ``other_table``, ``plot``) for a CLI
to reuse; any other benchmark in the file (e.g. the sklearn-API fits) is listed by group and median.
"""
import argparse
import json
import sys
from pathlib import Path

__all__ = ["load", "kernel_pairs", "kernel_table", "epoch_rows", "epoch_table", "other_table", "plot", "main"]

FRAMEWORKS = ("fastnn", "numpy", "torch")


def load(path):
    """Return the ``benchmarks`` list of a pytest-benchmark JSON file (entries without stats dropped)."""
    data = json.loads(Path(path).read_text())
    if "benchmarks" not in data:
        raise ValueError(f"{path}: expected pytest-benchmark JSON with a 'benchmarks' list")
    return [b for b in data["benchmarks"] if b.get("stats")]


def kernel_pairs(benchmarks, suite=None):
    """Numba/NumPy pairs of the kernel benchmarks.

    Parameters
    ----------
    benchmarks : list of dict
        As returned by :func:`load`.
    suite : {"full", "ci"} or None
        Keep only one parametrisation (``None``: both).

    Returns
    -------
    list of dict
        Keys ``case``, ``kernel``, ``shape``, ``batch``, ``suite``, ``numba_ms``, ``numpy_ms``,
        ``ratio`` (Numba median / NumPy median), in the order the cases first appear.
        A case with only one backend timed is left out.
    """
    pairs = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "backend" not in info or "case" not in info or (suite and info.get("suite") != suite):
            continue
        key = (info.get("suite"), info["case"], info.get("batch"), info["shape"])
        row = pairs.setdefault(key, {"case": info["case"], "kernel": info["kernel"], "shape": info["shape"],
                                     "batch": info.get("batch"), "suite": info.get("suite")})
        row[f"{info['backend']}_ms"] = b["stats"]["median"] * 1e3
    rows = [r for r in pairs.values() if "numba_ms" in r and "numpy_ms" in r]
    for r in rows:
        r["ratio"] = r["numba_ms"] / r["numpy_ms"]
    return rows


def _fmt(value, digits=4):
    return "–" if value is None else f"{value:.{digits}g}"


def kernel_table(benchmarks, suite=None):
    """Markdown table of Numba vs NumPy medians (ms) and their ratio, one row per kernel case and shape."""
    rows = kernel_pairs(benchmarks, suite)
    if not rows:
        return ""
    lines = ["| kernel | shape | batch | Numba (ms) | NumPy (ms) | Numba/NumPy |", "|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["suite"] != "full", r["case"], r["batch"] or 0, r["shape"])):
        case = r["case"] + (" (ci)" if r["suite"] == "ci" else "")
        lines.append(f"| {case} | {r['shape']} | {r['batch'] or '–'} | {_fmt(r['numba_ms'])} | "
                     f"{_fmt(r['numpy_ms'])} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def epoch_rows(benchmarks):
    """One dict per batch size: ``{framework}_s`` (median seconds per epoch), ``{framework}_mib``
    (peak extra MiB from the memory benchmark), ``samples``, and the ratios ``fastnn/numpy``, ``fastnn/torch``."""
    by_batch = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if info.get("framework") not in FRAMEWORKS:
            continue
        row = by_batch.setdefault(info["batch"], {"batch": info["batch"]})
        if "peak_extra_mib" in info:
            row[f"{info['framework']}_mib"] = info["peak_extra_mib"]
        else:
            row[f"{info['framework']}_s"] = b["stats"]["median"]
            row["samples"] = info.get("samples")
    rows = [by_batch[k] for k in sorted(by_batch)]
    for r in rows:
        for other in FRAMEWORKS[1:]:
            if r.get("fastnn_s") and r.get(f"{other}_s"):
                r[f"fastnn/{other}"] = r["fastnn_s"] / r[f"{other}_s"]
    return rows


def epoch_table(benchmarks):
    """Markdown table of seconds per epoch for fastnn, the NumPy reference and PyTorch, per batch size."""
    rows = epoch_rows(benchmarks)
    timed = [r for r in rows if any(f"{f}_s" in r for f in FRAMEWORKS)]
    out = []
    if timed:
        out += ["| batch | samples | fastnn (s) | NumPy (s) | PyTorch (s) | fastnn/NumPy | fastnn/PyTorch |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {r['batch']} | {r.get('samples') or '–'} | " + " | ".join(
                    _fmt(r.get(k), 3) for k in ("fastnn_s", "numpy_s", "torch_s", "fastnn/numpy", "fastnn/torch"))
                + " |" for r in timed]
    mem = [r for r in rows if any(f"{f}_mib" in r for f in FRAMEWORKS)]
    if mem:
        out += ["", "| batch | fastnn peak extra (MiB) | NumPy peak extra (MiB) |", "|---:|---:|---:|"]
        out += [f"| {r['batch']} | {_fmt(r.get('fastnn_mib'), 3)} | {_fmt(r.get('numpy_mib'), 3)} |" for r in mem]
    return "\n".join(out) + "\n" if out else ""


def other_table(benchmarks):
    """Markdown table (median s) of benchmarks that are neither kernel pairs nor epochs, e.g. the sklearn fits."""
    rows = [b for b in benchmarks
            if "backend" not in b.get("extra_info", {}) and b.get("extra_info", {}).get("framework") not in FRAMEWORKS]
    if not rows:
        return ""
    lines = ["| group | benchmark | median (s) | rounds |", "|---|---|---:|---:|"]
    lines += [f"| {b.get('group') or '–'} | {b['name']} | {_fmt(b['stats']['median'])} | {b['stats']['rounds']} |"
              for b in sorted(rows, key=lambda b: (b.get("group") or "", b["name"]))]
    return "\n".join(lines) + "\n"


def plot(benchmarks, path, suite=None):
    """Write a PNG: Numba/NumPy ratio per kernel case (log scale, line at 1) and, if timed, s/epoch per batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = sorted(kernel_pairs(benchmarks, suite), key=lambda r: (r["case"], r["batch"] or 0, r["shape"]))
    epochs = [r for r in epoch_rows(benchmarks) if any(f"{f}_s" in r for f in FRAMEWORKS)]
    panels = [p for p in ("kernels", "epochs") if {"kernels": pairs, "epochs": epochs}[p]]
    if not panels:
        raise ValueError("no kernel pairs or epoch timings to plot")
    heights = [max(2.0, 0.18 * len(pairs)) if p == "kernels" else 3.0 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights) + 1), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "kernels":
            labels = [f"{r['case']}{' (ci)' if r['suite'] == 'ci' else ''} "
                      f"[{'bs=%s,' % r['batch'] if r['batch'] else ''}{r['shape']}]" for r in pairs]
            ratios = [r["ratio"] for r in pairs]
            ax.barh(range(len(pairs)), ratios, color=["tab:green" if x <= 1 else "tab:red" for x in ratios])
            ax.set_yticks(range(len(pairs)), labels, fontsize=6)
            ax.set_ylim(len(pairs) - 0.5, -0.5)  # first case on top, no empty margin
            ax.set_xscale("log")
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xlabel("median time Numba / NumPy (lower is faster; < 1: Numba wins)")
            ax.set_title("fastnn kernels: Numba vs NumPy twin")
        else:
            width = 0.8 / len(FRAMEWORKS)
            for k, fw in enumerate(FRAMEWORKS):
                xs = [i + (k - 1) * width for i, r in enumerate(epochs) if f"{fw}_s" in r]
                ys = [r[f"{fw}_s"] for r in epochs if f"{fw}_s" in r]
                if ys:
                    ax.bar(xs, ys, width, label=fw)
            ax.set_xticks(range(len(epochs)), [f"bs={r['batch']}" for r in epochs])
            ax.set_ylabel("s / epoch (median)")
            ax.set_title("one epoch, 784-128-64-10 ReLU, SGD lr 0.1, float32")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark JSON (--benchmark-json=...)")
    parser.add_argument("--out-md", help="write the markdown tables here (default: print them)")
    parser.add_argument("--out-png", help="write the chart here")
    parser.add_argument("--suite", choices=("full", "ci"), help="only this kernel parametrisation")
    args = parser.parse_args(argv)
    benchmarks = load(args.json)
    sections = []
    if kernels := kernel_table(benchmarks, args.suite):
        sections.append("## Kernels (median ms; Numba/NumPy < 1 means Numba is faster)\n\n" + kernels)
    if epochs := epoch_table(benchmarks):
        sections.append("## One epoch (median s; ratios < 1 mean fastnn is faster)\n\n" + epochs)
    if others := other_table(benchmarks):
        sections.append("## Other benchmarks (median s)\n\n" + others)
    if not sections:
        print(f"{args.json}: no fastnn kernel or epoch benchmarks found", file=sys.stderr)
        return 1
    text = "\n".join(sections)
    if args.out_md:
        Path(args.out_md).write_text(text)
    else:
        print(text)
    if args.out_png:
        plot(benchmarks, args.out_png, args.suite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
