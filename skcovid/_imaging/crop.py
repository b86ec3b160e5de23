"""``crop="body"`` and ``crop="lungs"``: cut a slice down to the patient's body, or lungs, before it is resized.

Slices taken from figures (the COVID-CT dataset's come from published case
reports) carry white margins, frames, captions and arrows around the scan,
and CT series carry the air and the table around the body. A figure's
margins go first: the rows and columns at its edges that are all of one
colour (the colour of its corner). The body is then the largest bright region
of the slice: a threshold (Otsu's on grey intensities, -500 HU on Hounsfield
units), an opening that cuts the thin lines of frames, text and arrows off
it, its largest connected component with the holes of the lungs filled, and
that component's bounding box with a small margin. The lungs are the large
dark regions other than the air around the body (:func:`lung_fields`):
``crop="lungs"`` keeps their bounding box, with a margin, and falls back to
the body's box where there are none (a slice above or below the lungs).
"""

import numpy as np
from scipy import ndimage

#: Crops :func:`crop_body` knows.
CROPS = ("body", "lungs")

#: Hounsfield units above which a voxel is tissue rather than air (lungs are filled in as holes).
BODY_HU = -500.0

#: A body smaller than this share of the slice is not trusted: the slice is kept whole.
MIN_BODY_FRACTION = 0.05

#: Margin added around the body's bounding box, as a share of its side.
MARGIN = 0.02

#: A dark region is a lung field when it covers at least this share of the slice.
MIN_LUNG_FRACTION = 0.01

#: A lung lies within the body's bounding box: at least this share of its pixels.
IN_BODY_SHARE = 0.9

#: A dark region along more than this share of the slice's edge is the air around the body.
AIR_EDGE_SHARE = 0.25

#: Margin added around the lungs' bounding box, as a share of its side.
LUNG_MARGIN = 0.06

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


def body_region(image, *, hu):
    """The patient's body in one slice, as a mask, or None where none is found.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Hounsfield units when ``hu``, else grey intensities in ``[0, 1]``.
    hu : bool

    Returns
    -------
    region : ndarray of bool of shape (H, W) or None
        The largest bright region after an opening (its lungs are holes in
        it); None for a flat image or a region, lungs included, under
        :data:`MIN_BODY_FRACTION` of the slice.
    """
    height, width = image.shape
    top, left = (slice(0, height), slice(0, width)) if hu else _margins(image)
    inner = image[top, left]
    threshold = BODY_HU if hu else _otsu(inner)
    if threshold is None:
        return None
    mask = np.zeros(image.shape, dtype=bool)
    mask[top, left] = inner > threshold
    # Frames, captions and arrows are a few pixels thick: an opening cuts them off the body.
    mask = square_opening(mask, max(1, round(min(height, width) / 100)))
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == 1 + int(np.argmax(sizes))
    # The lungs are holes in the body: they count towards its area, not its box (they lie inside it).
    if region.sum() + hole_area(region) < MIN_BODY_FRACTION * height * width:
        return None
    return region


def _dark_regions(image, threshold):
    """The dark regions of ``image`` (at most ``threshold``), labelled, and which of them are the air around the body.

    Outside air lies along more than :data:`AIR_EDGE_SHARE` of the image's
    edge; lungs touch the edge only where a tight crop cut the body.
    """
    dark, n = ndimage.label(image <= threshold)
    edge = np.concatenate([dark[0], dark[-1], dark[1:-1, 0], dark[1:-1, -1]])
    air = np.bincount(edge, minlength=n + 1) >= AIR_EDGE_SHARE * len(edge)
    air[0] = True  # not a dark region
    return dark, air


def lung_fields(image, region, *, hu):
    """The lungs of a slice: its dark regions inside the body's box, each of at least :data:`MIN_LUNG_FRACTION` of it.

    Dark is under -500 HU; on grey levels (inside a figure's light margins), under
    Otsu's threshold over what is not outside air, so that the air of a
    wide export does not take the threshold for itself. The air around the
    body (along the edge) and the air under it, between the table's lines
    (mostly outside the body's bounding box), are not lungs.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    region : ndarray of bool of shape (H, W)
        The body (:func:`body_region`).
    hu : bool

    Returns
    -------
    lungs : ndarray of bool or None
        None where no dark region qualifies (or the image is flat).
    """
    height, width = image.shape
    # A figure's light margins go; dark ones are the air of the scan's field, which must stay along the edge.
    light_margin = not hu and image[0, 0] > 0.5
    top, left = _margins(image) if light_margin else (slice(0, height), slice(0, width))
    inner = image[top, left]
    threshold = BODY_HU if hu else _otsu(inner)
    if threshold is None:
        return None
    dark, air = _dark_regions(inner, threshold)
    if not hu:
        threshold = _otsu(inner[(dark == 0) | ~air[dark]])
        if threshold is None:
            return None
        dark, air = _dark_regions(inner, threshold)
    sizes = np.bincount(dark.ravel(), minlength=len(air))
    rows, cols = ndimage.find_objects(region[top, left].astype(np.int8))[0]
    in_body = np.bincount(dark[rows, cols].ravel(), minlength=len(air))
    kept = np.flatnonzero(~air & (sizes >= MIN_LUNG_FRACTION * image.size) & (in_body >= IN_BODY_SHARE * sizes))
    if len(kept) == 0:
        return None
    lungs = np.zeros(image.shape, dtype=bool)
    lungs[top, left] = np.isin(dark, kept)
    return lungs


def _box(mask, margin):
    height, width = mask.shape
    rows, cols = ndimage.find_objects(mask.astype(np.int8))[0]
    pad_r, pad_c = round(margin * (rows.stop - rows.start)), round(margin * (cols.stop - cols.start))
    return (slice(max(0, rows.start - pad_r), min(height, rows.stop + pad_r)),
            slice(max(0, cols.start - pad_c), min(width, cols.stop + pad_c)))


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
        The whole slice when no body is found (:func:`body_region`).
    """
    return crop_box(image, "body", hu=hu)[:2]


def crop_box(image, crop, *, hu):
    """The rows and columns ``crop`` keeps of one slice, and whether it found what it looks for.

    Returns
    -------
    rows, cols : slice
    found : bool
        False where ``crop="body"`` found no body (the whole slice is kept)
        or ``crop="lungs"`` found no lungs (the body's box, else the whole slice).
    """
    whole = slice(0, image.shape[0]), slice(0, image.shape[1])
    region = body_region(image, hu=hu)
    if region is None:
        return (*whole, False)
    if crop == "lungs":
        lungs = lung_fields(image, region, hu=hu)
        if lungs is not None:
            return (*_box(lungs, LUNG_MARGIN), True)
        return (*_box(region, MARGIN), False)
    return (*_box(region, MARGIN), True)


def crop_image(image, crop, *, hu, missed=None):
    """``image`` cut down as ``crop`` says (None keeps it whole).

    Parameters
    ----------
    image : ndarray of shape (H, W)
    crop : {"body", "lungs"} or None
    hu : bool
        Whether ``image`` is in Hounsfield units.
    missed : callable or None, default=None
        Called (without arguments) where the crop did not find what it looks
        for (:func:`crop_box`), so that a caller can count the fallbacks.

    Returns
    -------
    cropped : ndarray of shape (H', W')
    """
    if crop is None:
        return image
    rows, cols, found = crop_box(np.asarray(image), crop, hu=hu)
    if not found and missed is not None:
        missed()
    return image[rows, cols]
