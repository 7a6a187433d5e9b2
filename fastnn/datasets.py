"""MNIST and Fashion-MNIST from IDX files: find them, download them if asked, load them as arrays.

The four files of a dataset are looked for, in order, in

1. the ``data_dir`` argument;
2. ``$FASTNN_DATA/<name>``, then ``$FASTNN_DATA``;
3. the per-user cache ``$XDG_CACHE_HOME/fastnn/<name>`` (``~/.cache/fastnn/<name>`` if unset);
4. system directories (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, Debian's ``dataset-fashion-mnist``).

A directory counts only if it holds all four. Otherwise, with ``download=True``, the missing ones are fetched from
the mirror (overridable by environment variable) into ``data_dir`` if given, else the cache, and checked by SHA-256.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.error
import urllib.request
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["load_idx", "load_mnist", "load_fashion_mnist", "MNIST_MIRROR", "FASHION_MNIST_MIRROR"]

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror torchvision uses
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_TIMEOUT = 60  # seconds without progress before a download is abandoned


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


def _read_payload(path):
    """Return the bytes of ``path``, gunzipped if they start with the gzip magic (whatever the file is called)."""
    raw = Path(path).read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: expected a valid gzip stream (it starts with 1f 8b), found: {exc}") from exc


def load_idx(path):
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is recognised by its magic bytes, not by the file name.

    Returns
    -------
    ndarray of shape dims
        The data with the shape and type stored in the file (uint8, int8, int16, int32, float32 or float64),
        native-endian and writable.

    Raises
    ------
    ValueError
        If the file is not a well-formed IDX file, naming the file, what was expected and what was found.
    """
    data = _read_payload(path)
    if len(data) < 4 or data[:2] != b"\0\0":
        found = f"bytes {data[:4].hex(' ')}" if data else "an empty file"
        raise ValueError(f"{path}: expected an IDX header (00 00 <type code> <ndim>), found {found}")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({np.dtype(t).newbyteorder('=').name})" for c, t in _IDX_DTYPES.items())
        raise ValueError(f"{path}: expected an IDX type code among {known}; found 0x{code:02X}")
    if ndim < 1:
        raise ValueError(f"{path}: expected at least 1 dimension, found 0")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: expected a {header}-byte header for {ndim} dimensions, found {len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected, found = math.prod(shape) * dtype.itemsize, len(data) - header
    if found != expected:
        raise ValueError(f"{path}: expected {expected} bytes of {dtype.newbyteorder('=').name} data for shape "
                         f"{shape}, found {found}")
    # frombuffer views immutable bytes; astype copies into a writable, native-endian array.
    return np.frombuffer(data, dtype, offset=header).astype(dtype.newbyteorder("=")).reshape(shape)


def _files_in(directory):
    """Return the paths of the four files in ``directory`` (``.gz`` or not), or None unless all are there."""
    paths = [next((p for p in (directory / (s + ".gz"), directory / s) if p.is_file()), None) for s in _STEMS]
    return None if None in paths else paths


def _cache_dir(spec):
    """Return the per-user cache directory of a dataset, following the XDG base directory rule."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "fastnn" / spec.name


def _download(spec, mirror, stem, directory):
    """Fetch ``stem``.gz from ``mirror`` into ``directory``; it appears there only once its SHA-256 is verified."""
    url = mirror.rstrip("/") + "/" + stem + ".gz"
    directory.mkdir(parents=True, exist_ok=True)
    # The temporary file sits in the target directory so that os.replace is an atomic rename, never a copy; open
    # mode "x" (not mkstemp, which makes files 0600) lets the umask set the permissions of the final file.
    tmp = directory / f".{stem}.gz.{uuid.uuid4().hex}.part"
    try:
        with open(tmp, "xb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
            except OSError as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()  # an HTTPError is also the open response; the chain below would keep its socket
                raise OSError(f"could not download {stem}.gz from {url}: {exc}") from exc
        try:
            actual = hashlib.sha256(_read_payload(tmp) if spec.payload_sha256 else tmp.read_bytes()).hexdigest()
        except ValueError as exc:
            raise ValueError(f"downloaded {stem}.gz from {url} is not a valid gzip file: {exc}") from exc
        if actual != spec.sha256[stem]:
            covered = "decompressed payload" if spec.payload_sha256 else "file"
            raise ValueError(f"SHA-256 mismatch for {stem}.gz downloaded from {url}: expected {spec.sha256[stem]}, "
                             f"found {actual} (digest of the {covered}); nothing was saved")
        os.replace(tmp, directory / (stem + ".gz"))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    paths = _find_or_download(spec, mirror, data_dir, download)
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
        If a file is malformed or a download fails its SHA-256 check.
    OSError
        If a download fails.
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
    FileNotFoundError, ValueError, OSError
        As for `load_fashion_mnist`.
    """
    return _load(_SPECS["mnist"], os.environ.get("FASTNN_MNIST_MIRROR") or MNIST_MIRROR, data_dir, download)
