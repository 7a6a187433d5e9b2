"""Tests for fastnn.datasets: IDX parsing, the search order, and downloads from a local HTTP server only."""
import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fastnn import datasets
from fastnn.datasets import load_fashion_mnist, load_idx, load_mnist

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
REAL_SPECS = dict(datasets._SPECS)
LOADERS = {"fashion-mnist": (load_fashion_mnist, "FASTNN_FASHION_MNIST_MIRROR"),
           "mnist": (load_mnist, "FASTNN_MNIST_MIRROR")}


def idx_bytes(array, code=None):
    """Encode ``array`` as IDX, written independently of the module under test."""
    code = TYPE_CODES[array.dtype.type] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data, compress):
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def make_split(rng, n):
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_dataset(directory, n_train=6, n_test=4, *, compress=True, seed=0):
    """Write a tiny four-file dataset into ``directory``; return the four arrays in ``STEMS`` order."""
    rng = np.random.default_rng(seed)
    arrays = (*make_split(rng, n_train), *make_split(rng, n_test))
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(STEMS, arrays, strict=True):
        write(directory / (stem + ".gz" if compress else stem), idx_bytes(array), compress)
    return arrays


def n_train(result):
    (X_train, _), _ = result
    return len(X_train)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty cache, no $FASTNN_DATA, no system directories, and mirrors that refuse connections locally."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, (_, env) in LOADERS.items():
        # Port 9 (discard) on loopback: any download a test did not mean to make fails here, never on the internet.
        monkeypatch.setenv(env, "http://127.0.0.1:9/")
        monkeypatch.setitem(datasets._SPECS, name, dataclasses.replace(REAL_SPECS[name], system_dirs=()))


# ----------------------------------------------------------------------------------------------------- load_idx
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(TYPE_CODES))
def test_load_idx_round_trips(tmp_path, dtype, compress):
    array = (np.arange(-30, 30).reshape(3, 4, 5) * 3).astype(dtype)
    out = load_idx(write(tmp_path / "a.idx", idx_bytes(array), compress))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5) and out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("shape", [(7,), (0,), (2, 0, 3), (1, 1, 1, 1, 2)])
def test_load_idx_shapes(tmp_path, shape):
    array = np.ones(shape, np.int32)
    assert load_idx(write(tmp_path / "a", idx_bytes(array), False)).shape == shape


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(load_idx(write(tmp_path / "plain-name", idx_bytes(array), True)), array)
    np.testing.assert_array_equal(load_idx(write(tmp_path / "fake.gz", idx_bytes(array), False)), array)


MNIST_HEADER = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 60000, 28, 28)
MALFORMED = {
    "empty": (b"", False, "expected an IDX header.*found an empty file"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(32), False, "expected an IDX header.*found bytes 89 50 4e 47"),
    "text": (b"hello, world\n", False, "expected an IDX header.*found bytes 68 65 6c 6c"),
    "nonzero-magic": (b"\x00\x01\x08\x01" + bytes(8), False, "expected an IDX header"),
    "unknown-type": (b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"x", False, "type code.*found 0x0A"),
    "zero-ndim": (b"\x00\x00\x08\x00", False, "expected at least 1 dimension, found 0"),
    "short-header": (b"\x00\x00\x08\x03" + struct.pack(">I", 5), False, "expected a 16-byte header.*found 8 bytes"),
    "truncated": (MNIST_HEADER + bytes(1000), False,
                  r"expected 47040000 bytes of uint8 data for shape \(60000, 28, 28\), found 1000"),
    "trailing": (idx_bytes(np.zeros((2, 3), np.int16)) + b"\0", False,
                 r"expected 12 bytes of int16 data for shape \(2, 3\), found 13"),
    "truncated-gzip": (gzip.compress(idx_bytes(np.random.default_rng(0).random(500)))[:-100], False,
                       "valid gzip stream.*ended before"),
    "corrupt-gzip": (b"\x1f\x8b" + bytes(range(200)), False, "valid gzip stream"),
    "gzipped-text": (b"just text", True, "expected an IDX header"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_load_idx_rejects_malformed_files(tmp_path, case):
    content, compress, message = MALFORMED[case]
    path = tmp_path / f"{case}.idx"
    write(path, content, compress)
    with pytest.raises(ValueError, match=message) as info:
        load_idx(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_loader_output(tmp_path, compress):
    images, labels, test_images, test_labels = write_dataset(tmp_path, compress=compress)
    (X, y), (X_test, y_test) = load_mnist(tmp_path, download=False)
    assert X.dtype == np.float32 and X.shape == (6, 784) and X.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (6,)
    np.testing.assert_allclose(X, images.reshape(6, 784) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert X_test.shape == (4, 784) and y_test.tolist() == test_labels.tolist()
    assert X.min() >= 0 and X.max() <= 1


@pytest.mark.parametrize("stem, array, message", [
    ("train-images-idx3-ubyte", np.zeros((6, 28, 27), np.uint8), r"uint8 images of shape \(n, 28, 28\)"),
    ("train-images-idx3-ubyte", np.zeros((6, 28, 28), np.float32), r"uint8 images.*found float32"),
    ("train-labels-idx1-ubyte", np.zeros((6, 1), np.uint8), r"uint8 labels of shape \(n,\)"),
    ("train-labels-idx1-ubyte", np.full(6, 10, np.uint8), "labels in 0..9, found 10"),
    ("t10k-labels-idx1-ubyte", np.zeros(5, np.uint8), "expected 4 labels, one per image.*found 5"),
])
def test_loader_validates_contents(tmp_path, stem, array, message):
    write_dataset(tmp_path)
    write(tmp_path / (stem + ".gz"), idx_bytes(array), True)
    with pytest.raises(ValueError, match=message) as info:
        load_fashion_mnist(tmp_path, download=False)
    assert stem in str(info.value)


# ----------------------------------------------------------------------------------------------------- search order
def test_search_order(tmp_path, monkeypatch):
    data_dir, env, cache, system = (tmp_path / d for d in ("explicit", "env", "cache/fastnn/mnist", "system"))
    monkeypatch.setenv("FASTNN_DATA", str(env))
    monkeypatch.setitem(datasets._SPECS, "mnist", dataclasses.replace(REAL_SPECS["mnist"], system_dirs=(system,)))
    write_dataset(system, n_train=1)
    assert n_train(load_mnist(download=False)) == 1
    write_dataset(cache, n_train=2)
    assert n_train(load_mnist(download=False)) == 2
    write_dataset(env, n_train=3)
    assert n_train(load_mnist(download=False)) == 3
    write_dataset(env / "mnist", n_train=4)
    assert n_train(load_mnist(download=False)) == 4
    write_dataset(data_dir, n_train=5)
    assert n_train(load_mnist(data_dir, download=False)) == 5
    assert n_train(load_fashion_mnist(download=False)) == 3  # $FASTNN_DATA itself; mnist/ is not its sub-directory


def test_incomplete_directory_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "env"))
    write_dataset(tmp_path / "env", n_train=3)
    write_dataset(tmp_path / "explicit", n_train=5)
    (tmp_path / "explicit" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert n_train(load_mnist(tmp_path / "explicit", download=False)) == 3


def test_mixed_gz_and_plain_names(tmp_path):
    arrays = write_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.rename(tmp_path / "train-images-idx3-ubyte")
    (X, _), _ = load_mnist(tmp_path, download=False)  # the renamed file is still gzip inside
    np.testing.assert_allclose(X * 255, arrays[0].reshape(-1, 784), atol=1e-4)


def test_home_cache_when_xdg_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_dataset(tmp_path / "home/.cache/fastnn/fashion-mnist", n_train=2)
    assert n_train(load_fashion_mnist(download=False)) == 2


def test_not_found_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "env"))
    system = tmp_path / "system"
    monkeypatch.setitem(datasets._SPECS, "fashion-mnist",
                        dataclasses.replace(REAL_SPECS["fashion-mnist"], system_dirs=(system,)))
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(tmp_path / "explicit", download=False)
    message = str(info.value)
    for place in ("explicit", "env/fashion-mnist", "env\n", "cache/fastnn/fashion-mnist", "system"):
        assert str(tmp_path / place) in message
    assert "train-images-idx3-ubyte[.gz]" in message


# ----------------------------------------------------------------------------------------------------- downloads
@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/served``; ``.requests`` lists the paths asked for."""
    served = tmp_path / "served"
    served.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=served))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.dir, server.requests, server.url = served, requests, f"http://127.0.0.1:{server.server_port}/"
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def serve_dataset(mirror, monkeypatch, name):
    """Serve a tiny dataset for ``name`` and make the module expect its digests; return the arrays."""
    arrays = write_dataset(mirror.dir)
    spec = datasets._SPECS[name]
    # Each digest covers what the real table covers: the decompressed payload or the .gz as served.
    read = (lambda p: gzip.decompress(p.read_bytes())) if spec.payload_sha256 else Path.read_bytes
    digests = {s: hashlib.sha256(read(mirror.dir / (s + ".gz"))).hexdigest() for s in STEMS}
    monkeypatch.setitem(datasets._SPECS, name, dataclasses.replace(spec, sha256=digests))
    monkeypatch.setenv(LOADERS[name][1], mirror.url)
    return arrays


@pytest.mark.parametrize("name", LOADERS)
def test_download_then_reuse(tmp_path, mirror, monkeypatch, name):
    load, _ = LOADERS[name]
    arrays = serve_dataset(mirror, monkeypatch, name)
    (X, y), (X_test, y_test) = load()
    cache = tmp_path / "cache/fastnn" / name
    assert sorted(os.listdir(cache)) == sorted(s + ".gz" for s in STEMS)  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    for stem in STEMS:
        assert (cache / (stem + ".gz")).read_bytes() == (mirror.dir / (stem + ".gz")).read_bytes()
        assert (cache / (stem + ".gz")).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    np.testing.assert_array_equal(y_test, arrays[3])
    assert len(mirror.requests) == 4
    load()
    load(download=False)
    assert len(mirror.requests) == 4


def test_download_into_data_dir_fetches_only_missing(tmp_path, mirror, monkeypatch):
    serve_dataset(mirror, monkeypatch, "fashion-mnist")
    target = tmp_path / "explicit"
    target.mkdir()
    for stem in STEMS[:2]:
        (target / (stem + ".gz")).write_bytes((mirror.dir / (stem + ".gz")).read_bytes())
    assert n_train(load_fashion_mnist(target)) == 6
    assert sorted(mirror.requests) == sorted(f"/{s}.gz" for s in STEMS[2:])
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", LOADERS)
def test_checksum_mismatch_leaves_nothing(tmp_path, mirror, monkeypatch, name):
    serve_dataset(mirror, monkeypatch, name)
    spec = datasets._SPECS[name]
    wrong = "0" * 64
    monkeypatch.setitem(datasets._SPECS, name,
                        dataclasses.replace(spec, sha256={**spec.sha256, "train-images-idx3-ubyte": wrong}))
    with pytest.raises(datasets.DownloadError, match="SHA-256 mismatch") as info:
        LOADERS[name][0]()
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and mirror.url in message and wrong in message
    assert spec.sha256["train-images-idx3-ubyte"] in message  # the actual digest
    assert os.listdir(tmp_path / "cache/fastnn" / name) == []


def test_corrupt_gzip_download_leaves_nothing(tmp_path, mirror, monkeypatch):
    serve_dataset(mirror, monkeypatch, "fashion-mnist")
    (mirror.dir / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(datasets.DownloadError, match="train-images-idx3-ubyte.gz.*not a valid gzip"):
        load_fashion_mnist()
    assert os.listdir(tmp_path / "cache/fastnn/fashion-mnist") == []


def test_http_404(tmp_path, mirror, monkeypatch):
    serve_dataset(mirror, monkeypatch, "mnist")
    (mirror.dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(datasets.DownloadError, match="HTTP 404") as info:
        load_mnist()
    assert f"{mirror.url}t10k-images-idx3-ubyte.gz" in str(info.value)
    # The two files before it were verified and stay; the failed one leaves no trace.
    assert sorted(os.listdir(tmp_path / "cache/fastnn/mnist")) == sorted(s + ".gz" for s in STEMS[:2])


def test_download_false_makes_no_request(mirror, monkeypatch):
    serve_dataset(mirror, monkeypatch, "mnist")
    with pytest.raises(FileNotFoundError):
        load_mnist(download=False)
    assert mirror.requests == []


# ----------------------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(monkeypatch):
    monkeypatch.setitem(datasets._SPECS, "fashion-mnist", REAL_SPECS["fashion-mnist"])
    (X, y), (X_test, y_test) = load_fashion_mnist(download=False)
    assert X.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X.dtype == X_test.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (60000,) and y_test.shape == (10000,) and y.dtype == y_test.dtype == np.int64
    assert X.min() == 0 and X.max() == 1
    assert set(np.unique(y)) == set(np.unique(y_test)) == set(range(10))


def test_partial_files_of_killed_downloads_are_removed(tmp_path, mirror, monkeypatch):
    serve_dataset(mirror, monkeypatch, "fashion-mnist")
    cache = tmp_path / "cache/fastnn/fashion-mnist"
    cache.mkdir(parents=True)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    stale = cache / f".train-images-idx3-ubyte.gz.{dead}-0a1b2c3d.part"
    live = cache / f".train-labels-idx1-ubyte.gz.{os.getppid()}-0a1b2c3d.part"  # maybe a download in progress
    stale.write_bytes(b"\x1f\x8b half")
    live.write_bytes(b"\x1f\x8b half")
    load_fashion_mnist()
    assert sorted(os.listdir(cache)) == sorted([live.name] + [s + ".gz" for s in STEMS])


def test_download_error_is_an_oserror_naming_the_url(tmp_path):
    with pytest.raises(OSError) as info:
        load_mnist()
    assert isinstance(info.value, datasets.DownloadError)
    assert info.value.url == "http://127.0.0.1:9/train-images-idx3-ubyte.gz"
    assert str(info.value).startswith("could not download http://127.0.0.1:9/train-images-idx3-ubyte.gz: ")
    assert os.listdir(tmp_path / "cache/fastnn/mnist") == []


def test_gzip_idx_stops_at_the_declared_size(tmp_path, monkeypatch):
    """A gzip file holding more than its header declares is refused after reading one byte past it."""
    reads = []
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        data = real_read(self, size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    path = write(tmp_path / "a.idx", idx_bytes(np.zeros(10, np.uint8)) + bytes(5 << 20), True)
    with pytest.raises(ValueError, match=r"expected 10 bytes of uint8 data for shape \(10,\), found more"):
        load_idx(path)
    assert sum(reads) == 8 + 10 + 1


def test_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="pipe: is a FIFO, not a regular file"):
        load_idx(tmp_path / "pipe")


def test_no_memory_error(tmp_path, monkeypatch):
    """Data that fits in RAM but not in what is free now is a ValueError naming the file, not a MemoryError."""
    def no_memory(*args, **kwargs):
        raise MemoryError

    path = write(tmp_path / "a.idx", idx_bytes(np.zeros((3, 4), np.int16)), True)
    monkeypatch.setattr(datasets.np, "empty", no_memory)
    with pytest.raises(ValueError, match=r"a.idx: not enough free memory for 24 bytes of int16 data of shape \(3, 4\)"):
        load_idx(path)
