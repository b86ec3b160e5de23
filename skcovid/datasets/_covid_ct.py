"""The UCSD COVID-CT dataset (Yang et al., 2020), fetched from its GitHub home."""

import json
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from skcovid._core.files import atomic_write
from skcovid._imaging.raster import IMAGE_EXTENSIONS
from skcovid.datasets._base import download, get_data_home, replace_dir

#: The raw files of https://github.com/UCSD-AI4H/COVID-CT.
COVID_CT_URL = "https://github.com/UCSD-AI4H/COVID-CT/raw/master/"
#: Archive, split-file name suffix and skcovid's label of each class.
_CLASSES = (("CT_COVID", "COVID", "COVID"), ("CT_NonCOVID", "NonCOVID", "non-COVID"))
_SPLITS = ("train", "val", "test")
#: Images per class in the official release (the dataset paper, Yang et al. 2020).
_EXPECTED_COUNTS = {"COVID": 349, "non-COVID": 397}
_FOLDER = "covid_ct"
_MARKER = "skcovid_fetch.json"

_DESCR = """UCSD COVID-CT dataset: 349 CT slices showing COVID-19 and 397 that do not, collected from
COVID-19 preprints (medRxiv, bioRxiv) by Yang X., He X., Zhao J., Zhang Y., Zhang S., Xie P., "COVID-CT-Dataset:
A CT Scan Dataset about COVID-19", arXiv:2003.13865 (2020); https://github.com/UCSD-AI4H/COVID-CT. Images
come from papers, at mixed sizes and qualities; the official split keeps slices of one patient on one side.
See the repository for the license terms of the images."""


def _split_file(split, suffix):
    return f"Data-split/{suffix}/{split}CT_{suffix}.txt"


def _read_split(path):
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _extract_images(archive, target):
    """Extract the image files of a zip archive flat into ``target``; return their names."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise OSError(f"{archive.name} is corrupt: CRC check failed for {bad!r}.")
            names = []
            for info in zf.infolist():
                member = Path(info.filename)
                if (info.is_dir() or member.suffix.lower() not in IMAGE_EXTENSIONS
                        or any(part.startswith((".", "__MACOSX")) for part in member.parts)):
                    continue
                # Flat, by base name: no member can write outside ``target``.
                with zf.open(info) as source, open(target / member.name, "wb") as out:
                    shutil.copyfileobj(source, out)
                names.append(member.name)
    except zipfile.BadZipFile as exc:
        raise OSError(f"{archive.name} is not a valid zip archive: {exc}") from exc
    return names


def _download_and_verify(root, url, *, official, n_retries, delay, progress):
    """Download, verify and lay out the dataset in a temporary folder; move it to ``root``."""
    with tempfile.TemporaryDirectory(prefix=".covid_ct.", dir=root.parent) as tmp:
        tmp = Path(tmp)
        staging = tmp / _FOLDER
        staging.mkdir()
        counts = {}
        for archive_name, suffix, label in _CLASSES:
            archive = download(f"{url}Images-processed/{archive_name}.zip", tmp / f"{archive_name}.zip",
                               n_retries=n_retries, delay=delay, progress=progress)
            (staging / label).mkdir()
            images = set(_extract_images(archive, staging / label))
            archive.unlink()
            if official and len(images) != _EXPECTED_COUNTS[label]:
                raise OSError(
                    f"{archive_name}.zip holds {len(images)} images; the official release has "
                    f"{_EXPECTED_COUNTS[label]}. The download may be incomplete or the dataset changed."
                )
            listed = {}
            for split in _SPLITS:
                relative = _split_file(split, suffix)
                path = download(url + relative, staging / Path(relative).name,
                                n_retries=n_retries, delay=delay, progress=False)
                for name in _read_split(path):
                    if name in listed:
                        raise OSError(f"{name!r} is listed in both {listed[name]} and {split} "
                                      f"({Path(relative).name}).")
                    listed[name] = split
            missing = sorted(set(listed) - images)
            if missing:
                raise OSError(
                    f"{len(missing)} images named in the {label} split files are not in "
                    f"{archive_name}.zip: {missing[:10]}"
                )
            counts[label] = {"images": len(images), "listed": len(listed)}
        with atomic_write(staging / _MARKER, "w", encoding="utf-8") as f:
            json.dump({"url": url, "counts": counts}, f, indent=2)
        replace_dir(staging, root)


def fetch_covid_ct(data_home=None, *, download_if_missing=True, return_X_y=False, url=None,
                   n_retries=3, delay=1.0, progress=True):
    """Load the UCSD COVID-CT dataset (349 COVID, 397 non-COVID slices) with its official split.

    Downloads it on first use from the dataset's GitHub home into
    ``data_home/covid_ct`` (``COVID/`` and ``non-COVID/`` image folders,
    which :func:`load_image_folder` and ``skcovid train`` read directly, plus
    the split files). The zip archives' checksums, the image counts and the
    split files are verified before anything is moved into place; an
    interrupted download leaves neither a partial file nor a partial folder.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        See :func:`get_data_home`.
    download_if_missing : bool, default=True
        When False and the data is not cached, raise instead of downloading.
    return_X_y : bool, default=False
        Return ``(paths, target)`` instead of a Bunch.
    url : str or None, default=None
        A mirror of the repository's raw files (with ``Images-processed/`` and
        ``Data-split/`` under it); ``None`` for GitHub. The official image
        counts are enforced only for GitHub.
    n_retries : int, default=3
    delay : float, default=1.0
        Retries and seconds between them, per file.
    progress : bool, default=True
        Download progress bars on stderr.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``paths`` (str, sorted by class then name), ``target`` (``"COVID"`` or
        ``"non-COVID"``), ``split`` (``"train"``, ``"val"`` or ``"test"``,
        the official split), ``target_names`` and ``DESCR``.
    (paths, target) : tuple
        When ``return_X_y``.

    Raises
    ------
    FileNotFoundError
        When the data is not cached and ``download_if_missing`` is False.
    OSError
        When a download fails or what it got does not verify.
    """
    home = get_data_home(data_home)
    root = home / _FOLDER
    if not (root / _MARKER).exists():
        if not download_if_missing:
            raise FileNotFoundError(
                f"COVID-CT is not in {root} and download_if_missing=False; call "
                "fetch_covid_ct() with network access once to download it (about 90 MB).")
        _download_and_verify(root, url or COVID_CT_URL, official=url is None,
                             n_retries=n_retries, delay=delay, progress=progress)
    paths, target, split = [], [], []
    unlisted = []
    for _, suffix, label in _CLASSES:
        assigned = {}
        for name_split in _SPLITS:
            for name in _read_split(root / Path(_split_file(name_split, suffix)).name):
                assigned[name] = name_split
        for image in sorted((root / label).iterdir()):
            if image.name not in assigned:
                unlisted.append(str(image))
                continue
            paths.append(str(image))
            target.append(label)
            split.append(assigned[image.name])
    if unlisted:
        warnings.warn(f"{len(unlisted)} images are in no official split and are left out: "
                      f"{unlisted[:5]}", UserWarning, stacklevel=2)
    paths, target = np.asarray(paths, dtype=object), np.asarray(target, dtype=object)
    if return_X_y:
        return paths, target
    return Bunch(paths=paths, target=target, split=np.asarray(split, dtype=object),
                 target_names=np.asarray(["COVID", "non-COVID"], dtype=object), DESCR=_DESCR)
