"""Tests of skcovid.datasets (folder loader, shipped sample set) and of two private pieces under it.

``skcovid._imaging.raster.read_gray`` decodes every image file skcovid reads (the one set of
decoding rules), and ``skcovid._imaging.folders.list_image_files`` is the folder scanner
that ``load_image_folder`` and the command line share.
"""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skcovid._imaging.folders import list_image_files  # private: the shared folder scanner
from skcovid._imaging.raster import read_gray  # private: the decoding rules
from skcovid.datasets import load_image_folder, load_sample_ct

from conftest import named


def _save_png(path, size=(6, 4), value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path




# --- load_image_folder --------------------------------------------------------

@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "ct"
    covid = root / "COVID"
    non_covid = root / "non-COVID"
    _save_png(covid / "a.png")
    _save_png(covid / "b.png", value=10)
    _save_png(covid / "sub" / "c.png", value=200)  # nested sub-folder of a class folder
    _save_png(covid / "D.PNG")  # upper-case extension
    non_covid.mkdir(parents=True)
    Image.new("RGB", (5, 5), (1, 2, 3)).save(non_covid / "x.jpg")
    _save_png(non_covid / "y.png")
    # Hidden files and folders are ignored, wherever they are.
    (covid / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1 not an image")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1 not an image")
    (non_covid / ".hidden").mkdir()
    (non_covid / ".hidden" / "notes.txt").write_text("not an image")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    # Files directly under the root are not images of any class.
    (root / "README.md").write_text("# CT slices\n")
    return root


def test_load_image_folder(messy_folder):
    X, y = load_image_folder(messy_folder)
    expected = [
        messy_folder / "COVID" / "D.PNG",
        messy_folder / "COVID" / "a.png",
        messy_folder / "COVID" / "b.png",
        messy_folder / "COVID" / "sub" / "c.png",
        messy_folder / "non-COVID" / "x.jpg",
        messy_folder / "non-COVID" / "y.png",
    ]
    assert isinstance(X, np.ndarray) and isinstance(y, np.ndarray)
    assert X.dtype == object and y.dtype == object
    assert X.shape == y.shape == (6,)
    assert all(type(p) is str for p in X)
    assert all(type(label) is str for label in y)
    assert X.tolist() == [str(p) for p in expected]
    assert y.tolist() == ["COVID"] * 4 + ["non-COVID"] * 2
    assert X.tolist() == sorted(X.tolist())


def test_load_image_folder_str_and_path_agree(messy_folder):
    X_path, y_path = load_image_folder(messy_folder)
    X_str, y_str = load_image_folder(str(messy_folder))
    assert X_path.tolist() == X_str.tolist()
    assert y_path.tolist() == y_str.tolist()


def test_load_image_folder_extensions(messy_folder):
    X, y = load_image_folder(messy_folder, extensions=(".png", ".jpg"))
    assert len(X) == 6
    # A narrower set of extensions turns x.jpg into a non-image, which is an error.
    with pytest.raises(ValueError, match=named(messy_folder / "non-COVID" / "x.jpg")):
        load_image_folder(messy_folder, extensions=(".png",))


def test_load_image_folder_missing(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match=named(missing)):
        load_image_folder(missing)


def test_load_image_folder_file_instead_of_folder(tmp_path):
    png = _save_png(tmp_path / "slice.png")
    with pytest.raises(NotADirectoryError, match=named(png)):
        load_image_folder(png)


def test_load_image_folder_without_class_folders(tmp_path):
    _save_png(tmp_path / "a.png")
    (tmp_path / "README.md").write_text("hello")
    (tmp_path / ".hidden").mkdir()  # a hidden folder is not a class folder
    _save_png(tmp_path / ".hidden" / "b.png")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path)


def test_load_image_folder_empty_class_folder(tmp_path):
    _save_png(tmp_path / "COVID" / "a.png")
    (tmp_path / "non-COVID").mkdir()
    with pytest.raises(ValueError, match=named(tmp_path / "non-COVID") + ".*no image"):
        load_image_folder(tmp_path)


def test_load_image_folder_class_folder_with_only_hidden_files(tmp_path):
    _save_png(tmp_path / "COVID" / "a.png")
    _save_png(tmp_path / "non-COVID" / ".b.png")
    (tmp_path / "non-COVID" / "empty-sub").mkdir()
    with pytest.raises(ValueError, match=named(tmp_path / "non-COVID") + ".*no image"):
        load_image_folder(tmp_path)


def test_load_image_folder_text_file_named_png(tmp_path):
    _save_png(tmp_path / "COVID" / "a.png")
    _save_png(tmp_path / "non-COVID" / "b.png")
    fake = tmp_path / "non-COVID" / "x.png"
    fake.write_text("this is not a PNG file\n")
    with pytest.raises(ValueError, match=named(fake)):
        load_image_folder(tmp_path)
    # Without the header check, the file is listed as an image.
    X, y = load_image_folder(tmp_path, check_images=False)
    assert str(fake) in X.tolist()
    assert len(X) == 3


def test_load_image_folder_zero_byte_png(tmp_path):
    _save_png(tmp_path / "COVID" / "a.png")
    _save_png(tmp_path / "non-COVID" / "b.png")
    empty = tmp_path / "COVID" / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=named(empty) + r".*empty file"):
        load_image_folder(tmp_path)


def test_load_image_folder_non_image_extension(tmp_path):
    _save_png(tmp_path / "COVID" / "a.png")
    _save_png(tmp_path / "non-COVID" / "b.png")
    notes = tmp_path / "COVID" / "notes.txt"
    notes.write_text("scanner notes")
    with pytest.raises(ValueError, match=named(notes) + r".*'\.txt'"):
        load_image_folder(tmp_path)
    # An extension check is not a header check: check_images=False still rejects it.
    with pytest.raises(ValueError, match=named(notes)):
        load_image_folder(tmp_path, check_images=False)


def test_load_image_folder_lists_every_bad_file(tmp_path):
    _save_png(tmp_path / "COVID" / "a.png")
    bad = [tmp_path / "COVID" / "notes.txt", tmp_path / "non-COVID" / "x.png"]
    bad[1].parent.mkdir()
    bad[0].write_text("notes")
    bad[1].write_text("not a png")
    with pytest.raises(ValueError, match=r"^2 files") as excinfo:
        load_image_folder(tmp_path)
    for path in bad:
        assert str(path) in str(excinfo.value)


# --- list_image_files (the scanner load_image_folder and the command line share) -------------

def test_list_image_files(messy_folder):
    images, others = list_image_files(messy_folder)
    assert images == [
        messy_folder / "COVID" / "D.PNG",
        messy_folder / "COVID" / "a.png",
        messy_folder / "COVID" / "b.png",
        messy_folder / "COVID" / "sub" / "c.png",
        messy_folder / "non-COVID" / "x.jpg",
        messy_folder / "non-COVID" / "y.png",
    ]
    # Hidden files and everything in hidden folders are left out.
    assert others == [messy_folder / "README.md"]
    assert list_image_files(str(messy_folder)) == (images, others)


def test_list_image_files_extensions_and_order(tmp_path):
    for name in ("b/z.png", "a-b/y.png", "a/x.png", ".a/hidden.png"):
        _save_png(tmp_path / name)
    (tmp_path / "a" / "notes.txt").write_text("scanner notes")
    images, others = list_image_files(tmp_path)
    assert [str(p) for p in images] == sorted(str(p) for p in images)  # sorted as strings
    assert images == [tmp_path / "a-b" / "y.png", tmp_path / "a" / "x.png", tmp_path / "b" / "z.png"]
    assert others == [tmp_path / "a" / "notes.txt"]
    images, others = list_image_files(tmp_path, extensions=(".txt",))
    assert images == [tmp_path / "a" / "notes.txt"] and len(others) == 3


# --- load_sample_ct -----------------------------------------------------------

def test_load_sample_ct():
    X, y = load_sample_ct()
    assert X.dtype == object and y.dtype == object
    assert X.shape == y.shape == (200,)
    labels, counts = np.unique(y.astype(str), return_counts=True)
    assert labels.tolist() == ["COVID", "non-COVID"]
    assert counts.tolist() == [100, 100]
    assert len(set(X.tolist())) == 200

    total_bytes = 0
    roots = set()
    for path, label in zip(X, y):
        path = Path(path)
        assert path.is_file(), path
        # Exactly root/<class>/<file>.png, the layout that pyproject's package-data
        # pattern "data/sample_ct/*/*.png" ships in a wheel.
        assert path.parent.name == label
        assert path.suffix == ".png"
        roots.add(path.parent.parent)
        total_bytes += path.stat().st_size
        with Image.open(path) as image:
            assert image.mode == "L", (path, image.mode)
            assert max(image.size) <= 128, (path, image.size)
            assert min(image.size) >= 1
    assert len(roots) == 1
    assert total_bytes < 3 * 1024 * 1024


def test_sample_ct_readme_license_and_citation():
    X, _ = load_sample_ct()
    readme = Path(X[0]).parent.parent.parent / "README.md"
    packaged = resources.files("skcovid.datasets") / "data" / "README.md"
    assert readme.is_file()
    assert Path(str(packaged)) == readme
    text = " ".join(readme.read_text(encoding="utf-8").split())
    assert "CC BY-NC-SA 4.0" in text
    assert "10.1101/2020.04.24.20078584" in text


# --- read_gray ----------------------------------------------------------------

@pytest.fixture
def grey_pixels():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)  # non-square: catches transposes
    grey[0, 0], grey[-1, -1] = 0, 255
    return grey


def _grey_images(grey):
    rng = np.random.default_rng(1)
    alpha = rng.integers(0, 256, size=grey.shape, dtype=np.uint8)
    # A shuffled grey palette, so that palette indices differ from grey levels.
    perm = rng.permutation(256).astype(np.uint8)  # palette entry i is grey level perm[i]
    inverse = np.argsort(perm).astype(np.uint8)
    p_image = Image.fromarray(inverse[grey])
    p_image = p_image.convert("P")
    p_image.putpalette(np.repeat(perm, 3).tolist())
    return {
        "L": Image.fromarray(grey),
        "LA": Image.fromarray(np.stack([grey, alpha], axis=-1)),
        "RGB": Image.fromarray(np.stack([grey] * 3, axis=-1)),
        "RGBA": Image.fromarray(np.stack([grey] * 3 + [alpha], axis=-1)),
        "P": p_image,
        "I;16": Image.fromarray(grey.astype(np.uint16) * 257),
    }


def test_read_gray_same_pixels_any_mode(tmp_path, grey_pixels):
    expected = grey_pixels.astype(np.float32) / 255.0
    images = _grey_images(grey_pixels)
    assert set(images) == {"L", "LA", "RGB", "RGBA", "P", "I;16"}
    results = {}
    for mode, image in images.items():
        assert image.mode == mode
        path = tmp_path / f"{mode.replace(';', '_')}.png"
        image.save(path)
        # The saved file still has a distinct mode (the test would be moot otherwise).
        with Image.open(path) as reopened:
            assert reopened.mode == image.mode or (mode == "I;16" and reopened.mode == "I")
        results[mode] = read_gray(path)
    for mode, gray in results.items():
        assert gray.dtype == np.float32, mode
        assert gray.shape == grey_pixels.shape, mode
        assert np.array_equal(gray, expected), mode
        assert np.array_equal(gray, results["L"]), mode
    assert results["L"].min() == 0.0 and results["L"].max() == 1.0


def test_read_gray_accepts_str_and_path(tmp_path, grey_pixels):
    path = tmp_path / "slice.png"
    Image.fromarray(grey_pixels).save(path)
    assert np.array_equal(read_gray(path), read_gray(str(path)))


def test_read_gray_missing(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match=named(missing)):
        read_gray(missing)


def test_read_gray_directory(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ValueError, match="directory"):
        read_gray(folder)


@pytest.mark.parametrize("kind", ["text", "empty", "truncated"])
def test_read_gray_corrupt(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "text":
        path.write_text("definitely not a PNG\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        noise = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
        whole = tmp_path / "whole.png"
        Image.fromarray(noise).save(whole)
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # valid header, cut-off pixel data
    with pytest.raises(ValueError, match=named(path)):
        read_gray(path)
