"""``fastnn bench`` and ``scripts/bench_report.py`` on a synthetic pytest-benchmark JSON, plus one tiny real run."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastnn import bench
from tests.conftest import run

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_pytest_benchmark = pytest.mark.skipif(importlib.util.find_spec("pytest_benchmark") is None,
                                           reason="pytest-benchmark not installed")
THREADS = {"blas_threads": {"numpy.libs": 1}, "numba_threads": 2, "numba_threading_layer": "workqueue"}


def kernel(case, backend, median, batch=16, shape="128", suite="full"):
    """One entry as fastnn/benchmarks/test_bench_kernels.py records it."""
    group = f"{'ci:' if suite == 'ci' else ''}{case}[bs={batch},{shape}]"
    test = "test_kernel_ci" if suite == "ci" else "test_kernel"
    return {"group": group, "name": f"{test}[{case}-bs{batch}-{shape}-{backend}]", "stats": stats(median),
            "extra_info": {"case": case, "kernel": case, "backend": backend, "batch": batch, "shape": shape,
                           "dtype": "float32", "suite": suite, **THREADS}}


def epoch(framework, median, batch=64, **extra):
    """One entry as fastnn/benchmarks/test_bench_epoch.py records it (``extra``: test_epoch_memory's fields, a peer's
    ``compile_s``)."""
    group = f"epoch-memory[bs={batch}]" if "peak_extra_mib" in extra else f"epoch[bs={batch}]"
    return {"group": group, "name": f"test_epoch[{batch}-{framework}]", "stats": stats(median),
            "extra_info": {"framework": framework, "batch": batch, "samples": 60000, "data": "synthetic",
                           "dtype": "float32", "lr": 0.1, "flop": 2.4e11, **THREADS, **extra}}


def sgemm(median, n=2048):
    """The sgemm-peak entry of fastnn/benchmarks/test_bench_epoch.py."""
    return {"group": "sgemm-peak", "name": "test_sgemm_peak", "stats": stats(median),
            "extra_info": {"sgemm": n, "flop": 2 * n**3, **THREADS}}


def stats(median):
    return {"min": median * 0.9, "max": median * 1.5, "mean": median * 1.1, "median": median, "iqr": median * 0.1,
            "rounds": 5}


@pytest.fixture
def bench_json(tmp_path, monkeypatch):
    """A pytest-benchmark-shaped JSON: relu_backward Numba 0.02 ms vs NumPy 0.08 ms (ratio 0.25), a CI pair,
    a case timed on one backend only, an epoch at bs=64 (fastnn 2 s, NumPy 4 s, PyTorch 1 s, JAX jit+scan 3 s
    compiled in 0.5 s, torch.compile 5 s compiled in 7 s; 240 GFLOP) and its memory, and an sgemm peak of
    2 * 2048^3 flop in 0.1718 s (200 GFLOP/s)."""
    monkeypatch.chdir(tmp_path)
    benchmarks = [kernel("relu_backward", "numba", 2e-5), kernel("relu_backward", "numpy", 8e-5),
                  kernel("mse", "numba", 3e-5, suite="ci", batch=64, shape="10"),
                  kernel("mse", "numpy", 1e-5, suite="ci", batch=64, shape="10"),
                  kernel("tanh_forward", "numba", 1e-5),
                  epoch("fastnn", 2.0), epoch("numpy", 4.0), epoch("torch", 1.0), epoch("jax", 3.0, compile_s=0.5),
                  epoch("torch_compile", 5.0, compile_s=7.0),
                  epoch("fastnn", 1.0, batch=256, peak_extra_mib=12.5), epoch("numpy", 1.0, batch=256,
                                                                                peak_extra_mib=40.0),
                  sgemm(2 * 2048**3 / 200e9)]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": benchmarks,
                                "datetime": "2024-01-01T00:00:00", "version": "4.0.0"}))
    return path


def test_from_json_prints_and_writes_the_tables(capsys, bench_json, tmp_path):
    code, out, err = run(capsys, "bench", "--from-json", bench_json, "--out-md", tmp_path / "t.md")
    assert code == 0, err
    text = (tmp_path / "t.md").read_text()
    assert out == text.rstrip("\n") + "\n"
    assert "| relu_backward | 128 | 16 | 0.02 | 0.08 | 0.25 |" in text
    assert "| mse (ci) | 10 | 64 | 0.03 | 0.01 | 3.00 |" in text
    assert "tanh_forward" not in text  # no NumPy twin timed: no ratio
    # s/epoch: fastnn, NumPy, PyTorch, JAX jit+scan, torch.compile (no per-step JAX timed: no column); peer/fastnn
    assert ("| batch | samples | fastnn (s) | NumPy twin (s) | PyTorch (s) | JAX jit+scan (s) | torch.compile (s) | "
            "NumPy twin/fastnn | PyTorch/fastnn | JAX jit+scan/fastnn | torch.compile/fastnn |") in text
    assert "| 64 | 60000 | 2 | 4 | 1 | 3 | 5 | 2 | 0.5 | 1.5 | 2.5 |" in text
    assert "| batch | JAX jit+scan compile (s) | torch.compile compile (s) |\n|---:|---:|---:|\n| 64 | 0.5 | 7 |" in text
    assert "| 256 | 12.5 | 40 |" in text
    assert "| 64 | 120 | 200 | 0.6 |" in text  # 240 GFLOP in 2 s against the 200 GFLOP/s sgemm peak
    assert "sgemm-peak" not in text  # the peak is a column, not an "other benchmark"
    assert err == f"wrote {tmp_path / 't.md'}\n"


def test_from_json_draws_a_png(capsys, bench_json, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = run(capsys, "bench", "--from-json", bench_json, "--out-png", tmp_path / "c.png", "-q")
    assert code == 0 and err == "", err
    assert "| 0.25 |" in out
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


def test_script_renders_the_same_markdown(bench_json, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_report.py"), str(bench_json),
                           "--out-md", str(tmp_path / "s.md")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.md").read_text() == bench.render(bench_json)


@pytest.mark.parametrize("content, message", [(None, "No such file"), ("[1, 2", "not a JSON file"),
                                              ('{"benchmarks": []}', "no fastnn kernel, epoch or workload benchmarks")])
def test_from_json_errors_exit_1(capsys, tmp_path, content, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "bench", "--from-json", path)
    assert code == 1 and out == ""
    assert err.startswith("fastnn: error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("extra", [["--suite", "epoch"], ["-k", "relu"], ["--json", "x.json"], ["--", "-x"]])
def test_from_json_runs_nothing_so_run_options_exit_2(capsys, bench_json, extra):
    code, out, err = run(capsys, "bench", "--from-json", bench_json, *extra)
    assert code == 2 and "fastnn bench: error: --from-json" in err


def test_output_directory_missing_fails_before_running(capsys, bench_json, tmp_path):
    code, out, err = run(capsys, "bench", "--out-md", tmp_path / "no" / "t.md")
    assert code == 1 and "--out-md" in err and "does not exist" in err


@needs_pytest_benchmark
def test_missing_bench_dir(capsys, tmp_path, monkeypatch):
    code, out, err = run(capsys, "bench", "--bench-dir", tmp_path / "nope")
    assert code == 1 and out == ""
    assert err.startswith("fastnn: error: --bench-dir ") and "ship with fastnn as fastnn/benchmarks/" in err
    # An installed package that lost its fastnn/benchmarks/: the error says so, and what to do.
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "site-packages" / "fastnn" / "bench.py"))
    code, out, err = run(capsys, "bench")
    assert code == 1 and "inside the fastnn package" in err and "--bench-dir" in err and "reinstall" in err


def test_help_says_what_is_measured(capsys):
    code, out, err = run(capsys, "bench", "--help")
    assert code == 0
    for words in ("kernels", "epoch", "median", "same run", "--from-json", "--threads", "FASTNN_BENCH_THREADS"):
        assert words in out


@needs_pytest_benchmark
@pytest.mark.skipif(not (ROOT / "fastnn" / "benchmarks" / "test_bench_kernels.py").is_file(),
                    reason="no source checkout")
def test_tiny_real_run(capsys, tmp_path):
    """Two cheap benchmarks (one Numba/NumPy pair), a few rounds each, one BLAS thread."""
    out_json, out_md = tmp_path / "b.json", tmp_path / "t.md"
    code, out, err = run(capsys, "bench", "--suite", "kernels", "-k", "relu_backward and bs16 and 128",
                         "--threads", "1", "--json", out_json, "--out-md", out_md,
                         "--bench-dir", ROOT / "fastnn" / "benchmarks",
                         "--", "--benchmark-min-rounds=3", "--benchmark-max-time=0.01")
    assert code == 0, err
    assert "2 passed" in err  # pytest's progress goes to stderr, the markdown to stdout
    data = json.loads(out_json.read_text())
    assert sorted(b["extra_info"]["backend"] for b in data["benchmarks"]) == ["numba", "numpy"]
    assert data["machine_info"]["fastnn_threads"]["env"]["FASTNN_BENCH_THREADS"] == "1"
    assert out == out_md.read_text().rstrip("\n") + "\n"
    [row] = [line for line in out.splitlines() if line.startswith("| relu_backward |")]
    assert row.startswith("| relu_backward | 128 | 16 |") and float(row.split("|")[-2]) > 0


@needs_pytest_benchmark
def test_bench_runs_from_an_installed_copy_outside_the_checkout(tmp_path):
    """The suite ships with the package: a copy of fastnn/ alone on the path (as pip installs it, no checkout,
    no pyproject.toml), run from another directory, times the same two benchmarks."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "fastnn", site / "fastnn", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import sys, fastnn.cli, fastnn.benchmarks; assert fastnn.benchmarks.__file__.startswith(sys.argv[1]); "
            "sys.exit(fastnn.cli.main(sys.argv[2:]))")
    proc = subprocess.run([sys.executable, "-c", code, str(site), "bench", "--suite", "kernels", "-k",
                           "relu_backward and bs16 and 128", "--threads", "1", "--json", "b.json", "-q", "--",
                           "--benchmark-min-rounds=3", "--benchmark-max-time=0.01"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((work / "b.json").read_text())
    assert sorted(b["extra_info"]["backend"] for b in data["benchmarks"]) == ["numba", "numpy"]
    assert all(b["fullname"].startswith("fastnn/benchmarks/test_bench_kernels.py::") for b in data["benchmarks"])
    assert any(line.startswith("| relu_backward | 128 | 16 |") for line in proc.stdout.splitlines())


def workload(kind, workload_name, framework, median, batch, threads=2, order=None, flop=None, **extra):
    """One entry as fastnn/benchmarks/test_bench_workloads.py records it."""
    return {"group": f"workload {workload_name}", "name": f"test_workload[{workload_name}-{framework}]",
            "stats": stats(median), "extra_info": {"kind": kind, "workload": workload_name, "layers": "784-128-64-10",
                                                   "framework": framework, "batch": batch, "order": order,
                                                   "samples": 60000, "threads": threads, "flop": flop, **extra}}


def test_workload_tables_and_chart(tmp_path):
    """Floors come from the sgemm at the row's thread count; ratios divide medians (peer/fastnn, fastnn/floor);
    the fastest peer is named; peers' compile times have their own table; predict rows show p50/p90."""
    floor_flop = 2 * 2048**3  # 0.1718 s at 100 GFLOP/s (2 threads) and 0.3436 s at 50 (1 thread)
    fmnist64 = {"order": "shuffled", "flop": 25e9}  # floor 0.25 s at 2 threads
    benchmarks = [
        {"group": "sgemm floor", "name": "test_sgemm_floor[2]", "stats": stats(floor_flop / 100e9),
         "extra_info": {"kind": "sgemm", "sgemm": 2048, "threads": 2, "flop": floor_flop}},
        {"group": "sgemm floor", "name": "test_sgemm_floor[1]", "stats": stats(floor_flop / 50e9),
         "extra_info": {"kind": "sgemm", "sgemm": 2048, "threads": 1, "flop": floor_flop}},
        workload("epoch", "fmnist", "fastnn", 0.5, 64, **fmnist64),
        workload("epoch", "fmnist", "torch", 2.0, 64, **fmnist64),
        workload("epoch", "fmnist", "numpy", 1.0, 64, **fmnist64),
        workload("epoch", "fmnist", "sklearn", 4.0, 64, **fmnist64),
        workload("epoch", "fmnist", "jax", 0.4, 64, compile_s=0.3, **fmnist64),
        workload("epoch", "fmnist", "jax_step", 0.8, 64, compile_s=0.6, **fmnist64),
        workload("epoch", "fmnist", "torch_compile", 1.5, 64, compile_s=6.0, **fmnist64),
        workload("epoch", "fmnist", "fastnn", 0.5, 16, threads=1, order="in-order", flop=25e9),  # 0.5 s at 1 thread
        workload("predict1", "fmnist", "fastnn", 10e-6, 1, threads=1, flop=2e5, p50_us=10.0, p90_us=12.0),
        workload("predict1", "fmnist", "torch", 40e-6, 1, threads=1, flop=2e5, p50_us=40.0, p90_us=50.0),
        workload("predict1", "fmnist", "jax", 30e-6, 1, threads=2, flop=2e5, p50_us=30.0, p90_us=35.0),
        workload("startup", "startup-cold", "fastnn", 3.0, None),
    ]
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    text = bench.render(path, out_png=tmp_path / "w.png" if importlib.util.find_spec("matplotlib") else None)
    assert "50.0 GFLOP/s at 1 thread, 100.0 GFLOP/s at 2 threads" in text
    lines = text.splitlines()
    assert ("| workload | layers | batch | order | threads | fastnn (s) | NumPy twin (s) | JAX jit+scan (s) | "
            "JAX per-step jit (s) | PyTorch (s) | torch.compile (s) | scikit-learn (s) | floor (s) |") in lines
    times, ratios, compiled = [[c.strip() for c in line.strip("|").split("|")] for line in lines
                               if line.startswith("| fmnist | 784-128-64-10 | 64 |")]
    assert times[5:] == ["0.5 (0.45–0.75)", "1 (0.9–1.5)", "0.4 (0.36–0.6)", "0.8 (0.72–1.2)", "2 (1.8–3)",
                         "1.5 (1.4–2.2)", "4 (3.6–6)", "0.25"]
    # fastnn/floor; NumPy twin, JAX, JAX step, PyTorch, torch.compile, scikit-learn over fastnn; the fastest peer
    assert ratios[4:] == ["2", "2", "0.8", "1.6", "4", "3", "8", "0.8 (JAX jit+scan)"]
    times16, ratios16 = [line for line in lines if line.startswith("| fmnist | 784-128-64-10 | 16 |")]
    assert times16.endswith("| 0.5 |") and "| 1 | – |" in ratios16  # floor at the one-thread rate, fastnn/floor 1
    assert compiled[4:] == ["0.3", "0.6", "6"]  # compile (s): JAX jit+scan, JAX per-step, torch.compile
    assert "Not timed" not in text
    assert "| 784-128-64-10 | 1 | 10 / 12 | 30 / 35 | 40 / 50 | 3 | 4 |" in lines  # JAX, PyTorch p50 over fastnn's
    assert "| startup-cold | 3 (2.7–4.5) | 5 |" in text
    assert "sgemm floor" not in text and "test_workload" not in text  # nothing left over as "other benchmarks"
    assert bench.epoch_rows(bench.load(path)) == []  # workload rows are not mistaken for the epoch suite's
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "w.png").read_bytes()[:8] == PNG_MAGIC

    # Without the peers (not installed): their columns go, one line names them.
    path.write_text(json.dumps({"benchmarks": [b for b in benchmarks if b["extra_info"].get("framework") not in
                                               bench.PEERS]}))
    text = bench.render(path)
    assert "JAX" not in text.split("Not timed")[0] and "torch.compile" not in text.split("Not timed")[0]
    assert "Not timed in this run (not installed, or deselected): JAX jit+scan, JAX per-step jit, torch.compile." \
        in text


def test_workload_floor_is_the_faster_gemm(tmp_path):
    """With fastnn's own GEMM timed beside NumPy's BLAS, each thread count's floor is the faster of the two, and
    both rates are printed."""
    floor_flop = 2 * 2048**3
    fmnist64 = {"order": "shuffled", "flop": 25e9}

    def floor(threads, gemm, rate):
        return {"group": "sgemm floor", "name": f"test_sgemm_floor[{gemm}-{threads}]",
                "stats": stats(floor_flop / rate),
                "extra_info": {"kind": "sgemm", "sgemm": 2048, "threads": threads, "gemm": gemm, "flop": floor_flop}}

    benchmarks = [floor(2, "numpy", 100e9), floor(2, "fastnn", 125e9), floor(1, "numpy", 50e9),
                  floor(1, "fastnn", 40e9), workload("epoch", "fmnist", "fastnn", 0.5, 64, **fmnist64),
                  workload("epoch", "fmnist", "fastnn", 0.5, 16, threads=1, order="in-order", flop=25e9)]
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    text = bench.render(path, out_png=None)
    assert "through NumPy's BLAS, same run: 50.0 GFLOP/s at 1 thread, 100.0 GFLOP/s at 2 threads" in text
    assert "through fastnn's GEMM, same run: 40.0 GFLOP/s at 1 thread, 125.0 GFLOP/s at 2 threads" in text
    assert "floor: the GEMM FLOPs at the faster of the two" in text
    rows = {(r["batch"], r["order"]): r for r in bench.workload_rows(bench.load(path))}
    assert rows[(64, "shuffled")]["floor_s"] == pytest.approx(25e9 / 125e9)  # fastnn's GEMM, faster at 2 threads
    assert rows[(16, "in-order")]["floor_s"] == pytest.approx(25e9 / 50e9)  # NumPy's, faster at 1


def test_threads_table_puts_the_interleaved_choices_side_by_side(tmp_path):
    """The epoch suite's thread-choice rows: each choice's median (min–max) in ms and the default's median over
    the best fixed count's; not listed again among the other benchmarks."""
    def row(batch, neighbour, default, one, two):
        medians = {"default": sorted(default)[1], 1: sorted(one)[1], 2: sorted(two)[1]}
        return {"group": f"threads[bs={batch}, {neighbour} machine]", "name": f"test_epoch_threads[{neighbour}-{batch}]",
                "stats": stats(sum(default + one + two)),
                "extra_info": {"kind": "threads", "framework": "fastnn threads, interleaved", "batch": batch,
                               "neighbour": neighbour, "rounds": 3, "threads_default_s": default, "threads_1_s": one,
                               "threads_2_s": two,
                               "default_over_best": medians["default"] / min(medians[1], medians[2])}}

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"benchmarks": [row(64, "quiet", [0.30, 0.26, 0.28], [0.40, 0.42, 0.41],
                                                   [0.27, 0.25, 0.29]),
                                               row(64, "busy", [0.45, 0.44, 0.50], [0.43, 0.46, 0.44],
                                                   [1.2, 1.9, 1.5])]}))
    text = bench.render(path)
    lines = text.splitlines()
    assert "| batch | machine | default (ms) | 1 (ms) | 2 (ms) | default / best fixed |" in lines
    assert "| 64 | busy | 450 (440–500) | 440 (430–460) | 1500 (1200–1900) | 1.02 |" in lines
    assert "| 64 | quiet | 280 (260–300) | 410 (400–420) | 270 (250–290) | 1.04 |" in lines
    assert "Other benchmarks" not in text and "test_epoch_threads" not in text


def test_interleaved_rounds_rotate_the_order():
    """Each round times every choice once, in each of their orders in turn: the machine's drift over the rounds,
    and what ran just before, fall on every choice alike. One untimed warm-up round first."""
    from fastnn.benchmarks.test_bench_epoch import interleaved  # noqa: PLC0415

    calls, current = [], []
    times = interleaved(("a", "b", "c"), lambda: calls.append(current[-1]), 6, current.append, settle=0)
    rounds = ["".join(calls[i:i + 3]) for i in range(0, len(calls), 3)]
    assert rounds == ["abc", "abc", "acb", "bac", "bca", "cab", "cba"]  # a warm-up round, then every order once
    assert {c: len(t) for c, t in times.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(s >= 0 for t in times.values() for s in t)
