"""Model files: round trips, atomic writes, and every kind of bad file rejected with a ValueError."""
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import io as fio
from tests.conftest import DTYPES


def make_model(dtype=np.float32):
    return fastnn.Sequential(fastnn.Linear(4, 3, seed=0, dtype=dtype), fastnn.ReLU(),
                             fastnn.Linear(3, 2, seed=1, dtype=dtype), fastnn.Softmax())


def marker(architecture=None, **overrides):
    """The ``__fastnn__`` member as write_model makes it, with fields replaced by ``overrides``."""
    meta = {"format": "fastnn-model", "version": 1,
            "architecture": make_model().get_config() if architecture is None else architecture}
    meta.update(overrides)
    return np.frombuffer(json.dumps(meta).encode(), np.uint8)


def write_npz(path, **members):
    with open(path, "wb") as f:  # a file object, so numpy appends no ".npz"
        np.savez(f, **members)


def good_arrays(dtype=np.float32):
    return {name: p.data for name, p in make_model(dtype).named_parameters()}


# -- round trip ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path, dtype):
    model = make_model(dtype)
    # Non-zero biases, so a loader that re-initialises them would be caught.
    for p in model.parameters():
        p.data += np.linspace(-1, 1, p.data.size, dtype=dtype).reshape(p.data.shape)
    model.save(tmp_path / "m.npz")
    loaded = fastnn.Sequential.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    assert loaded.get_config() == model.get_config()
    for (name, p), (name2, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert name == name2 and q.data.dtype == p.data.dtype and q.data.shape == p.data.shape
        assert q.data.tobytes() == p.data.tobytes()  # bit-identical, NaN-safe
        assert q.data is not p.data and q.data.flags.writeable
    X = np.random.default_rng(2).standard_normal((5, 4)).astype(dtype)
    np.testing.assert_array_equal(loaded(X), model(X))


def test_file_is_plain_npz(tmp_path):
    make_model().save(str(tmp_path / "m.npz"))  # str paths too
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert set(data.files) == {"0.W", "0.b", "2.W", "2.b", "__fastnn__"}
        meta = json.loads(data["__fastnn__"].tobytes())
    assert meta == {"format": "fastnn-model", "version": 1, "architecture": make_model().get_config()}


def test_path_without_suffix_is_kept(tmp_path):
    path = tmp_path / "weights.bin"
    make_model().save(path)
    assert os.listdir(tmp_path) == ["weights.bin"]
    assert repr(fastnn.Sequential.load(path)) == repr(make_model())


def test_overwrites_existing_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old contents")
    make_model(np.float64).save(path)
    assert fastnn.Sequential.load(path).dtype == np.float64
    assert os.listdir(tmp_path) == ["m.npz"]


def test_file_mode_follows_umask(tmp_path):
    umask = os.umask(0o022)  # the temp file must not keep a private 0o600 mode after the rename
    try:
        make_model().save(tmp_path / "m.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


# -- atomicity -------------------------------------------------------------------------
def _savez_then_crash(f, *args, **kwargs):
    f.write(b"PK\x03\x04 half an archive")
    raise OSError("disk full")


@pytest.mark.parametrize("target, replacement", [
    ("numpy.savez", _savez_then_crash),
    ("os.fsync", lambda fd: (_ for _ in ()).throw(OSError("fsync failed"))),
    ("os.replace", lambda src, dst: (_ for _ in ()).throw(OSError("rename failed"))),
    ("numpy.savez", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)),
])
def test_failed_write_leaves_existing_file_intact(tmp_path, monkeypatch, target, replacement):
    path = tmp_path / "m.npz"
    make_model(np.float64).save(path)
    before = path.read_bytes()
    monkeypatch.setattr(target, replacement)
    with pytest.raises((OSError, KeyboardInterrupt)):
        make_model(np.float32).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # no temp file left behind


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("numpy.savez", _savez_then_crash)
    with pytest.raises(OSError, match="disk full"):
        make_model().save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# -- write_model input checks ----------------------------------------------------------------
def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory .*nope.* does not exist"):
        make_model().save(tmp_path / "nope" / "m.npz")


@pytest.mark.parametrize("arrays, match", [
    ({"0.W": np.array([object()], dtype=object)}, "'0.W' must be an int or float ndarray, got object"),
    ({"0.W": [[1.0, 2.0]]}, "'0.W' must be an int or float ndarray, got list"),
    ({"0.W": np.array(["a"])}, "int or float ndarray, got <U1"),
    ({"__fastnn__": np.zeros(2)}, "array name '__fastnn__'"),
    ({"allow_pickle": np.zeros(2)}, "array name 'allow_pickle'"),
    ({0: np.zeros(2)}, "array name 0 "),
])
def test_write_rejects_bad_arrays(tmp_path, arrays, match):
    with pytest.raises(TypeError, match=match):
        fio.write_model(tmp_path / "m.npz", make_model().get_config(), arrays)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("architecture, match", [
    ({"class": "Linear"}, "architecture must be a list"),
    ([{"class": "ReLU"}], "entry 0"),
    ([{"class": "ReLU", "config": {"x": object()}}], "not JSON-serialisable"),
    ([{"class": "ReLU", "config": {"x": float("nan")}}], "not JSON-serialisable"),
])
def test_write_rejects_bad_architecture(tmp_path, architecture, match):
    with pytest.raises(TypeError, match=match):
        fio.write_model(tmp_path / "m.npz", architecture, {})


# -- bad files -----------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.Sequential.load(tmp_path / "absent.npz")


def _truncated(path):
    make_model().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _zip_with(path, **members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "not an .npz"),
    "text": (lambda p: p.write_text("hello, world\n"), "not an .npz"),
    "npy": (lambda p: np.save(open(p, "wb"), np.zeros(3)), "not an .npz"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps({"a": 1})), "not an .npz"),
    "truncated": (_truncated, "BadZipFile"),
    "no marker": (lambda p: write_npz(p, **good_arrays()), "no '__fastnn__' member"),
    "zip of garbage": (lambda p: _zip_with(p, **{"__fastnn__.npy": b"garbage"}),
                       "member '__fastnn__' is not a .npy array"),
    "garbage parameter": (lambda p: _zip_with(p, **{"__fastnn__.npy": _npy(marker()), "0.W.npy": b"x"}),
                          "member '0.W' is not a .npy array"),
    "stray member": (lambda p: _zip_with(p, **{"__fastnn__.npy": _npy(marker()), "notes.txt": b"hi"}),
                     "member 'notes.txt' is not a .npy array"),
    "corrupt npy header": (lambda p: _zip_with(p, **{"__fastnn__.npy": b"\x93NUMPY\x01\x00garbage"}),
                           "not a valid fastnn model file: EOF"),
    "marker not json": (lambda p: write_npz(p, __fastnn__=np.frombuffer(b"{nope", np.uint8)), "Expecting"),
    "marker not utf-8": (lambda p: write_npz(p, __fastnn__=np.frombuffer(b"\xff\xfe", np.uint8)), "utf-8"),
    "marker float": (lambda p: write_npz(p, __fastnn__=np.zeros(3)), "expected 1-d uint8"),
    "marker list": (lambda p: write_npz(p, __fastnn__=np.frombuffer(b"[1]", np.uint8)), "format marker"),
    "foreign format": (lambda p: write_npz(p, __fastnn__=marker(format="other")), "format marker"),
    "newer version": (lambda p: write_npz(p, __fastnn__=marker(version=3)), "version 3 is not supported"),
    "bool version": (lambda p: write_npz(p, __fastnn__=marker(version=True)), "version True"),
    "no version": (lambda p: write_npz(p, __fastnn__=marker(version=None)), "version None"),
    "architecture dict": (lambda p: write_npz(p, __fastnn__=marker({"class": "ReLU"})),
                          "architecture must be a list"),
    "entry without config": (lambda p: write_npz(p, __fastnn__=marker([{"class": "ReLU"}])), "entry 0"),
    "class not str": (lambda p: write_npz(p, __fastnn__=marker([{"class": 1, "config": {}}])), "entry 0"),
    "config not dict": (lambda p: write_npz(p, __fastnn__=marker([{"class": "ReLU", "config": [1]}])),
                        "entry 0"),
    "extra key": (lambda p: write_npz(p, __fastnn__=marker([{"class": "ReLU", "config": {}, "x": 1}])),
                  "entry 0"),
    "string array": (lambda p: write_npz(p, __fastnn__=marker(), **{"0.W": np.array(["a"])}),
                     "'0.W' has non-numeric dtype"),
    "structured array": (lambda p: write_npz(p, __fastnn__=marker(), **{"0.W": np.zeros(2, "i4,f8")}),
                         "'0.W' has non-numeric dtype"),
}


@pytest.mark.parametrize("make", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file(tmp_path, make):
    build, match = make
    path = tmp_path / "bad.npz"
    build(path)
    with pytest.raises(ValueError, match=match) as info:
        fastnn.Sequential.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="not a valid fastnn model file"):
        fio.read_model(str(path))


class Payload:
    """Unpickling this creates the file ``path``: proof that code from the model file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_payload_is_never_run(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control))).close()
    assert control.exists()  # the payload does fire when unpickled

    ran = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    write_npz(path, __fastnn__=marker(), **{"0.W": np.array([Payload(ran)], dtype=object)})
    with pytest.raises(ValueError, match="evil.npz.*non-numeric dtype object"):
        fastnn.Sequential.load(path)
    assert not ran.exists()


# -- files whose content disagrees with the architecture (checked by Sequential.load) ----------------
@pytest.mark.parametrize("edit, match", [
    (lambda arch, arrays: arch[1].update({"class": "os.system"}), "invalid architecture.*os.system"),
    (lambda arch, arrays: arch[0]["config"].update({"bogus": 1}), "invalid architecture.*bogus"),
    (lambda arch, arrays: arch[0]["config"].update({"dtype": "int32"}), "invalid architecture.*int32"),
    (lambda arch, arrays: arrays.update({"0.W": np.zeros((3, 4), np.float32)}), r"0.W has shape \(3, 4\)"),
    (lambda arch, arrays: arrays.update({"0.b": np.zeros(3, np.float64)}), "0.b .*float64"),
    (lambda arch, arrays: arrays.pop("2.b"), "do not match the architecture"),
    (lambda arch, arrays: arrays.update({"9.W": np.zeros(1)}), "do not match the architecture"),
])
def test_file_disagrees_with_architecture(tmp_path, edit, match):
    arch, arrays = make_model().get_config(), good_arrays()
    edit(arch, arrays)
    fio.write_model(tmp_path / "m.npz", arch, arrays)
    with pytest.raises(ValueError, match=match):
        fastnn.Sequential.load(tmp_path / "m.npz")


# -- stale temporary files of killed writers -------------------------------------------------------------------
def dead_pid():
    """The pid of a process that has exited (and been reaped), so no process has it for now."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_next_save_removes_temp_files_of_dead_writers(tmp_path):
    stale = tmp_path / f".m.npz.{dead_pid()}-0a1b2c3d.tmp"
    live = tmp_path / f".m.npz.{os.getppid()}-0a1b2c3d.tmp"  # our parent runs: maybe a save in progress
    other = tmp_path / f".other.npz.{dead_pid()}-0a1b2c3d.tmp"  # another file's: not this save's business
    for p in (stale, live, other):
        p.write_bytes(b"PK\x03\x04 half an archive")
    make_model().save(tmp_path / "m.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", live.name, other.name])


def test_temp_file_is_named_by_pid(tmp_path, monkeypatch):
    seen = []

    def savez(f, *args, **kwargs):
        seen.extend(os.listdir(tmp_path))
        raise OSError("disk full")

    monkeypatch.setattr("numpy.savez", savez)
    with pytest.raises(OSError):
        make_model().save(tmp_path / "m.npz")
    assert re.fullmatch(rf"\.m\.npz\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", seen[0])


SAVE_LOOP = """
import sys
import numpy as np
import fastnn
model = fastnn.Sequential(fastnn.Linear(784, 512, seed=0), fastnn.ReLU(), fastnn.Linear(512, 10, seed=1))
print("ready", flush=True)
while True:
    model.save(sys.argv[1])
"""


def kill_during_save(tmp_path, trials, rng):
    """SIGKILL a process that saves in a loop, ``trials`` times at random moments; after each, the file must
    load and the next save must leave no temp file behind. Returns (clean, lost)."""
    path = tmp_path / "m.npz"
    env = {**os.environ, "PYTHONPATH": str(Path(fastnn.__file__).parents[1])}
    clean = lost = mid_write = 0
    problems = []
    for _ in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        try:
            # The killed writer's model, or (killed before its first save finished) the one saved before.
            ok = fastnn.load(path).n_features_in in (784, 4) if path.exists() else True
        except ValueError as exc:
            ok, problems = False, problems + [str(exc)]
        left = os.listdir(tmp_path)
        mid_write += any(name.endswith(".tmp") for name in left)
        make_model().save(path)  # cleans what the killed writer left
        if os.listdir(tmp_path) != ["m.npz"]:
            ok, problems = False, problems + [f"before: {left}, after: {os.listdir(tmp_path)}"]
        clean, lost = clean + ok, lost + (not ok)
    return clean, lost, problems + [f"{mid_write} kills left a temp file"]


def test_kill_during_save(tmp_path):
    clean, lost, problems = kill_during_save(tmp_path, 2, np.random.default_rng(0))
    assert (clean, lost) == (2, 0), problems


@pytest.mark.slow
def test_kill_during_save_many(tmp_path):
    clean, lost, problems = kill_during_save(tmp_path, 30, np.random.default_rng(1))
    print(f"\nkills during save: 30 trials, {clean} clean, {lost} lost; {problems[-1]}")
    assert (clean, lost) == (30, 0), problems


# -- what load refuses before building anything ------------------------------------------------------------------
def test_unknown_init_is_an_error(tmp_path):
    arch = make_model().get_config()
    arch[0]["config"]["init"] = "__import__('os')"
    fio.write_model(tmp_path / "m.npz", arch, good_arrays())
    with pytest.raises(ValueError, match=r"layer 0 \(Linear\): init must be one of .*'he'.*, got"):
        fastnn.Sequential.load(tmp_path / "m.npz")


def test_custom_initialiser_round_trips_as_custom(tmp_path):
    model = fastnn.Sequential(fastnn.Linear(3, 2, init=lambda rng, n_in, n_out, dtype: np.ones((n_in, n_out), dtype)))
    assert model.get_config()[0]["config"]["init"] == "custom"
    model.save(tmp_path / "m.npz")
    loaded = fastnn.Sequential.load(tmp_path / "m.npz")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded[0].W.data, 1)


def test_fastnn_initialiser_keeps_its_name():
    assert fastnn.Linear(3, 2, init=fastnn.init.glorot_normal).get_config()["init"] == "glorot_normal"


def test_load_does_not_run_the_initialiser(tmp_path, monkeypatch):
    make_model().save(tmp_path / "m.npz")
    monkeypatch.setitem(fastnn.init._INITIALIZERS, "he", lambda *a: pytest.fail("initialiser ran"))
    fastnn.Sequential.load(tmp_path / "m.npz")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, value):
    model = make_model()
    model[2].b.data[1] = value
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"m.npz: parameter 2.b holds 1 non-finite value\(s\).*allow_nonfinite=True"):
        fastnn.Sequential.load(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz", allow_nonfinite=True)
    assert loaded[2].b.data.tobytes() == model[2].b.data.tobytes()


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="pipe: is a FIFO, not a regular file"):
        fastnn.load(tmp_path / "pipe")


def test_directory_is_an_oserror(tmp_path):
    with pytest.raises(IsADirectoryError):
        fastnn.load(tmp_path)


@pytest.mark.parametrize("edit, match", [
    (lambda arch: arch[0]["config"].update({"in_features": 4.0}), "in_features must be an integer >= 1"),
    (lambda arch: arch[0]["config"].pop("out_features"),
     r"out_features must be an integer >= 1, got None \(NoneType\)"),
    (lambda arch: arch[0]["config"].update({"in_features": 10**12}), "bytes of memory"),
    (lambda arch: arch[1]["config"].update({"inplace": True}), r"layer 1 \(ReLU\): unknown config key"),
])
def test_architecture_checked_before_arrays(tmp_path, edit, match):
    arch = make_model().get_config()
    edit(arch)
    fio.write_model(tmp_path / "m.npz", arch, good_arrays())
    with pytest.raises(ValueError, match=match):
        fastnn.Sequential.load(tmp_path / "m.npz")


def test_member_size_is_checked_before_decompressing(tmp_path):
    """A member whose zip headers declare another size than its .npy header implies is refused unread."""
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # deflated: any size is possible
        zf.writestr("0.W.npy", _npy(good_arrays()["0.W"]))
        zf.writestr("__fastnn__.npy", _npy(marker()))
    data = bytearray(path.read_bytes())
    j = data.find(b"PK\x01\x02")  # 0.W's entry in the central directory, which zipfile reads sizes from
    struct.pack_into("<I", data, j + 24, struct.unpack_from("<I", data, j + 24)[0] + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"member '0.W' declares \d+ bytes, but a float32 array of shape \(4, 3\)"):
        fastnn.load(path)


def test_compressed_file_loads(tmp_path):
    """np.savez_compressed output (deflated members) reads like np.savez's."""
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, __fastnn__=marker(), **good_arrays())
    loaded = fastnn.load(path)
    for name, a in good_arrays().items():
        assert dict(loaded.named_parameters())[name].data.tobytes() == a.tobytes()


def test_no_memory_error(tmp_path, monkeypatch):
    make_model().save(tmp_path / "m.npz")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("numpy.zeros_like", no_memory)  # the gradients, allocated when the layers are built
    with pytest.raises(ValueError, match="m.npz: not enough free memory for a model of 92 bytes of parameters"):
        fastnn.Sequential.load(tmp_path / "m.npz")


# -- the one atomic writer: every file fastnn writes goes through it ----------------------------------------
def test_atomic_write_replaces_the_file_only_when_the_block_ends(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with fio.atomic_write(path, "w", newline="") as f:
        f.write("new\n")
        assert path.read_text() == "old\n"  # not yet: the bytes go to a file beside it
        assert re.fullmatch(rf"\.out\.csv\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", os.path.basename(f.name))
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["out.csv"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path, error):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(type(error)):
        with fio.atomic_write(path) as f:
            f.write(b"half")
            raise error
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_removes_stale_temp_files_of_its_path_only(tmp_path):
    stale = tmp_path / f".out.part.{dead_pid()}-0a1b2c3d.part"
    live = tmp_path / f".out.part.{os.getppid()}-0a1b2c3d.part"
    other = tmp_path / f".other.{dead_pid()}-0a1b2c3d.part"
    for p in (stale, live, other):
        p.write_bytes(b"half")
    with fio.atomic_write(tmp_path / "out.part", suffix=".part") as f:
        f.write(b"done")
    assert sorted(os.listdir(tmp_path)) == sorted(["out.part", live.name, other.name])


def test_atomic_write_needs_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory .* does not exist"):
        with fio.atomic_write(tmp_path / "no" / "out.bin"):
            pass


def test_no_writer_but_atomic_write_renames_files_into_place():
    """One writer: every os.replace of the package is atomic_write's (models, checkpoints, ONNX, CSV,
    downloads), so each gets the stale-temp cleanup."""
    package = Path(fastnn.__file__).parent
    users = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if "os.replace(" in p.read_text())
    assert users == ["io.py"]
    assert Path(package, "io.py").read_text().count("os.replace(") == 1
