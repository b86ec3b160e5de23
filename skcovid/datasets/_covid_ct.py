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


def _assigned_splits(split_file):
    """The split of every image that a class's split files list; ``split_file(split)`` is each file's path.

    Raises
    ------
    ValueError
        When an image is listed in two splits.
    """
    assigned = {}
    for name_split in _SPLITS:
        listing = split_file(name_split)
        for name in _read_split(listing):
            if name in assigned:
                raise ValueError(f"{name!r} is listed in both the {assigned[name]} and the {name_split} "
                                 f"split ({listing}).")
            assigned[name] = name_split
    return assigned


def _check_listed(assigned, present, label, where):
    """Refuse split files that name images ``present`` (names) lacks, naming them and ``where`` they should be."""
    missing = sorted(set(assigned) - set(present))
    if missing:
        raise FileNotFoundError(f"{len(missing)} images named in the {label} split files are not in "
                                f"{where}: {missing[:10]}")


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
            for split in _SPLITS:
                relative = _split_file(split, suffix)
                download(url + relative, staging / Path(relative).name,
                         n_retries=n_retries, delay=delay, progress=False)
            try:
                listed = _assigned_splits(lambda split: staging / Path(_split_file(split, suffix)).name)
            except ValueError as exc:  # what was downloaded does not verify
                raise OSError(str(exc)) from exc
            _check_listed(listed, images, label, f"{archive_name}.zip")
            counts[label] = {"images": len(images), "listed": len(listed)}
        with atomic_write(staging / _MARKER, "w", encoding="utf-8") as f:
            json.dump({"url": url, "counts": counts}, f, indent=2)
        replace_dir(staging, root)


def _listed_images(root, image_folder, split_file):
    """Every image of the official split files, its label and its split.

    Parameters
    ----------
    root : Path
        The copy's folder (for messages).
    image_folder : callable
        ``image_folder(label)`` is the folder of a class's images.
    split_file : callable
        ``split_file(split, suffix)`` is the path of a split file.

    Returns
    -------
    paths, target, split : list of str
        Sorted by class, then file name.

    Raises
    ------
    FileNotFoundError
        When a split file or a listed image is missing.
    ValueError
        When an image is listed in two splits.

    Warns
    -----
    UserWarning
        When images are in no split file (they are left out).
    """
    paths, target, split = [], [], []
    unlisted = []
    for _, suffix, label in _CLASSES:
        for name_split in _SPLITS:
            listing = Path(split_file(name_split, suffix))
            if not listing.is_file():
                raise FileNotFoundError(f"The split file {listing} of the COVID-CT copy in {root} is missing.")
        assigned = _assigned_splits(lambda name_split: Path(split_file(name_split, suffix)))
        folder = Path(image_folder(label))
        if not folder.is_dir():
            raise FileNotFoundError(f"The {label} image folder {folder} of the COVID-CT copy is missing.")
        present = {image.name: image for image in folder.iterdir()}
        _check_listed(assigned, present, label, folder)
        for name in sorted(present):
            if name not in assigned:
                unlisted.append(str(present[name]))
                continue
            paths.append(str(present[name]))
            target.append(label)
            split.append(assigned[name])
    if unlisted:
        warnings.warn(f"{len(unlisted)} images are in no official split and are left out: "
                      f"{unlisted[:5]}", UserWarning, stacklevel=3)
    return paths, target, split


def _read_copy(root):
    """:func:`_listed_images` of a copy laid out by :func:`fetch_covid_ct` or as the dataset's repository."""
    if (root / _MARKER).exists():  # fetched: class folders and split files side by side
        return _listed_images(root, lambda label: root / label,
                              lambda split, suffix: root / Path(_split_file(split, suffix)).name)
    if not (root / "Data-split").is_dir():
        raise FileNotFoundError(
            f"{root} is not a COVID-CT copy: it has neither Data-split/ (the dataset's repository layout) "
            f"nor {_MARKER} (a folder fetch_covid_ct made).")
    archives = {label: archive for archive, _, label in _CLASSES}
    return _listed_images(root, lambda label: root / "Images" / archives[label],
                          lambda split, suffix: root / _split_file(split, suffix))


#: What each ``subset`` of :func:`load_covid_ct` holds.
_SUBSETS = {"train": ("train",), "val": ("val",), "trainval": ("train", "val"), "test": ("test",)}


def load_covid_ct(path, subset="trainval"):
    """The slices of one part of the official split of a local COVID-CT copy.

    Reads a copy laid out as the dataset's repository (and its mirrors such
    as ``KamalEyubov/sose2020-idv``) keeps it: ``Images/CT_COVID/``,
    ``Images/CT_NonCOVID/`` and ``Data-split/{COVID,NonCOVID}/{train,val,test}CT_*.txt``;
    or a folder made by :func:`fetch_covid_ct`. Nothing is downloaded.

    The split is by patient: tune on ``"train"`` and ``"val"`` (or fit on
    ``"trainval"``), and keep ``"test"`` for the final figure.

    Parameters
    ----------
    path : str or path-like
        The copy's folder.
    subset : {"train", "val", "trainval", "test"}, default="trainval"
        The official split's part (``"trainval"`` is train and val together).

    Returns
    -------
    X : ndarray of str of shape (n_samples,)
        Image paths, sorted by class, then file name.
    y : ndarray of str of shape (n_samples,)
        ``"COVID"`` or ``"non-COVID"``.

    Raises
    ------
    ValueError
        When ``subset`` is not one of the four, or an image is listed in two splits.
    FileNotFoundError
        When the folder is not a COVID-CT copy: a split file, an image folder
        or a listed image is missing.

    Examples
    --------
    >>> from skcovid.datasets import load_covid_ct
    >>> X, y = load_covid_ct("sose2020-idv", subset="train")  # doctest: +SKIP
    >>> len(X), sorted(set(y))  # doctest: +SKIP
    (425, ['COVID', 'non-COVID'])
    """
    if subset not in _SUBSETS:
        raise ValueError(f"subset={subset!r} is not one of {sorted(_SUBSETS)}.")
    paths, target, split = _read_copy(Path(path))
    keep = np.isin(np.asarray(split, dtype=object), _SUBSETS[subset])
    return np.asarray(paths, dtype=object)[keep], np.asarray(target, dtype=object)[keep]


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
    paths, target, split = _read_copy(root)
    paths, target = np.asarray(paths, dtype=object), np.asarray(target, dtype=object)
    if return_X_y:
        return paths, target
    return Bunch(paths=paths, target=target, split=np.asarray(split, dtype=object),
                 target_names=np.asarray(["COVID", "non-COVID"], dtype=object), DESCR=_DESCR)
