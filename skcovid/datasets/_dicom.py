"""CT volumes in DICOM or NIfTI laid out as one sub-folder per class."""

import os
import warnings

import numpy as np

from skcovid._imaging.medical import (
    dicom_files,
    expand_series,
    is_dicom,
    is_nifti,
    nifti_stem,
    order_series,
    patient_key,
)
from skcovid.datasets._folder import class_folders


def _folder_slices(folder):
    """Slices of a patient folder: each folder in it holding DICOM files is one series, each NIfTI file a volume."""
    items = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        dicom = dicom_files(parent)
        if dicom:
            items += order_series(dicom, parent)
        items += [item for name in sorted(files) if not name.startswith(".") and is_nifti(name)
                  for item in expand_series(os.path.join(parent, name))]
    return items


def _class_patients(class_dir):
    """{patient: slices} of one class folder."""
    patients, loose = {}, {}
    for entry in sorted(class_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            items = _folder_slices(entry)
            if not items:
                warnings.warn(f"Patient folder {str(entry)!r} holds no DICOM or NIfTI slice; ignored.",
                              UserWarning, stacklevel=3)
            patients.setdefault(entry.name, []).extend(items)
        elif is_nifti(entry.name):
            patients.setdefault(nifti_stem(entry.name), []).extend(expand_series(entry))
        elif entry.is_file() and is_dicom(str(entry)):
            key = patient_key(str(entry))
            loose.setdefault(key or str(entry), []).append(str(entry))
    for key, files in loose.items():
        patients.setdefault(key, []).extend(order_series(files, f"{class_dir} (patient {key})"))
    return {patient: items for patient, items in patients.items() if items}


def load_dicom_folder(path):
    """List the CT slices of DICOM series and NIfTI volumes kept in one sub-folder per class.

    Two layouts, which may be mixed:

    - ``path/<class>/<patient>/*.dcm``: the patient is the folder name. Every
      folder at or below the patient folder that holds DICOM files is one
      series (deeper nesting such as ``<patient>/<study>/<series>/`` is
      allowed; series follow one another by folder path), and NIfTI files in
      these folders are volumes of the same patient.
    - ``path/<class>/<patient>.nii`` or ``.nii.gz``: the patient is the file
      name without the NIfTI suffix.

    DICOM files directly in a class folder say nothing of the patient: they
    are grouped by ``skcovid._imaging.medical.patient_key`` (a salted hash of the
    PatientID, else of the StudyInstanceUID) and each group must be one series;
    a file with neither identifier is its own group (its path). Slices come
    in anatomical order (``skcovid._imaging.medical.expand_series``): a
    DICOM file path, or ``"vol.nii.gz#k"`` for slice ``k`` of a volume. Hidden
    files and files that are neither DICOM nor NIfTI are ignored. Patients of
    the same name in one class folder are one patient.

    Parameters
    ----------
    path : str or os.PathLike
        Root folder, holding one sub-folder per class.

    Returns
    -------
    X : ndarray of shape (n_slices,), dtype object
        Slice items (str), sorted by class, then patient, then anatomy.
    y : ndarray of shape (n_slices,), dtype object
        The class folder name of each slice.
    groups : ndarray of shape (n_slices,), dtype object
        The patient of each slice, for patient-level splits such as
        :class:`~sklearn.model_selection.GroupKFold`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    NotADirectoryError
        If ``path`` is not a folder.
    ValueError
        If there are no class sub-folders, a class folder holds no usable
        slice, or a series is inconsistent (each naming the path).

    Examples
    --------
    >>> from skcovid.datasets import load_dicom_folder
    >>> X, y, groups = load_dicom_folder("../shared/data/covid-ct-md-sample")  # doctest: +SKIP
    >>> len(X), sorted(set(y)), len(set(groups))  # doctest: +SKIP
    (60, ['CAP', 'COVID-19', 'normal'], 6)
    """
    _, class_dirs = class_folders(
        path, what="DICOM folder",
        example=lambda root: f"{str(root / 'COVID' / 'patient1')!r} holding a DICOM series")
    X, y, groups = [], [], []
    for class_dir in class_dirs:
        patients = _class_patients(class_dir)
        if not patients:
            raise ValueError(f"Class folder {str(class_dir)!r} holds no DICOM series or NIfTI volume it can use.")
        for patient in sorted(patients):
            items = patients[patient]
            X += items
            y += [class_dir.name] * len(items)
            groups += [patient] * len(items)
    return (np.asarray(X, dtype=object), np.asarray(y, dtype=object), np.asarray(groups, dtype=object))
