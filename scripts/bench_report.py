"""Summarise a pytest-benchmark JSON of fastnn's benchmarks as markdown tables and a PNG chart.

Usage::

    python -m pytest fastnn/benchmarks --benchmark-enable --benchmark-json=bench.json
    python scripts/bench_report.py bench.json --out-md table.md --out-png chart.png

The same as ``fastnn bench --from-json bench.json ...`` (which can also run the benchmarks first). The tables and
the chart are made by :mod:`fastnn.bench`; ``kernel_pairs`` and ``load`` are importable from here too, for
``check_kernel_ratios.py``.
"""
import sys

from fastnn.bench import kernel_pairs, load, main

__all__ = ["kernel_pairs", "load", "main"]

if __name__ == "__main__":
    sys.exit(main())
