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

from fastnn import _config
from fastnn.kernels._cblas import numpy_cblas

__all__ = ["EXPORTS", "SOURCES", "DTYPES", "source_hash", "cpu_flags", "signatures", "arguments", "load", "reason",
           "gemm", "kernel"]

# name: (signature or signatures, index of the argument returned or None). ``{T}`` is the model's dtype: each
# is built for float32 and float64. Array arguments are C-contiguous (``[:, ::1]``), as the callers make them;
# ``none`` is an argument passed as None. The first array argument of type ``{T}`` decides the dtype.
_M, _V = "{T}[:,::1]", "{T}[::1]"
EXPORTS = {
    # fit, predict, evaluate and the estimators' forward pass
    "train_batches": (f"i8({_M}, u1[:,::1], i8, i8[::1], f8[:,::1], f8[::1], i8[::1], i8, i8, i8, i8[::1], i8[::1], "
                      f"f8[::1], f8[::1], u8[::1], i8[:,::1], {_V}, i8[:,::1], i8, i8, f8[:,::1], f8[::1], i8[::1], "
                      "f8[::1], f8[::1], i8[::1])", None),
    "mlp_forward": (f"b1({_M}, i8[::1], i8[::1], f8[::1], i8[:,::1], {_M}, {_M})", None),
    "softmax_xent_labels": (f"f8({_M}, i8[::1], f8[::1], {_M}, {_M})", None),
    "softmax_xent_dense": (f"f8({_M}, {_M}, f8[::1], {_M}, {_M})", None),
    "nll_labels": (f"f8({_M}, i8[::1], f8, f8[::1], {_M})", None),
    "nll_dense": (f"f8({_M}, {_M}, f8, f8[::1], {_M})", None),
    "mse": (f"f8({_M}, {_M}, f8[::1], {_M})", None),
    "bce_logits": (f"f8({_M}, {_M}, f8[::1], {_M})", None),
    "bce": (f"f8({_M}, {_M}, f8[::1], {_M})", None),
    "poisson": (f"f8({_M}, {_M}, f8[::1], {_M})", None),
    "linear_forward": (f"void({_M}, {_M}, {_V}, i8, f8, {_M})", 5),
    "softmax_forward": (f"void({_M}, {_M})", 1),
    "sigmoid_forward": (f"void({_M}, {_M})", 1),
    # the layer-by-layer path, lbfgs and hand-written loops: the layers', losses' and optimizers' own kernels
    "matmul": (f"void({_M}, {_M}, {_M})", 2),
    "linear_backward": ((f"void({_M}, {_M}, {_M}, {_M}, {_V}, {_M})", f"void({_M}, {_M}, {_M}, {_M}, {_V}, none)"),
                        None),
    "activation_forward": (f"void(i8, f8, {_M}, {_M})", 3),
    "act_backward": (f"void(i8, f8, {_M}, {_M}, {_M})", None),
    "relu_forward": (f"void({_M}, {_M})", 1),
    "relu_backward": (f"void({_M}, {_M}, {_M})", 2),
    "sigmoid_backward": (f"void({_M}, {_M}, {_M})", 2),
    "tanh_forward": (f"void({_M}, {_M})", 1),
    "tanh_backward": (f"void({_M}, {_M}, {_M})", 2),
    "softmax_backward": (f"void({_M}, {_M}, {_M})", 2),
    "dropout": (f"void({_M}, f8, u8, i8, {_M})", 4),
    "sgd_update": (f"void({_V}, {_V}, {_V}, f8, f8, f8, b1, b1)", None),
    "adam_update": (f"void({_V}, {_V}, {_V}, {_V}, i8, f8, f8, f8, f8, f8, b1, b1)", None),
}
DTYPES = {"f4": np.dtype(np.float32), "f8": np.dtype(np.float64)}
_CODES = {"f4": np.float32, "f8": np.float64, "u1": np.uint8, "u8": np.uint64, "i8": np.int64}


def _templates(name):
    """Kernel ``name``'s signature templates (``{T}`` for the model dtype), one or several."""
    found = EXPORTS[name][0]
    return (found,) if isinstance(found, str) else found


def signatures(name, dtype_code):
    """``[(export name, Numba signature string)]`` of kernel ``name`` for the model dtype ``"f4"`` or ``"f8"``."""
    return [(f"{name}_{dtype_code}" + (f"_{i}" if i else ""), sig.replace("{T}", dtype_code))
            for i, sig in enumerate(_templates(name))]


_HERE = Path(__file__).resolve().parent
# What the compiled code is made of: a change to any of these makes a built module stale.
SOURCES = ("codes.py", "numba_cpu.py", "numba_losses.py", "numba_optim.py", "step_numba.py", "_blas.py", "_cblas.py",
           "aot.py", "_aot_build.py", "_aot_blas.c", "_aot_gemm.c", "_aot_gemm_kernel.h", "../_config.py")
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


def arguments(sig):
    """The argument types of a signature string, e.g. ``["f4[:,::1]", "i8"]``."""
    return re.split(r",\s*(?![^\[]*\])", sig[sig.index("(") + 1:-1])


def _array_checks(sig):
    """``[(position, dtype, ndim)]`` of the array arguments of a signature string; ndim 0 and dtype None for an
    argument that must be None."""
    checks = []
    for i, arg in enumerate(arguments(sig)):
        if "[" in arg:
            code, dims = arg.split("[")
            checks.append((i, np.dtype(_CODES[code]), dims.count(",") + 1))
        elif arg == "none":
            checks.append((i, None, 0))
    return checks


def _dtype_argument(name):
    """The position of the first argument of the model's dtype, which picks the export."""
    return next(i for i, arg in enumerate(arguments(_templates(name)[0])) if arg.startswith("{T}["))


_state = {}
_said = set()


def _say(key, text):
    """One line on stderr per ``key`` and process."""
    if key not in _said:
        _said.add(key)
        print(f"fastnn: {text}", file=sys.stderr, flush=True)


def _env_off():
    """Why the environment rules the prebuilt kernels out, or None."""
    if not _config.env_flag("FASTNN_AOT", True):
        return "FASTNN_AOT=0"
    if _config.BLAS == "numba":
        return "FASTNN_BLAS=numba (the ahead-of-time kernels call NumPy's OpenBLAS)"
    if not _config.FAST_FLAGS:
        return "FASTNN_FASTMATH=0 (the ahead-of-time kernels are built with fastnn's fastmath flags)"
    return None


# FASTNN_GEMM -> which of fastnn's GEMMs to take (_aot_blas.c's fastnn_aot_set_gemm: 3 AVX-512 where the CPU has it,
# 2 AVX2, 0 none), and the one taken -> its name
_GEMM_LEVELS = {"auto": 3, "avx2": 2, "blas": 0}
_GEMM_NAMES = {3: "fastnn-avx512", 2: "fastnn-avx2"}


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
        length = module.build_info(buffer)
        if length > buffer.size:
            raise ValueError(f"a description of {length} bytes")
        info = json.loads(bytes(buffer[:length]).decode())
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
    level = ctypes.CDLL(module.__file__).fastnn_aot_set_gemm(*(ctypes.c_void_p(f) for f in found),
                                                             ctypes.c_int(_GEMM_LEVELS[_config.GEMM]))
    _state["gemm"] = _GEMM_NAMES.get(level, "openblas")
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


def gemm():
    """Who multiplies the ahead-of-time kernels' float32 matrices: ``"fastnn-avx512"`` or ``"fastnn-avx2"``
    (fastnn's own GEMM, ``_aot_gemm.c``, with that instruction set) or ``"openblas"`` (NumPy's); None when those
    kernels are not used."""
    return _state.get("gemm") if load() is not None else None


_ndarray = np.ndarray


def _mismatch(name, args):
    """What about ``args`` fits none of kernel ``name``'s exports, for the one line said on stderr."""
    pick = _dtype_argument(name)
    first = args[pick]
    if getattr(first, "dtype", None) not in DTYPES.values():
        return f"argument {pick} is {type(first).__name__} {getattr(first, 'dtype', '')}"
    for i, a in enumerate(args):
        if isinstance(a, _ndarray) and not a.flags.c_contiguous:
            return f"argument {i} is a strided {a.dtype} view of shape {a.shape}"
    return "its argument types: " + ", ".join(getattr(a, "dtype", type(a)).__str__() for a in args)


def kernel(module, name, fallback):
    """A function with the signature of kernel ``name`` that calls the module's export for the arguments'
    dtype after checking every array argument against it; a call that does not match (another dtype, a
    strided view) goes to ``fallback()``'s function (the JIT's), with one line on stderr the first time."""
    out_arg, pick = EXPORTS[name][1], _dtype_argument(name)
    exports = {dtype: [(getattr(module, export), _array_checks(sig)) for export, sig in signatures(name, code)]
               for code, dtype in DTYPES.items()}

    def call(*args):
        first = args[pick]
        for export, checks in exports.get(getattr(first, "dtype", None), ()):
            for i, dtype, ndim in checks:  # the cheapest tests first: this runs at every call
                a = args[i]
                if dtype is None:
                    if a is not None:
                        break
                elif not (a.__class__ is _ndarray or isinstance(a, _ndarray)) or a.dtype != dtype or a.ndim != ndim \
                        or not a.flags.c_contiguous:
                    break
            else:
                call.last = "aot"
                result = export(*args)
                return args[out_arg] if out_arg is not None else result
        _say(("call", name), f"{name}: no ahead-of-time build for this call ({_mismatch(name, args)}); using "
             "Numba's JIT")
        call.last = "jit"
        return fallback()(*args)

    call.last = None  # which code ran the last call: "aot" or "jit"
    # For a caller that has checked its arrays against the kernel's one signature per dtype (the single-row
    # predict path): the export itself, without the checks above (their cost: docs/performance.md).
    call.unchecked = {dtype: found[0][0] for dtype, found in exports.items() if len(found) == 1}
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"The ahead-of-time ``{name}`` (see :mod:`fastnn.kernels.aot`)."
    return call
