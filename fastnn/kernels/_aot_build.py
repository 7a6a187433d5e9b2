"""Building :mod:`fastnn.kernels.aot`'s extension module with ``numba.pycc`` (run by ``setup.py``; needs Numba
and a C compiler, which ``pip`` provides in the build environment).

Each export is a two-line function that calls the ``@njit`` kernel, so the kernels compile with their own
options (``fastnn._config.jit``: fastmath flags, ``error_model="numpy"``) exactly as under the JIT. Code is
generated for this machine's CPU name *and* its feature list, as the JIT does: pycc would otherwise take the
features the CPU name implies, which a virtual machine may not have. Both this and releasing the GIL in the
exports (pycc's default holds it) are set through pycc's internals, here and only for the build.
"""
import inspect
import json
import os

__all__ = ["extension"]


def _exporter(fn, returns):
    """A function of ``fn``'s parameters that calls it (and returns its result when ``returns``)."""
    params = ", ".join(inspect.signature(fn.py_func).parameters)
    scope = {"fn": fn}
    exec(f"def export({params}):\n    {'return ' if returns else ''}fn({params})\n", scope)  # noqa: S102
    return scope["export"]


def _cc():
    import numba  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from numba.core import codegen  # noqa: PLC0415
    from numba.pycc import CC  # noqa: PLC0415
    from numba.pycc import compiler  # noqa: PLC0415

    from fastnn.kernels import aot, numba_cpu, step_numba  # noqa: PLC0415

    # pycc's AOT codegen passes no CPU features (the CPU name's defaults); the JIT passes the host's.
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: codegen.get_host_cpu_features()
    # The exports release the GIL while they run, as the JIT's kernels do (nogil=True): threads train in parallel.
    plain_flags = compiler.Flags

    def nogil_flags():
        flags = plain_flags()
        flags.release_gil = True
        return flags

    compiler.Flags = nogil_flags
    cc = CC("_aot", source_module="fastnn.kernels.aot")
    cc.target_cpu = "host"
    cc.output_dir = os.path.dirname(aot.__file__)
    for name in aot.EXPORTS:
        fn = getattr(step_numba if name == "train_batches" else numba_cpu, name)
        for code in aot.DTYPES:
            for export, sig in aot.signatures(name, code):
                cc.export(export, sig)(_exporter(fn, sig.split("(", 1)[0] != "void"))
    info = json.dumps({"sources": aot.source_hash(), "cpu_flags": aot.cpu_flags() or [], "numba": numba.__version__,
                       "cpu": codegen.JITCPUCodegen._get_host_cpu_name(None)}).encode()
    blob = np.frombuffer(info, np.uint8).copy()

    def build_info(out):
        """Writes the build's JSON description into ``out`` (as much as fits); returns its whole length."""
        for i in range(min(blob.shape[0], out.shape[0])):
            out[i] = blob[i]
        return blob.shape[0]

    cc.export("build_info", "i8(u1[::1])")(build_info)
    return cc


def extension():
    """The setuptools ``Extension`` of ``fastnn.kernels._aot``, with :mod:`_aot_blas.c`; ``ext._cc`` is the
    pycc compiler whose object file it links (``setup.py``'s ``build_ext`` makes it)."""
    cc = _cc()
    ext = cc.distutils_extension()
    ext.sources += ["fastnn/kernels/_aot_blas.c", "fastnn/kernels/_aot_gemm.c"]  # relative to setup.py
    ext.depends += ["fastnn/kernels/_aot_gemm_kernel.h"]  # included by _aot_gemm.c, once per instruction set
    return ext
