"""skcovid's safe model format: tensors in safetensors, everything else in JSON.

A model file is one safetensors file (8 bytes of little-endian header length,
a JSON header, raw tensor data). Its header's metadata holds under
:data:`METADATA_KEY` a JSON document: ``format``, ``format_version``, the
``versions`` of the packages that wrote it, and the ``estimator``, as
``{"class", "params", "attributes", "network", "dropped"}``: the class (one of
the two classifiers or their pruners, nothing else), ``get_params(deep=False)``,
the fitted attributes (a pruner's tensors, the Taylor ``gradients_``, are
``dropped``), and for the classifier that owns ``net_`` its network. Values
JSON would not give back as they were are tagged: ``{"__tuple__": [...]}``,
``{"__dict__": [[key, value], ...]}``, ``{"__ndarray__": [...], "dtype",
"shape"}``, ``{"__optimizer__": "adam"}`` (skcovid's table),
``{"__tensor__": name}`` and ``{"__estimator__": {...}}``. A fold ensemble
(format version 2) is ``{"class": "VotingClassifier", "voting": "soft",
"weights", "classes", "members": [{"name", "estimator"}, ...]}``, each member
a classifier as above whose tensors are prefixed ``members[i].``; it loads as
scikit-learn's VotingClassifier over FrozenEstimator-wrapped members.

A network is ``{"prefix", "module", "net"}``: ``module`` is the backbone's
name, the head, the frozen stages, ``layers`` (for each layer that structured
pruning narrowed, its changed shape attributes such as ``out_channels`` or
``groups``), ``sparse`` (the shapes of the parameters that magnitude pruning
left mostly zero, stored as ``PREFIX + "sparse.NAME.bits"`` and ``".values"``
as :func:`skcovid._nets.sparse.pack_module` packs them; the others are
``PREFIX + "module.NAME"``); ``net`` is the skorch net's settings and history.

Loading builds the backbone by name without pretrained weights (nothing is
downloaded) and the head, narrows the pruned layers to their stored shapes and
loads the tensors. Nothing in a file is unpickled, imported or called.
"""

import json
import os

import numpy as np
import safetensors
import sklearn
import skorch
import torch
import torchvision
from safetensors.torch import load, save
from sklearn.ensemble import VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from skcovid._deploy.spec import CLASSIFIERS, PICKLE_HINT, build_estimator, decode, encode, estimator_spec
from skcovid._version import __version__

FORMAT = "skcovid-model"
#: Version 2 added fold ensembles (written as 2; a single classifier is still written as version 1).
FORMAT_VERSION = 2
#: The key of the safetensors metadata that holds the JSON document.
METADATA_KEY = "skcovid"
_MAX_HEADER = 256 * 2**20


#: How the files that unpickling would read begin: a pickle (protocol 2 and later), and the compressors
#: joblib writes with (zlib, gzip, bz2, xz, lzma).
_PICKLE_STARTS = (b"\x80", b"x\x01", b"x^", b"x\x9c", b"x\xda", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00\x00")


def not_a_model_file(data):
    """Why ``data`` is neither a safe model file nor a pickle, or None when it might be a pickle.

    Parameters
    ----------
    data : bytes

    Returns
    -------
    reason : str or None
    """
    if not data:
        return "it is empty"
    if len(data) >= 8 and data[8:9] == b"{":
        length = int.from_bytes(data[:8], "little")
        if length > len(data) - 8:
            return (f"it starts as a safetensors file whose header is {length:,} bytes long, but the file has "
                    f"{len(data) - 8:,} after the length: it is truncated or damaged")
    if data.startswith(_PICKLE_STARTS):
        return None
    return "it is neither a safetensors file (skcovid's safe format) nor a pickle: not a model file"


def read_header(data):
    """The JSON header of a safetensors file's bytes, or None for any other content.

    Parameters
    ----------
    data : bytes
        A file's content.

    Returns
    -------
    header : dict or None
        None when ``data`` does not start with a little-endian length and a
        JSON object of that length.
    """
    if len(data) < 10:
        return None
    length = int.from_bytes(data[:8], "little")
    if not 2 <= length <= min(len(data) - 8, _MAX_HEADER) or data[8:9] != b"{":
        return None
    try:
        header = json.loads(data[8:8 + length])
    except (ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def read_file_header(path):
    """:func:`read_header` of the file at ``path``, reading its first 8 bytes and the header they declare only.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    header : dict or None
    """
    with open(path, "rb") as f:
        start = f.read(8)
        length = int.from_bytes(start, "little") if len(start) == 8 else 0
        if not 2 <= length <= min(os.fstat(f.fileno()).st_size - 8, _MAX_HEADER):
            return None
        return read_header(start + f.read(length))


# --------------------------------------------------------------- ensembles
def _check_classifier_class(name):
    """Refuse a file whose classifier (or ensemble member) is not one of skcovid's two classifiers."""
    if name not in CLASSIFIERS:
        raise ValueError(f"it holds a {name!r}, not a skcovid classifier")


def _ensemble_spec(ensemble, tensors):
    """A fitted soft-voting ensemble of frozen skcovid classifiers (``skcovid train --cv K --ensemble``)."""
    check_is_fitted(ensemble)
    if ensemble.voting != "soft" or not all(isinstance(m, FrozenEstimator)
                                            and type(m.estimator).__name__ in CLASSIFIERS
                                            for _, m in ensemble.estimators):
        raise TypeError("The safe model format stores a VotingClassifier only with voting='soft' over "
                        "FrozenEstimator-wrapped skcovid classifiers (the fold models of skcovid train --cv K "
                        f"--ensemble); or {PICKLE_HINT}.")
    members = [{"name": name, "estimator": estimator_spec(member.estimator, f"members[{i}].", tensors, fitted=True)}
               for i, (name, member) in enumerate(ensemble.estimators)]
    return {"class": "VotingClassifier", "voting": "soft", "weights": encode(ensemble.weights, "weights"),
            "classes": encode(ensemble.classes_, "classes_"), "members": members}


def _build_ensemble(spec, tensors):
    names = [member["name"] for member in spec["members"]]
    if not all(isinstance(name, str) and name.isidentifier() for name in names):
        raise ValueError(f"ensemble member names {names} are not identifiers")
    for member in spec["members"]:
        _check_classifier_class(member["estimator"].get("class"))
    members = [FrozenEstimator(build_estimator(member["estimator"], tensors)) for member in spec["members"]]
    ensemble = VotingClassifier(list(zip(names, members)), voting="soft",
                                weights=decode(spec["weights"], tensors))
    # The fitted state VotingClassifier.fit gives frozen members: they themselves, and the classes.
    ensemble.estimators_ = members
    ensemble.named_estimators_ = Bunch(**dict(zip(names, members)))
    ensemble.le_ = LabelEncoder().fit(decode(spec["classes"], tensors))
    ensemble.classes_ = ensemble.le_.classes_
    return ensemble


def dumps(estimator):
    """A fitted (or unfitted) skcovid classifier, or a fold ensemble, as the bytes of a safe model file.

    Parameters
    ----------
    estimator : TransferCNNClassifier, PrunedCNNClassifier or VotingClassifier
        A VotingClassifier must be fitted, with ``voting="soft"``, over
        ``FrozenEstimator``-wrapped skcovid classifiers.

    Returns
    -------
    data : bytes

    Raises
    ------
    TypeError
        For other estimators.
    ValueError
        When a parameter or attribute is not data the format stores (a
        callable backbone, callbacks, a RandomState, ...).
    """
    tensors = {}
    if isinstance(estimator, VotingClassifier):
        spec, version = _ensemble_spec(estimator, tensors), 2
    else:
        spec, version = estimator_spec(estimator, "", tensors, fitted=True), 1
    versions = {"skcovid": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "scikit-learn": sklearn.__version__, "skorch": skorch.__version__, "numpy": np.__version__,
                "safetensors": safetensors.__version__}
    document = {"format": FORMAT, "format_version": version, "versions": versions, "estimator": spec}
    return save(tensors, metadata={METADATA_KEY: json.dumps(document)})


def loads(data, header):
    """The estimator in a safe model file's bytes; nothing is unpickled, imported or called.

    Parameters
    ----------
    data : bytes
        The file's content.
    header : dict
        Its header, from :func:`read_header`.

    Returns
    -------
    estimator : TransferCNNClassifier, PrunedCNNClassifier or VotingClassifier
    """
    text = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if not isinstance(text, str):
        raise ValueError("it is a safetensors file but not a skcovid model (no 'skcovid' metadata)")
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"its metadata is not a {FORMAT} document")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"its format_version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise ValueError(f"it was written in format version {version} by a newer skcovid "
                         f"({document.get('versions', {}).get('skcovid')}); this one reads up to "
                         f"{FORMAT_VERSION}: upgrade skcovid")
    spec = document["estimator"]
    if spec.get("class") == "VotingClassifier":
        return _build_ensemble(spec, load(bytes(data)))
    _check_classifier_class(spec.get("class"))
    return build_estimator(spec, load(bytes(data)))
