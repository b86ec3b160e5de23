"""Several class folders read as one data set, each folder a source (a hospital, a public set)."""

from collections import Counter
from pathlib import Path

import numpy as np

from skcovid._imaging.folders import list_image_files
from skcovid._imaging.medical import is_medical
from skcovid.datasets._dicom import load_dicom_folder
from skcovid.datasets._folder import load_image_folder


def load_class_folder(path, *, on_error="raise"):
    """One class folder of raster images or of DICOM series and NIfTI volumes.

    A folder holding any DICOM or NIfTI file is read with
    :func:`load_dicom_folder` (patients known), otherwise with
    :func:`load_image_folder` (patients known where images sit in
    ``class/patient/`` folders; an image directly in its class folder is its
    own group, its path).

    Parameters
    ----------
    path : str or os.PathLike
        The folder, one sub-folder per class.
    on_error : {"raise", "skip"}, default="raise"
        What to do with files that are not usable images (:func:`load_image_folder`).

    Returns
    -------
    X, y, groups : ndarray of shape (n_images,), dtype object
    has_patients : bool
        Whether the layout names the patients.
    """
    _, others = list_image_files(path) if Path(path).is_dir() else ([], [])
    if any(is_medical(str(f)) for f in others):
        return (*load_dicom_folder(path), True)
    X, y, groups = load_image_folder(path, on_error=on_error, return_groups=True)
    return X, y, groups, bool(np.any(groups != X))


def source_names(paths):
    """A name per folder: its own name, or the path as given where two folders share a name."""
    names = [Path(path).name or str(path) for path in paths]
    counts = Counter(names)
    return [name if counts[name] == 1 else str(path) for name, path in zip(names, paths)]


def load_sources(paths, *, on_error="raise"):
    """The slices of several class folders, each folder a source, with the source of each slice.

    Every folder has one sub-folder per class (the same class names in all of
    them) and is read as :func:`load_image_folder` or, where it holds DICOM or
    NIfTI files, :func:`load_dicom_folder` reads it. Pass ``sources`` as
    ``groups`` to :class:`~sklearn.model_selection.LeaveOneGroupOut` to score
    each source with a model trained on the others, and ``patients`` to keep
    each patient on one side of a split within the sources.

    Parameters
    ----------
    paths : list of str or os.PathLike
        The class folders, one per source.
    on_error : {"raise", "skip"}, default="raise"
        What to do with files that are not usable images (:func:`load_image_folder`).

    Returns
    -------
    X : ndarray of shape (n_images,), dtype object
        Paths, source by source in the order of ``paths``.
    y : ndarray of shape (n_images,), dtype object
        The class folder name of each slice.
    sources : ndarray of shape (n_images,), dtype object
        The source of each slice: its folder's name (its path as given where
        two folders share a name).
    patients : ndarray of shape (n_images,), dtype object
        ``"<source>/<patient>"`` where the layout names the patient
        (``class/patient/`` folders, DICOM series, NIfTI volumes), else the
        slice's path: its own group.

    Raises
    ------
    ValueError
        If ``paths`` is empty, names a folder twice, or the folders' classes differ (each folder's
        classes are listed).

    Examples
    --------
    >>> from sklearn.model_selection import LeaveOneGroupOut
    >>> from skcovid.datasets import load_sources
    >>> X, y, sources, patients = load_sources(["hospital_a", "hospital_b"])  # doctest: +SKIP
    >>> splits = LeaveOneGroupOut().split(X, y, groups=sources)  # doctest: +SKIP
    """
    paths = list(paths)
    if not paths:
        raise ValueError("load_sources needs at least one folder.")
    resolved = [Path(path).resolve() for path in paths]
    if len(set(resolved)) < len(resolved):
        raise ValueError(f"A folder is given twice among {[str(p) for p in paths]}: each source is one folder.")
    names = source_names(paths)
    parts = [load_class_folder(path, on_error=on_error) for path in paths]
    classes = [sorted(set(y.tolist())) for _, y, _, _ in parts]
    if any(c != classes[0] for c in classes):
        listed = "; ".join(f"{path}: {', '.join(c)}" for path, c in zip(paths, classes))
        raise ValueError(f"The sources' class folders differ ({listed}). Every source needs the same class "
                         "sub-folders: rename them so that one class has one name everywhere.")
    X = np.concatenate([x for x, _, _, _ in parts])
    y = np.concatenate([labels for _, labels, _, _ in parts])
    sources = np.concatenate([np.full(len(x), name, dtype=object) for name, (x, _, _, _) in zip(names, parts)])
    patients = np.concatenate([
        np.array([x if g == x else f"{name}/{g}" for x, g in zip(xs, groups)], dtype=object)
        for name, (xs, _, groups, _) in zip(names, parts)])
    return X, y, sources, patients
