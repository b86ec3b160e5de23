"""Image collections laid out as one sub-folder per class."""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from skcovid._imaging.folders import UnreadableImagesError, list_image_files
from skcovid._imaging.raster import IMAGE_EXTENSIONS, open_checked


def class_folders(path, *, what, example):
    """The class sub-folders of a dataset folder, sorted by name (hidden ones left out).

    Parameters
    ----------
    path : str or os.PathLike
        The dataset's root folder.
    what : str
        What the folder is, for the error when it is missing (``"Image folder"``).
    example : callable
        Given the root ``Path``, says what a class folder should hold.

    Returns
    -------
    root : pathlib.Path
    class_dirs : list of pathlib.Path

    Raises
    ------
    FileNotFoundError, NotADirectoryError, ValueError
        When ``path`` is missing, a file, or holds no class sub-folder.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{what} not found: {str(root)!r}")
    if not root.is_dir():
        raise NotADirectoryError(f"Expected a folder of class sub-folders, got a file: {str(root)!r}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"Folder {str(root)!r} has no class sub-folders; expected e.g. {example(root)}.")
    return root, class_dirs


def _check_image(path):
    """Return why ``path`` is not a usable image, or None.

    Reads the header and checks the size; ``verify`` then walks the file's
    chunks (catching truncated or corrupted PNGs) without decoding pixels.
    """
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with open_checked(path) as image:
            image.verify()
    except ValueError as exc:
        return str(exc).replace(f"Image file {str(path)!r} is ", "")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return None


def load_image_folder(path, *, extensions=IMAGE_EXTENSIONS, check_images=True, on_error="raise",
                      return_groups=False):
    """List the images of a folder with one sub-folder per class.

    ``path/COVID/a.png`` gets label ``"COVID"``; sub-folders of a class folder
    are searched too. Hidden files and files directly under ``path`` (such as
    a README) are ignored.

    Parameters
    ----------
    path : str or os.PathLike
        Root folder.
    extensions : tuple of str, default=skcovid._imaging.raster.IMAGE_EXTENSIONS
        File extensions (lower case, with the dot) that count as images.
    check_images : bool, default=True
        Check every file: its header, its size (at least 4x4 pixels, within
        Pillow's decompression-bomb limit) and the integrity of its chunks
        (truncated or corrupted PNGs), without decoding the pixels.
    on_error : {"raise", "skip"}, default="raise"
        What to do with files that fail the check or do not have an image
        extension: raise one error listing them all, or leave them out with
        a warning that lists them.
    return_groups : bool, default=False
        Also return the patient of each image, for patient-level splits such
        as :class:`~sklearn.model_selection.GroupKFold`: in
        ``path/<class>/<patient>/...`` the patient is the name of the first
        sub-folder under the class folder (same-named folders in two class
        folders are one patient). An image directly in its class folder is
        its own group (its path): the patient is unknown, so each slice
        stands alone, which amounts to a slice-level split.

    Returns
    -------
    X : ndarray of shape (n_images,), dtype object
        Paths (str), sorted by class then path.
    y : ndarray of shape (n_images,), dtype object
        The class folder name of each image.
    groups : ndarray of shape (n_images,), dtype object
        The patient of each image; returned only if ``return_groups`` is True.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    NotADirectoryError
        If ``path`` is not a folder.
    ValueError
        If there are no class sub-folders, a class folder holds no image, or
        some files are not images (all of them are listed) and ``on_error`` is
        ``"raise"``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r} is not valid; choose 'raise' or 'skip'.")
    root, class_dirs = class_folders(
        path, what="Image folder",
        example=lambda root: f"{str(root / 'COVID')!r} and {str(root / 'non-COVID')!r} holding the images")
    paths, labels, groups, not_images = [], [], [], []
    for class_dir in class_dirs:
        found, others = list_image_files(class_dir, extensions)
        not_images += [f"{f} (extension {f.suffix!r} is not one of {list(extensions)})"
                       for f in others]
        images = []
        for f in found:
            reason = _check_image(f) if check_images else None
            if reason is not None:
                not_images.append(f"{f} ({reason})")
                continue
            images.append(str(f))
        if not images and (on_error == "skip" or not not_images):
            raise ValueError(f"Class folder {str(class_dir)!r} holds no image files it can use.")
        paths += images
        labels += [class_dir.name] * len(images)
        groups += [_patient_of(Path(f), class_dir) for f in images]
    if not_images:
        shown = "\n  ".join(not_images[:20])
        more = f"\n  ... and {len(not_images) - 20} more" if len(not_images) > 20 else ""
        message = f"{len(not_images)} files under {str(root)!r} are not usable images"
        if on_error == "raise":
            raise UnreadableImagesError(
                f"{message} (on_error='skip' leaves them out):\n  {shown}{more}", not_images)
        warnings.warn(f"{message}; skipped:\n  {shown}{more}", UserWarning, stacklevel=2)
    if return_groups:
        return np.asarray(paths, dtype=object), np.asarray(labels, dtype=object), np.asarray(groups, dtype=object)
    return np.asarray(paths, dtype=object), np.asarray(labels, dtype=object)


def _patient_of(image, class_dir):
    """The first sub-folder of ``class_dir`` holding ``image``, or the image's own path."""
    parts = image.relative_to(class_dir).parts
    return parts[0] if len(parts) > 1 else str(image)
