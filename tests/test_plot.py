"""History.plot: real PNG files of sensible size, one panel per metric, clear errors."""
import builtins
import struct
import zlib

import numpy as np
import pytest

import fastnn as fn

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def png_info(path):
    """Decode a PNG enough to trust it: signature, IHDR (width, height), the pixels' distinct colours."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        chunks.setdefault(kind, []).append(body)
        pos += 12 + length
    assert b"IEND" in chunks
    width, height = struct.unpack(">II", chunks[b"IHDR"][0][:8])
    # The pixels, decoded by Pillow (a matplotlib dependency): the file must decode in full, not just start well.
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (width, height)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return width, height, len(np.unique(pixels, axis=0))


def trained_history(validation=True, epochs=3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = fn.Sequential(fn.Linear(4, 8, seed=0), fn.ReLU(), fn.Linear(8, 2, seed=1))
    with fn.backend("numpy"):
        return model.fit(X, y, loss=fn.SoftmaxCrossEntropy(), optimizer=fn.SGD(model.parameters(), lr=0.1), epochs=epochs, batch_size=32, seed=0,
                         validation_split=0.25 if validation else 0.0, verbose=0)


def test_png_from_a_real_fit(tmp_path):
    history = trained_history()
    path = tmp_path / "curves.png"
    fig = history.plot(path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2  # loss and accuracy, each with its validation curve; a constant lr is a note
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    assert history.history["lr"] == [0.1] * 3 and fig._suptitle.get_text() == "learning rate 0.1"
    assert all(len(a.get_lines()) == 2 for a in fig.axes)
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), history.history["val_loss"])
    width, height, colours = png_info(path)
    assert (width, height) == (900, 360)  # figsize 4.5 in per panel x 3.6 in at 100 dpi
    assert path.stat().st_size > 10_000
    assert colours > 2  # white background, black text and axes, coloured curves


def test_a_changing_learning_rate_gets_its_own_log_panel(tmp_path):
    from fastnn.lr_scheduler import StepLR

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)), rng.normal(size=64)
    model = fn.Sequential(fn.Linear(3, 1, seed=0, dtype=np.float64))
    optimizer = fn.SGD(model.parameters(), lr=0.1)
    with fn.backend("numpy"):
        history = model.fit(X, y, loss=fn.MSELoss(), optimizer=optimizer, epochs=4, batch_size=16, seed=0,
                            callbacks=[StepLR(optimizer, step_size=1, gamma=0.1)], verbose=0)
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.01, 0.001, 0.0001])
    fig = history.plot(tmp_path / "lr.png")
    assert [a.get_title() for a in fig.axes] == ["loss", "learning rate"]
    assert fig.axes[1].get_yscale() == "log" and fig._suptitle is None
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), history.history["lr"])
    assert png_info(tmp_path / "lr.png")[:2] == (900, 360)


def test_draws_into_given_axes_without_writing():
    import matplotlib.pyplot as plt

    history = trained_history(validation=False)
    fig, axes = plt.subplots(1, 2)
    try:
        assert history.plot(ax=axes) is fig
        assert [len(a.get_lines()) for a in axes] == [1, 1]
        with pytest.raises(ValueError, match=r"ax must be 2 matplotlib Axes, one per panel \['loss', 'accuracy'\]"):
            history.plot(ax=axes[0])
    finally:
        plt.close(fig)


def test_empty_history_is_an_error():
    with pytest.raises(ValueError, match="no epochs to plot"):
        fn.History().plot()


def test_missing_matplotlib_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[plot\]'"):
        trained_history(epochs=1).plot()
