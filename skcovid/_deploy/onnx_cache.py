"""A saved model run by ONNX Runtime: exported once, into a cache keyed by the model file's content."""

import importlib.util
import os
from pathlib import Path

import torch

from skcovid._core.estimator import fitted_network
from skcovid._core.files import atomic_write, file_sha256
from skcovid._deploy.export import export
from skcovid._deploy.onnx_runtime import load_onnx
from skcovid._version import __version__

#: The opset of the cached exports (skcovid.export's default).
OPSET_VERSION = 18


def cache_home(cache_dir=None):
    """Where exports are cached: ``cache_dir``, else ``$SKCOVID_CACHE``, else ``~/.cache/skcovid``.

    Parameters
    ----------
    cache_dir : str, path-like or None, default=None

    Returns
    -------
    path : pathlib.Path
    """
    if cache_dir is None:
        cache_dir = os.environ.get("SKCOVID_CACHE") or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skcovid"
    return Path(cache_dir)


def export_key(path):
    """The cache key of a model file: the SHA-256 of skcovid's version, the opset and the file's bytes."""
    return file_sha256(path, f"skcovid {__version__} opset {OPSET_VERSION}\0".encode()).hexdigest()[:32]


def cache_path(path, cache_dir=None):
    """Where the ONNX export of the model file at ``path`` is (or would be) cached."""
    return cache_home(cache_dir) / "onnx" / f"{export_key(path)}.onnx"


def _can_run(estimator):
    """Whether ONNX Runtime is installed and ``estimator`` is one network that :func:`export` writes.

    An ensemble of fold models, or an estimator that is not a skcovid
    classifier, is not.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    try:
        fitted_network(estimator)
    except TypeError:
        return False
    return True


def cached_onnx(path, load, *, cache_dir=None, n_threads=None, required=True):
    """The ONNX export of the model file at ``path``, made once and then read from the cache.

    Parameters
    ----------
    path : str or path-like
        A model file saved by :func:`skcovid.save_model`.
    load : callable
        Returns the fitted estimator of ``path`` (called only when the
        export is not cached yet).
    cache_dir : str, path-like or None, default=None
        See :func:`cache_home`.
    n_threads : int or None, default=None
        ONNX Runtime's intra-op threads (:func:`skcovid.load_onnx`).
    required : bool, default=True
        False returns the estimator ``load`` gives for a model ONNX Runtime
        cannot run (not installed, an ensemble, a network the exporter
        refuses), and remembers a refused export in the cache so that it is
        not tried again; True lets the error through.

    Returns
    -------
    model : OnnxClassifier, or the estimator where ONNX Runtime cannot run it and not ``required``
    """
    target = cache_path(path, cache_dir)
    if target.is_file():
        return load_onnx(target, n_threads=n_threads)
    refused = target.with_suffix(".refused")
    if not required and refused.is_file():
        return load()
    estimator = load()
    if not required and not _can_run(estimator):
        return estimator
    try:
        export(estimator, target, format="onnx", opset_version=OPSET_VERSION)  # written atomically
    except torch.onnx.OnnxExporterError as exc:
        if required:
            raise
        with atomic_write(refused, "w", encoding="utf-8") as f:
            f.write(f"{type(exc).__name__}: {exc}\n")
        return estimator
    return load_onnx(target, n_threads=n_threads)
