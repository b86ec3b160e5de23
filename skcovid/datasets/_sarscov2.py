"""The SARS-CoV-2 CT-scan dataset (Soares et al., 2020), from a local copy."""

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from skcovid._core.files import file_sha256
from skcovid.datasets._base import get_data_home
from skcovid.datasets._folder import load_image_folder

_FOLDER = "sarscov2-ctscan"
_KAGGLE = "https://www.kaggle.com/datasets/plameneduardo/sarscov2-ctscan-dataset"

_DESCR = """SARS-CoV-2 CT-scan dataset: 1252 CT slices of patients with SARS-CoV-2 infection and 1229 of
patients without (the paper counts 1230), from hospitals in Sao Paulo, Brazil. Soares E., Angelov P., Biaso S.,
Higa Froes M., Kanda Abe D., "SARS-CoV-2 CT-scan dataset: A large dataset of real patients CT scans for
SARS-CoV-2 identification", medRxiv 2020, doi:10.1101/2020.04.24.20078584; Kaggle
plameneduardo/sarscov2-ctscan-dataset. License CC BY-NC-SA 4.0. No patient ids and no official split:
a slice-level split puts slices of one patient on both sides and inflates accuracy. The image mode
(RGB vs RGBA) differs between the classes; skcovid reads every slice as grayscale. Two pairs of files are
byte-identical (see ``duplicates``)."""


def _candidates(data_home):
    env = os.environ.get("SKCOVID_SARSCOV2_DIR")
    if env:
        yield Path(env).expanduser()
    yield get_data_home(data_home) / _FOLDER


def _duplicates(paths):
    by_hash = defaultdict(list)
    for path in paths:
        by_hash[file_sha256(path).hexdigest()].append(path)
    return [group for group in by_hash.values() if len(group) > 1]


def fetch_sarscov2_ct(data_home=None, *, drop_duplicates=False, return_X_y=False):
    """Load the SARS-CoV-2 CT-scan dataset (2481 slices) from a local copy.

    Its public home needs a Kaggle login, so skcovid cannot download it: put
    it (the ``COVID/`` and ``non-COVID/`` folders) in
    ``data_home/sarscov2-ctscan`` or point ``$SKCOVID_SARSCOV2_DIR`` at it.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        See :func:`get_data_home`.
    drop_duplicates : bool, default=False
        Keep only the first of each group of byte-identical files (two pairs),
        so that no image can be on both sides of a split.
    return_X_y : bool, default=False
        Return ``(paths, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``paths``, ``target`` (``"COVID"`` or ``"non-COVID"``), ``duplicates``
        (groups of byte-identical paths, found by SHA-256), ``target_names``
        and ``DESCR``.
    (paths, target) : tuple
        When ``return_X_y``.

    Raises
    ------
    FileNotFoundError
        When no local copy is found; the message says how to get one.
    """
    tried = []
    for root in _candidates(data_home):
        if (root / "COVID").is_dir() and (root / "non-COVID").is_dir():
            break
        tried.append(str(root))
    else:
        raise FileNotFoundError(
            "The SARS-CoV-2 CT-scan dataset was not found (looked in: "
            f"{', '.join(tried)}). It needs a Kaggle login, so skcovid cannot download it: "
            f"download it from {_KAGGLE} (or run 'kaggle datasets download "
            "plameneduardo/sarscov2-ctscan-dataset'), unzip it so that the folders COVID/ and "
            f"non-COVID/ are in {tried[-1]}, or set SKCOVID_SARSCOV2_DIR to the folder holding them."
        )
    paths, target = load_image_folder(root)
    keep = np.isin(target, ["COVID", "non-COVID"])
    paths, target = paths[keep], target[keep]
    duplicates = _duplicates(paths)
    if drop_duplicates:
        dropped = {path for group in duplicates for path in group[1:]}
        keep = np.asarray([path not in dropped for path in paths])
        paths, target = paths[keep], target[keep]
    if return_X_y:
        return paths, target
    return Bunch(paths=paths, target=target, duplicates=duplicates,
                 target_names=np.asarray(["COVID", "non-COVID"], dtype=object), DESCR=_DESCR)
