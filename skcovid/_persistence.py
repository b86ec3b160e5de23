"""Atomic writes, and saving and loading fitted models (the safe format is in ``_modelfile``)."""

import contextlib
import inspect
import io
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


def upgraded_state(cls, state):
    """The pickled ``state`` of an estimator of class ``cls`` saved by an earlier version, brought up to date.

    Parameters added since take their defaults; those listed in the class's
    ``_retired_params`` are dropped (the safe format's loader drops them too).

    Parameters
    ----------
    cls : type
    state : dict

    Returns
    -------
    state : dict
    """
    for name in getattr(cls, "_retired_params", ()):
        state.pop(name, None)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name != "self":
            state.setdefault(name, param.default)
    return state


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


class UntrustedModelError(ValueError):
    """A model file that only unpickling could read, refused because ``trusted`` was not set."""


def save_model(estimator, path, *, format="safe", compress=3):
    """Save an estimator, atomically, in the safe model format (or as a joblib pickle).

    The safe format (the default) is one safetensors file: the network's
    tensors (those that magnitude pruning left mostly zero as a bit mask and
    their non-zero values), and a JSON document with everything else (the
    parameters, the classes, the history, the shapes of structurally pruned
    layers, the package versions, a format version). Loading it rebuilds the
    network from data and runs no code from the file. It stores a
    :class:`~skcovid.TransferCNNClassifier` or a
    :class:`~skcovid.PrunedCNNClassifier` whose parameters are data: a
    callable ``backbone``, ``callbacks``, an optimizer class outside
    skcovid's table or a ``RandomState`` are refused (use ``format="pickle"``
    for those). ``accelerator`` and ``memory`` are settings of the machine
    that trained and are stored as None; the optimizer's state is not
    stored. Any file name works (``.skcovid`` is the convention):
    :func:`load_model` tells the formats apart by content.

    ``format="pickle"`` writes the estimator with joblib, any estimator; such
    a file loads only with ``load_model(path, trusted=True)``, because
    unpickling a file runs whatever code it carries.

    The model is written to a temporary file in the target folder and renamed
    over ``path`` only when complete, so an interrupted or refused save never
    leaves a broken file where a good one was.

    Parameters
    ----------
    estimator : estimator
        A fitted TransferCNNClassifier or PrunedCNNClassifier for
        ``format="safe"``; any picklable estimator for ``format="pickle"``.
    path : str or path-like
        Where to write the model.
    format : {"safe", "pickle"}, default="safe"
        The safe format (safetensors and JSON) or a joblib pickle.
    compress : int, default=3
        The zlib compression level of joblib (0 for none); ``format="pickle"`` only.

    Returns
    -------
    path : pathlib.Path
        The path written.

    Raises
    ------
    TypeError, ValueError
        When the safe format cannot store the estimator (the message says
        what, and names ``format="pickle"``).
    """
    if format == "safe":
        from ._modelfile import dumps

        data = dumps(estimator)
        with atomic_write(path, "wb") as file:
            file.write(data)
    elif format == "pickle":
        with atomic_write(path, "wb") as file:
            joblib.dump(estimator, file, compress=compress)
    else:
        raise ValueError(f"format must be 'safe' or 'pickle'; got {format!r}.")
    return Path(path)


def load_model(path, *, trusted=False):
    """Load an estimator saved with :func:`save_model`.

    A file in the safe format (told apart by its content, whatever its name)
    is rebuilt from its tensors and JSON: nothing in it is unpickled, imported
    or called, so it is safe to load from any source. Any other file would
    have to be unpickled (joblib or pickle), and unpickling runs whatever code
    the file carries: such a file is refused, before anything is read from
    it as a pickle, unless ``trusted=True`` (on the command line,
    ``--trust-pickle``).

    Parameters
    ----------
    path : str or path-like
        The model file.
    trusted : bool, default=False
        Allow unpickling a pickle or joblib file. Only for files from a
        source you trust; save the model again with :func:`save_model` to
        get a safe file.

    Returns
    -------
    estimator : estimator
        The estimator, ready to predict (on the CPU when it was trained on a
        GPU that this machine does not have).

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        When ``path`` is not a file.
    UntrustedModelError
        A :class:`ValueError`: the file is not in the safe format and
        ``trusted`` is False.
    ValueError
        When the file is not a readable model.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Expected a model file, got the directory {path}.")
    if not path.exists():
        raise FileNotFoundError(f"Model file not found: {path}.")
    from . import _modelfile

    data = path.read_bytes()
    header = _modelfile.read_header(data)
    if header is not None:
        try:
            return _modelfile.loads(data, header)
        except Exception as exc:
            raise ValueError(f"Could not read a model from {path}: {type(exc).__name__}: {exc}") from exc
    if not trusted:
        raise UntrustedModelError(
            f"Refused to load {path}: it is not a model file in skcovid's safe format, so reading it "
            "would mean unpickling it (a joblib or pickle file), and unpickling a file runs whatever code "
            "it carries. Load it only if you trust its source: load_model(path, trusted=True) in Python, "
            "--trust-pickle on the command line; save_model(model, path) then writes it in the safe "
            "format, which loads without running code."
        )
    try:
        estimator = joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ValueError(f"Could not read a model from {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(estimator, BaseEstimator):
        raise ValueError(
            f"{path} holds a {type(estimator).__name__}, not a scikit-learn estimator."
        )
    return estimator
