"""Atomic writes, and saving and loading fitted models."""

import contextlib
import os
import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator


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


def save_model(estimator, path, *, compress=3):
    """Save a fitted estimator with joblib, atomically.

    The model is written to a temporary file in the target folder and renamed
    over ``path`` only when complete, so an interrupted save never leaves a
    broken file where a good one was.

    Parameters
    ----------
    estimator : estimator
    path : str or path-like
    compress : int, default=3
        The zlib compression level of joblib (0 for none).

    Returns
    -------
    path : pathlib.Path
    """
    with atomic_write(path, "wb") as file:
        joblib.dump(estimator, file, compress=compress)
    return Path(path)


def load_model(path):
    """Load an estimator saved with :func:`save_model` (or ``joblib.dump``).

    Only load files you trust: like any pickle, a model file can run code.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator : estimator

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        When ``path`` is not a file.
    ValueError
        When the file is not a readable model.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Expected a model file, got the directory {path}.")
    if not path.exists():
        raise FileNotFoundError(f"Model file not found: {path}.")
    try:
        estimator = joblib.load(path)
    except Exception as exc:
        raise ValueError(f"Could not read a model from {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(estimator, BaseEstimator):
        raise ValueError(
            f"{path} holds a {type(estimator).__name__}, not a scikit-learn estimator."
        )
    return estimator
