"""MNIST and Fashion-MNIST from IDX files: find them, download them if asked, load them as arrays.

The four files of a dataset are looked for, in order, in

1. the ``data_dir`` argument;
2. ``$FASTNN_DATA/<name>``, then ``$FASTNN_DATA``;
3. the per-user cache ``$XDG_CACHE_HOME/fastnn/<name>`` (``~/.cache/fastnn/<name>`` if unset);
4. system directories (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, Debian's ``dataset-fashion-mnist``).

A directory counts only if it holds all four. Otherwise, with ``download=True``, the missing ones are fetched from
the mirror (overridable by environment variable) into ``data_dir`` if given, else the cache, and checked by SHA-256.
Each file must arrive within :data:`DOWNLOAD_DEADLINE` seconds, with no wait for data longer than
:data:`DOWNLOAD_STALL`; any failure raises :class:`DownloadError` and leaves no partial file.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastnn._check import BOOL, NONE, PATH, check
from fastnn.io import atomic_write, open_regular, physical_memory

__all__ = ["load_idx", "load_mnist", "load_fashion_mnist", "DownloadError", "MNIST_MIRROR", "FASHION_MNIST_MIRROR"]

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror torchvision uses
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DOWNLOAD_DEADLINE = 600  # seconds a whole file may take, however steadily its bytes arrive
DOWNLOAD_STALL = 60  # seconds without a byte before a download is abandoned
_MAX_DOWNLOAD = 64 << 20  # bytes; the largest file (MNIST's training images) is 9.9 MB compressed
_DEFLATE_MAX_RATIO = 1032  # deflate expands at most 1032-fold: a larger declared payload is a lie
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A dataset file could not be downloaded: network or HTTP error, timeout, short or oversized response,
    invalid gzip or wrong SHA-256. ``url`` is the address; nothing was saved."""

    def __init__(self, url, reason):
        super().__init__(f"could not download {url}: {reason}")
        self.url = url


@dataclass(frozen=True)
class _Spec:
    """Where one dataset is looked for and how a download of it is verified."""

    name: str  # sub-directory under $FASTNN_DATA and the cache
    sha256: dict  # file stem -> hex digest
    payload_sha256: bool  # True: digest of the decompressed IDX bytes; False: of the .gz as the mirror serves it
    system_dirs: tuple = ()


_SPECS = {
    # Digests of the decompressed payloads: Debian recompressed its .gz files, so only the payload is the same in
    # both sources, and any faithful recompression on a mirror verifies too.
    "fashion-mnist": _Spec("fashion-mnist", {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }, payload_sha256=True, system_dirs=("/usr/share/datasets/fashion-mnist",)),
    # Digests of the original .gz files, from tensorflow/datasets' url_checksums/mnist.txt. The ossci mirror serves
    # those same bytes: torchvision checks it and yann.lecun.com against one MD5 per file. No authoritative digest
    # of the decompressed MNIST payloads was found, so these cover the .gz as downloaded.
    "mnist": _Spec("mnist", {
        "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }, payload_sha256=False),
}


def _idx_chunks(stream, path, raw_size=None, gz_size=None):
    """Yield ``(shape, dtype)`` then the header and data bytes of the IDX file read from ``stream``.

    Every check happens before the data is read: the header must be well formed, and the size it declares
    must equal the file's (raw, ``raw_size``) or be one a ``gz_size``-byte gzip file can hold. Reading stops at
    that size, plus one byte to detect trailing data, so a gzip bomb is never expanded beyond it.
    """
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\0\0":
        found = f"bytes {head.hex(' ')}" if head else "an empty file"
        raise ValueError(f"{path}: expected an IDX header (00 00 <type code> <ndim>), found {found}")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({np.dtype(t).newbyteorder('=').name})" for c, t in _IDX_DTYPES.items())
        raise ValueError(f"{path}: expected an IDX type code among {known}; found 0x{code:02X}")
    if ndim < 1:
        raise ValueError(f"{path}: expected at least 1 dimension, found 0")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path}: expected a {4 + 4 * ndim}-byte header for {ndim} dimensions, found "
                         f"{4 + len(dims)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    what = f"{expected} bytes of {dtype.newbyteorder('=').name} data for shape {shape}"
    if raw_size is not None and raw_size - 4 - len(dims) != expected:
        raise ValueError(f"{path}: expected {what}, found {raw_size - 4 - len(dims)}")
    if gz_size is not None and expected > _DEFLATE_MAX_RATIO * gz_size:
        raise ValueError(f"{path}: expected {what}, more than a {gz_size}-byte gzip file can hold")
    if expected > physical_memory():
        raise ValueError(f"{path}: expected {what}, more than this machine's memory")
    yield shape, dtype
    yield head + dims
    left = expected
    while left:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            raise ValueError(f"{path}: expected {what}, found {expected - left}")
        left -= len(chunk)
        yield chunk
    if stream.read(1):
        raise ValueError(f"{path}: expected {what}, found more")


def _read_idx(path, consume):
    """Open ``path`` (a regular file, raw or gzip), and feed :func:`_idx_chunks` to ``consume``; return its result."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        compressed = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        try:
            if not compressed:
                return consume(_idx_chunks(f, path, raw_size=size))
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as stream:
                    return consume(_idx_chunks(stream, path, gz_size=size))
            except (OSError, EOFError, zlib.error) as exc:
                raise ValueError(f"{path}: expected a valid gzip stream (it starts with 1f 8b), found: {exc}") from exc
        except MemoryError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _to_array(chunks):
    shape, dtype = next(chunks)
    try:
        out = np.empty(shape, dtype.newbyteorder("="))
    except MemoryError:  # below physical memory, but more than is free now: _read_idx names the file
        raise MemoryError(f"not enough free memory for {math.prod(shape) * dtype.itemsize} bytes of "
                         f"{dtype.newbyteorder('=').name} data of shape {shape}") from None
    view = memoryview(out).cast("B") if out.size else memoryview(bytearray())
    next(chunks)  # the header
    pos = 0
    for chunk in chunks:
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    if dtype.itemsize > 1 and not dtype.isnative:  # the bytes were big-endian: swap them in place
        out.byteswap(inplace=True)
    return out


def _sha256(chunks):
    digest = hashlib.sha256()
    next(chunks)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def load_idx(path):
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is recognised by its magic bytes, not by the file name. FIFOs and devices are refused.

    Returns
    -------
    ndarray of shape dims
        The data with the shape and type stored in the file (uint8, int8, int16, int32, float32 or float64),
        native-endian and writable.

    Raises
    ------
    ValueError
        If the file is not a well-formed IDX file, naming the file, what was expected and what was found. The
        size the header declares is checked before the data is read, and gzip data is decompressed only up to it.
    """
    return _read_idx(check("path", path, PATH), _to_array)


def _files_in(directory):
    """Return the paths of the four files in ``directory`` (``.gz`` or not), or None unless all are there."""
    paths = [next((p for p in (directory / (s + ".gz"), directory / s) if p.is_file()), None) for s in _STEMS]
    return None if None in paths else paths


def _cache_dir(spec):
    """Return the per-user cache directory of a dataset, following the XDG base directory rule."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "fastnn" / spec.name


class _Watchdog:
    """Shuts down the sockets of one download when its deadline passes, whatever call is blocked on them."""

    def __init__(self, seconds):
        self.seconds, self.fired = seconds, False
        self._sockets, self._lock = [], threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()

    def _fire(self):
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def watch(self, sock):
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def connection(self, base):
        """An ``http.client`` connection class factory whose connections register their socket here."""
        def make(host, **kwargs):
            conn = base(host, **kwargs)
            connect = conn.connect

            def watched_connect():
                connect()
                self.watch(conn.sock)

            conn.connect = watched_connect
            return conn
        return make


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in another thread, unlike close()
    except OSError:
        pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog):
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req):
        return self.do_open(self._watchdog.connection(http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog):
        super().__init__()
        self._watchdog = watchdog

    def https_open(self, req):
        return self.do_open(self._watchdog.connection(http.client.HTTPSConnection), req, context=self._context)


def _fetch(url, out, deadline, stall, max_bytes):
    """Write the body at ``url`` to the file ``out``; raise :class:`DownloadError` for every failure."""
    start = time.monotonic()
    with _Watchdog(deadline) as watchdog:
        opener = urllib.request.build_opener(_HTTPHandler(watchdog), _HTTPSHandler(watchdog))
        try:
            with opener.open(url, timeout=min(stall, deadline)) as response:
                length = response.headers.get("Content-Length")
                length = int(length) if length and length.strip().isdigit() else None
                if length is not None and length > max_bytes:
                    raise DownloadError(url, f"the server announces {length} bytes, more than the {max_bytes} "
                                             "any dataset file needs")
                received = 0
                while chunk := response.read1(1 << 16):  # read1: returns whatever arrived, so no read waits long
                    received += len(chunk)
                    if received > max_bytes:
                        raise DownloadError(url, f"the server sent more than the {max_bytes} bytes any dataset "
                                                 "file needs")
                    out.write(chunk)
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # an HTTPError is also the open response; keeping it would keep its socket
                reason = f"HTTP {exc.code} {exc.reason}"
            elif isinstance(exc, urllib.error.URLError):
                reason = exc.reason if isinstance(exc.reason, str) else f"{type(exc.reason).__name__}: {exc.reason}"
            else:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if watchdog.fired:
                reason = f"not complete within the {deadline:g} s deadline ({reason})"
            elif isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
                reason = f"no data for {min(stall, deadline):g} s ({reason})"
            raise DownloadError(url, reason) from exc
    if watchdog.fired:  # a response without Content-Length ends, to the reader, when the socket is shut down
        raise DownloadError(url, f"not complete within the {deadline:g} s deadline")
    if length is not None and received != length:
        raise DownloadError(url, f"the connection closed after {received} of {length} bytes")
    return time.monotonic() - start


def _download(spec, mirror, stem, directory, *, deadline=None, stall=None, max_bytes=_MAX_DOWNLOAD):
    """Fetch ``stem``.gz from ``mirror`` into ``directory``; it appears there only once its SHA-256 is verified.

    ``deadline`` (default :data:`DOWNLOAD_DEADLINE`) bounds the whole transfer and ``stall`` (default
    :data:`DOWNLOAD_STALL`) each wait for data. Every failure raises :class:`DownloadError` and removes the
    partial file; partial files of killed downloads (their process gone) are removed first.
    """
    deadline = DOWNLOAD_DEADLINE if deadline is None else deadline
    stall = DOWNLOAD_STALL if stall is None else stall
    url = mirror.rstrip("/") + "/" + stem + ".gz"
    directory.mkdir(parents=True, exist_ok=True)
    # The partial file is named ".part", and the pid in its name lets a later download tell a dead process's
    # leftover from a download in progress; it appears under its name only once verified.
    with atomic_write(directory / (stem + ".gz"), suffix=".part") as out:
        _fetch(url, out, deadline, stall, max_bytes)
        out.flush()
        try:
            actual = _read_idx(out.name, _sha256) if spec.payload_sha256 else _file_sha256(out.name)
        except ValueError as exc:
            raise DownloadError(url, f"the file is not a valid gzip IDX file: {exc}") from exc
        if actual != spec.sha256[stem]:
            covered = "decompressed payload" if spec.payload_sha256 else "file"
            raise DownloadError(url, f"SHA-256 mismatch for {stem}.gz: expected {spec.sha256[stem]}, found "
                                     f"{actual} (digest of the {covered}); nothing was saved")


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _find_or_download(spec, mirror, data_dir, download):
    """Return the paths of the four files of ``spec``, searching in order and downloading if allowed."""
    candidates = [Path(data_dir)] if data_dir is not None else []
    if env := os.environ.get("FASTNN_DATA"):
        candidates += [Path(env) / spec.name, Path(env)]
    candidates += [_cache_dir(spec)] + [Path(d) for d in spec.system_dirs]
    for directory in candidates:
        if paths := _files_in(directory):
            return paths
    if not download:
        names, searched = ", ".join(s + "[.gz]" for s in _STEMS), "".join(f"\n  {d}" for d in candidates)
        raise FileNotFoundError(f"{spec.name}: the four files {names} are in none of:{searched}\n"
                                "Pass download=True or put them in one of these directories.")
    target = candidates[0]  # data_dir if given, else the cache
    for stem in _STEMS:
        if not (target / (stem + ".gz")).is_file() and not (target / stem).is_file():
            _download(spec, mirror, stem, target)
    return _files_in(target)


def _load(spec, mirror, data_dir, download):
    """Load one dataset as ``(X_train, y_train), (X_test, y_test)``, validating images and labels."""
    check("data_dir", data_dir, NONE, PATH)
    paths = _find_or_download(spec, mirror, data_dir, check("download", download, BOOL))
    splits = []
    for images_path, labels_path in (paths[:2], paths[2:]):
        images, labels = load_idx(images_path), load_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{images_path}: expected uint8 images of shape (n, 28, 28), "
                             f"found {images.dtype} of shape {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(f"{labels_path}: expected uint8 labels of shape (n,), "
                             f"found {labels.dtype} of shape {labels.shape}")
        if len(labels) != len(images):
            raise ValueError(f"{labels_path}: expected {len(images)} labels, one per image in {images_path}, "
                             f"found {len(labels)}")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{labels_path}: expected labels in 0..9, found {labels.max()}")
        X = images.reshape(len(images), 28 * 28).astype(np.float32)
        X /= np.float32(255)
        splits.append((X, labels.astype(np.int64)))
    return tuple(splits)


def load_fashion_mnist(data_dir=None, *, download=True):
    """Load Fashion-MNIST (Zalando's 28x28 grey-scale clothing images, 10 classes).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory searched first, and the download target if given; see the module docstring for the search order.
    download : bool, default True
        Fetch missing files from ``$FASTNN_FASHION_MNIST_MIRROR`` or ``FASHION_MNIST_MIRROR``.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuple of tuples
        ``X_*`` : C-contiguous float32 ndarray of shape (n_samples, 784), pixels scaled to [0, 1];
        ``y_*`` : int64 ndarray of shape (n_samples,), labels in 0..9. 60000 training and 10000 test samples.

    Raises
    ------
    FileNotFoundError
        If ``download=False`` and no searched directory holds the four files; the message lists them all.
    ValueError
        If a file is malformed.
    DownloadError
        An ``OSError``: if a download fails, for any reason (network, HTTP status, timeout, a payload that is not
        gzip IDX or fails its SHA-256 check); the message names the URL and no partial file is left.
    """
    mirror = os.environ.get("FASTNN_FASHION_MNIST_MIRROR") or FASHION_MNIST_MIRROR
    return _load(_SPECS["fashion-mnist"], mirror, data_dir, download)


def load_mnist(data_dir=None, *, download=True):
    """Load MNIST (28x28 grey-scale handwritten digits, 10 classes).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory searched first, and the download target if given; see the module docstring for the search order.
    download : bool, default True
        Fetch missing files from ``$FASTNN_MNIST_MIRROR`` or ``MNIST_MIRROR``.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuple of tuples
        As for `load_fashion_mnist`: float32 ndarray of shape (n_samples, 784) in [0, 1] and int64 labels of shape
        (n_samples,); 60000 training and 10000 test samples.

    Raises
    ------
    FileNotFoundError, ValueError, DownloadError
        As for `load_fashion_mnist`.
    """
    return _load(_SPECS["mnist"], os.environ.get("FASTNN_MNIST_MIRROR") or MNIST_MIRROR, data_dir, download)
