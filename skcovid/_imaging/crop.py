"""``crop="body"``: cut a slice down to the patient's body before it is resized.

Slices taken from figures (the COVID-CT dataset's come from published case
reports) carry white margins, frames, captions and arrows around the scan,
and CT series carry the air and the table around the body. A figure's
margins go first: the rows and columns at its edges that are all of one
colour (the colour of its corner). The body is then the largest bright region
of the slice: a threshold (Otsu's on grey intensities, -500 HU on Hounsfield
units), an opening that cuts the thin lines of frames, text and arrows off
it, its largest connected component with the holes of the lungs filled, and
that component's bounding box with a small margin.
"""

import numpy as np
from scipy import ndimage

#: Crops :func:`crop_body` knows.
CROPS = ("body",)

#: Hounsfield units above which a voxel is tissue rather than air (lungs are filled in as holes).
BODY_HU = -500.0

#: A body smaller than this share of the slice is not trusted: the slice is kept whole.
MIN_BODY_FRACTION = 0.05

#: Margin added around the body's bounding box, as a share of its side.
MARGIN = 0.02

#: A figure's edge row or column is margin when this share of it is within :data:`MARGIN_TOLERANCE` of the corner.
MARGIN_SHARE = 0.98
MARGIN_TOLERANCE = 0.1


def _margins(image):
    """The rows and columns of a raster figure inside its uniform margins (those of its corner's colour)."""
    uniform = np.abs(image - image[0, 0]) <= MARGIN_TOLERANCE

    def inside(share):
        kept = np.flatnonzero(share < MARGIN_SHARE)
        return slice(int(kept[0]), int(kept[-1]) + 1) if len(kept) else slice(0, len(share))

    return inside(uniform.mean(axis=1)), inside(uniform.mean(axis=0))


#: Grey intensities that span less than this are a flat slice: nothing to threshold.
FLAT_RANGE = 1e-3


def _otsu(image):
    """Otsu's threshold of an image's grey intensities (a 256-bin histogram); None for a flat image."""
    image = np.asarray(image)
    if image.size == 0 or not image.max() - image.min() >= FLAT_RANGE:
        return None
    counts, edges = np.histogram(image, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mean = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * weight - mean * total) ** 2 / (weight * (total - weight))
    return centres[int(np.nanargmax(between[:-1]))] if total and np.isfinite(between[:-1]).any() else None


def square_opening(mask, radius):
    """``ndimage.binary_opening`` by a ``(2 radius + 1)`` square, as separable minimum and maximum filters.

    The same pixels (outside the image counts as background in both), in a
    sixth of the time on a 512 x 512 slice.
    """
    size = 2 * radius + 1
    eroded = ndimage.minimum_filter(mask, size=size, mode="constant", cval=False)
    return ndimage.maximum_filter(eroded, size=size, mode="constant", cval=False)


def hole_area(region):
    """The pixels that ``ndimage.binary_fill_holes(region)`` would add: background not connected to the border.

    One labelling of the background (4-connected, as ``binary_fill_holes``
    propagates) instead of its repeated dilations.
    """
    background, _ = ndimage.label(~region)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    return int(np.count_nonzero(background) - np.isin(background, border[border > 0]).sum())


def body_box(image, *, hu):
    """The rows and columns of the body in one slice.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Hounsfield units when ``hu``, else grey intensities in ``[0, 1]``.
    hu : bool

    Returns
    -------
    rows, cols : slice
        The whole slice when no body is found (a flat image, or a largest
        region under :data:`MIN_BODY_FRACTION` of it).
    """
    height, width = image.shape
    whole = slice(0, height), slice(0, width)
    top, left = (slice(0, height), slice(0, width)) if hu else _margins(image)
    inner = image[top, left]
    threshold = BODY_HU if hu else _otsu(inner)
    if threshold is None:
        return whole
    mask = np.zeros(image.shape, dtype=bool)
    mask[top, left] = inner > threshold
    # Frames, captions and arrows are a few pixels thick: an opening cuts them off the body.
    mask = square_opening(mask, max(1, round(min(height, width) / 100)))
    labels, n = ndimage.label(mask)
    if n == 0:
        return whole
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == 1 + int(np.argmax(sizes))
    # The lungs are holes in the body: they count towards its area, not its box (they lie inside it).
    if region.sum() + hole_area(region) < MIN_BODY_FRACTION * height * width:
        return whole
    rows, cols = ndimage.find_objects(region.astype(np.int8))[0]
    pad_r, pad_c = round(MARGIN * (rows.stop - rows.start)), round(MARGIN * (cols.stop - cols.start))
    return (slice(max(0, rows.start - pad_r), min(height, rows.stop + pad_r)),
            slice(max(0, cols.start - pad_c), min(width, cols.stop + pad_c)))


def crop_image(image, crop, *, hu):
    """``image`` cut down as ``crop`` says (None keeps it whole).

    Parameters
    ----------
    image : ndarray of shape (H, W)
    crop : {"body"} or None
    hu : bool
        Whether ``image`` is in Hounsfield units.

    Returns
    -------
    cropped : ndarray of shape (H', W')
    """
    if crop is None:
        return image
    rows, cols = body_box(np.asarray(image), hu=hu)
    return image[rows, cols]
