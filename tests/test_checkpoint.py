"""Checkpoints every epoch; warm_start resumes to the same result; the same seed, the same model."""

import numpy as np
import pytest
from skorch.callbacks import Callback

from skcovid import TransferCNNClassifier

from conftest import FAST


class _Crash(Exception):
    pass


class _CrashAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise _Crash(f"power cut at epoch {self.epoch}")


#: Every stateful piece: dropout, shuffling, augmentation, a per-batch cyclic
#: schedule, early stopping on a validation split.
PARAMS = {**FAST, "max_epochs": 7, "dropout": 0.3, "hidden_units": (8,), "augment": "ct",
          "lr_schedule": "cyclic", "early_stopping": 10, "validation_fraction": 0.25}


@pytest.mark.parametrize("params", [
    PARAMS, {**PARAMS, "lr_schedule": "cosine", "early_stopping": 2},
    # Head-first epochs with a schedule per phase; the crash comes after the backbone joined.
    {**PARAMS, "max_epochs": 4, "head_epochs": 2, "layer_decay": 0.5, "lr_schedule": "onecycle"}])
def test_resumed_fit_equals_uninterrupted_fit(images, tmp_path, params):
    X, y = images
    whole = TransferCNNClassifier(**params, checkpoint_dir=tmp_path / "a").fit(X, y)
    (checkpoint,) = (tmp_path / "a").iterdir()  # one file, written atomically: no partial file left
    assert checkpoint.stat().st_size > 0

    crashing = TransferCNNClassifier(**params, checkpoint_dir=tmp_path / "b",
                                     callbacks=[_CrashAtEpoch(4)])
    with pytest.raises(_Crash):
        crashing.fit(X, y)
    resumed = TransferCNNClassifier(**params, checkpoint_dir=tmp_path / "b", warm_start=True).fit(X, y)
    np.testing.assert_allclose(resumed.predict_proba(X), whole.predict_proba(X), atol=1e-6)
    assert [h["epoch"] for h in resumed.history_] == [h["epoch"] for h in whole.history_]
    for a, b in zip(resumed.history_, whole.history_):
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], abs=1e-6)
    # Resuming a finished fit trains nothing more and gives the same model.
    again = TransferCNNClassifier(**params, checkpoint_dir=tmp_path / "b", warm_start=True).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), whole.predict_proba(X), atol=1e-6)


def test_checkpoint_of_another_fit_is_refused(images, tmp_path):
    X, y = images
    TransferCNNClassifier(**{**FAST, "max_epochs": 2}, checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="comes from a fit with other settings or data"):
        TransferCNNClassifier(**{**FAST, "max_epochs": 2, "lr": 0.5}, checkpoint_dir=tmp_path,
                              warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="comes from a fit with other settings or data"):
        TransferCNNClassifier(**{**FAST, "max_epochs": 2}, checkpoint_dir=tmp_path,
                              warm_start=True).fit(X[:-2], y[:-2])


def test_warm_start_without_checkpoint(images, tmp_path):
    X, y = images
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        TransferCNNClassifier(**FAST, warm_start=True).fit(X, y)
    fresh = TransferCNNClassifier(**FAST, checkpoint_dir=tmp_path / "new", warm_start=True).fit(X, y)
    plain = TransferCNNClassifier(**FAST).fit(X, y)
    np.testing.assert_allclose(fresh.predict_proba(X), plain.predict_proba(X), atol=1e-6)


def test_same_random_state_same_predictions_on_cpu(image_folder):
    X, y = image_folder
    params = {**PARAMS, "max_epochs": 3}
    a = TransferCNNClassifier(**params).fit(X, y).predict_proba(X)
    b = TransferCNNClassifier(**params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
