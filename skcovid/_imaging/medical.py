"""DICOM slices and NIfTI volumes read as Hounsfield units, in display orientation.

An *item* is a DICOM file (one file = one slice), a NIfTI file holding one
slice, or ``"vol.nii.gz#k"``: slice ``k`` along the volume's third voxel axis
as stored (``img.dataobj[:, :, k]``). Slices come in the orientation
radiologists read (:func:`_to_display`), so a NIfTI volume converted from
DICOM slices gives exactly the arrays of its slices. pydicom and nibabel are
imported when first needed (``pip install "skcovid[dicom]"``).
"""

import hashlib
import importlib
import os
import re
import warnings

import numpy as np

from skcovid._core.checks import env_count
from skcovid._imaging.inflate import check_inflated_size
from skcovid._imaging.raster import IMAGE_EXTENSIONS

#: File extensions of the medical formats (DICOM, NIfTI), lower case.
MEDICAL_EXTENSIONS = (".dcm", ".dicom", ".nii", ".nii.gz")
#: Salt of the patient keys: changing it changes every key (the version is in it).
PATIENT_SALT = "skcovid-patient-v1"

_INSTALL = 'pip install "skcovid[dicom]"'
#: The most pixels a slice may declare before it is decoded (64 Mpixel: 8192 x 8192), see :func:`max_pixels`.
MAX_PIXELS = 2**26
#: Bytes a deflated dataset may inflate to beyond its pixels' (:func:`max_pixels` of 4 bytes): its other elements.
INFLATED_HEADER_BYTES = 2**20
#: A NIfTI volume may declare at most this many slices of :func:`max_pixels` pixels in all.
MAX_VOLUME_SLICES = 64
_NOT_IMAGES = ("SR", "RTSTRUCT", "PR", "KO", "SEG")  # DICOM modalities that are not CT slices
_REFERENCE = re.compile(r"^(?P<path>.+\.nii(?:\.gz)?)#(?P<k>[^#/\\]*)$", re.IGNORECASE)
# (row target, column target) in LPS for a slice whose normal is mostly along x, y or z.
_TARGETS = (((0, 0, -1), (0, 1, 0)),   # sagittal: rows go inferior, columns go posterior
            ((0, 0, -1), (1, 0, 0)),   # coronal: rows go inferior, columns go to the patient's left
            ((0, 1, 0), (1, 0, 0)))    # axial: rows go posterior, columns go to the patient's left


def _import(name):
    """Import ``name`` (pydicom or nibabel), or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"Reading DICOM and NIfTI images needs the package {name!r}: {_INSTALL}") from exc


def is_nifti(path):
    """Whether a file name is a NIfTI file's (``.nii`` or ``.nii.gz``, any case)."""
    return os.fspath(path).lower().endswith((".nii", ".nii.gz"))


def nifti_stem(name):
    """A NIfTI file name without its ``.nii`` or ``.nii.gz`` suffix: the patient of a volume."""
    return name[:-len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[:-len(".nii")]


def is_dicom(path):
    """A ``.dcm``/``.dicom`` name, or a file with no raster-image extension and the DICM magic."""
    lower = path.lower()
    if lower.endswith((".dcm", ".dicom")):
        return True
    if lower.endswith(IMAGE_EXTENSIONS) or is_nifti(lower):
        return False
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_medical(item):
    """Tell whether an item is a DICOM file, a NIfTI file or a NIfTI slice reference.

    Cheap: looks at the name, and for a file without a known extension at its
    bytes 128 to 132 (``b"DICM"``); decodes no pixels.

    Parameters
    ----------
    item : str or os.PathLike
        A path, or ``"vol.nii.gz#k"``.

    Returns
    -------
    bool
    """
    if not isinstance(item, (str, os.PathLike)):
        return False
    item = os.fspath(item)
    return bool(_REFERENCE.match(item)) or is_nifti(item) or is_dicom(item)


def source_file(item):
    """The file an item is read from and its NIfTI slice: ``("v.nii", 3)`` for ``"v.nii#3"``, else ``(item, None)``."""
    item = os.fspath(item)
    match = _REFERENCE.match(item)
    if match and re.fullmatch(r"-?\d+", match["k"]):
        return match["path"], int(match["k"])
    return item, None


def _check_file(path):
    """Refuse a missing, empty file or a folder, naming it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Medical image file not found: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"Expected a DICOM or NIfTI file but got a folder: {path!r} "
                         "(expand_series lists the slices of a series folder).")
    if os.path.getsize(path) == 0:
        raise ValueError(f"Medical image file {path!r} is empty (0 bytes).")


def read_hu(item):
    """Read one CT slice in Hounsfield units, in display orientation.

    DICOM: ``stored * RescaleSlope + RescaleIntercept`` (defaults 1 and 0) of
    the values pydicom decodes (signed or unsigned), MONOCHROME1 and
    MONOCHROME2 alike: the rescale gives HU from the stored values whatever
    the Photometric Interpretation, which only says how a viewer displays them
    (MONOCHROME1: the lowest value white). NIfTI: the slice as nibabel scales
    it (``scl_slope``).

    Parameters
    ----------
    item : str or os.PathLike
        A single-frame DICOM file, a NIfTI file holding one slice, or
        ``"vol.nii.gz#k"``: slice ``k`` along the third voxel axis as stored.

    Returns
    -------
    hu : ndarray of shape (H, W), dtype float32

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ImportError
        If pydicom or nibabel is not installed.
    ValueError
        Naming the file: empty, a folder, unreadable, truncated; not one
        grayscale slice (SR, RTSTRUCT, PR, no pixel data, multi-frame,
        colour); compressed with no installed handler (naming the transfer
        syntax and ``skcovid[dicom]``); 4-D, ``k`` out of range, no ``#k``.
    """
    path, k = source_file(item)
    if k is None and _REFERENCE.match(path):
        raise ValueError(f"Bad NIfTI slice reference {path!r}: expected 'path.nii.gz#k' with an integer k.")
    return _read_nifti(path, k) if is_nifti(path) else _read_dicom(path)


def _dcmread(path, **kwargs):
    """``pydicom.dcmread`` with errors that name the file; a deflated file's inflation bounded first."""
    pydicom = _import("pydicom")
    _check_file(path)
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        check_inflated_size(path, meta, 4 * max_pixels() + INFLATED_HEADER_BYTES, limit_name="SKCOVID_MAX_PIXELS")
        return pydicom.dcmread(path, **kwargs)
    except Exception as exc:
        if isinstance(exc, ValueError) and repr(path) in str(exc):
            raise
        raise ValueError(f"Cannot read DICOM file {path!r}: {exc}") from exc


def _number(ds, keyword, default):
    value = ds.get(keyword)
    return default if value is None or value == "" else float(value)


def _text(ds, keyword):
    """An identifier as text, read raw: pydicom warns on accessing a non-conformant UID."""
    element = ds.get_item(keyword)
    value = None if element is None else element.value
    return (value.decode("latin-1") if isinstance(value, bytes) else str(value or "")).strip(" \0")


def _check_slice(ds, path):
    """Refuse DICOM objects that are not one grayscale slice (header only); return the photometric."""
    modality = str(ds.get("Modality", "")).upper()
    if modality in _NOT_IMAGES or "PixelData" not in ds:
        sop = ds.get("SOPClassUID")
        raise ValueError(f"DICOM file {path!r} is not an image (Modality {modality or 'unknown'!r}, SOP class "
                         f"{getattr(sop, 'name', sop)!r}, {'with' if 'PixelData' in ds else 'no'} pixel data).")
    frames = int(_number(ds, "NumberOfFrames", 1))
    if frames > 1:
        raise ValueError(f"DICOM file {path!r} is a multi-frame object ({frames} frames); skcovid reads one "
                         "slice per file: export the series as single-frame files.")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(_number(ds, "SamplesPerPixel", 1)) != 1:
        raise ValueError(f"DICOM file {path!r} is not a grayscale image (Photometric Interpretation "
                         f"{photometric!r}); Hounsfield units need MONOCHROME1 or MONOCHROME2.")
    if ds.get("ModalityLUTSequence") and "RescaleSlope" not in ds:
        raise ValueError(f"DICOM file {path!r} maps its values with a Modality LUT Sequence, which skcovid "
                         "does not apply; only Rescale Slope and Rescale Intercept are supported.")
    return photometric


def max_pixels():
    """The most pixels a slice may declare: ``$SKCOVID_MAX_PIXELS``, else :data:`MAX_PIXELS`.

    Checked against the header before any pixel data is decompressed, so that
    a small file declaring a huge image cannot take the memory.
    """
    return env_count("SKCOVID_MAX_PIXELS", MAX_PIXELS)


def _check_size(shape, path, what):
    """Refuse a slice of ``shape`` (from a header) with no pixel or more than :func:`max_pixels`."""
    n = int(np.prod(shape, dtype=np.float64)) if len(shape) else 0
    if n < 1 or any(int(d) < 1 for d in shape):
        raise ValueError(f"{what} {path!r} declares an image of shape {tuple(int(d) for d in shape)}: no pixels.")
    if n > max_pixels():
        raise ValueError(f"{what} {path!r} declares {' x '.join(str(int(d)) for d in shape)} = {n:,} pixels, more "
                         f"than skcovid reads ({max_pixels():,}; set SKCOVID_MAX_PIXELS to allow more).")


def _rescale(ds, path):
    """Rescale Slope and Intercept, refused unless finite (and a non-zero slope); a CT without them warns."""
    slope, intercept = _number(ds, "RescaleSlope", None), _number(ds, "RescaleIntercept", None)
    if slope is None and intercept is None and str(ds.get("Modality", "")).upper() == "CT":
        warnings.warn(f"CT slice {path!r} has no Rescale Slope or Intercept: its stored values are read as "
                      "Hounsfield units unchanged, which they rarely are.", UserWarning, stacklevel=4)
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    if not np.isfinite(slope) or slope == 0 or not np.isfinite(intercept):
        raise ValueError(f"DICOM file {path!r} has Rescale Slope {slope} and Intercept {intercept}: Hounsfield units "
                         "need a finite, non-zero slope and a finite intercept.")
    return slope, intercept


def _read_dicom(path):
    """:func:`_decode_dicom`, with any error it did not word itself turned into one that names the file.

    The text of such an error is left out: a damaged header can put the bytes of identifying fields (the
    patient's name) into a parser's message.
    """
    try:
        return _decode_dicom(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError, ImportError):
        raise
    except Exception as exc:
        if isinstance(exc, ValueError) and repr(path) in str(exc):
            raise
        raise ValueError(f"DICOM file {path!r} is damaged or malformed: reading it failed with "
                         f"{type(exc).__name__} in its header or pixel data.") from exc


def _decode_dicom(path):
    ds = _dcmread(path)
    _check_slice(ds, path)
    _check_size((_number(ds, "Rows", 0), _number(ds, "Columns", 0)), path, "DICOM file")
    slope, intercept = _rescale(ds, path)
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    try:
        stored = np.asarray(ds.pixel_array)
    except Exception as exc:
        # pydicom 3 without a usable plugin: RuntimeError "... all plugins are missing dependencies".
        missing = isinstance(exc, NotImplementedError) or (
            isinstance(exc, RuntimeError) and "missing dependencies" in str(exc))
        if missing and syntax is not None and syntax.is_compressed:
            raise ValueError(
                f"DICOM file {path!r} is compressed with {syntax.name!r} and no installed pixel-data handler "
                f"decodes it; {_INSTALL} installs pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg "
                f"(pydicom: {exc})") from exc
        raise ValueError(f"Cannot decode the pixels of DICOM file {path!r}: {exc}") from exc
    # The Modality LUT (rescale) gives HU from the stored values whatever the Photometric Interpretation:
    # MONOCHROME1 only says how to display them (the lowest value white).
    hu = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
    _check_finite(hu, path, "DICOM file")
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return hu  # orientation unknown: kept as stored
    iop = [float(v) for v in iop]
    # pixel_array[r, c]: c runs along the row cosine iop[:3], r along the column cosine iop[3:].
    return _to_display(hu, (iop[3:], iop[:3]))


def _check_finite(values, path, what):
    """Refuse NaN or infinite values: they would become a diagnosis."""
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(f"{what} {path!r} holds {bad} values that are not finite numbers (NaN or infinity); "
                         "Hounsfield units must be finite.")


def _to_display(array, axis_directions):
    """Turn a 2-D slice, whose axes 0 and 1 run along ``axis_directions`` (LPS), to display orientation.

    The largest component of the slice normal picks the view and its targets
    (``_TARGETS``): axial, anterior at the top and the patient's right on the
    left; coronal, superior at the top, right on the left; sagittal, superior
    at the top, anterior on the left. The array is transposed if its axis 0
    is the better aligned with the column target, then each axis that points
    against its target is flipped.
    """
    d0, d1 = (np.asarray(d, dtype=np.float64) / (np.linalg.norm(d) or 1.0) for d in axis_directions)
    normal = np.cross(d0, d1)
    if not np.all(np.isfinite(normal)) or not normal.any():
        return array
    row_target, column_target = (np.asarray(t) for t in _TARGETS[int(np.argmax(np.abs(normal)))])
    if abs(d0 @ column_target) > abs(d1 @ column_target):
        array, d0, d1 = array.T, d1, d0
    if d0 @ row_target < 0:
        array = array[::-1]
    if d1 @ column_target < 0:
        array = array[:, ::-1]
    return np.ascontiguousarray(array)


def _load_nifti(path):
    """The nibabel image of a NIfTI file and its number of slices; refuses 4-D volumes."""
    nibabel = _import("nibabel")
    _check_file(path)
    try:
        img = nibabel.load(path)
    except Exception as exc:
        raise ValueError(f"Cannot read NIfTI file {path!r}: {exc}") from exc
    shape = img.shape
    if len(shape) >= 2:
        _check_size(shape[:2], path, "NIfTI file")
    if len(shape) > 2 and int(np.prod(shape, dtype=np.float64)) > MAX_VOLUME_SLICES * max_pixels():
        raise ValueError(f"NIfTI file {path!r} declares a volume of shape {tuple(shape)}: more than "
                         f"{MAX_VOLUME_SLICES} slices' worth of the pixel limit (SKCOVID_MAX_PIXELS).")
    if len(shape) < 2 or any(n > 1 for n in shape[3:]):
        raise ValueError(f"NIfTI file {path!r} has shape {shape}: skcovid reads 2-D or 3-D volumes, not "
                         "4-D ones (one volume per file).")
    return img, (shape[2] if len(shape) > 2 else 1)


def _read_nifti(path, k):
    img, n = _load_nifti(path)
    if k is None:
        if n != 1:
            raise ValueError(f"NIfTI file {path!r} holds {n} slices: name one as '{path}#k' (0 <= k < {n}) "
                             "or list them all with expand_series.")
        k = 0
    if not 0 <= k < n:
        raise ValueError(f"Slice {k} is out of range for NIfTI file {path!r}, which holds {n} slices (0 to {n - 1}).")
    index = (slice(None), slice(None)) + ((k,) + (0,) * (len(img.shape) - 3) if len(img.shape) > 2 else ())
    try:
        data = np.asarray(img.dataobj[index], dtype=np.float32)
    except Exception as exc:
        raise ValueError(f"Cannot read slice {k} of NIfTI file {path!r}: {exc}") from exc
    _check_finite(data, f"{path}#{k}", "NIfTI slice")
    lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(img.affine, dtype=np.float64)[:3, :3]  # RAS -> LPS
    return _to_display(data, (lps[:, 0], lps[:, 1]))


def dicom_files(folder):
    """DICOM files directly in ``folder`` (as :func:`is_medical` tells), hidden files and DICOMDIR left out."""
    names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and n.upper() != "DICOMDIR")
    paths = (os.path.join(folder, n) for n in names)
    return [p for p in paths if os.path.isfile(p) and is_dicom(p)]


def expand_series(path):
    """List the slices of a DICOM series folder or of a NIfTI volume, in anatomical order.

    A folder holds one DICOM series: its files ending in ``.dcm``/``.dicom``,
    or without a raster-image extension and with the DICM magic (not searched
    recursively; hidden files, ``DICOMDIR`` and other files are ignored;
    objects that are not images, e.g. SR, are left out with a warning). Only
    headers are read. Slices go by ascending ``ImagePositionPatient`` along
    the slice normal (cross product of the ``ImageOrientationPatient``
    cosines); if a slice lacks it, all go by ``SliceLocation``; if one lacks
    that, by ``InstanceNumber``, with a warning; ties by ``InstanceNumber``.
    Never by file name. A NIfTI volume gives ``"path#k"`` by ascending
    superior (RAS z) position of slice ``k``.

    Parameters
    ----------
    path : str or os.PathLike
        A series folder, a NIfTI file, a single DICOM file or a slice reference.

    Returns
    -------
    items : list of str
        Items for :func:`read_hu`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the folder or files: no DICOM image, two series (both
        SeriesInstanceUIDs and a file of each), slices of different sizes,
        multi-frame files, nothing to order the slices by, a 4-D NIfTI.
    """
    path = os.fspath(path)
    if _REFERENCE.match(path) and not os.path.exists(path):
        return [path]
    if not os.path.exists(path):
        raise FileNotFoundError(f"Series not found: {path!r}")
    if os.path.isdir(path):
        items = order_series(dicom_files(path), path)
        if not items:
            raise ValueError(f"Folder {path!r} holds no DICOM image (files ending in .dcm or .dicom, or "
                             "starting with the DICM magic).")
        return items
    if is_nifti(path):
        img, n = _load_nifti(path)
        if n == 1:
            return [path]
        affine = np.asarray(img.affine, dtype=np.float64)
        z = affine[2, 2] * np.arange(n) + affine[2, 3]  # z of affine @ [0, 0, k, 1]
        return [f"{path}#{k}" for k in np.argsort(z, kind="stable")]
    return order_series([path], path)


def order_series(files, where):
    """Order the DICOM files of one series (see :func:`expand_series`); [] if none is an image."""
    headers, skipped = [], []
    for file in files:
        ds = _dcmread(file, stop_before_pixels=True)
        if "Rows" not in ds or str(ds.get("Modality", "")).upper() in _NOT_IMAGES:
            skipped.append(file)
        elif _number(ds, "NumberOfFrames", 1) > 1:
            raise ValueError(f"DICOM file {file!r} is a multi-frame object; skcovid reads one slice per file.")
        else:
            headers.append((file, ds))
    if skipped:
        warnings.warn(f"Left out {len(skipped)} DICOM objects in {where!r} that are not images: {skipped[:5]}",
                      UserWarning, stacklevel=3)
    series = {_text(ds, "SeriesInstanceUID"): file for file, ds in reversed(headers)}  # uid: its first file
    if len(series) > 1:
        listed = "; ".join(f"{uid or '(none)'} (e.g. {file!r})" for uid, file in series.items())
        raise ValueError(f"{where!r} mixes {len(series)} DICOM series (SeriesInstanceUID), one is expected: {listed}")
    sizes = {(int(ds.Rows), int(_number(ds, "Columns", 0))): file for file, ds in reversed(headers)}
    if len(sizes) > 1:
        listed = "; ".join(f"{r}x{c} (e.g. {file!r})" for (r, c), file in sizes.items())
        raise ValueError(f"DICOM series in {where!r} has slices of different sizes (rows x columns): {listed}")
    if len(headers) < 2:
        return [file for file, _ in headers]
    datasets = [ds for _, ds in headers]
    iop = next((ds.ImageOrientationPatient for ds in datasets if len(ds.get("ImageOrientationPatient") or ()) == 6),
               None)
    if iop is not None and all(len(ds.get("ImagePositionPatient") or ()) == 3 for ds in datasets):
        normal = np.cross([float(v) for v in iop[:3]], [float(v) for v in iop[3:]])
        position = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in datasets]
    elif all(ds.get("SliceLocation") not in (None, "") for ds in datasets):
        position = [float(ds.SliceLocation) for ds in datasets]
    elif all(ds.get("InstanceNumber") not in (None, "") for ds in datasets):
        warnings.warn(f"The DICOM files in {where!r} carry neither Image Position (Patient) nor Slice Location: "
                      "ordered by Instance Number, which need not follow the anatomy.", UserWarning, stacklevel=3)
        position = [float(ds.InstanceNumber) for ds in datasets]
    else:
        raise ValueError(f"Cannot order the DICOM files in {where!r}: they lack Image Position (Patient), "
                         "Slice Location and Instance Number.")
    number = [_number(ds, "InstanceNumber", 0.0) for ds in datasets]
    order = sorted(range(len(headers)), key=lambda i: (position[i], number[i], headers[i][0]))
    return [headers[i][0] for i in order]


def patient_key(item):
    """Compute the pseudonymous patient key of a DICOM file: a salted hash of its PatientID.

    The first 16 hex characters of ``sha256(f"{PATIENT_SALT}\\0{keyword}\\0{value}")``
    for the PatientID, or where it is empty or missing the StudyInstanceUID.
    The raw identifier is never returned.

    Parameters
    ----------
    item : str or os.PathLike
        Any item.

    Returns
    -------
    key : str or None
        None for NIfTI items, files that are not DICOM, and DICOM files with
        neither identifier.
    """
    if not isinstance(item, (str, os.PathLike)):
        return None
    path = os.fspath(item)
    if _REFERENCE.match(path) or is_nifti(path) or not is_dicom(path):
        return None
    ds = _dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"])
    for keyword in ("PatientID", "StudyInstanceUID"):
        value = _text(ds, keyword)
        if value:
            return hashlib.sha256(f"{PATIENT_SALT}\0{keyword}\0{value}".encode()).hexdigest()[:16]
    return None
