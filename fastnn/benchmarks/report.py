"""Reading the benchmark suites' pytest-benchmark JSON: markdown tables of medians and ratios, and a PNG chart.

Kernel rows pair the Numba and NumPy twins of one case and shape by ``extra_info`` (written by
``test_bench_kernels.py``); epoch rows put fastnn, the NumPy reference, PyTorch and the peers of ``peers.py`` (JAX
jit + ``lax.scan``, JAX per-step jit, torch.compile) side by side per batch size (``test_bench_epoch.py``); workload
rows (``test_bench_workloads.py``) put fastnn, its NumPy twin, those peers and scikit-learn beside the sgemm floor per
shape, batch and order, plus ``predict`` and start-up; the epoch suite's thread-choice rows (fit's default against
fixed BLAS thread counts, interleaved) have a table of their own; any other benchmark (e.g. the sklearn-API fits) is listed by
group and median. All times are medians, and a ratio only ever divides two medians of the same run: ``peer/fastnn``
(above 1: fastnn is faster) and ``fastnn/floor``. :mod:`fastnn.bench` runs the suites and renders their JSON.
"""
import importlib.util
import json
import statistics
from pathlib import Path

__all__ = ["BenchError", "PEERS", "FRAMEWORKS", "WORKLOAD_FRAMEWORKS", "check_dependencies", "load", "kernel_pairs",
           "kernel_table", "epoch_rows", "epoch_table", "sgemm_rates", "workload_rows", "workload_table",
           "threads_table", "other_table", "report", "plot"]

PEERS = ("jax", "jax_step", "torch_compile")  # peers.py
FRAMEWORKS = ("fastnn", "numpy", "torch", *PEERS)
WORKLOAD_FRAMEWORKS = ("fastnn", "numpy", "jax", "jax_step", "torch", "torch_compile", "sklearn")
_NAMES = {"fastnn": "fastnn", "numpy": "NumPy twin", "torch": "PyTorch", "sklearn": "scikit-learn",
          "jax": "JAX jit+scan", "jax_step": "JAX per-step jit", "torch_compile": "torch.compile"}
_PREDICT_NAMES = _NAMES | {"jax": "JAX jit"}  # predict has no epoch to scan: a jitted forward pass
# What each suite runs, relative to the benchmarks directory ("." is all of it).

class BenchError(Exception):
    """A benchmark run or report that cannot be made; the message says why in one line."""


def check_dependencies(*, run=False, png=False):
    """Raise :class:`BenchError` naming the missing packages if running the suite or drawing the chart is impossible.

    Parameters
    ----------
    run : bool
        The suite will be run (needs pytest-benchmark, which brings pytest).
    png : bool
        A chart will be drawn (needs matplotlib).
    """
    missing = [name for name, module, needed in (("pytest-benchmark", "pytest_benchmark", run),
                                                 ("matplotlib", "matplotlib", png))
               if needed and importlib.util.find_spec(module) is None]
    if missing:
        raise BenchError(f"{' and '.join(missing)} not installed; they come with fastnn's 'bench' extra: "
                         f"pip install 'fastnn[bench]'")


# -- reading and tabulating ------------------------------------------------------------------------------
def load(path):
    """Return the ``benchmarks`` list of a pytest-benchmark JSON file (entries without stats dropped)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{path}: expected pytest-benchmark JSON with a 'benchmarks' list")
    return [b for b in data["benchmarks"] if b.get("stats")]


def kernel_pairs(benchmarks, suite=None):
    """Numba/NumPy pairs of the kernel benchmarks.

    Parameters
    ----------
    benchmarks : list of dict
        As returned by :func:`load`.
    suite : {"full", "ci"} or None
        Keep only one parametrisation of the kernel benchmarks (``None``: both).

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
    (peak extra MiB from the memory benchmark), ``{framework}_compile_s`` (a peer's compilation, untimed),
    ``samples``, ``flop``, the ratios ``{framework}/fastnn`` for every other framework timed (``numpy/fastnn``,
    ``torch/fastnn``, ``jax/fastnn``, ...; above 1: fastnn is faster), fastnn's ``fastnn_gflops`` and, with the
    sgemm benchmark in the same run, ``peak_gflops`` and ``fastnn/peak``."""
    by_batch = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if info.get("framework") not in FRAMEWORKS or "workload" in info:
            continue
        row = by_batch.setdefault(info["batch"], {"batch": info["batch"]})
        if "peak_extra_mib" in info:
            row[f"{info['framework']}_mib"] = info["peak_extra_mib"]
        else:
            row[f"{info['framework']}_s"] = b["stats"]["median"]
            row["samples"] = info.get("samples")
            row["flop"] = info.get("flop")
            if info.get("compile_s") is not None:
                row[f"{info['framework']}_compile_s"] = info["compile_s"]
    peaks = [b["extra_info"]["flop"] / b["stats"]["median"] / 1e9 for b in benchmarks
             if "sgemm" in b.get("extra_info", {}) and b["extra_info"].get("kind") != "sgemm"
             and b["stats"]["median"] > 0]
    rows = [by_batch[k] for k in sorted(by_batch)]
    for r in rows:
        for other in FRAMEWORKS[1:]:
            if r.get("fastnn_s") and r.get(f"{other}_s"):
                r[f"{other}/fastnn"] = r[f"{other}_s"] / r["fastnn_s"]
        if r.get("fastnn_s") and r.get("flop"):
            r["fastnn_gflops"] = r["flop"] / r["fastnn_s"] / 1e9
            if peaks:
                r["peak_gflops"] = max(peaks)
                r["fastnn/peak"] = r["fastnn_gflops"] / r["peak_gflops"]
    return rows


def _timed(rows, frameworks, always=()):
    """The frameworks of ``frameworks`` with a time in some row, plus ``always`` (kept in order)."""
    return [f for f in frameworks if f in always or any(f"{f}_s" in r for r in rows)]


def epoch_table(benchmarks):
    """Markdown table of seconds per epoch for fastnn, the NumPy reference, PyTorch and each peer timed, per batch
    size, with the ratios peer/fastnn; then the peers' compile times, GFLOP/s and memory."""
    rows = epoch_rows(benchmarks)
    timed = [r for r in rows if any(f"{f}_s" in r for f in FRAMEWORKS)]
    out = []
    if timed:
        fws = _timed(timed, FRAMEWORKS, always=("fastnn", "numpy", "torch"))
        others = [f for f in fws if f != "fastnn"]
        out += ["| batch | samples | " + " | ".join(f"{_NAMES[f]} (s)" for f in fws) + " | "
                + " | ".join(f"{_NAMES[f]}/fastnn" for f in others) + " |",
                "|---:|---:|" + "---:|" * (len(fws) + len(others))]
        out += [f"| {r['batch']} | {r.get('samples') or '–'} | " + " | ".join(
                    _fmt(r.get(k), 3) for k in [f"{f}_s" for f in fws] + [f"{f}/fastnn" for f in others])
                + " |" for r in timed]
    compiled = [f for f in PEERS if any(f"{f}_compile_s" in r for r in rows)]
    if compiled:
        out += ["", "| batch | " + " | ".join(f"{_NAMES[f]} compile (s)" for f in compiled) + " |",
                "|---:|" + "---:|" * len(compiled)]
        out += [f"| {r['batch']} | " + " | ".join(_fmt(r.get(f"{f}_compile_s"), 3) for f in compiled) + " |"
                for r in rows if any(f"{f}_compile_s" in r for f in compiled)]
    rated = [r for r in rows if "fastnn/peak" in r]
    if rated:
        out += ["", "| batch | fastnn (GFLOP/s) | sgemm peak, same run (GFLOP/s) | fastnn/peak |", "|---:|---:|---:|---:|"]
        out += [f"| {r['batch']} | " + " | ".join(_fmt(r[k], 3) for k in ("fastnn_gflops", "peak_gflops", "fastnn/peak"))
                + " |" for r in rated]
    mem = [r for r in rows if any(f"{f}_mib" in r for f in FRAMEWORKS)]
    if mem:
        out += ["", "| batch | fastnn peak extra (MiB) | NumPy peak extra (MiB) |", "|---:|---:|---:|"]
        out += [f"| {r['batch']} | {_fmt(r.get('fastnn_mib'), 3)} | {_fmt(r.get('numpy_mib'), 3)} |" for r in mem]
    return "\n".join(out) + "\n" if out else ""


def sgemm_rates(benchmarks, gemm=None):
    """``{threads: GFLOP/s}`` of the workload suite's sgemm-floor benchmarks (median time of each): at each thread
    count the fastest GEMM timed (NumPy's BLAS, fastnn's own), or only ``gemm``'s."""
    rates = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if info.get("kind") == "sgemm" and b["stats"]["median"] > 0 and gemm in (None, info.get("gemm", "numpy")):
            rate = info["flop"] / b["stats"]["median"] / 1e9
            rates[info["threads"]] = max(rate, rates.get(info["threads"], 0.0))
    return rates


def workload_rows(benchmarks):
    """One dict per row of ``fastnn/benchmarks/test_bench_workloads.py``, in the order rows first appear.

    Keys: ``kind`` (``"epoch"``, ``"predict1"``, ``"predict"``, ``"startup"``), ``workload``, ``layers``,
    ``batch``, ``order``, ``threads`` (fastnn's), ``samples``, ``flop``; per framework ``{fw}_s`` (median seconds),
    ``{fw}_min``, ``{fw}_max``, ``{fw}_rounds``, for a peer its untimed ``{fw}_compile_s`` and, for single-row
    predicts, ``{fw}_p50_us``/``{fw}_p90_us``; with an sgemm benchmark at the row's thread count, ``floor_s`` (the
    row's GEMM FLOPs at that rate) and ``fastnn/floor``; ``{fw}/fastnn`` for every other framework timed (above 1:
    fastnn is faster) and ``fastest_peer`` with ``fastest_peer/fastnn`` (the NumPy twin is not a peer).
    """
    rates = sgemm_rates(benchmarks)
    rows = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "workload" not in info or info.get("framework") not in WORKLOAD_FRAMEWORKS:
            continue
        key = (info["kind"], info["workload"], info.get("batch"), info.get("order"))
        row = rows.setdefault(key, {k: info.get(k) for k in ("kind", "workload", "layers", "batch", "order",
                                                             "samples", "flop")})
        fw, st = info["framework"], b["stats"]
        row.update({f"{fw}_s": st["median"], f"{fw}_min": st["min"], f"{fw}_max": st["max"],
                    f"{fw}_rounds": st["rounds"]})
        for q in ("p50_us", "p90_us", "compile_s"):
            if info.get(q) is not None:
                row[f"{fw}_{q}"] = info[q]
        if fw == "fastnn" or "threads" not in row:
            row["threads"] = info.get("threads")
    out = list(rows.values())
    for r in out:
        if r.get("flop") and rates.get(r["threads"]):
            r["floor_s"] = r["flop"] / rates[r["threads"]] / 1e9
        if r.get("fastnn_s"):
            if r.get("floor_s"):
                r["fastnn/floor"] = r["fastnn_s"] / r["floor_s"]
            for fw in WORKLOAD_FRAMEWORKS[1:]:
                if r.get(f"{fw}_s"):
                    r[f"{fw}/fastnn"] = r[f"{fw}_s"] / r["fastnn_s"]
            peers = [fw for fw in WORKLOAD_FRAMEWORKS[2:] if r.get(f"{fw}_s")]
            if peers:
                r["fastest_peer"] = min(peers, key=lambda fw: r[f"{fw}_s"])
                r["fastest_peer/fastnn"] = r[f"{r['fastest_peer']}/fastnn"]
    return out


def _spread(r, fw, scale=1.0, digits=3):
    if f"{fw}_s" not in r:
        return "–"
    return (f"{_fmt(r[f'{fw}_s'] * scale, digits)} ({_fmt(r[f'{fw}_min'] * scale, 2)}–"
            f"{_fmt(r[f'{fw}_max'] * scale, 2)})")


def _fastest(r):
    return f"{r['fastest_peer/fastnn']:.3g} ({_NAMES[r['fastest_peer']]})" if "fastest_peer" in r else "–"


def workload_table(benchmarks):
    """Markdown tables of the workload suite: epochs (each framework's median with its min–max over rounds, the
    sgemm floor of the same run), their ratios (peer/fastnn: above 1, fastnn is faster; fastnn/floor), the peers'
    compile times, predict and start-up. Frameworks with no time in the run are named in one line."""
    rows = workload_rows(benchmarks)
    out = []
    timed = [(name, sgemm_rates(benchmarks, gemm)) for gemm, name in (("numpy", "NumPy's BLAS"),
                                                                      ("fastnn", "fastnn's GEMM"))]
    for name, rates in timed:
        if rates:
            out.append(f"sgemm 2048³ through {name}, same run: " + ", ".join(
                f"{rates[t]:.1f} GFLOP/s at {t} thread{'s' * (t > 1)}" for t in sorted(rates)) + "\n")
    if all(rates for _, rates in timed):
        out.append("floor: the GEMM FLOPs at the faster of the two, at the row's threads\n")
    epochs = [r for r in rows if r["kind"] == "epoch"]
    if epochs:
        fws = _timed(epochs, WORKLOAD_FRAMEWORKS, always=("fastnn",))
        others = [f for f in fws if f != "fastnn"]
        head = "| workload | layers | batch | order | "
        out += [head + "threads | " + " | ".join(f"{_NAMES[f]} (s)" for f in fws) + " | floor (s) |",
                "|---|---|---:|---|---:|" + "---:|" * (len(fws) + 1)]
        out += [f"| {r['workload']} | {r['layers']} | {r['batch']} | {r['order']} | {r['threads']} | "
                + " | ".join(_spread(r, f) for f in fws) + f" | {_fmt(r.get('floor_s'), 3)} |" for r in epochs]
        out += ["", head + "fastnn/floor | " + " | ".join(f"{_NAMES[f]}/fastnn" for f in others)
                + " | fastest peer/fastnn |", "|---|---|---:|---|" + "---:|" * (len(others) + 2)]
        out += [f"| {r['workload']} | {r['layers']} | {r['batch']} | {r['order']} | {_fmt(r.get('fastnn/floor'), 3)} | "
                + " | ".join(_fmt(r.get(f"{f}/fastnn"), 3) for f in others) + f" | {_fastest(r)} |" for r in epochs]
        compiled = [f for f in PEERS if any(f"{f}_compile_s" in r for r in epochs)]
        if compiled:
            out += ["", head + " | ".join(f"{_NAMES[f]} compile (s)" for f in compiled) + " |",
                    "|---|---|---:|---|" + "---:|" * len(compiled)]
            out += [f"| {r['workload']} | {r['layers']} | {r['batch']} | {r['order']} | "
                    + " | ".join(_fmt(r.get(f"{f}_compile_s"), 3) for f in compiled) + " |"
                    for r in epochs if any(f"{f}_compile_s" in r for f in compiled)]
        missing = [_NAMES[f] for f in WORKLOAD_FRAMEWORKS if f not in fws]
        if missing:
            out += ["", f"Not timed in this run (not installed, or deselected): {', '.join(missing)}."]
    single = [r for r in rows if r["kind"] == "predict1"]
    if single:
        fws = _timed(single, WORKLOAD_FRAMEWORKS)
        others = [f for f in fws if f != "fastnn"]
        out += ["", "| predict, one row | threads | " + " | ".join(f"{_PREDICT_NAMES[f]} p50 / p90 (µs)" for f in fws)
                + "".join(f" | {_PREDICT_NAMES[f]}/fastnn (p50)" for f in others) + " |",
                "|---|---:|" + "---:|" * (len(fws) + len(others))]
        out += [f"| {r['layers']} | {r['threads']} | " + " | ".join(
                    f"{_fmt(r.get(f'{f}_p50_us'), 3)} / {_fmt(r.get(f'{f}_p90_us'), 3)}" for f in fws)
                + "".join(f" | {_fmt(_p50_ratio(r, f), 3)}" for f in others) + " |" for r in single]
    batch = [r for r in rows if r["kind"] == "predict"]
    if batch:
        fws = _timed(batch, WORKLOAD_FRAMEWORKS)
        others = [f for f in fws if f != "fastnn"]
        out += ["", "| predict | rows | threads | " + " | ".join(f"{_PREDICT_NAMES[f]} (ms)" for f in fws)
                + " | floor (ms) | fastnn/floor" + "".join(f" | {_PREDICT_NAMES[f]}/fastnn" for f in others) + " |",
                "|---|---:|---:|" + "---:|" * (len(fws) + 2 + len(others))]
        out += [f"| {r['layers']} | {r['batch']} | {r['threads']} | " + " | ".join(_spread(r, f, 1e3) for f in fws)
                + f" | {_fmt(r['floor_s'] * 1e3 if r.get('floor_s') else None, 3)} | {_fmt(r.get('fastnn/floor'), 3)}"
                + "".join(f" | {_fmt(r.get(f'{f}/fastnn'), 3)}" for f in others) + " |" for r in batch]
    startup = [r for r in rows if r["kind"] == "startup"]
    if startup:
        out += ["", "| start-up, import -> trained | fastnn (s) | rounds |", "|---|---:|---:|"]
        out += [f"| {r['workload']} | {_spread(r, 'fastnn')} | {r['fastnn_rounds']} |" for r in startup]
    return "\n".join(out) + "\n" if out else ""


def _p50_ratio(r, fw):
    """``fw``'s p50 over fastnn's for a single-row predict (medians when a p50 is missing)."""
    if r.get(f"{fw}_p50_us") and r.get("fastnn_p50_us"):
        return r[f"{fw}_p50_us"] / r["fastnn_p50_us"]
    return r.get(f"{fw}/fastnn")


def threads_table(benchmarks):
    """Markdown table of the epoch suite's thread choices (``kind="threads"``: fit's default and each fixed BLAS
    thread count, timed interleaved round by round in one test): median ms (min–max) of each and the default's
    median over the best fixed one's, per batch size and machine (quiet, or a busy neighbour)."""
    rows = [b["extra_info"] for b in benchmarks if b.get("extra_info", {}).get("kind") == "threads"]
    if not rows:
        return ""
    choices = sorted({k[len("threads_"):-len("_s")] for r in rows for k in r if k.startswith("threads_")},
                     key=lambda c: (c != "default", c))
    out = ["| batch | machine | " + " | ".join(f"{c} (ms)" for c in choices) + " | default / best fixed |",
           "|---:|---|" + "---:|" * len(choices) + "---:|"]
    for r in sorted(rows, key=lambda r: (r["batch"], r["neighbour"])):
        cells = []
        for c in choices:
            t = r.get(f"threads_{c}_s") or []
            cells.append(f"{1e3 * statistics.median(t):.0f} ({1e3 * min(t):.0f}–{1e3 * max(t):.0f})" if t else "–")
        out.append(f"| {r['batch']} | {r['neighbour']} | " + " | ".join(cells) + f" | {r['default_over_best']:.2f} |")
    return "\n".join(out) + "\n"


def other_table(benchmarks):
    """Markdown table (median s) of benchmarks that are neither kernel pairs nor epochs, e.g. the sklearn fits."""
    rows = [b for b in benchmarks if not {"backend", "sgemm", "workload"} & set(b.get("extra_info", {}))
            and b.get("extra_info", {}).get("framework") not in FRAMEWORKS
            and b.get("extra_info", {}).get("kind") != "threads"]
    if not rows:
        return ""
    lines = ["| group | benchmark | median (s) | rounds |", "|---|---|---:|---:|"]
    lines += [f"| {b.get('group') or '–'} | {b['name']} | {_fmt(b['stats']['median'])} | {b['stats']['rounds']} |"
              for b in sorted(rows, key=lambda b: (b.get("group") or "", b["name"]))]
    return "\n".join(lines) + "\n"


def report(benchmarks, suite=None):
    """The markdown report: each non-empty table of :func:`kernel_table`, :func:`epoch_table`,
    :func:`workload_table` and :func:`other_table` under a heading ("" if none has a row). ``suite`` as in
    :func:`kernel_pairs`."""
    sections = []
    if kernels := kernel_table(benchmarks, suite):
        sections.append("## Kernels (median ms; Numba/NumPy < 1 means Numba is faster)\n\n" + kernels)
    if epochs := epoch_table(benchmarks):
        sections.append("## One epoch (median s; ratios X/fastnn > 1 mean fastnn is faster)\n\n" + epochs)
    if workloads := workload_table(benchmarks):
        sections.append("## Workloads (median (min–max over rounds); ratios X/fastnn > 1 mean fastnn is faster)\n\n"
                        + workloads)
    if chosen := threads_table(benchmarks):
        sections.append("## BLAS threads: fit's default against fixed counts (interleaved rounds; median ms "
                        "(min–max))\n\n" + chosen)
    if others := other_table(benchmarks):
        sections.append("## Other benchmarks (median s)\n\n" + others)
    return "\n".join(sections)


# -- drawing ---------------------------------------------------------------------------------------------
def plot(benchmarks, path, suite=None):
    """Write a PNG: Numba/NumPy ratio per kernel case (log scale, line at 1), s/epoch per batch, and each
    framework's time over the sgemm floor per workload row (log scale, line at the floor), for what was timed."""
    pairs = sorted(kernel_pairs(benchmarks, suite), key=lambda r: (r["case"], r["batch"] or 0, r["shape"]))
    epochs = [r for r in epoch_rows(benchmarks) if any(f"{f}_s" in r for f in FRAMEWORKS)]
    floored = [r for r in workload_rows(benchmarks) if r.get("floor_s") and r["kind"] != "predict1"]
    panels = [p for p in ("kernels", "epochs", "workloads")
              if {"kernels": pairs, "epochs": epochs, "workloads": floored}[p]]
    if not panels:
        raise BenchError("no kernel pairs, epoch or workload timings to plot")
    check_dependencies(png=True)
    # Imported here: matplotlib is an optional extra, and slow to import. Agg draws files without a display.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(2.0, 0.18 * len(pairs)) if p == "kernels" else max(3.0, 0.45 * len(floored))
               if p == "workloads" else 3.0 for p in panels]
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
        elif panel == "workloads":
            fws = _timed(floored, WORKLOAD_FRAMEWORKS)
            width = 0.8 / len(fws)
            for k, fw in enumerate(fws):
                ys = [i + (k - (len(fws) - 1) / 2) * width for i, r in enumerate(floored) if f"{fw}_s" in r]
                xs = [r[f"{fw}_s"] / r["floor_s"] for r in floored if f"{fw}_s" in r]
                if xs:
                    ax.barh(ys, xs, width, label=_NAMES[fw])
            labels = [f"{r['workload']} {r['layers']} bs={r['batch']}" + (f" {r['order']}" if r.get("order") else "")
                      + (" predict" if r["kind"] == "predict" else "") for r in floored]
            ax.set_yticks(range(len(floored)), labels, fontsize=7)
            ax.set_ylim(len(floored) - 0.5, -0.5)
            ax.set_xscale("log")
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xlabel("median time / sgemm floor of the same run (1 = all GEMM FLOPs at the 2048³ sgemm rate)")
            ax.set_title("workloads: time over the floor (lower is faster)")
            ax.legend(fontsize=7)
        else:
            fws = _timed(epochs, FRAMEWORKS)
            width = 0.8 / len(fws)
            for k, fw in enumerate(fws):
                xs = [i + (k - (len(fws) - 1) / 2) * width for i, r in enumerate(epochs) if f"{fw}_s" in r]
                ys = [r[f"{fw}_s"] for r in epochs if f"{fw}_s" in r]
                ax.bar(xs, ys, width, label=_NAMES[fw])
            ax.set_xticks(range(len(epochs)), [f"bs={r['batch']}" for r in epochs])
            ax.set_ylabel("s / epoch (median)")
            ax.set_title("one epoch, 784-128-64-10 ReLU, SGD lr 0.1, float32")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


