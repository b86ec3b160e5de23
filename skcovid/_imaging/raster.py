"""Decoding of image files and arrays into one grayscale representation.

Every image, whatever its file format, Pillow mode or array layout, is turned
into a 2-D ``float32`` array of intensities on the ``[0, 1]`` scale by a single
path. Channel layout never changes the numbers: the same grey pixels stored as
``L``, ``LA``, ``P``, ``RGB``, ``RGBA`` or 16-bit ``I;16`` give the same array.
In the SARS-CoV-2 CT-scan dataset only COVID slices are stored as RGB, so any
mode-dependent preprocessing would leak the label.
"""

import contextlib
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

#: File extensions treated as images when a folder is scanned.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")

# ITU-R 601-2 luma, the transform Pillow's ``convert("L")`` applies.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Smallest side, in pixels, of an image file taken for a CT slice (smaller files are
#: placeholders or broken exports: resized, they carry no anatomy).
MIN_IMAGE_SIDE = 4


def pil_to_gray(image):
    """Convert a Pillow image to grayscale intensities in ``[0, 1]``.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode Pillow can decode.

    Returns
    -------
    gray : ndarray of shape (height, width), dtype float32
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode == "I":
        # 32-bit integer mode: Pillow opens 16-bit grayscale files this way.
        return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    # Every 8-bit mode (1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, ...) goes
    # through Pillow's own luma conversion; alpha is ignored.
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def read_gray(path):
    """Decode an image file into grayscale intensities in ``[0, 1]``.

    Parameters
    ----------
    path : str or os.PathLike
        Path of the image file.

    Returns
    -------
    gray : ndarray of shape (height, width), dtype float32

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty, not an image Pillow can decode, truncated,
        smaller than ``MIN_IMAGE_SIDE`` pixels on a side, or larger than
        Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"Expected an image file but got a directory: {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"Image file {path!r} is empty (0 bytes).")
    try:
        with open_checked(path) as image:
            gray = pil_to_gray(image)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"Image file {path!r} is too large to decode safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"Cannot decode image file {path!r}: {exc}") from exc
    return gray


@contextlib.contextmanager
def open_checked(path):
    """Open an image file with Pillow (header only), refusing sizes no CT slice has.

    Raises
    ------
    ValueError
        If the image is smaller than ``MIN_IMAGE_SIDE`` pixels on a side or
        larger than Pillow's decompression-bomb limit.
    PIL.Image.DecompressionBombError, PIL.UnidentifiedImageError, OSError
        As :func:`PIL.Image.open` raises them.
    """
    path = os.fspath(path)
    with warnings.catch_warnings():
        # Pillow warns past its limit; _check_size refuses such images outright.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image:
        _check_size(image, path)
        yield image


def _check_size(image, path):
    """Refuse images too small to be a CT slice or beyond Pillow's decompression-bomb limit."""
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"Image file {path!r} is {width}x{height} pixels; a CT slice needs at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}."
        )
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        # Pillow only warns up to twice its limit; an image this large is refused.
        raise ValueError(
            f"Image file {path!r} is {width}x{height} = {width * height} pixels, over Pillow's "
            f"decompression-bomb limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS)."
        )


def array_to_gray(images):
    """Convert a stack of images to grayscale intensities.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, H, W, C)
        ``C`` is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). ``uint8``
        and ``uint16`` arrays are scaled to ``[0, 1]`` like image files of that
        depth; any other dtype is taken as intensities on the ``[0, 1]``
        scale and left unchanged.

    Returns
    -------
    gray : ndarray of shape (n, H, W), dtype float32
    """
    if images.ndim == 4:
        n_channels = images.shape[-1]
        if n_channels in (1, 2):
            images = images[..., 0]
        elif n_channels in (3, 4):
            if images.dtype == np.uint8:
                # Same rounding as Pillow, so an array and the PNG written
                # from it give identical intensities.
                images = np.stack(
                    [np.asarray(Image.fromarray(np.ascontiguousarray(im[..., :3])).convert("L"))
                     for im in images]
                ) if len(images) else images[..., 0]
            else:
                images = images[..., :3].astype(np.float32) @ _LUMA
        else:
            raise ValueError(
                "Image arrays of shape (n, H, W, C) must have C in (1, 2, 3, 4) "
                f"channels; got C={n_channels}."
            )
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if images.dtype == np.uint16:
        return images.astype(np.float32) / 65535.0
    return images.astype(np.float32, copy=False)


def as_paths(X):
    """Return X as a list of str paths if it is a 1-D (or one-column) sequence of paths."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ValueError(
            f"X must be a sequence of image paths or an array of images; got the single "
            f"path {X!r}. Use skcovid.datasets.load_image_folder to list a folder."
        )
    if not hasattr(X, "__len__") or hasattr(X, "tocsr"):  # scipy.sparse: numbers
        return None
    try:
        array = np.asarray(X, dtype=object)
    except ValueError:  # ragged nested sequences
        return None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.size == 0:
        return None
    is_path = [isinstance(x, (str, os.PathLike)) for x in array]
    if not any(is_path):
        return None
    if not all(is_path):
        bad = next(i for i, ok in enumerate(is_path) if not ok)
        raise ValueError(
            "X looks like a sequence of image paths, but element "
            f"{bad} is {array[bad]!r} ({type(array[bad]).__name__}), not a path."
        )
    return [os.fspath(x) for x in array]
