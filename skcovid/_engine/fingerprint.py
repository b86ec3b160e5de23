"""One fingerprint of what a computation depends on, for checkpoints and the feature cache."""

import os

import joblib
import torch
import torchvision

from skcovid._version import __version__

_VERSIONS = (f"skcovid {__version__}", f"torch {torch.__version__}",
             f"torchvision {torchvision.__version__}")


def _stable(value):
    """``value`` in a form whose joblib hash is the same in every process."""
    if isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
        # A weights file: its content may change under the same name.
        stat = os.stat(value)
        return ("file", os.path.abspath(value), stat.st_size, stat.st_mtime_ns)
    if callable(value) and not isinstance(value, type):
        try:  # functions pickle by reference: module and qualified name
            return ("callable", joblib.hash(value))
        except Exception:  # lambdas and closures: their code, constants and captured values
            code = getattr(value, "__code__", None)
            cells = getattr(value, "__closure__", None) or ()
            return ("callable", getattr(value, "__module__", None),
                    getattr(value, "__qualname__", repr(type(value))),
                    None if code is None else (code.co_code, repr(code.co_consts), code.co_names),
                    repr(getattr(value, "__defaults__", None)),
                    repr([cell.cell_contents for cell in cells]))
    return value


def fingerprint(params, *data):
    """A hash of parameters, data and package versions, stable across processes.

    Parameters
    ----------
    params : dict
        Parameters the computation depends on. Callables (a backbone factory,
        an optimizer class) hash by reference, lambdas and closures by their
        code; a path to a file also by the file's size and modification time.
    *data
        Anything else the computation depends on (labels, sizes, flags), hashed
        with :func:`joblib.hash`.

    Returns
    -------
    key : str
    """
    stable = sorted((name, _stable(value)) for name, value in params.items())
    return joblib.hash((stable, data, _VERSIONS))
