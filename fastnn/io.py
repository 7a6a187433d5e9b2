"""Files: model files (one ``.npz`` holding every parameter plus the architecture as JSON, never a pickle), the
one atomic writer every file fastnn writes goes through (:func:`atomic_write`), and the readers of a user's data
(:func:`read_arrays` for a ``.npz`` of ``X`` and ``y``, :func:`read_frame` for a ``.csv``/``.parquet`` table).

Members: one per parameter (``"0.W"``, ``"0.b"``, ...) and ``__fastnn__``, a uint8 array of UTF-8 JSON
``{"format": "fastnn-model", "version": 1, "architecture": [{"class": ..., "config": {...}}, ...]}``. A model with
preprocessing (:mod:`fastnn.preprocessing`) is version 2: the same plus ``"preprocessing": {"features": ...,
"target": ...}``, so that a fastnn which cannot apply it refuses the file rather than predicting from raw columns.

Reading is defensive: a model file may come from anyone. Nothing is unpickled; every member's ``.npy`` header and
the size the zip directory declares for it are checked (and, through ``check``, the shapes the architecture implies)
before any array data is decompressed or allocated, and decompression stops at the declared size.
"""
import contextlib
import json
import math
import os
import stat
import struct
import zipfile

import numpy as np

from fastnn import tables

__all__ = ["write_model", "read_model", "atomic_write", "open_regular", "remove_stale_temp_files", "physical_memory",
           "read_arrays", "read_frame"]

MARKER, FORMAT, VERSION = "__fastnn__", "fastnn-model", 1
VERSION_PREPROCESSING = 2  # the version of a file with a "preprocessing" entry
_NUMERIC = "iuf"  # what fastnn computes with; object and structured dtypes are how pickles get in
_RESERVED = {MARKER, "file", "allow_pickle"}  # the marker, and np.savez's own keyword names
_MAX_MARKER_BYTES = 1 << 20  # the architecture JSON of any real network is a few KiB
_MAX_HEADER_BYTES = 10_000  # numpy's own limit for a .npy header
# Deflate expands at most 1032-fold (258-byte matches coded in 2 bits): a member declaring more than that is a lie.
_DEFLATE_MAX_RATIO = 1032
_CHUNK = 1 << 20
# Members a model file may have: two per Linear layer. zipfile parses the whole central directory when it
# opens an archive, so a file of millions of tiny members would cost seconds before any check (the cost per
# member: docs/performance.md).
_MAX_MEMBERS = 10_000
_TMP_SUFFIX = ".tmp"


def physical_memory():
    """Bytes of RAM on this machine (``math.inf`` where unknown): no file can be loaded into more."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return math.inf


def open_regular(path):
    """Open ``path`` for binary reading, refusing anything but a regular file before a byte is read.

    A FIFO would block ``open()`` forever and a device can be endless, so the file is opened non-blocking and
    its type checked on the open descriptor (no window between the check and the use).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        As ``open()`` does.
    ValueError
        If ``path`` is a FIFO, socket or device.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise ValueError(f"{os.fspath(path)}: is {kind}, not a regular file; refusing to read it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _architecture_problem(architecture):
    """Return what is wrong with ``architecture`` (a list of ``{"class", "config"}`` dicts), or ``None``."""
    if not isinstance(architecture, list):
        return f"architecture must be a list, got {type(architecture).__name__}"
    for i, c in enumerate(architecture):
        if not (isinstance(c, dict) and set(c) == {"class", "config"} and isinstance(c["class"], str)
                and isinstance(c["config"], dict) and all(isinstance(k, str) for k in c["config"])):
            return f"architecture entry {i} is not a {{'class': str, 'config': dict}} mapping: {c!r:.80}"
    return None


def write_model(path, architecture, arrays, preprocessing=None):
    """Write ``arrays`` and ``architecture`` to ``path`` atomically: a crash leaves any old file intact.

    The bytes go to ``.<name>.<pid>-<random>.tmp`` beside ``path`` and are renamed over it once on disk. A process
    killed mid-write leaves that file behind; the next write to the same ``path`` removes such files whose
    process is gone.

    Parameters
    ----------
    path : str or os.PathLike
        Used exactly as given: no ``.npz`` suffix is appended. Its directory must exist.
    architecture : list of dict
        ``[{"class": "Linear", "config": {...}}, ...]`` as from ``Sequential.get_config()``; JSON-serialisable.
    arrays : dict of str to ndarray
        Int or float arrays, e.g. ``{"0.W": W, "0.b": b}``; anything else raises ``TypeError``.
    preprocessing : dict, optional
        JSON-serialisable (``{"features": ..., "target": ...}``); given, the file is version 2.

    Raises
    ------
    ValueError
        If the JSON is larger than :func:`read_model` reads back (1 MiB); nothing is written.
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
    meta = {"format": FORMAT, "version": VERSION, "architecture": architecture}
    if preprocessing is not None:
        meta.update(version=VERSION_PREPROCESSING, preprocessing=preprocessing)
    try:
        meta = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"architecture is not JSON-serialisable: {exc}") from exc
    if len(meta.encode()) > _MAX_MARKER_BYTES:
        raise ValueError(f"cannot write {path!r}: its description takes {len(meta.encode()):,} bytes of JSON, more "
                         f"than the {_MAX_MARKER_BYTES:,} a model file may hold (too many columns or categories)")
    with atomic_write(path) as f:  # a file object, so np.savez appends no ".npz"
        np.savez(f, allow_pickle=False, **arrays, **{MARKER: np.frombuffer(meta.encode(), np.uint8)})


@contextlib.contextmanager
def atomic_write(path, mode="wb", *, suffix=_TMP_SUFFIX, **open_kwargs):
    """Write ``path`` atomically: yield a new file beside it, and rename it over ``path`` once on disk.

    The file is ``.<name>.<pid>-<random><suffix>`` in ``path``'s directory (so the rename stays within one file
    system), created exclusively with mode 0o666 before the umask, as a plain ``open()`` would; its ``name`` is
    that path. When the block ends, the bytes are flushed and fsynced, then renamed over ``path``; when it raises
    (``KeyboardInterrupt`` too), the file is removed and ``path`` is left as it was. A process killed mid-write
    leaves its file behind: every write first removes such files of ``path`` whose process is gone
    (:func:`remove_stale_temp_files`).

    Parameters
    ----------
    path : str or os.PathLike
        Used exactly as given. Its directory must exist.
    mode : {"wb", "w"}
        Binary or text; ``open_kwargs`` (``newline=``, ``encoding=``) go to ``open``.
    suffix : str
        The temporary file's suffix (a download's ``.part``).

    Raises
    ------
    FileNotFoundError
        If ``path``'s directory does not exist; nothing is written.
    """
    path = os.fspath(path)
    folder, base = os.path.split(path)
    folder = folder or os.curdir
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: directory {folder!r} does not exist")
    remove_stale_temp_files(folder, f".{base}.", suffix)
    tmp = os.path.join(folder, f".{base}.{os.getpid()}-{os.urandom(4).hex()}{suffix}")
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:  # "x": O_EXCL, never someone else's file
            yield f
            f.flush()
            os.fsync(f.fileno())  # the bytes must be on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave a stray temp file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temp_files(folder, prefix, suffix):
    """Delete ``<prefix><pid>-<anything><suffix>`` files in ``folder`` whose process ``pid`` no longer runs.

    Such files are what a writer killed between creating its temporary file and renaming it leaves behind. A
    file whose pid is alive (or was reused by another process) is kept: it may be a write in progress.
    Returns the paths removed.
    """
    removed = []
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return removed
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        pid = name[len(prefix):len(name) - len(suffix)].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
    return removed


def read_model(path, check=None, *, preprocessing=False):
    """Read a file written by :func:`write_model`; nothing in it is unpickled or executed.

    Parameters
    ----------
    path : str or os.PathLike
    check : callable, optional
        ``check(architecture, members)`` with ``members`` a dict ``{name: (shape, dtype)}`` read from the
        ``.npy`` headers, called before any array data is decompressed or allocated; it raises ``ValueError``
        to refuse the file (e.g. members that do not match the parameters the architecture declares).

    Returns
    -------
    architecture : list of dict
    arrays : dict of str to ndarray
        Fresh, writable arrays that do not refer to the file, which is closed on return.
    preprocessing : dict or None
        Only with ``preprocessing=True``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist; other errors from opening it pass through too.
    ValueError
        For any other file, naming it and the fault: a FIFO or device, truncated, foreign, malicious, a member
        whose declared size disagrees with its shape, or a newer format.
    """
    path = os.fspath(path)
    with open_regular(path) as f:  # opening errors stay OSErrors; everything after is about the content
        try:
            architecture, arrays, extra = _parse(f, check, preprocessing)
        except Exception as exc:  # also BadZipFile, zlib.error, EOFError, MemoryError from a corrupt file
            detail = exc if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            raise ValueError(f"{path}: not a valid fastnn model file: {detail}") from None
    return (architecture, arrays, extra) if preprocessing else (architecture, arrays)


class _Counting:
    """A read-only stream that counts the bytes read through it (the length of a .npy header)."""

    def __init__(self, fp):
        self.fp, self.n = fp, 0

    def read(self, size=-1):
        data = self.fp.read(size)
        self.n += len(data)
        return data


def _npy_header(zf, info, name):
    """``(shape, fortran_order, dtype, header_bytes)`` from the .npy header of member ``info``."""
    with zf.open(info) as fp:
        counted = _Counting(fp)
        magic = counted.read(8)
        if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
            raise ValueError(f"member {name!r} is not a .npy array")
        read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(magic[6])
        if read_header is None or magic[7] != 0:
            raise ValueError(f"member {name!r} has .npy format version {magic[6]}.{magic[7]}, expected 1.0 or 2.0")
        shape, fortran, dtype = read_header(counted, max_header_size=_MAX_HEADER_BYTES)
        return shape, fortran, dtype, counted.n


def _read_member(zf, info, name, shape, fortran, dtype, offset):
    """Decompress member ``info`` into a fresh array, reading exactly the declared bytes (the CRC is checked)."""
    a = np.empty(shape, dtype, order="F" if fortran else "C")
    view = memoryview(a.T if fortran else a).cast("B") if a.size else memoryview(b"")
    with zf.open(info) as fp:
        fp.read(offset)
        pos = 0
        while pos < len(view):
            chunk = fp.read(min(_CHUNK, len(view) - pos))
            if not chunk:
                raise ValueError(f"member {name!r} ends after {pos} of its {len(view)} data bytes")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if fp.read(1):  # also where zipfile compares the CRC-32
            raise ValueError(f"member {name!r} holds more than its {len(view)} data bytes")
    return a


def _declared_members(f, archive_size):
    """The member count in the end-of-central-directory record (0xFFFF: a zip64 archive), or None if absent."""
    tail = min(archive_size, 22 + 0xFFFF)  # the record, then a comment of at most 64 KiB
    f.seek(archive_size - tail)
    data = f.read(tail)
    i = data.rfind(b"PK\x05\x06")
    return struct.unpack_from("<H", data, i + 10)[0] if 0 <= i <= len(data) - 22 else None


def _parse(f, check, with_preprocessing):
    if f.read(4) != b"PK\x03\x04":
        raise ValueError("not an .npz (zip) archive")
    f.seek(0, os.SEEK_END)
    archive_size = f.tell()
    count = _declared_members(f, archive_size)
    if count is not None and count > _MAX_MEMBERS:
        raise ValueError(f"the archive declares {count} members, more than the {_MAX_MEMBERS} a model file may have")
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        infos = {}
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name == info.filename:  # np.load would hand such a member back as raw bytes
                raise ValueError(f"member {name!r} is not a .npy array")
            if name in infos:
                raise ValueError(f"member {name!r} appears twice")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"member {name!r} uses zip compression method {info.compress_type}; "
                                 "only stored and deflated members are read")
            limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_MAX_RATIO)
            if info.file_size > limit or info.compress_size > archive_size:
                raise ValueError(f"member {name!r} declares {info.file_size} bytes from {info.compress_size} "
                                 f"compressed bytes, which its compression method cannot produce")
            infos[name] = info
        if MARKER not in infos:
            raise ValueError(f"no {MARKER!r} member, so not written by fastnn")
        headers = {name: _npy_header(zf, info, name) for name, info in infos.items()}
        for name, (shape, fortran, dtype, offset) in headers.items():
            if dtype.kind not in _NUMERIC or dtype.fields is not None:
                raise ValueError(f"array {name!r} has non-numeric dtype {dtype}")
            nbytes = math.prod(shape) * dtype.itemsize
            if infos[name].file_size != offset + nbytes:
                raise ValueError(f"member {name!r} declares {infos[name].file_size} bytes, but a {dtype} array "
                                 f"of shape {shape} after a {offset}-byte header takes {offset + nbytes}")
        shape, fortran, dtype, offset = headers.pop(MARKER)
        if dtype != np.uint8 or len(shape) != 1:
            raise ValueError(f"{MARKER!r} member has dtype {dtype} and {len(shape)} dims, expected 1-d uint8")
        if shape[0] > _MAX_MARKER_BYTES:
            raise ValueError(f"{MARKER!r} member holds {shape[0]} bytes, more than the {_MAX_MARKER_BYTES} "
                             "allowed for an architecture")
        raw = _read_member(zf, infos[MARKER], MARKER, shape, fortran, dtype, offset)
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"format marker is not {FORMAT!r}")
        version = meta.get("version")
        known = (VERSION, VERSION_PREPROCESSING) if with_preprocessing else (VERSION,)
        if type(version) is not int or version not in known:  # type(): True == 1 must not pass
            raise ValueError(f"format version {version!r} is not supported here (this reader takes version "
                             f"{' or '.join(map(str, known))})")
        extra = meta.get("preprocessing")
        if (version == VERSION_PREPROCESSING) != isinstance(extra, dict):
            raise ValueError(f"format version {version} {'needs' if extra is None else 'has no'} a "
                             "'preprocessing' entry")
        problem = _architecture_problem(meta.get("architecture"))
        if problem:
            raise ValueError(problem)
        if check is not None:
            check(meta["architecture"], {name: (shape, dtype) for name, (shape, _, dtype, _) in headers.items()})
        arrays = {name: _read_member(zf, infos[name], name, *header) for name, header in headers.items()}
    return meta["architecture"], arrays, extra


# -- a user's data ------------------------------------------------------------------------------------------
def read_arrays(path, need_y=True):
    """``(X, y)`` from the arrays ``X`` and ``y`` of a .npz (``y`` is None if absent and not needed).

    Raises ``ValueError`` naming the file and the fault for a file that is not such an archive (a single .npy, a
    corrupt or pickled one, missing arrays, non-numeric dtypes, shapes that do not pair up); errors opening it
    stay ``OSError``.
    """
    try:
        return _arrays(path, need_y)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _arrays(path, need_y):
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array; expected a .npz archive with arrays X and y")
        with data:
            missing = [k for k in ("X", "y") if k not in data.files and (k == "X" or need_y)]
            if missing:
                raise ValueError(f"no array {' or '.join(map(repr, missing))}; expected X (n_samples, n_features) "
                                 f"and y, found {sorted(data.files) or 'no arrays'} (np.savez(path, X=X, y=y))")
            X, y = data["X"], data["y"] if "y" in data.files else None
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise ValueError(f"not a readable .npz file: {exc}") from None
    except Exception as exc:  # a corrupt archive: BadZipFile, EOFError, an object array (pickle refused)
        detail = exc if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(str(detail)) from None
    for name, a in (("X", X), ("y", y)):
        if a is not None and a.dtype.kind not in "biuf":
            raise ValueError(f"array {name} has dtype {a.dtype}; expected numbers")
    if X.ndim != 2:
        raise ValueError(f"array X has shape {X.shape}; expected 2-D (n_samples, n_features)")
    if y is not None and (y.ndim not in (1, 2) or y.shape[0] != X.shape[0]):
        raise ValueError(f"array y has shape {y.shape}; expected ({X.shape[0]},) or ({X.shape[0]}, n_targets), "
                         f"one row per row of X {X.shape}")
    return X, y


def read_frame(path, note=None):
    """A .csv (header row) or .parquet table as a :class:`fastnn.tables.Frame` of its named columns.

    A leading pandas index (an unnamed column of distinct integers) is dropped, saying so through ``note(text)``
    when given; any other unnamed first column is a ``ValueError``, as is any fault :func:`fastnn.tables.read_table`
    finds, each naming the file.
    """
    try:
        frame = tables.read_table(path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    index = tables.index_column(frame)
    if index is not None:
        frame = frame.without(index)
        if note is not None:
            note(f"{path}: left out the leading column {index!r} of distinct integers without a name: a pandas "
                 "index (to_csv(index=False) writes none)")
    elif frame.names[0] in ("", "Unnamed: 0"):
        raise ValueError(f"{path}: line 1: column 1 has no name, and it is not a pandas index (distinct integers); "
                         "name it in the header")
    return frame
