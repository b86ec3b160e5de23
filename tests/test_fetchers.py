"""Dataset fetchers, against a local HTTP server (no test touches the internet)."""

import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from skcovid.datasets import (
    fetch_covid_ct,
    fetch_sarscov2_ct,
    get_data_home,
    load_image_folder,
)

from conftest import REAL_DATA, png_bytes

_SPLIT = {"COVID": {"train": 3, "val": 1, "test": 2}, "NonCOVID": {"train": 2, "val": 1, "test": 2}}




def _mirror(root, *, drop_from_zip=None):
    """A small copy of the COVID-CT repository layout: zips of images plus split files."""
    (root / "Images-processed").mkdir(parents=True)
    seed = 0
    for archive, suffix in (("CT_COVID", "COVID"), ("CT_NonCOVID", "NonCOVID")):
        (root / "Data-split" / suffix).mkdir(parents=True)
        with zipfile.ZipFile(root / "Images-processed" / f"{archive}.zip", "w") as zf:
            zf.writestr(f"__MACOSX/{archive}/._junk.png", b"mac resource fork")
            for split, n in _SPLIT[suffix].items():
                names = [f"{suffix}_{split}_{i} (x).png" for i in range(n)]
                (root / "Data-split" / suffix / f"{split}CT_{suffix}.txt").write_text("\n".join(names) + "\n")
                for name in names:
                    seed += 1
                    if name != drop_from_zip:
                        zf.writestr(f"{archive}/{name}", png_bytes(seed))
    return root


class _Server:
    """Serves a folder on 127.0.0.1; ``truncate`` makes responses stop halfway."""

    def __init__(self, folder, truncate=False):
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_message(self, *args):
                pass

            def copyfile(self, source, outputfile):
                data = source.read()
                outer.requests.append(self.path)
                outputfile.write(data[: len(data) // 2] if truncate else data)

        self.requests = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _leftovers(home):
    return [p for p in Path(home).rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


def test_downloads_verifies_and_caches(tmp_path):
    mirror = _mirror(tmp_path / "mirror")
    home = tmp_path / "home"
    with _Server(mirror) as server:
        data = fetch_covid_ct(home, url=server.url, progress=False)
        n_requests = len(server.requests)
    assert n_requests == 8  # 2 archives + 6 split files
    assert len(data.paths) == 11 and sorted(set(data.target)) == ["COVID", "non-COVID"]
    assert {s: int(np.sum(data.split == s)) for s in ("train", "val", "test")} == \
        {"train": 5, "val": 2, "test": 4}
    covid_test = data.paths[(data.target == "COVID") & (data.split == "test")]
    assert sorted(Path(p).name for p in covid_test) == ["COVID_test_0 (x).png", "COVID_test_1 (x).png"]
    assert all(Path(p).is_file() for p in data.paths)
    assert not _leftovers(home)
    # The cache is used: no server, no download.
    again = fetch_covid_ct(home, download_if_missing=False)
    np.testing.assert_array_equal(again.paths, data.paths)
    np.testing.assert_array_equal(again.split, data.split)
    X, y = fetch_covid_ct(home, download_if_missing=False, return_X_y=True)
    # The folder is a plain image folder too (for skcovid train).
    X_folder, y_folder = load_image_folder(home / "covid_ct")
    assert sorted(X_folder) == sorted(X) and sorted(y_folder) == sorted(y)


def test_not_cached_and_no_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_if_missing=False"):
        fetch_covid_ct(tmp_path, download_if_missing=False)


def test_interrupted_download_leaves_nothing(tmp_path):
    mirror = _mirror(tmp_path / "mirror")
    home = tmp_path / "home"
    with _Server(mirror, truncate=True) as server:
        with pytest.raises(OSError, match=r"Could not download .*CT_COVID.zip.*bytes"):
            fetch_covid_ct(home, url=server.url, n_retries=1, delay=0, progress=False)
        assert len(server.requests) == 2  # retried once
    assert list(home.iterdir()) == []


def test_missing_image_named_in_split_is_an_error(tmp_path):
    mirror = _mirror(tmp_path / "mirror", drop_from_zip="COVID_val_0 (x).png")
    with _Server(mirror) as server:
        with pytest.raises(OSError, match=r"1 images named in the COVID split.*COVID_val_0"):
            fetch_covid_ct(tmp_path / "home", url=server.url, progress=False)
    assert list((tmp_path / "home").iterdir()) == []


def test_corrupt_archive_is_an_error(tmp_path):
    mirror = _mirror(tmp_path / "mirror")
    archive = mirror / "Images-processed" / "CT_NonCOVID.zip"
    data = bytearray(archive.read_bytes())
    start = data.index(b"IDAT") + 8  # inside the first stored PNG's pixel data
    data[start:start + 4] = b"\x00\x01\x02\x03"
    archive.write_bytes(bytes(data))
    with _Server(mirror) as server:
        with pytest.raises(OSError, match="CT_NonCOVID.zip is corrupt"):
            fetch_covid_ct(tmp_path / "home", url=server.url, progress=False)


def test_official_counts_are_enforced(tmp_path, monkeypatch):
    mirror = _mirror(tmp_path / "mirror")
    with _Server(mirror) as server:
        monkeypatch.setattr("skcovid.datasets._covid_ct.COVID_CT_URL", server.url)  # its GitHub address
        with pytest.raises(OSError, match="holds 6 images; the official release has 349"):
            fetch_covid_ct(tmp_path / "home", progress=False)


def test_data_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SKCOVID_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert get_data_home(tmp_path / "x") == tmp_path / "x"


def test_sarscov2_missing_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SKCOVID_SARSCOV2_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"Kaggle login.*kaggle.com/datasets/plameneduardo"):
        fetch_sarscov2_ct(tmp_path)


def test_sarscov2_local_copy_and_duplicates(tmp_path, monkeypatch):
    root = tmp_path / "sarscov2-ctscan"
    for label, n in (("COVID", 3), ("non-COVID", 2)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            (root / label / f"{label}_{i}.png").write_bytes(png_bytes(i if label == "non-COVID" else 10 + min(i, 1)))
    monkeypatch.delenv("SKCOVID_SARSCOV2_DIR", raising=False)
    data = fetch_sarscov2_ct(tmp_path)
    assert len(data.paths) == 5
    assert [[Path(p).name for p in g] for g in data.duplicates] == [["COVID_1.png", "COVID_2.png"]]
    X, y = fetch_sarscov2_ct(tmp_path, drop_duplicates=True, return_X_y=True)
    assert len(X) == 4 and "COVID_2.png" not in {Path(p).name for p in X}
    monkeypatch.setenv("SKCOVID_SARSCOV2_DIR", str(root))
    assert len(fetch_sarscov2_ct(tmp_path / "elsewhere").paths) == 5


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="SARS-CoV-2 CT-scan dataset not present")
def test_sarscov2_real_copy(monkeypatch):
    monkeypatch.setenv("SKCOVID_SARSCOV2_DIR", str(REAL_DATA))
    data = fetch_sarscov2_ct()
    assert (np.sum(data.target == "COVID"), np.sum(data.target == "non-COVID")) == (1252, 1229)
    assert sorted(Path(p).name for g in data.duplicates for p in g) == \
        ["Covid (128).png", "Covid (129).png", "Covid (134).png", "Covid (135).png"]
