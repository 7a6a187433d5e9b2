import os

import numpy as np
import pytest
from hypothesis import settings

import fastnn
from fastnn.cli import main

# CI replays a fixed set of examples, so a run is reproducible; locally every run explores new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

BACKENDS = ["numba", "numpy"]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run a test once per kernel backend, restoring the default afterwards."""
    with fastnn.backend(request.param):
        yield request.param


def tol(dtype):
    """Comparison tolerance for results computed in ``dtype`` by different code paths."""
    return dict(rtol=2e-5, atol=2e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-12)


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr), catching argparse's SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
