"""Model files: one ``.npz`` holding every parameter plus the architecture as JSON, never a pickle.

Members: one per parameter (``"0.W"``, ``"0.b"``, ...) and ``__fastnn__``, a uint8 array of UTF-8 JSON
``{"format": "fastnn-model", "version": 1, "architecture": [{"class": ..., "config": {...}}, ...]}``.
"""
import contextlib
import json
import os

import numpy as np

__all__ = ["write_model", "read_model"]

MARKER, FORMAT, VERSION = "__fastnn__", "fastnn-model", 1
_NUMERIC = "iuf"  # what fastnn computes with; object and structured dtypes are how pickles get in
_RESERVED = {MARKER, "file", "allow_pickle"}  # the marker, and np.savez's own keyword names


def _architecture_problem(architecture):
    """Return what is wrong with ``architecture`` (a list of ``{"class", "config"}`` dicts), or ``None``."""
    if not isinstance(architecture, list):
        return f"architecture must be a list, got {type(architecture).__name__}"
    for i, c in enumerate(architecture):
        if not (isinstance(c, dict) and set(c) == {"class", "config"} and isinstance(c["class"], str)
                and isinstance(c["config"], dict) and all(isinstance(k, str) for k in c["config"])):
            return f"architecture entry {i} is not a {{'class': str, 'config': dict}} mapping: {c!r:.80}"
    return None


def write_model(path, architecture, arrays):
    """Write ``arrays`` and ``architecture`` to ``path`` atomically: a crash leaves any old file intact.

    Parameters
    ----------
    path : str or os.PathLike
        Used exactly as given: no ``.npz`` suffix is appended. Its directory must exist.
    architecture : list of dict
        ``[{"class": "Linear", "config": {...}}, ...]`` as from ``Sequential.get_config()``; JSON-serialisable.
    arrays : dict of str to ndarray
        Int or float arrays, e.g. ``{"0.W": W, "0.b": b}``; anything else raises ``TypeError``.
    """
    path = os.fspath(path)
    problem = _architecture_problem(architecture)
    if problem:
        raise TypeError(problem)
    for name, a in arrays.items():
        if not isinstance(name, str) or not name or name in _RESERVED:
            raise TypeError(f"array name {name!r} is not a usable string (reserved: {sorted(_RESERVED)})")
        if not isinstance(a, np.ndarray) or a.dtype.kind not in _NUMERIC:
            raise TypeError(f"array {name!r} must be an int or float ndarray, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
    try:
        meta = json.dumps({"format": FORMAT, "version": VERSION, "architecture": architecture}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"architecture is not JSON-serialisable: {exc}") from exc
    folder, base = os.path.split(path)
    folder = folder or os.curdir
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: directory {folder!r} does not exist")
    # Same directory, so os.replace is an atomic rename within one filesystem. os.open with 0o666 (not
    # mkstemp's 0o600) lets the umask set the final file's mode, as a plain open() would.
    tmp = os.path.join(folder, f".{base}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:  # a file object, so np.savez appends no ".npz"
            np.savez(f, allow_pickle=False, **arrays, **{MARKER: np.frombuffer(meta.encode(), np.uint8)})
            f.flush()
            os.fsync(f.fileno())  # the bytes must be on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave a stray temp file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_model(path):
    """Read a file written by :func:`write_model`; nothing in it is unpickled or executed.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    architecture : list of dict
    arrays : dict of str to ndarray
        Fresh, writable arrays that do not refer to the file, which is closed on return.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist; other errors from opening it pass through too.
    ValueError
        For any other file, naming it and the fault: truncated, foreign, malicious, or a newer format.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:  # opening errors stay OSErrors; everything after is about the content
        try:
            return _parse(f)
        except Exception as exc:  # also BadZipFile, zlib.error, EOFError, MemoryError from a corrupt file
            detail = exc if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            raise ValueError(f"{path}: not a valid fastnn model file: {detail}") from None


def _parse(f):
    # Only zip archives reach np.load, so it never takes its .npy or pickle branches.
    if f.read(4) != b"PK\x03\x04":
        raise ValueError("not an .npz (zip) archive")
    f.seek(0)
    with np.load(f, allow_pickle=False) as data:
        if MARKER not in data.files:
            raise ValueError(f"no {MARKER!r} member, so not written by fastnn")
        # allow_pickle=False: an object member raises ValueError before its pickle is read.
        arrays = {name: data[name] for name in data.files}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):  # np.load hands back non-.npy members as raw bytes
            raise ValueError(f"member {name!r} is not a .npy array")
    raw = arrays.pop(MARKER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{MARKER!r} member has dtype {raw.dtype} and {raw.ndim} dims, expected 1-d uint8")
    meta = json.loads(raw.tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"format marker is not {FORMAT!r}")
    version = meta.get("version")
    if type(version) is not int or version != VERSION:  # type(): True == 1 must not pass
        raise ValueError(f"format version {version!r} is not supported (this fastnn reads version {VERSION})")
    problem = _architecture_problem(meta.get("architecture"))
    if problem:
        raise ValueError(problem)
    for name, a in arrays.items():
        if a.dtype.kind not in _NUMERIC:
            raise ValueError(f"array {name!r} has non-numeric dtype {a.dtype}")
    return meta["architecture"], arrays
