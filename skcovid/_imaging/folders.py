"""Image files under a folder, and the error that lists the unusable ones."""

import os
from pathlib import Path

from skcovid._imaging.raster import IMAGE_EXTENSIONS


class UnreadableImagesError(ValueError):
    """Files in an image folder that are not usable images; ``files`` lists them with the reasons."""

    def __init__(self, message, files):
        super().__init__(message)
        self.files = files


def list_image_files(folder, extensions=IMAGE_EXTENSIONS):
    """List the files under a folder, searched recursively, split into images and others.

    Hidden files and folders (names starting with a dot) are left out, and
    hidden folders are not searched.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to search.
    extensions : tuple of str, default=skcovid._imaging.raster.IMAGE_EXTENSIONS
        File extensions (lower case, with the dot) that count as images; the
        case of a file's extension does not matter.

    Returns
    -------
    images : list of pathlib.Path
        Files with one of ``extensions``, sorted by path.
    others : list of pathlib.Path
        The other files, sorted by path.
    """
    images, others = [], []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(parent, name)
            if name.startswith(".") or not path.is_file():
                continue
            (images if path.suffix.lower() in extensions else others).append(path)
    return sorted(images, key=str), sorted(others, key=str)
