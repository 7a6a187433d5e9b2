"""Hostile inputs, counted: model files, IDX files and download servers built to hurt, each refused cleanly.

Every case is a *trial*. A trial is *clean* when it is refused with the expected exception and a message naming
the problem, within ``BOUND_SECONDS`` and ``BOUND_BYTES`` of extra memory (the issue asks for < 1 s and
< 100 MiB; the time bound is generous so a loaded CI machine does not flake, and the measured figures are
printed, see ``test_counts``). A trial that raises anything else, hangs, or allocates more is *lost*.
Servers listen on 127.0.0.1 only.
"""
import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import datasets
from tests.conftest import run

BOUND_SECONDS = 5.0  # the bound is 1 s; measured figures are printed by the summary test
BOUND_BYTES = 100 << 20
ROOT = Path(__file__).resolve().parents[1]


def measure(fn):
    """Run ``fn``; return ``(exception or None, seconds, peak bytes traced by tracemalloc)``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn()
        error = None
    except Exception as exc:  # noqa: BLE001 - the trial classifies whatever came out
        error = exc
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, seconds, peak


RESULTS = {}  # kind -> list of (case, clean, seconds, peak MiB, message)


def trial(kind, case, fn, expected, match):
    """Run one hostile case, record it, and assert it was refused cleanly."""
    error, seconds, peak = measure(fn)
    clean = (isinstance(error, expected) and match in str(error) and seconds < BOUND_SECONDS
             and peak < BOUND_BYTES)
    RESULTS.setdefault(kind, []).append((case, clean, seconds, peak / 2**20, str(error)[:200]))
    assert isinstance(error, expected), f"{case}: expected {expected.__name__}, got {error!r}"
    assert match in str(error), f"{case}: {match!r} not in {error}"
    assert seconds < BOUND_SECONDS, f"{case}: took {seconds:.2f} s"
    assert peak < BOUND_BYTES, f"{case}: peak {peak / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------------ hostile model files
def npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def meta(architecture):
    text = json.dumps({"format": "fastnn-model", "version": 1, "architecture": architecture}).encode()
    return np.frombuffer(text, np.uint8)


def linear(n_in, n_out, dtype="float32", **extra):
    return {"class": "Linear", "config": {"in_features": n_in, "out_features": n_out, "init": "he",
                                          "dtype": dtype, **extra}}


def zip_members(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def patch_member(path, name, **fields):
    """Rewrite fields of member ``name`` in both zip headers: ``method``, ``crc``, ``compress_size``, ``file_size``."""
    data = bytearray(path.read_bytes())
    # (signature, offset of the name length, offset of the name, offsets of method, crc, compressed, uncompressed)
    layouts = ((b"PK\x03\x04", 26, 30, 8), (b"PK\x01\x02", 28, 46, 10))
    for sig, len_at, name_at, method_at in layouts:
        start = 0
        while (i := data.find(sig, start)) >= 0:
            n = struct.unpack_from("<H", data, i + len_at)[0]
            if bytes(data[i + name_at:i + name_at + n]) == name.encode():
                offsets = {"method": (method_at, "<H"), "crc": (method_at + 6, "<I"),
                           "compress_size": (method_at + 10, "<I"), "file_size": (method_at + 14, "<I")}
                for field, value in fields.items():
                    at, fmt = offsets[field]
                    struct.pack_into(fmt, data, i + at, value)
            start = i + 4
    path.write_bytes(bytes(data))


def small_model_members(**override):
    members = {"__fastnn__.npy": npy(meta([linear(2, 2)])), "0.W.npy": npy(np.zeros((2, 2), np.float32)),
               "0.b.npy": npy(np.zeros(2, np.float32))}
    members.update(override)
    return members


def size_lie(path):
    """A (2, 2) member whose zip headers declare 1.5 GB."""
    zip_members(path, small_model_members())
    patch_member(path, "0.W.npy", file_size=1_500_000_000)


def deflate_bomb(path, megabytes=1500):
    """The issue's case: a 1.5 MB deflate member expanding to 1.5 GB of zeros after a (2, 2) .npy header.

    Built from one full-flushed deflate block of 1 MiB of zeros repeated (each is independent of the data
    before it), so the file takes milliseconds to make; the stream is valid deflate all the way.
    """
    header = npy(np.zeros((2, 2), np.float32))[:-16]
    zip_members(path, small_model_members(**{"0.W.npy": deflate_zeros(header, megabytes)}))
    patch_member(path, "0.W.npy", method=zipfile.ZIP_DEFLATED, file_size=len(header) + (megabytes << 20))


def deflate_zeros(prefix, megabytes):
    """A raw deflate stream of ``prefix`` then ``megabytes`` MiB of zeros, about 1 KiB per MiB, made at once."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + block * megabytes + b"\x03\x00"  # the final, empty block


def gzip_zeros(prefix, megabytes, checksum=True):
    """A gzip file of ``prefix`` then ``megabytes`` MiB of zeros; its CRC is right only with ``checksum``
    (computing it costs a second per GB; a reader that stops at the declared size never gets to compare it)."""
    crc = zlib.crc32(prefix)
    zero = bytes(1 << 20)
    for _ in range(megabytes if checksum else 0):
        crc = zlib.crc32(zero, crc)
    size = (len(prefix) + (megabytes << 20)) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + deflate_zeros(prefix, megabytes)
            + struct.pack("<II", crc, size))


def many_members(path):
    member = npy(np.zeros(1, np.float32))
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(20_000):
            zf.writestr(f"{i}.W.npy", member)


def fifo(path):
    os.mkfifo(path)


def nan_weights(path):
    model = fastnn.Sequential(fastnn.Linear(3, 2, seed=0))
    model.layers[0].W.data[1, 1] = np.inf
    model.save(path)


HOSTILE_MODELS = {
    # The 424-byte file declaring Linear(12000, 12000) and holding no arrays (was: 12 s, 1.75 GB).
    "huge layer, no arrays": (lambda p: zip_members(p, {"__fastnn__.npy": npy(meta([linear(12000, 12000)]))}),
                              ValueError, "do not match the architecture"),
    "Linear(10**7, 10**7)": (lambda p: zip_members(p, {"__fastnn__.npy": npy(meta([linear(10**7, 10**7)]))}),
                             ValueError, "bytes of memory"),
    "Linear(2**62, 2**62)": (lambda p: zip_members(p, {"__fastnn__.npy": npy(meta([linear(2**62, 2**62)]))}),
                             ValueError, "bytes of memory"),
    "huge arrays, small architecture": (lambda p: zip_members(p, {
        "__fastnn__.npy": npy(meta([linear(2, 2)])), "0.W.npy": npy(np.zeros((2000, 2000), np.float32)),
        "0.b.npy": npy(np.zeros(2, np.float32))}), ValueError, "0.W has shape (2000, 2000)"),
    "declared size lies": (size_lie, ValueError, "'0.W' declares 1500000000 bytes"),
    "1.5 GB deflate bomb": (deflate_bomb, ValueError, "'0.W' declares 1572864128 bytes"),
    "unknown init": (lambda p: zip_members(p, {"__fastnn__.npy": npy(meta([linear(2, 2, init="os.system")])),
                                               "0.W.npy": npy(np.zeros((2, 2), np.float32)),
                                               "0.b.npy": npy(np.zeros(2, np.float32))}),
                     ValueError, "init must be one of"),
    "unknown config key": (lambda p: zip_members(p, {"__fastnn__.npy": npy(meta([linear(2, 2, eval="1")]))}),
                           ValueError, "unknown config key(s) ['eval']"),
    "bool width": (lambda p: zip_members(p, {"__fastnn__.npy": npy(meta([linear(True, 2)]))}),
                   ValueError, "in_features must be an integer >= 1"),
    "10 MB marker": (lambda p: zip_members(p, {"__fastnn__.npy": npy(np.zeros(10 << 20, np.uint8))},
                                           zipfile.ZIP_DEFLATED), ValueError, "more than the 1048576 allowed"),
    "20,000 tiny members": (many_members, ValueError, "declares 20000 members, more than the 10000"),
    "non-finite weights": (nan_weights, ValueError, "parameter 0.W holds 1 non-finite value"),
    "FIFO": (fifo, ValueError, "is a FIFO"),
}


@pytest.mark.parametrize("case", HOSTILE_MODELS)
def test_hostile_model_file(tmp_path, case):
    build, expected, match = HOSTILE_MODELS[case]
    path = tmp_path / "hostile.npz"
    build(path)
    trial("hostile model files", case, lambda: fastnn.load(path), expected, match)


# -------------------------------------------------------------------------------------------- hostile IDX files
def idx_header(code, *shape):
    return struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


HOSTILE_IDX = {
    # The case: a small gzip file whose payload expands far beyond what its header declares.
    "1.5 GB gzip bomb, header says 10 bytes": (
        lambda p: p.write_bytes(gzip_zeros(idx_header(0x08, 10), 1500, checksum=False)), "found more"),
    "gzip declaring 60000x1000x1000": (
        lambda p: p.write_bytes(gzip_zeros(idx_header(0x08, 60000, 1000, 1000), 1)), "gzip file can hold"),
    "gzip declaring (2**32-1)**3 float64": (
        lambda p: p.write_bytes(gzip.compress(idx_header(0x0E, *[2**32 - 1] * 3))), "gzip file can hold"),
    "raw declaring (2**32-1)**3": (lambda p: p.write_bytes(idx_header(0x08, *[2**32 - 1] * 3) + bytes(100)),
                                   "found 100"),
    "255 dimensions, 8 bytes": (lambda p: p.write_bytes(b"\0\0\x08\xff" + bytes(4)), "1024-byte header"),
    "truncated gzip": (lambda p: p.write_bytes(gzip.compress(idx_header(0x08, 1000) + bytes(1000))[:30]),
                       "valid gzip stream"),
    "gzip with garbage after": (lambda p: p.write_bytes(gzip.compress(idx_header(0x08, 4) + bytes(4)) + b"junk"),
                                "valid gzip stream"),
    "FIFO": (lambda p: os.mkfifo(p), "is a FIFO"),
}


@pytest.mark.parametrize("case", HOSTILE_IDX)
def test_hostile_idx_file(tmp_path, case):
    build, match = HOSTILE_IDX[case]
    path = tmp_path / "hostile.idx"
    build(path)
    trial("hostile IDX files", case, lambda: datasets.load_idx(path), ValueError, match)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_is_refused(device):
    trial("hostile IDX files", device, lambda: datasets.load_idx(device), ValueError, "is a device")
    trial("hostile model files", device, lambda: fastnn.load(device), ValueError, "is a device")


# ---------------------------------------------------------------------------------------------- hostile servers
class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with ``behave(conn, stop)`` (a thread each)."""

    def __init__(self, behave):
        self.behave, self.stop = behave, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, conn):
        with conn:
            try:
                conn.recv(65536)  # the request
                self.behave(conn, self.stop)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.sock.close()


def drip(data, every):
    def behave(conn, stop):
        for byte in data:
            if stop.wait(every):
                return
            conn.sendall(bytes([byte]))
    return behave


def send(data, then_wait=0.0):
    def behave(conn, stop):
        conn.sendall(data)
        stop.wait(then_wait)
    return behave


def silent(conn, stop):
    stop.wait(30)


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
DEADLINE, STALL = 1.0, 0.5  # seconds, for these tests; the defaults are datasets.DOWNLOAD_DEADLINE and _STALL
HOSTILE_SERVERS = {
    "garbage status line": (send(b"HELLO THERE\r\n\r\n"), "BadStatusLine"),
    "empty status line": (send(b""), "RemoteDisconnected"),
    "HTTP/9.9": (send(b"HTTP/9.9 200 OK\r\n\r\n"), "UnknownProtocol"),
    "status 500": (send(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"), "HTTP 500"),
    "redirect to itself": (send(b"HTTP/1.1 302 Found\r\nLocation: /train-images-idx3-ubyte.gz\r\n"
                                b"Content-Length: 0\r\n\r\n"), "redirect"),
    "65 KiB header line": (send(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n"), "LineTooLong"),
    "silent": (silent, "no data for 0.5 s"),
    "headers dripped, 1 byte per 0.2 s": (drip(OK_HEAD % 10 + bytes(10), 0.2), "1 s deadline"),
    "body dripped, 1 byte per 0.2 s": (lambda conn, stop: (conn.sendall(OK_HEAD % 1000), drip(bytes(1000), 0.2)(
        conn, stop)), "1 s deadline"),
    "short body": (send(OK_HEAD % 1000 + bytes(10)), "closed after 10 of 1000 bytes"),
    "10 GB announced": (send(OK_HEAD % 10**10), "announces 10000000000 bytes"),
    "endless body": (lambda conn, stop: [conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")] + [
        conn.sendall(bytes(1 << 16)) for _ in range(10**6) if not stop.is_set()], "more than the 4194304 bytes"),
    "not gzip": (send(OK_HEAD % 12 + b"hello, world"), "not a valid gzip IDX file"),
    "gzip bomb (1.5 GB, header says 10)": (lambda conn, stop: (
        lambda body: conn.sendall(OK_HEAD % len(body) + body))(
        gzip_zeros(idx_header(0x08, 10), 1500, checksum=False)), "found more"),
    "right gzip, wrong digest": (lambda conn, stop: (lambda body: conn.sendall(OK_HEAD % len(body) + body))(
        gzip.compress(idx_header(0x08, 3) + b"abc")), "SHA-256 mismatch"),
}


def download(url, directory):
    spec = datasets._SPECS["fashion-mnist"]
    datasets._download(spec, url, "train-images-idx3-ubyte", directory, deadline=DEADLINE, stall=STALL,
                       max_bytes=4 << 20)


@pytest.mark.parametrize("case", HOSTILE_SERVERS)
def test_hostile_server(tmp_path, case):
    behave, match = HOSTILE_SERVERS[case]
    server = RawServer(behave)
    try:
        trial("hostile servers", case, lambda: download(server.url, tmp_path), datasets.DownloadError, match)
    finally:
        server.close()
    assert os.listdir(tmp_path) == []  # no partial file


def test_refused_connection(tmp_path):
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()  # nothing listens there now
    trial("hostile servers", "connection refused", lambda: download(url, tmp_path), datasets.DownloadError,
          "Connection refused")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------ the command line
def test_cli_evaluate_refuses_nonfinite_model(tmp_path, capsys):
    path = tmp_path / "diverged.npz"
    model = fastnn.Sequential(fastnn.Linear(784, 10, seed=0), fastnn.Softmax())
    model.layers[0].W.data[:] = np.nan
    model.save(path)
    code, out, err = run(capsys, "evaluate", path, "--dataset", "mnist", "--data-dir", tmp_path)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [f"fastnn: error: {path}: parameter 0.W holds 7840 non-finite value(s) "
                                        "(NaN or inf), as a model saved after its training diverged does; "
                                        "pass allow_nonfinite=True to load it anyway"]


def test_cli_download_failure_is_one_line(tmp_path, monkeypatch, capsys):
    server = RawServer(send(b"HELLO THERE\r\n\r\n"))
    monkeypatch.setenv("FASTNN_MNIST_MIRROR", server.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    try:
        code, out, err = run(capsys, "train", "--dataset", "mnist", "--epochs", "1", "--hidden", "4")
    finally:
        server.close()
    assert code == 1
    assert err.strip().splitlines() == [f"fastnn: error: could not download {server.url}train-images-idx3-ubyte.gz: "
                                        "BadStatusLine: HELLO THERE"]
    assert os.listdir(tmp_path / "cache/fastnn/mnist") == []


# ------------------------------------------------------------------------------------------------- fuzzing loops
def mutate(data, rng):
    """One random damage: flipped bytes, a truncation, a cut-out slice, or inserted garbage."""
    data = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for i in rng.integers(0, len(data), rng.integers(1, 4)):
            data[i] ^= int(rng.integers(1, 256))
    elif kind == 1:
        del data[rng.integers(0, len(data)):]
    elif kind == 2:
        i = rng.integers(0, len(data))
        del data[i:i + rng.integers(1, 64)]
    else:
        i = rng.integers(0, len(data))
        data[i:i] = rng.bytes(int(rng.integers(1, 64)))
    return bytes(data)


def fuzz(tmp_path, kind, base, load, trials, seed):
    """``trials`` damaged copies of ``base``: each must load or raise ValueError, within the bounds."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "fuzzed"
    loaded = 0
    for t in range(trials):
        path.write_bytes(mutate(base, rng))
        error, seconds, peak = measure(lambda: load(path))
        clean = (error is None or isinstance(error, ValueError)) and seconds < BOUND_SECONDS and peak < BOUND_BYTES
        loaded += error is None
        RESULTS.setdefault(kind, []).append((f"fuzz {t}", clean, seconds, peak / 2**20, repr(error)[:200]))
        assert clean, f"trial {t}: {error!r} after {seconds:.2f} s, {peak / 2**20:.1f} MiB"
    return loaded


def model_bytes(tmp_path):
    model = fastnn.Sequential(fastnn.Linear(20, 8, seed=0), fastnn.ReLU(), fastnn.Linear(8, 3, seed=1))
    model.save(tmp_path / "base.npz")
    return (tmp_path / "base.npz").read_bytes()


def idx_bytes_gz(compress):
    data = idx_header(0x08, 30, 28, 28) + np.random.default_rng(0).integers(0, 256, 30 * 784, np.uint8).tobytes()
    return gzip.compress(data, mtime=0) if compress else data


@pytest.mark.parametrize("trials", [60, pytest.param(3000, marks=pytest.mark.slow)], ids=["fast", "slow"])
def test_fuzzed_model_files(tmp_path, trials):
    fuzz(tmp_path, "hostile model files", model_bytes(tmp_path), fastnn.load, trials, seed=trials)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("trials", [30, pytest.param(1500, marks=pytest.mark.slow)], ids=["fast", "slow"])
def test_fuzzed_idx_files(tmp_path, trials, compress):
    fuzz(tmp_path, "hostile IDX files", idx_bytes_gz(compress), datasets.load_idx, trials, seed=trials + compress)


@pytest.mark.slow
def test_random_hostile_servers(tmp_path):
    """300 servers answering with a random cut, damage or drip of a correct response: each download either
    succeeds with the right file or raises DownloadError, within the deadline, leaving no partial file."""
    rng = np.random.default_rng(0)
    body = gzip.compress(idx_header(0x08, 3) + b"abc", mtime=0)
    good = OK_HEAD % len(body) + body
    spec = datasets._SPECS["fashion-mnist"]
    digest = {"train-images-idx3-ubyte": hashlib.sha256(idx_header(0x08, 3) + b"abc").hexdigest()}
    ok_spec = type(spec)(spec.name, digest, True)
    for t in range(300):
        choice = rng.integers(3)
        response = good if choice == 0 else mutate(good, rng)
        behave = drip(response, 0.02) if choice == 2 else send(response)
        server = RawServer(behave)
        directory = tmp_path / f"t{t}"

        def fetch():
            datasets._download(ok_spec, server.url, "train-images-idx3-ubyte", directory, deadline=DEADLINE,
                               stall=STALL, max_bytes=1 << 20)

        try:
            error, seconds, peak = measure(fetch)
        finally:
            server.close()
        files = os.listdir(directory)
        clean = ((error is None and files == ["train-images-idx3-ubyte.gz"])
                 or (isinstance(error, datasets.DownloadError) and files == [])) and seconds < BOUND_SECONDS
        RESULTS.setdefault("hostile servers", []).append((f"random {t}", clean, seconds, peak / 2**20,
                                                          repr(error)[:200]))
        assert clean, f"trial {t}: {error!r}, files {files}, {seconds:.2f} s"


def test_summary(capsys):
    """Print trials / clean / lost per kind with the worst time and memory (run with -s to see it)."""
    lines = []
    for kind, rows in RESULTS.items():
        clean = sum(r[1] for r in rows)
        lines.append(f"{kind}: {len(rows)} trials, {clean} clean, {len(rows) - clean} lost; "
                     f"slowest {max(r[2] for r in rows):.3f} s, largest peak {max(r[3] for r in rows):.1f} MiB")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(r[1] for rows in RESULTS.values() for r in rows)
