"""What the ``skcovid`` commands read: class folders, DICOM series, NIfTI volumes, patients and splits."""

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from skcovid._cli.main import CommandError
from skcovid._evaluation.split import BlockedStratifiedKFold
from skcovid._imaging.folders import UnreadableImagesError, list_image_files
from skcovid._imaging.medical import (
    dicom_files,
    expand_series,
    is_medical,
    is_nifti,
    nifti_stem,
    order_series,
    patient_key,
)
from skcovid._imaging.raster import IMAGE_EXTENSIONS
from skcovid.datasets import load_class_folder, load_sources


def load_folder(path, skip_unreadable=False):
    """Slices, labels, patients and whether the layout names them (:func:`~skcovid.datasets.load_class_folder`)."""
    try:
        return load_class_folder(path, on_error="skip" if skip_unreadable else "raise")
    except UnreadableImagesError as exc:
        raise _unreadable(exc, path) from exc


def _unreadable(exc, where):
    shown = "\n  ".join(exc.files[:20])
    return CommandError(f"{len(exc.files)} files under {where} are not usable images "
                        f"(--skip-unreadable leaves them out):\n  {shown}")


def load_folders(paths, skip_unreadable=False):
    """:func:`load_folder` for one folder; several folders read as sources (:func:`~skcovid.datasets.load_sources`).

    Returns
    -------
    X, y, groups : ndarray
        ``groups``: the patients, ``"<source>/<patient>"`` with several sources.
    has_patients : bool
    sources : ndarray or None
        The source of each slice; None for one folder.
    """
    if len(paths) == 1:
        return (*load_folder(paths[0], skip_unreadable), None)
    try:
        X, y, sources, patients = load_sources(paths, on_error="skip" if skip_unreadable else "raise")
    except UnreadableImagesError as exc:
        raise _unreadable(exc, ", ".join(map(str, paths))) from exc
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return X, y, patients, bool(np.any(patients != X)), sources


def patients_of(args, groups, has_patients, where):
    """``groups`` when the command splits and reports by patient (``--group-by``), else None."""
    group_by = args.group_by or ("patient" if has_patients else "none")
    if group_by == "patient" and not has_patients:
        raise CommandError(f"--group-by patient needs patients: {where} has no patient folders "
                           "(CLASS/PATIENT/...) and no DICOM or NIfTI files.")
    return groups if group_by == "patient" else None


def _patient_series(folder):
    """{patient key: ordered slices} of a folder's DICOM files, grouped as ``load_dicom_folder`` groups loose files."""
    keys = {file: patient_key(file) for file in dicom_files(folder)}
    if len({key for key in keys.values() if key}) <= 1:
        return {}  # one patient (or none named): the folder is one series
    groups = {}
    for file, key in keys.items():
        groups.setdefault(key or file, []).append(file)
    return {key: order_series(group, f"{folder} (patient {key})") for key, group in sorted(groups.items())}


def expand_images(inputs):
    """Slices, in order, from files and folders, with the patient of each.

    Folders are searched recursively. DICOM files of one folder form a series
    (in anatomical order) and a NIfTI volume gives its slices; a slice's
    patient is the name of its folder (of the NIfTI file, for a volume). A
    folder whose files belong to several patients (a flat class folder) is
    split as :func:`skcovid.datasets.load_dicom_folder` splits one: by the
    salted patient key, each group one series.

    Returns
    -------
    files : ndarray of str
    patients : ndarray of str
    medical : bool
        Whether any DICOM or NIfTI slice was found.
    """
    files, patients, medical = [], [], False

    def add(path):
        nonlocal medical
        reference = str(path)
        if path.is_dir() and len(series := _patient_series(path)) > 1:
            # A flat folder of several patients' series, as train and evaluate read one: by patient key.
            for key, slices in series.items():
                files.extend(slices)
                patients.extend([key] * len(slices))
            medical = True
            return
        if path.is_dir() or is_nifti(reference.partition("#")[0]):
            # A DICOM series folder, a NIfTI volume or one of its slices ("volume.nii.gz#k").
            slices = expand_series(path)
            name = path.name if path.is_dir() else nifti_stem(path.name.partition("#")[0])
        else:
            slices, name = [reference], path.parent.name
        medical = medical or path.is_dir() or is_medical(reference)
        files.extend(slices)
        patients.extend([name] * len(slices))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, others = list_image_files(path)
            dicom_folders = sorted({f.parent for f in others if is_medical(str(f)) and not is_nifti(f)})
            volumes = [f for f in others if is_nifti(f)]
            if not (found or dicom_folders or volumes):
                raise CommandError(f"No image, DICOM or NIfTI files ({', '.join(IMAGE_EXTENSIONS)}, .dcm, "
                                   f".nii, .nii.gz) in folder {path}.")
            for folder in dicom_folders:
                add(folder)
            for volume in volumes:
                add(volume)
            for f in found:
                add(f)
        elif path.exists() or is_medical(str(path)):
            add(path)
        else:
            raise CommandError(f"No such file or folder: {path}")
    return np.asarray(files, dtype=object), np.asarray(patients, dtype=object), medical


def split_units(args, X, y, groups, sources=None):
    """What ``train`` keeps on one side of its splits: patients, blocks of slices, or nothing.

    Returns
    -------
    units : ndarray or None
        The patients (``groups``); with ``--split blocked`` and no patients,
        the blocks of ``--block-size`` consecutive slices per class of
        :class:`skcovid.model_selection.BlockedStratifiedKFold` (proxy
        patients, in the files' natural order; within each of ``sources``
        when given); else None (slices).
    name : str
        ``"patient"``, ``"block"`` or ``"slice"``.
    """
    if groups is not None:
        return groups, "patient"
    if args.split == "blocked":
        if sources is None:
            return BlockedStratifiedKFold(block_size=args.block_size).blocks(X, y), "block"
        # Blocks within each source: a block never spans two sources.
        units = np.empty(len(X), dtype=object)
        for source in np.unique(sources):
            where = np.flatnonzero(sources == source)
            blocks = BlockedStratifiedKFold(block_size=args.block_size).blocks(X[where], y[where])
            units[where] = [f"{source}/{block}" for block in blocks]
        return units, "block"
    return None, "slice"


def held_out_split(args, y, groups, unit="patient", sources=None):
    """Training and held-out indices: stratified (by class and source), and by ``groups`` (patients or blocks)."""
    indices = np.arange(len(y))
    # Each source keeps its share of each class on both sides.
    strata = y if sources is None else np.array([f"{s}|{label}" for s, label in zip(sources, y)], dtype=object)
    if groups is None:
        train, test = train_test_split(indices, test_size=args.test_size, stratify=strata,
                                       random_state=args.random_state)
        return train, test, (f"training on {len(train)}, holding out {len(test)} "
                             f"(stratified by slice, seed {args.random_state}; consecutive slices of a "
                             "scan can land on both sides: --split blocked keeps them together)")
    fewest = min(len(np.unique(groups[y == label])) for label in np.unique(y))
    if fewest < 2:
        raise CommandError(f"A class has a single {unit}: a split by {unit} cannot both train and test "
                           "on it. Add data, or use --group-by none and --split random (a split by "
                           "slice, which flatters the scores).")
    n_splits = max(2, min(round(1 / args.test_size), fewest))
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=args.random_state)
    train, test = next(splitter.split(indices, strata, groups))
    what = ("patients" if unit == "patient"
            else f"blocks of {args.block_size} consecutive slices per class")
    return train, test, (
        f"split by {unit}: training on {len(train)} slices of {len(np.unique(groups[train]))} {what}, "
        f"holding out {len(test)} slices of {len(np.unique(groups[test]))} {what} (StratifiedGroupKFold, "
        f"1 fold of {n_splits}, seed {args.random_state})")
