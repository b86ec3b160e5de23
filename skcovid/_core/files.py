"""Files and JSON: atomic writes of every output file, and numpy values made JSON-able."""

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


def jsonable(value):
    """``value`` with numpy scalars and arrays as Python numbers and lists, for :mod:`json`.

    Parameters
    ----------
    value : object

    Returns
    -------
    value : object
        Unchanged unless it is a numpy scalar or array.
    """
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _new_file_mode():
    """The mode ``open`` would give a new file under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager

def atomic_write(path, mode="wb", **open_kwargs):
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    An interrupted or failing write leaves whatever was at ``path`` before
    untouched and no temporary file behind.

    Parameters
    ----------
    path : str or path-like
    mode : {"wb", "w"}
    **open_kwargs
        Passed to :func:`open` (``encoding``, ``newline``).

    Yields
    ------
    file : file object
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A replaced file keeps its permissions; a new one gets the usual ones
    # (mkstemp would leave it readable by its owner only).
    permissions = path.stat().st_mode & 0o777 if path.exists() else _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(tmp, permissions)
        with os.fdopen(fd, mode, **open_kwargs) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path, prefix=b""):
    """The SHA-256 of ``prefix`` followed by a file's bytes, read in chunks of 1 MiB (never whole in memory).

    Parameters
    ----------
    path : str or path-like
    prefix : bytes, default=b""
        Hashed first (what else the digest must depend on).

    Returns
    -------
    digest : hashlib._Hash
        Updated with the file; ``.hexdigest()`` gives the text.
    """
    digest = hashlib.sha256(prefix)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest
