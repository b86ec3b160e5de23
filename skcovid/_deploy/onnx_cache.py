"""A saved model run by ONNX Runtime: exported once, into a cache keyed by the model file's content."""

import hashlib
import os
from pathlib import Path

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


def export_key(data):
    """The cache key of a model file's bytes: its SHA-256, with skcovid's version and the opset."""
    digest = hashlib.sha256(data)
    digest.update(f"skcovid {__version__} opset {OPSET_VERSION}".encode())
    return digest.hexdigest()[:32]


def cache_path(path, cache_dir=None):
    """Where the ONNX export of the model file at ``path`` is (or would be) cached."""
    return cache_home(cache_dir) / "onnx" / f"{export_key(Path(path).read_bytes())}.onnx"


def cached_onnx(path, load, *, cache_dir=None, n_threads=None):
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

    Returns
    -------
    model : OnnxClassifier
    """
    target = cache_path(path, cache_dir)
    if not target.is_file():
        export(load(), target, format="onnx", opset_version=OPSET_VERSION)  # written atomically
    return load_onnx(target, n_threads=n_threads)
