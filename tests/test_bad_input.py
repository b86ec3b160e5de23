"""Bad input the earlier modules do not already test: each gets a clear error, or is skipped on request."""

import warnings

import numpy as np
import pytest
from PIL import Image

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.datasets import load_image_folder

from conftest import FAST, named, write_png


def _fit_with(path, tmp_path):
    """Fit on a good slice and ``path``: the error of the bad one reaches the caller."""
    good = write_png(tmp_path / "good.png")
    TransferCNNClassifier(**FAST).fit([str(good), str(path)], ["COVID", "non-COVID"])


def test_one_pixel_image(tmp_path):
    path = write_png(tmp_path / "dot.png", (1, 1))
    with pytest.raises(ValueError, match=named(path) + r" is 1x1 pixels; a CT slice needs at least 4x4"):
        _fit_with(path, tmp_path)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = write_png(tmp_path / "huge.png", (40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels is over the limit
    with pytest.raises(ValueError, match=named(path) + r" is 40x30 = 1200 pixels, over Pillow's "
                                         r"decompression-bomb limit of 1000"):
        _fit_with(path, tmp_path)


def test_corrupt_jpeg(tmp_path):
    whole = tmp_path / "whole.jpg"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64), dtype=np.uint8)).save(whole)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.read_bytes()[:300])
    with pytest.raises(ValueError, match="Cannot decode image file " + named(path)):
        _fit_with(path, tmp_path)


@pytest.mark.parametrize("X, match", [
    (np.full((8, 6, 6), np.inf), "infinity"),
    (np.zeros((0, 6, 6)), "0 sample"),
    (np.zeros((8, 2, 2, 2, 2)), "dim"),
    ([], "0 sample|empty"),
])
def test_bad_arrays(X, match):
    with pytest.raises(ValueError, match=match):
        TransferCNNClassifier(**FAST).fit(X, np.arange(len(X)) % 2)


def test_unknown_pruner():
    X, y = np.random.RandomState(0).rand(8, 8, 8), np.arange(8) % 2
    with pytest.raises(TypeError, match="'pruner' parameter of PrunedCNNClassifier must be an object "
                                        "implementing 'fit', 'transform' and 'prepare_finetuning'.*Got 'l1'"):
        PrunedCNNClassifier(TransferCNNClassifier(**FAST), pruner="l1").fit(X, y)


@pytest.fixture
def messy_folder(tmp_path):
    """Good slices with a few bad files among them."""
    for label in ("COVID", "non-COVID"):
        (tmp_path / label).mkdir()
        for i in range(5):
            write_png(tmp_path / label / f"{i}.png")
    (tmp_path / "COVID" / "notes.png").write_text("not an image\n")
    (tmp_path / "COVID" / "zero.png").write_bytes(b"")
    whole = (tmp_path / "non-COVID" / "0.png").read_bytes()
    (tmp_path / "non-COVID" / "cut.png").write_bytes(whole[: len(whole) // 2])
    write_png(tmp_path / "non-COVID" / "dot.png", (1, 1))
    return tmp_path


def test_folder_with_bad_files_fails_listing_them(messy_folder):
    with pytest.raises(ValueError) as info:
        load_image_folder(messy_folder)
    message = str(info.value)
    assert "4 files under" in message and "on_error='skip'" in message
    for name in ("notes.png", "zero.png", "cut.png", "dot.png"):
        assert name in message


def test_folder_with_bad_files_can_skip_them_with_a_warning(messy_folder):
    with pytest.warns(UserWarning, match=r"4 files under .* are not usable images; skipped") as record:
        X, y = load_image_folder(messy_folder, on_error="skip")
    assert len(X) == 10 and not any(name in " ".join(X) for name in ("notes", "zero", "cut", "dot"))
    assert "cut.png" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)  # all of them decode
    with pytest.raises(ValueError, match="on_error='ignore' is not valid"):
        load_image_folder(messy_folder, on_error="ignore")
