"""``intensity="auto"``: a raster slice's grey levels mapped back to the lung window, from its own landmarks.

A PNG or JPEG slice was exported through whatever display mapping its
source used: a lung window, a wider one, the whole HU range (grey and flat),
sometimes with a gamma. Two landmarks of known density in the slice itself
undo most of it: the lung fields (:func:`skcovid._imaging.crop.lung_fields`)
and the body's tissue around them. Their median grey levels are mapped
linearly to their median Hounsfield units (:data:`LUNG_HU`, :data:`BODY_HU`)
and the result is read through the lung window, as a DICOM slice is read:
every raster slice then meets HU slices in one common window. A slice
without lung fields, or one whose export erased the lungs' contrast (a
mediastinal window, which clips them to black with the air), is kept as it is.
"""

import numpy as np

from skcovid._imaging.crop import body_region, lung_fields

#: Harmonisations :func:`harmonise` knows.
INTENSITIES = ("auto",)

#: Median HU of the lung fields and of the body's tissue (threshold -500 HU, lungs excluded): -863 and -11.5
#: on the 56 slices with lungs of the COVID-CT-MD sample (6 patients, 2 SIEMENS scanners).
LUNG_HU = -860.0
BODY_HU = -10.0

#: The lung window (level -600, width 1500) the harmonised grey levels are read through, in HU.
LUNG_WINDOW = (-1350.0, 150.0)

#: Landmarks closer than this in grey level leave no contrast to stretch: the slice is kept as it is.
MIN_CONTRAST = 0.05


def harmonise(gray, intensity):
    """A raster slice's grey levels, harmonised as ``intensity`` says (None keeps them).

    Parameters
    ----------
    gray : ndarray of shape (H, W)
        Grey intensities in ``[0, 1]``.
    intensity : {"auto"} or None

    Returns
    -------
    gray : ndarray of shape (H, W), float32
        Under ``"auto"``: the lung window of the HU that the slice's
        landmarks give each grey level.
    """
    if intensity is None:
        return gray
    gray = np.asarray(gray, dtype=np.float32)
    region = body_region(gray, hu=False)
    lungs = None if region is None else lung_fields(gray, region, hu=False)
    if lungs is None:
        return gray
    lung, body = float(np.median(gray[lungs])), float(np.median(gray[region]))
    # Lungs clipped to the darkest grey (a mediastinal window) or no contrast left: nothing to map back.
    if body - lung < MIN_CONTRAST or lung <= gray.min():
        return gray
    hu = LUNG_HU + (gray - lung) * ((BODY_HU - LUNG_HU) / (body - lung))
    low, high = LUNG_WINDOW
    return np.clip((hu - low) / (high - low), 0.0, 1.0).astype(np.float32)
