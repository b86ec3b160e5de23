"""Saving and loading fitted models: the safe format by default, pickles only when trusted."""

import contextlib
import importlib
import io
import sys
from pathlib import Path

import joblib
from sklearn.base import BaseEstimator

from skcovid._core.files import atomic_write
from skcovid._deploy import modelfile
from skcovid._deploy.onnx_cache import cached_onnx

#: Where the classes of a pickle written by skcovid 0.1 live now: trusted pickles
#: name their classes' modules, and 0.1's flat private modules moved into subpackages.
MODULE_ALIASES = {
    "skcovid._backbones": "skcovid._nets.backbones",
    "skcovid._network": "skcovid._nets.network",
    "skcovid.pruning._sparse": "skcovid._nets.sparse",
    "skcovid._classifier": "skcovid._estimators.classifier",
    "skcovid._pruned": "skcovid._estimators.pruned",
    "skcovid._base": "skcovid._estimators.base",
    "skcovid._training": "skcovid._engine.net",
    "skcovid._engine": "skcovid._engine.fit",
    "skcovid._data": "skcovid._engine.data",
    "skcovid._features": "skcovid._engine.features",
    "skcovid._checkpoint": "skcovid._engine.checkpoint",
    "skcovid._distillation": "skcovid._engine.distillation",
}


@contextlib.contextmanager
def _old_module_names():
    """Make 0.1's module names importable while a trusted pickle loads, and only then."""
    added = []
    for old, new in MODULE_ALIASES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
            added.append(old)
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)


class UntrustedModelError(ValueError):
    """A model file that only unpickling could read, refused because ``trusted`` was not set."""

    __module__ = "skcovid"  # where users import it from, and what tracebacks name


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
        data = modelfile.dumps(estimator)
        with atomic_write(path, "wb") as file:
            file.write(data)
    elif format == "pickle":
        with atomic_write(path, "wb") as file:
            joblib.dump(estimator, file, compress=compress)
    else:
        raise ValueError(f"format must be 'safe' or 'pickle'; got {format!r}.")
    return Path(path)


def load_model(path, *, trusted=False, runtime="auto", cache_dir=None):
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
    runtime : {"auto", "torch", "onnx"}, default="auto"
        ``"onnx"`` returns the model exported to ONNX (:func:`skcovid.export`)
        and run by ONNX Runtime (:func:`skcovid.load_onnx`): exported on the
        first call, into a cache keyed by the file's content, and read from
        there after. Its probabilities equal PyTorch's within 1e-4, several
        times faster on a CPU (docs/benchmarks.md). ``"auto"`` does the same
        wherever ONNX Runtime can run the model, and returns the PyTorch
        estimator otherwise (an ensemble of fold models, a network the
        exporter refuses). ``"torch"`` returns the estimator itself, which
        can also be refitted, pruned and explained (Grad-CAM).
    cache_dir : str, path-like or None, default=None
        Where ``runtime="onnx"`` caches its exports: by default
        ``$SKCOVID_CACHE``, else ``~/.cache/skcovid``.

    Returns
    -------
    estimator : estimator or OnnxClassifier
        An :class:`~skcovid.OnnxClassifier` from ``runtime="onnx"`` and,
        where ONNX Runtime can run the model, ``"auto"``; else the
        estimator, ready to predict (on the CPU when it was trained on a GPU
        that this machine does not have).

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
    if runtime not in ("auto", "torch", "onnx"):
        raise ValueError(f"runtime must be 'auto', 'torch' or 'onnx'; got {runtime!r}.")
    if runtime == "torch" or (not trusted and modelfile.read_file_header(path) is None):
        # An untrusted file not in the safe format is refused (or not a model) before any cache is read.
        return _load_estimator(path, trusted)
    return cached_onnx(path, lambda: _load_estimator(path, trusted), cache_dir=cache_dir,
                       required=runtime == "onnx")


def _load_estimator(path, trusted):
    """The estimator saved at ``path``, from the safe format or, when ``trusted``, a pickle."""
    data = path.read_bytes()
    header = modelfile.read_header(data)
    if header is not None:
        try:
            return modelfile.loads(data, header)
        except Exception as exc:
            raise ValueError(f"Could not read a model from {path}: {type(exc).__name__}: {exc}") from exc
    reason = modelfile.not_a_model_file(data)
    if reason is not None:
        raise ValueError(f"Could not read a model from {path}: {reason}.")
    if not trusted:
        raise UntrustedModelError(
            f"Refused to load {path}: it is not a model file in skcovid's safe format, so reading it "
            "would mean unpickling it (a joblib or pickle file), and unpickling a file runs whatever code "
            "it carries. Load it only if you trust its source: load_model(path, trusted=True) in Python, "
            "--trust-pickle on the command line; save_model(model, path) then writes it in the safe "
            "format, which loads without running code."
        )
    try:
        with _old_module_names():
            estimator = joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ValueError(f"Could not read a model from {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(estimator, BaseEstimator):
        raise ValueError(
            f"{path} holds a {type(estimator).__name__}, not a scikit-learn estimator."
        )
    return estimator
