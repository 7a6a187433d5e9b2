"""Builds the ahead-of-time kernels (``fastnn.kernels._aot``) at install time; the rest is in pyproject.toml.

The build compiles the Numba kernels for this machine's CPU (``fastnn/kernels/_aot_build.py``). If it cannot
(no C compiler, ``FASTNN_AOT=0``, any error), the install goes on without it, says so, and fastnn uses
Numba's JIT instead, as it says on its first use.
"""
import os
import sys
import time

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _warn(message):
    print(f"fastnn: {message}; fastnn will compile its kernels with Numba's JIT on first use instead",
          file=sys.stderr, flush=True)


def _first_line(exc):
    return (str(exc).strip().splitlines() or [""])[0]


def _extensions():
    sys.path.insert(0, HERE)
    os.environ["FASTNN_CACHE"] = "0"  # compiled into the module: nothing for Numba's cache in the source tree
    from fastnn._config import env_flag  # noqa: PLC0415  (Numba-free)

    if not env_flag("FASTNN_AOT", True):
        _warn("FASTNN_AOT=0: the ahead-of-time kernels are not built")
        return [], None
    try:
        from fastnn.kernels._aot_build import extension  # noqa: PLC0415

        ext = extension()  # patches setuptools' build_ext to make pycc's object file first
    except Exception as exc:  # noqa: BLE001 - any failure: install without the build
        _warn(f"the ahead-of-time kernels cannot be built ({type(exc).__name__}: {_first_line(exc)})")
        return [], None
    from setuptools.command import build_ext  # noqa: PLC0415  (pycc's patched class)

    class BuildOptional(build_ext.build_ext):
        def build_extensions(self):
            self.check_extensions_list(self.extensions)
            for ext in list(self.extensions):
                self.build_extension(ext)

        def build_extension(self, ext):
            start = time.perf_counter()
            print("fastnn: compiling the ahead-of-time kernels for this CPU (about 20 s)...", file=sys.stderr,
                  flush=True)
            try:
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001 - a missing compiler raises CompileError, others differ
                _warn(f"building the ahead-of-time kernels failed ({type(exc).__name__}: {_first_line(exc)})")
                self.extensions.remove(ext)  # nothing to install or copy
                return
            print(f"fastnn: ahead-of-time kernels built in {time.perf_counter() - start:.0f} s", file=sys.stderr,
                  flush=True)

    return [ext], BuildOptional


extensions, build_class = _extensions()
setup(ext_modules=extensions, cmdclass={"build_ext": build_class} if build_class else {})
