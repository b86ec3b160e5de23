"""Display windows: Hounsfield units to the ``[0, 1]`` intensities the networks take.

A window ``(level, width)`` maps ``level - width / 2`` HU to 0 and
``level + width / 2`` HU to 1, clipping outside, as a radiologist's viewer
does. Raster images (PNG, JPEG, ...) were windowed when they were exported
and carry no HU: without a window they keep their grey intensities, and a
window refuses them (:func:`check_hu_source`), since nothing says which HU
their grey levels stood for.
"""

import os

import numpy as np

from skcovid._imaging.crop import crop_image
from skcovid._imaging.intensity import harmonise
from skcovid._imaging.medical import is_medical, read_hu
from skcovid._imaging.raster import read_gray

#: Named windows, ``(level, width)`` in HU.
WINDOWS = {
    "lung": (-600.0, 1500.0),
    "mediastinal": (50.0, 350.0),
    # The third channel of "multi": from air (-1000) to dense bone (+1000).
    "wide": (0.0, 2000.0),
}
#: The channels of ``window="multi"``, in order.
MULTI = ("lung", "mediastinal", "wide")
#: The window HU images get with ``window=None``.
DEFAULT_HU_WINDOW = "lung"


def is_window(window):
    """Whether ``window`` is a valid ``window`` parameter (for ``_parameter_constraints``)."""
    if window is None or (isinstance(window, str) and (window in WINDOWS or window == "multi")):
        return True
    if isinstance(window, (tuple, list)) and len(window) == 2:
        level, width = window
        return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                   for v in window) and np.isfinite(level) and width > 0
    return False


def window_bounds(window):
    """``(low, high)`` HU of each channel that ``window`` gives HU images.

    Parameters
    ----------
    window : {"lung", "mediastinal", "multi"}, (level, width) or None

    Returns
    -------
    bounds : list of (float, float)
        One pair per channel.
    """
    if window is None:
        window = DEFAULT_HU_WINDOW
    names = MULTI if window == "multi" else (window,)
    levels = [WINDOWS[name] if isinstance(name, str) else tuple(map(float, name)) for name in names]
    return [(level - width / 2, level + width / 2) for level, width in levels]


def n_channels(window):
    """Channels of the network's input under ``window``: 3 for ``"multi"``, else 1."""
    return 3 if window == "multi" else 1


def apply_window(image, window, *, hu):
    """Intensities in ``[0, 1]`` of one image, with a leading channel axis.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        HU when ``hu`` is True, else grey intensities in ``[0, 1]``.
    window : {"lung", "mediastinal", "multi"}, (level, width) or None
    hu : bool

    Returns
    -------
    channels : ndarray of shape (C, H, W), float32
        ``C`` is :func:`n_channels` of ``window``.
    """
    image = np.asarray(image, dtype=np.float32)
    if not hu:
        return np.repeat(image[None], n_channels(window), axis=0)
    return np.stack([np.clip((image - low) / (high - low), 0.0, 1.0, dtype=np.float32)
                     for low, high in window_bounds(window)])


def read_windowed(item, window, crop=None, intensity=None, missed=None):
    """One image file's ``(C, H, W)`` intensities under ``window``: how skcovid reads every item.

    Parameters
    ----------
    item : str or os.PathLike
        A raster image, a DICOM file or a NIfTI slice (``"vol.nii.gz#k"``):
        HU for the medical ones, grey intensities for the others.
    window : {"lung", "mediastinal", "multi"}, (level, width) or None
    crop : {"body", "lungs"} or None, default=None
        Cut the slice down first (:func:`skcovid._imaging.crop.crop_image`).
    intensity : {"auto"} or None, default=None
        Harmonise a raster slice's grey levels first (:func:`skcovid._imaging.intensity.harmonise`);
        HU slices keep their exact path.
    missed : callable or None, default=None
        Called where the crop did not find what it looks for.

    Returns
    -------
    channels : ndarray of shape (C, H, W), float32
    """
    check_hu_source(item, window)
    hu = is_medical(item)
    image = read_hu(item) if hu else harmonise(read_gray(item), intensity)
    return apply_window(crop_image(image, crop, hu=hu, missed=missed), window, hu=hu)


def check_hu_source(item, window):
    """Refuse a raster image for a model that reads Hounsfield units through ``window`` (not None).

    Its grey levels came from whatever window the image was exported in:
    read as the model's window, or as HU, they would give an answer without
    meaning, and often a certain one.

    Parameters
    ----------
    item : str or os.PathLike
    window : {"lung", "mediastinal", "multi"}, (level, width) or None

    Raises
    ------
    ValueError
        Naming the file, when ``window`` is not None and ``item`` is not a
        DICOM file or NIfTI slice.
    """
    if window is not None and not is_medical(item):
        raise ValueError(
            f"{os.fspath(item)!r} is a raster image, without Hounsfield units, but this model reads HU through "
            f"the window {window!r}: give it DICOM or NIfTI slices (a model trained with window=None reads "
            "raster images as their grey levels).")
