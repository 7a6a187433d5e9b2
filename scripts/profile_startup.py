"""Where the first ``fit`` spends its time: import, each Numba compilation, the training itself.

Runs the start-up benchmark's child (``fastnn/benchmarks/test_bench_startup.py``: import fastnn, build 784-128-64-10,
one ``fit`` of 256 rows) in a fresh interpreter with an empty ``NUMBA_CACHE_DIR`` (``--warm``: a second
interpreter on the cache the first one filled), recording Numba's ``numba:compile`` events. A compilation
that triggers others (a kernel calling kernels) contains their time: ``self`` subtracts the nested ones.

Usage::

    python scripts/profile_startup.py               # cold: top compilations by self time
    python scripts/profile_startup.py --warm        # the same child on a filled cache
    python scripts/profile_startup.py --optimizer sgd --top 40
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from numba.core import event
    events, stack = [], []

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev):
            start, nested = stack.pop()
            total = time.perf_counter() - start
            if stack:
                stack[-1][1] += total
            d = ev.data["dispatcher"]
            events.append({"name": d.py_func.__module__ + "." + d.py_func.__qualname__,
                           "sig": str(ev.data["args"]), "total": total, "self": total - nested})

    event.register("numba:compile", Listener())
    t_numba = time.perf_counter()
    import numpy as np
    import fastnn as fn
    t_import = time.perf_counter()
    rng = np.random.default_rng(0)
    X, y = rng.random((256, 784), dtype=np.float32), rng.integers(0, 10, 256)
    m = fn.Sequential(fn.Linear(784, 128, seed=0), fn.ReLU(), fn.Linear(128, 64, seed=1), fn.ReLU(),
                      fn.Linear(64, 10, seed=2))
    opt = fn.Adam(m.parameters()) if OPTIMIZER == "adam" else fn.SGD(m.parameters(), lr=0.1)
    t_fit = time.perf_counter()
    h = m.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=opt, batch_size=64, verbose=0)
    t_end = time.perf_counter()
    m.predict(X[:1])
    t_predict = time.perf_counter()
    print(json.dumps({"numba_import": t_numba - t0, "import": t_import - t_numba, "fit": t_end - t_fit,
                      "first_predict": t_predict - t_end, "total": t_end - t0, "fast_path": h.fast_path,
                      "events": events}))
""")


def run_child(cache_dir, optimizer):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    code = f"OPTIMIZER = {optimizer!r}\n" + CHILD
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    # CPU seconds of the child: on a machine shared with other jobs far steadier than its wall time,
    # and for a single-threaded compile what the wall time would be on an idle machine.
    record["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="profile a second process on the filled cache")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", help="write the child's record here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        if args.warm:
            run_child(cache, args.optimizer)
        r = run_child(cache, args.optimizer)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    events = r["events"]
    print(f"{'warm' if args.warm else 'cold'} first fit ({args.optimizer}): {r['cpu']:.2f} s of CPU; wall: "
          f"total {r['total']:.2f} s = import numba "
          f"{r['numba_import']:.2f} + import fastnn {r['import']:.2f} + fit {r['fit']:.2f} s; "
          f"then the first predict {r['first_predict']:.2f} s")
    print(f"{len(events)} compilations, {sum(e['self'] for e in events):.2f} s of compile time in all")
    by_name = {}
    for e in events:
        agg = by_name.setdefault(e["name"], {"n": 0, "self": 0.0, "total": 0.0})
        agg["n"] += 1
        agg["self"] += e["self"]
        agg["total"] += e["total"]
    print(f"\n{'function':<58} {'specs':>5} {'self s':>7} {'incl. s':>8}")
    for name, agg in sorted(by_name.items(), key=lambda kv: -kv[1]["self"])[:args.top]:
        print(f"{name:<58} {agg['n']:>5} {agg['self']:>7.3f} {agg['total']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
