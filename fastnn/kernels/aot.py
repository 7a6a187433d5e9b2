"""The kernels built ahead of time: which ones, and loading them without Numba.

``pip install`` compiles the functions of :data:`EXPORTS` from the very ``@njit`` sources of :mod:`numba_cpu`
and :mod:`step_numba` into the extension module ``fastnn.kernels._aot`` (``numba.pycc``, for the installing
machine's CPU; :mod:`fastnn.kernels._aot_build`, run by ``setup.py``). Importing it needs neither Numba nor a
compiler, so ``fit``, ``predict`` and ``evaluate`` start at once. Each export has one signature per model dtype,
whatever the network (:mod:`layout`).

:func:`load` returns the module only when it can be trusted; otherwise None and the reason, and the caller
(:mod:`fastnn.kernels`) uses Numba's JIT, as without a build:

* ``FASTNN_AOT=0``, ``FASTNN_BLAS=numba`` (the build calls NumPy's OpenBLAS only) or ``FASTNN_FASTMATH=0``
  (it is built with the fastmath flags);
* no module (no C compiler at install, or the build failed: ``pip`` printed why);
* the kernel sources differ from those it was built from (an editable install after a ``git pull``): a
  SHA-256 of :data:`SOURCES` is recorded in the module at build time and compared here;
* this CPU lacks an instruction-set extension the build machine had (a copied environment);
* NumPy's OpenBLAS has no ILP64 CBLAS ``?gemm`` to hand the module.

Exports check no types: a wrong dtype or layout would read memory as something else. :func:`kernel` wraps
each in a check of every array argument against its declared signature; a call that does not match runs on
the JIT instead (``fallback``), which compiles what it is given.
"""
import ctypes
import hashlib
import importlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from fastnn.kernels._cblas import numpy_cblas

__all__ = ["EXPORTS", "SOURCES", "DTYPES", "source_hash", "cpu_flags", "signature", "arguments", "load", "reason", "kernel"]

# name: (signature, index of the argument returned or None). ``{T}`` is the model's dtype: each is built
# for float32 and float64. Array arguments are C-contiguous (``[:, ::1]``), as the callers make them.
EXPORTS = {
    "train_batches": ("i8({T}[:,::1], u1[:,::1], i8, i8[::1], f8[:,::1], f8[::1], i8[::1], i8, i8, i8, i8[::1], "
                      "i8[::1], f8[::1], f8[::1], u8[::1], i8[:,::1], {T}[::1], i8[:,::1], i8, i8, f8[:,::1], f8[::1], "
                      "i8[::1], f8[::1], f8[::1], i8[::1])", None),
    "mlp_forward": ("void({T}[:,::1], i8[::1], i8[::1], f8[::1], i8[:,::1], {T}[:,::1], {T}[:,::1])", 6),
    "softmax_xent_labels": ("f8({T}[:,::1], i8[::1], f8[::1], {T}[:,::1], {T}[:,::1])", None),
    "softmax_xent_dense": ("f8({T}[:,::1], {T}[:,::1], f8[::1], {T}[:,::1], {T}[:,::1])", None),
    "nll_labels": ("f8({T}[:,::1], i8[::1], f8, f8[::1], {T}[:,::1])", None),
    "nll_dense": ("f8({T}[:,::1], {T}[:,::1], f8, f8[::1], {T}[:,::1])", None),
    "mse": ("f8({T}[:,::1], {T}[:,::1], f8[::1], {T}[:,::1])", None),
    "bce_logits": ("f8({T}[:,::1], {T}[:,::1], f8[::1], {T}[:,::1])", None),
    "bce": ("f8({T}[:,::1], {T}[:,::1], f8[::1], {T}[:,::1])", None),
    "linear_forward": ("void({T}[:,::1], {T}[:,::1], {T}[::1], i8, f8, {T}[:,::1])", 5),
    "softmax_forward": ("void({T}[:,::1], {T}[:,::1])", 1),
    "sigmoid_forward": ("void({T}[:,::1], {T}[:,::1])", 1),
}
DTYPES = {"f4": np.dtype(np.float32), "f8": np.dtype(np.float64)}
_CODES = {"f4": np.float32, "f8": np.float64, "u1": np.uint8, "u8": np.uint64, "i8": np.int64}

_HERE = Path(__file__).resolve().parent
# What the compiled code is made of: a change to any of these makes a built module stale.
SOURCES = ("codes.py", "numba_cpu.py", "step_numba.py", "_blas.py", "_cblas.py", "aot.py", "_aot_build.py", "_aot_blas.c",
           "../_config.py")
# Instruction-set extensions whose absence on this CPU makes a module built where they were present unusable.
CPU_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "avx512f", "avx512dq", "avx512cd",
             "avx512bw", "avx512vl", "avx512vnni", "avx512_bf16", "amx_tile")


def source_hash():
    """SHA-256 (hex) of the kernel sources :data:`SOURCES`, as installed."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (_HERE / name).read_bytes() + b"\0")
    return h.hexdigest()


def cpu_flags():
    """The :data:`CPU_FLAGS` this CPU has (Linux: ``/proc/cpuinfo``), or None where that is not known."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return sorted(flag for flag in CPU_FLAGS if flag in have)
    except OSError:
        pass
    return None


def signature(name, dtype_code):
    """Export ``name``'s Numba signature string for the model dtype ``"f4"`` or ``"f8"``."""
    return EXPORTS[name][0].replace("{T}", dtype_code)


def arguments(sig):
    """The argument types of a signature string, e.g. ``["f4[:,::1]", "i8"]``."""
    return re.split(r",\s*(?![^\[]*\])", sig[sig.index("(") + 1:-1])


def _array_checks(sig):
    """``[(position, dtype, ndim)]`` of the array arguments of a signature string."""
    checks = []
    for i, arg in enumerate(arguments(sig)):
        if "[" in arg:
            code, dims = arg.split("[")
            checks.append((i, np.dtype(_CODES[code]), dims.count(",") + 1))
    return checks


_state = {}
_said = set()


def _say(key, text):
    """One line on stderr per ``key`` and process."""
    if key not in _said:
        _said.add(key)
        print(f"fastnn: {text}", file=sys.stderr, flush=True)


def _env_off():
    value = os.environ.get("FASTNN_AOT", "").strip().lower()
    if value in {"0", "false", "no", "off"}:
        return "FASTNN_AOT=0"
    if os.environ.get("FASTNN_BLAS", "").strip().lower() == "numba":
        return "FASTNN_BLAS=numba (the ahead-of-time kernels call NumPy's OpenBLAS)"
    if os.environ.get("FASTNN_FASTMATH", "").strip().lower() in {"0", "false", "no", "off"}:
        return "FASTNN_FASTMATH=0 (the ahead-of-time kernels are built with fastnn's fastmath flags)"
    return None


def _open():
    """``(module, None)`` or ``(None, reason)``."""
    reason = _env_off()
    if reason:
        return None, reason
    try:
        module = importlib.import_module("fastnn.kernels._aot")
    except ImportError as exc:
        return None, f"no ahead-of-time build in this installation ({exc}; reinstall with a C compiler to build it)"
    try:
        buffer = np.zeros(4096, np.uint8)
        info = json.loads(bytes(buffer[:module.build_info(buffer)]).decode())
        built_from, built_for = info["sources"], list(info["cpu_flags"])
    except (AttributeError, ValueError, KeyError, TypeError) as exc:  # not a module this fastnn built
        return None, f"the ahead-of-time build does not describe itself ({type(exc).__name__}: {exc})"
    if built_from != source_hash():
        return None, ("the ahead-of-time build is stale: the kernel sources changed since it was built "
                      "(reinstall, e.g. `pip install -e .`, to rebuild it)")
    have = cpu_flags()
    missing = sorted(set(built_for) - set(have)) if have is not None else []
    if missing:
        return None, f"the ahead-of-time build is for another CPU (this one lacks {', '.join(missing)})"
    found = numpy_cblas()
    if found is None:
        return None, "NumPy's BLAS has no ILP64 CBLAS ?gemm for the ahead-of-time kernels"
    ctypes.CDLL(module.__file__).fastnn_aot_set_gemm(ctypes.c_void_p(found[0]), ctypes.c_void_p(found[1]))
    return module, None


def load():
    """The ahead-of-time module, or None (the reason said once on stderr)."""
    if "module" not in _state:
        module, reason = _open()
        _state["module"], _state["reason"] = module, reason
        if reason:
            _say("reason", f"using Numba's JIT for the kernels: {reason}")
    return _state["module"]


def reason():
    """Why the ahead-of-time kernels are not used (None when they are)."""
    load()
    return _state["reason"]


def kernel(module, name, fallback):
    """A function with the signature of kernel ``name`` that calls the module's export for the arguments'
    dtype after checking every array argument against it; a call that does not match (another dtype, a
    strided view) goes to ``fallback()``'s function (the JIT's), with one line on stderr the first time."""
    out_arg = EXPORTS[name][1]
    exports = {}
    for code, dtype in DTYPES.items():
        exports[dtype] = (getattr(module, f"{name}_{code}"), _array_checks(signature(name, code)))

    def call(*args):
        first = args[0]
        found = exports.get(first.dtype) if isinstance(first, np.ndarray) else None
        if found is not None:
            export, checks = found
            for i, dtype, ndim in checks:
                a = args[i]
                if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == ndim and a.flags.c_contiguous):
                    break
            else:
                call.last = "aot"
                result = export(*args)
                return args[out_arg] if out_arg is not None else result
            why = f"argument {i} is {type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}"
        else:
            why = f"argument 0 is {type(first).__name__} {getattr(first, 'dtype', '')}"
        _say(("call", name), f"{name}: no ahead-of-time build for this call ({why}); using Numba's JIT")
        call.last = "jit"
        return fallback()(*args)

    call.last = None  # which code ran the last call: "aot" or "jit"
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"The ahead-of-time ``{name}`` (see :mod:`fastnn.kernels.aot`)."
    return call
