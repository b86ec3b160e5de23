"""Saving and loading models."""

import os
import stat

import joblib
import numpy as np
import pytest

from skcovid import TransferCNNClassifier, load_model, save_model
from skcovid._core.files import atomic_write  # private: the one writer of every output file

from conftest import FAST


def test_round_trip_and_no_optimizer_state(images, tmp_path):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "lr_schedule": "cosine", "max_epochs": 2}).fit(X, y)
    path = save_model(clf, tmp_path / "m.joblib")
    loaded = load_model(path, runtime="torch")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # A saved model holds the weights, not Adam's two moments per weight.
    n_bytes = sum(p.numel() * 4 for p in clf.net_.module_.parameters())
    assert os.path.getsize(path) < 1.5 * n_bytes + 200_000
    assert not loaded.net_.optimizer_.state  # a fresh optimizer
    loaded.set_params(max_epochs=1).fit(X, y)  # and it trains again


def test_failed_save_keeps_the_previous_model(images, tmp_path, monkeypatch):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    path = save_model(clf, tmp_path / "m.joblib", format="pickle")  # joblib's dump fails below
    before = path.read_bytes()

    def broken_dump(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(joblib, "dump", broken_dump)
    with pytest.raises(OSError, match="No space left"):
        save_model(clf, path, format="pickle")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.joblib"]


@pytest.mark.parametrize("content, error, match", [
    (None, FileNotFoundError, "Model file not found"),
    (b"not a pickle", ValueError, "Could not read a model from .*bad"),
    ("dict", ValueError, "holds a dict, not a scikit-learn estimator"),
])
def test_load_errors(tmp_path, content, error, match):
    path = tmp_path / "bad"
    if content == "dict":
        joblib.dump({"a": 1}, path)
    elif content is not None:
        path.write_bytes(content)
    if content == "dict":  # a pickle, not the safe format: refused unless trusted
        with pytest.raises(ValueError, match="Refused to load .*bad.*trusted=True"):
            load_model(path)
    elif content is not None:  # neither a safe file nor a pickle: called that, trusted or not
        with pytest.raises(ValueError, match="bad: it is neither a safetensors file .* nor a pickle"):
            load_model(path)
    with pytest.raises(error, match=match):
        load_model(path, trusted=True)
    with pytest.raises(IsADirectoryError):
        load_model(tmp_path)


# --- atomic_write, a private piece: save_model, report.save, export, the checkpoints
# and the command line all write their files through it.

def test_interrupted_save_keeps_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("good")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "good"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_write_gives_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
    os.chmod(tmp_path / "new.txt", 0o600)
    with atomic_write(tmp_path / "new.txt", "w") as f:
        f.write("y")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o600
