"""Validation of ``X`` and the torch datasets that feed the network."""

import math

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_array, validate_data
from torchvision.transforms import v2

from skcovid._imaging.crop import crop_image
from skcovid._imaging.intensity import harmonise
from skcovid._imaging.raster import array_to_gray, as_paths
from skcovid._imaging.window import apply_window, read_windowed


class PathImages:
    """Image files decoded lazily, one at a time (never all held in memory).

    Items are raster files, DICOM files or NIfTI slices; an item gives its
    ``(C, H, W)`` intensities under ``window`` (:func:`skcovid._imaging.window.read_windowed`).
    ``missed`` collects the items whose crop did not find what it looks for
    (read in this process); subsets share it.
    """

    def __init__(self, paths, window=None, crop=None, intensity=None, missed=None):
        self.paths = paths
        self.window = window
        self.crop = crop
        self.intensity = intensity
        self.missed = set() if missed is None else missed

    def __len__(self):
        return len(self.paths)

    def subset(self, indices):
        """The images at ``indices``, in that order."""
        return PathImages([self.paths[i] for i in indices], self.window, self.crop, self.intensity, self.missed)

    def __getitem__(self, index):
        path = self.paths[index]
        return read_windowed(path, self.window, self.crop, self.intensity, missed=lambda: self.missed.add(path))


class ArrayImages:
    """Images already in memory, as an ``(n, H, W)`` float32 array of grey intensities.

    ``missed`` collects the indices of the images whose crop did not find
    what it looks for.
    """

    def __init__(self, images, window=None, crop=None, intensity=None):
        self.images = images
        self.window = window
        self.crop = crop
        self.intensity = intensity
        self.missed = set()

    def __len__(self):
        return len(self.images)

    def subset(self, indices):
        """The images at ``indices``, in that order."""
        return ArrayImages(self.images[np.asarray(indices, dtype=int)], self.window, self.crop, self.intensity)

    def __getitem__(self, index):
        image = crop_image(harmonise(self.images[index], self.intensity), self.crop, hu=False,
                           missed=lambda: self.missed.add(int(index)))
        return apply_window(image, self.window, hu=False)


def _tabular_to_images(X):
    """Read ``(n_samples, n_features)`` rows as flattened single-channel images."""
    n_samples, n_features = X.shape
    side = math.isqrt(n_features)
    shape = (side, side) if side * side == n_features else (1, n_features)
    return X.reshape(n_samples, *shape)


def _forget_features(estimator):
    """Drop what a previous fit on 2-D arrays recorded; images have no features count."""
    for attr in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, attr):
            delattr(estimator, attr)


def check_images(estimator, X, *, reset, window=None, crop=None, intensity=None):
    """Validate ``X`` and return its images.

    Parameters
    ----------
    estimator : BaseEstimator
        Receives ``n_features_in_`` (and ``feature_names_in_``) when ``X`` is
        2-D numeric and ``reset`` is True; is checked against them otherwise.
    X : array-like
        A 1-D sequence (or one column) of image paths, an ``(n, H, W)`` or
        ``(n, H, W, C)`` image array, or ``(n_samples, n_features)`` numbers.
    reset : bool
        True in ``fit``.
    window : {"lung", "mediastinal", "multi"}, (level, width) or None, default=None
        How the images' intensities are read (:mod:`skcovid._imaging.window`).
    crop : {"body", "lungs"} or None, default=None
        How each image is cut down before resizing (:mod:`skcovid._imaging.crop`).
    intensity : {"auto"} or None, default=None
        How raster images' grey levels are harmonised (:mod:`skcovid._imaging.intensity`).

    Returns
    -------
    images : PathImages or ArrayImages
    """
    if not sp.issparse(X) and hasattr(X, "__len__") and len(X) == 0:
        raise ValueError(f"X is empty (0 samples); {type(estimator).__name__} needs images.")
    paths = as_paths(X)
    if paths is not None:
        if reset:
            _forget_features(estimator)
        return PathImages(paths, window, crop, intensity)
    ndim = getattr(X, "ndim", None)
    if ndim is None and not sp.issparse(X):
        ndim = np.ndim(np.asarray(X, dtype=object)) if hasattr(X, "__len__") else 0
    if ndim in (3, 4):
        array = check_array(X, allow_nd=True, dtype="numeric", ensure_min_features=1)
        if min(array.shape[1:3]) < 1:
            raise ValueError(f"Images must be at least 1x1 pixel; got shape {array.shape}.")
        if reset:
            _forget_features(estimator)
        return ArrayImages(array_to_gray(array), window, crop, intensity)
    array = validate_data(estimator, X, reset=reset, dtype="numeric")
    return ArrayImages(array_to_gray(_tabular_to_images(array)), window, crop, intensity)


def make_augmentation(augment):
    """Training-time augmentation on ``(1, H, W)`` float images.

    Parameters
    ----------
    augment : {None, "flip", "ct", "ct-robust"}

    Returns
    -------
    transform : callable or None
    """
    if augment is None:
        return None
    if augment == "flip":
        return v2.RandomHorizontalFlip()
    if augment == "ct-robust":
        # The geometry of "ct", and the ways other hospitals export the same slice.
        return v2.Compose([
            v2.RandomAffine(degrees=10, scale=(0.9, 1.1)),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([RandomDisplay()], p=0.8),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.3),
            v2.RandomApply([v2.GaussianNoise(sigma=0.02)], p=0.3),
            v2.RandomApply([JpegRoundTrip((30, 95))], p=0.3),
        ])
    # "ct": the augmentations of the CT literature.
    return v2.Compose([
        v2.RandomAffine(degrees=10, shear=5, scale=(0.9, 1.1)),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.ColorJitter(brightness=0.1, contrast=0.1),
        v2.RandomEqualize(p=0.2),
    ])


class RandomDisplay:
    """A random display mapping of ``[0, 1]`` intensities: a window narrower or wider than the slice's, and a gamma.

    The window's ends move by up to 0.15 inwards or 0.1 outwards, and the gamma is drawn log-uniformly in
    ``[0.6, 1.6]``, so that a network trained on one hospital's exports sees the windows and gammas of others.
    """

    def __call__(self, x):
        low = torch.empty(()).uniform_(-0.1, 0.15)
        high = torch.empty(()).uniform_(0.85, 1.1)
        gamma = torch.empty(()).uniform_(np.log(0.6), np.log(1.6)).exp()
        return ((x - low) / (high - low)).clamp(0, 1) ** gamma


class JpegRoundTrip:
    """JPEG compression at a random quality (torchvision's ``v2.JPEG``) of a ``[0, 1]`` float image."""

    def __init__(self, quality):
        self.jpeg = v2.JPEG(quality)

    def __call__(self, x):
        return self.jpeg((x * 255).round().to(torch.uint8)).float() / 255


class DecodedCache:
    """Resized image tensors kept for reuse across epochs, up to ``max_bytes``.

    Images are kept in the order they are first decoded until the budget is
    spent; nothing is evicted, so with shuffled epochs a fixed share of the
    data hits the cache (an LRU cache smaller than the data would miss every
    time). Memory stays bounded whatever the number of images.

    Images are copied into blocks of up to 64 MB, not kept as a tensor each:
    a small allocation kept per image, made among the large activations that
    training frees and allocates again every batch, splits the freed memory
    so that glibc cannot reuse it, and peak memory grew by more than the
    cache (docs/benchmarks.md, peak memory).
    """

    _BLOCK_BYTES = 64 * 2**20

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.n_bytes = 0
        self.slots = {}  # index: (block, row)
        self._blocks = []
        self._used = 0  # rows filled in the last block

    def __len__(self):
        return len(self.slots)

    def get(self, index):
        slot = self.slots.get(index)
        return None if slot is None else self._blocks[slot[0]][slot[1]]

    def put(self, index, tensor):
        size = tensor.numel() * tensor.element_size()
        if self.n_bytes + size > self.max_bytes:
            return
        block = self._blocks[-1] if self._blocks else None
        if (block is None or self._used == len(block) or block.shape[1:] != tensor.shape
                or block.dtype != tensor.dtype):
            rows = min(self.max_bytes - self.n_bytes, self._BLOCK_BYTES) // max(size, 1)
            block = tensor.new_empty((max(int(rows), 1), *tensor.shape))
            self._blocks.append(block)
            self._used = 0
        block[self._used] = tensor
        self.slots[index] = (len(self._blocks) - 1, self._used)
        self._used += 1
        self.n_bytes += size


def inference_loader(images, image_size, batch_size, *, indices=None, num_workers=0):
    """Batches of resized images in order, for forward passes outside training.

    The loader has its own generator, so iterating it leaves the global torch
    RNG alone (a DataLoader otherwise draws a seed from it).
    """
    return torch.utils.data.DataLoader(
        ImageDataset(images, None, image_size, indices=indices), batch_size=batch_size,
        num_workers=num_workers, generator=torch.Generator())


class ImageDataset(torch.utils.data.Dataset):
    """Grayscale images resized to a square, optionally augmented.

    Parameters
    ----------
    images : PathImages or ArrayImages
    y : ndarray of int or None
        Encoded labels; ``None`` at prediction time.
    image_size : int
    transform : callable or None
        Applied after resizing (training only).
    indices : ndarray of int or None
        Subset of ``images`` to use.
    cache : DecodedCache or None
        Where decoded, resized images are kept (before augmentation).
    """

    def __init__(self, images, y, image_size, transform=None, indices=None, cache=None):
        self.images = images
        self.y = y
        self.image_size = image_size
        self.transform = transform
        self.indices = np.arange(len(images)) if indices is None else indices
        self.cache = cache

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        x = None if self.cache is None else self.cache.get(index)
        if x is None:
            x = torch.from_numpy(np.ascontiguousarray(self.images[index]))
            x = v2.functional.resize(x, [self.image_size, self.image_size], antialias=True)
            if self.cache is not None:
                self.cache.put(index, x)
        if self.transform is not None:
            x = self.transform(x)
        target = 0 if self.y is None else int(self.y[index])
        return x, target
