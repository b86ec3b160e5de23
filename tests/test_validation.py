"""Parameter errors before data errors, and a clear error for each bad file whatever the sample count.

Both classifiers are used with their default validation settings
(``validation_fraction="auto"``, ``early_stopping="auto"``): 8 samples give no
validation set, 120 give one, and neither may hide a bad file or parameter
behind a split error.
"""

import re
import warnings

import numpy as np
import pytest
from PIL import Image
from sklearn.utils._param_validation import InvalidParameterError

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.pruning import MagnitudePruner, StructuredPruner

SMALL = dict(backbone="simple_cnn", weights=None, image_size=16, max_epochs=1, crop=None, tta=None,
             calibration=None, random_state=0)


@pytest.fixture(autouse=True)
def _frozen_random_backbone_is_expected():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "freeze=.* keeps randomly initialised", UserWarning)
        yield


def _slices(folder, n):
    """``n`` good PNG slices of two classes; returns (paths, labels)."""
    rng = np.random.RandomState(0)
    paths = []
    for i in range(n):
        path = folder / f"slice_{i:03d}.png"
        Image.fromarray(rng.randint(0, 255, (24, 24), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths, np.array(["COVID", "non-COVID"] * (n // 2), dtype=object)


def _bad_file(folder, kind):
    path = folder / f"bad_{kind}.png"
    if kind == "missing":
        pass
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.fromarray(np.random.RandomState(1).randint(0, 255, (64, 64), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "text":
        path.write_text("not an image\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "one_pixel":
        Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(path)
    return str(path)


BAD_FILES = {
    "missing": "Image file not found",
    "empty": "is empty",
    "truncated": "Cannot decode image file",
    "text": "Cannot decode image file",
    "directory": "got a directory",
    "one_pixel": "a CT slice needs at least",
}
BAD_PARAMS = {
    "backbone": ("resnet9000", "'backbone' parameter of TransferCNNClassifier must be a name from "
                               "skcovid.BACKBONES"),
    "image_size": (0, "'image_size' parameter of TransferCNNClassifier must be an int in the range"),
    "hidden_units": ((8, 0), "'hidden_units' parameter of TransferCNNClassifier must be a tuple of "
                             "positive ints"),
    "optimizer": (dict, "'optimizer' parameter of TransferCNNClassifier must be a str among"),
    "device": ("gpu7", "'device' parameter of TransferCNNClassifier must be 'auto' or a torch device"),
    "validation_fraction": (1.5, "'validation_fraction' parameter of TransferCNNClassifier must be"),
    "early_stopping": (0, "'early_stopping' parameter of TransferCNNClassifier must be"),
    "freeze": ("all", "'freeze' parameter of TransferCNNClassifier must be"),
}


@pytest.mark.parametrize("n", [8, 120])
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("pruned", [False, True], ids=["transfer", "pruned"])
def test_a_bad_file_is_named_whatever_the_sample_count(tmp_path, n, kind, pruned):
    X, y = _slices(tmp_path, n)
    X[3] = _bad_file(tmp_path, kind)
    clf = TransferCNNClassifier(**SMALL)
    if pruned:
        clf = PrunedCNNClassifier(clf, finetune_epochs=1)
    with pytest.raises((ValueError, FileNotFoundError), match=BAD_FILES[kind]) as info:
        clf.fit(X, y)
    assert repr(X[3]) in str(info.value)


@pytest.mark.parametrize("name", sorted(BAD_PARAMS))
def test_parameter_errors_come_before_data_errors(tmp_path, name):
    """A bad parameter is reported even when the data are bad too (8 samples, a missing file)."""
    X, y = _slices(tmp_path, 8)
    X[0] = str(tmp_path / "missing.png")
    value, message = BAD_PARAMS[name]
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        TransferCNNClassifier(**{**SMALL, name: value}).fit(X, y[:3])  # y too short as well
    with pytest.raises(InvalidParameterError, match="'finetune_epochs' parameter of PrunedCNNClassifier"):
        PrunedCNNClassifier(TransferCNNClassifier(**SMALL), finetune_epochs=-1).fit(X, y[:3])


def test_several_parameter_checks_come_before_data_errors():
    X, y = np.full((2, 8, 8), np.nan), [0]  # NaN images and too few labels
    with pytest.raises(ValueError, match="warm_start=True resumes from a checkpoint"):
        TransferCNNClassifier(**SMALL, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="early_stopping=3 monitors the validation loss"):
        TransferCNNClassifier(**SMALL, validation_fraction=None, early_stopping=3).fit(X, y)
    with pytest.raises(ValueError, match="precompute_features=True needs freeze='backbone'"):
        TransferCNNClassifier(**SMALL, freeze="none", precompute_features=True).fit(X, y)


@pytest.mark.parametrize("pruner, name, value", [
    (StructuredPruner, "ratio", 1.0),
    (StructuredPruner, "importance", "random"),
    (MagnitudePruner, "sparsity", -0.1),
    (MagnitudePruner, "schedule", "cubic"),
])
def test_pruners_validate_their_parameters(pruner, name, value):
    import torch

    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of {pruner.__name__}"):
        pruner(**{name: value}).fit(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_auto_validation_split_follows_the_data(capsys):
    X = np.random.RandomState(0).rand(1000, 8, 8)
    y = np.arange(1000) % 2  # 500 per class: a split of 100, 50 a class, is large enough to trust
    clf = TransferCNNClassifier(**{**SMALL, "max_epochs": 2, "verbose": 1, "batch_size": 250}).fit(X, y)
    assert "valid_loss" in clf.history_[0] and len(clf.validation_indices_) == 100
    assert "validation_fraction='auto'" not in capsys.readouterr().out
    # 60 per class: a split of 12 is not, and the network trains on all of it ...
    clf = TransferCNNClassifier(**{**SMALL, "max_epochs": 2, "verbose": 1}).fit(X[:120], y[:120])
    assert "valid_loss" not in clf.history_[0]
    out = capsys.readouterr().out
    assert out.count("validation_fraction='auto': one in ten of 120 samples, 60 in the smallest class, is too "
                     "few to trust") == 1
    # ... unless a setting asks for a split: early stopping given a patience
    with pytest.warns(UserWarning, match="too small for early stopping"):
        clf = TransferCNNClassifier(**{**SMALL, "max_epochs": 2}, early_stopping=3).fit(X[:120], y[:120])
    assert len(clf.validation_indices_) == 12
    TransferCNNClassifier(**{**SMALL, "max_epochs": 1}).fit(X[:40], y[:40])
    assert "validation_fraction" not in capsys.readouterr().out  # silent at verbose=0
    with pytest.raises(ValueError, match="early_stopping=3 monitors a validation set, but "
                                         "validation_fraction='auto' holds none out of 40"):
        TransferCNNClassifier(**SMALL, early_stopping=3).fit(X[:40], y[:40])
