"""TransferCNNClassifier: hyperparameters, inputs, freezing, persistence."""

import copy
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight
from skorch.callbacks import Callback, EpochScoring

from skcovid import TransferCNNClassifier
from skcovid.explain import feature_maps

from conftest import FAST


def fit(X, y, **params):
    return TransferCNNClassifier(**{**FAST, **params}).fit(X, y)


# ---------------------------------------------------------------- inputs

def test_learns_from_file_paths_and_string_labels(image_folder):
    X, y = image_folder
    clf = fit(X, y, max_epochs=15)
    assert list(clf.classes_) == ["COVID", "non-COVID"]
    assert set(clf.predict(X)) <= {"COVID", "non-COVID"}
    assert clf.score(X, y) >= 0.9
    assert not hasattr(clf, "n_features_in_")


def test_path_objects_and_one_column_equal_str_paths(image_folder):
    X, y = image_folder
    clf = fit(X, y)
    expected = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.predict_proba([Path(p) for p in X]), expected)
    np.testing.assert_array_equal(clf.predict_proba(X.reshape(-1, 1)), expected)


def test_files_and_arrays_give_the_same_probabilities(image_folder, images):
    X_paths, y = image_folder
    X_array, _ = images
    clf = fit(X_paths, y)
    expected = clf.predict_proba(X_paths)
    np.testing.assert_allclose(clf.predict_proba(X_array), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X_array[..., None]), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X_array.astype(np.float32) / 255), expected,
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "I;16"])
def test_mode_trap_same_grey_pixels_same_probabilities(tmp_path, images, mode):
    """In the SARS-CoV-2 data only COVID slices are RGB: mode must not change the output."""
    X, y = images
    clf = fit(X, y)
    paths = {"L": [], mode: []}
    for i, image in enumerate(X[:6]):
        for m in paths:
            path = tmp_path / f"{i}_{m.replace(';', '')}.png"
            if m == "I;16":
                Image.fromarray(image.astype(np.uint16) * 257).save(path)
            else:
                Image.fromarray(image, mode="L").convert(m).save(path)
            with Image.open(path) as check:
                assert check.mode == m
            paths[m].append(str(path))
    np.testing.assert_array_equal(clf.predict_proba(paths[mode]), clf.predict_proba(paths["L"]))


def test_rgb_array_and_grey_array_agree(images):
    X, y = images
    clf = fit(X, y)
    rgb = np.repeat(X[..., None], 3, axis=-1)
    rgba = np.concatenate([rgb, np.full_like(X[..., None], 255)], axis=-1)
    np.testing.assert_array_equal(clf.predict_proba(rgb), clf.predict_proba(X))
    np.testing.assert_array_equal(clf.predict_proba(rgba), clf.predict_proba(X))


def test_multiclass(images):
    X, _ = images
    y = np.arange(len(X)) % 3
    clf = fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert set(clf.predict(X)) <= {0, 1, 2}


def test_tabular_input_sets_n_features_in():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 9))
    y = (X[:, 0] > 0).astype(int)
    clf = fit(X, y)
    assert clf.n_features_in_ == 9
    with pytest.raises(ValueError, match="X has 4 features, but TransferCNNClassifier is expecting 9"):
        clf.predict(X[:, :4])


@pytest.mark.parametrize(
    "X, error, match",
    [
        ("slice.png", ValueError, "single path"),
        (["a.png", 3], ValueError, "element 1 is 3"),
        (np.zeros(8), ValueError, "Expected 2D array"),
        (np.zeros((2, 4, 4, 5)), ValueError, "C in \\(1, 2, 3, 4\\)"),
        (np.full((8, 4, 4), np.nan), ValueError, "NaN"),
    ],
)
def test_bad_X(X, error, match):
    with pytest.raises(error, match=match):
        TransferCNNClassifier(**FAST).fit(X, np.arange(8) % 2 if not isinstance(X, (str, list)) else [0, 1])


def test_missing_file_named_in_error(image_folder, tmp_path):
    X, y = image_folder
    X = X.copy()
    X[3] = str(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        fit(X, y)


def test_single_class_and_bad_y(images):
    X, y = images
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        fit(X, y[:-1])
    with pytest.raises(ValueError, match="Unknown label type"):
        fit(X, np.linspace(0, 1, len(X)))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"freeze": "some"}, "freeze"),
        ({"freeze": -1}, "freeze"),
        ({"pooling": "min"}, "pooling"),
        ({"hidden_units": (0,)}, "hidden_units"),
        ({"dropout": 1.0}, "dropout"),
        ({"augment": "mixup"}, "augment"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"optimizer": dict}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"early_stopping": 5, "validation_fraction": None}, "needs validation_fraction"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"class_weight": "auto"}, "class_weight"),
        ({"device": "gpu7"}, "device"),
        ({"freeze": 9}, "has 4 stages"),
    ],
)
def test_bad_hyperparameters_fail_in_fit_with_their_name(images, params, match):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, **params})  # __init__ never validates
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


def test_validation_split_too_small(images):
    X, y = images
    with pytest.raises(ValueError, match="cannot hold out a stratified validation set"):
        fit(X[:4], y[:4] if len(set(y[:4])) > 1 else np.array([0, 1, 0, 1]),
            validation_fraction=0.1, early_stopping=None)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TransferCNNClassifier().predict(np.zeros((2, 4)))


# ------------------------------------------------------- hyperparameters

@pytest.mark.parametrize("pooling, layer", [("avg", torch.nn.AdaptiveAvgPool2d), ("max", torch.nn.AdaptiveMaxPool2d)])
def test_pooling(images, pooling, layer):
    X, y = images
    assert isinstance(fit(X, y, pooling=pooling, max_epochs=1).net_.module_.pool, layer)


@pytest.mark.parametrize("hidden_units, dropout", [((), 0.0), ((), 0.3), ((32, 16), 0.5), ((256, 128, 64), 0.2)])
def test_head(images, hidden_units, dropout):
    X, y = images
    head = fit(X, y, hidden_units=hidden_units, dropout=dropout, max_epochs=1).net_.module_.head
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [*hidden_units, 2]
    dropouts = [m.p for m in head if isinstance(m, torch.nn.Dropout)]
    assert dropouts == ([dropout] * len(hidden_units) if hidden_units else ([dropout] if dropout else []))


@pytest.mark.parametrize("augment", [None, "flip", "ct"])
def test_augment(images, augment):
    X, y = images
    clf = fit(X, y, augment=augment, max_epochs=3)
    reference = fit(X, y, augment=None, max_epochs=3)
    same = np.allclose([h["train_loss"] for h in clf.history_], [h["train_loss"] for h in reference.history_])
    assert same == (augment is None)


@pytest.mark.parametrize(
    "optimizer, cls",
    [("adam", torch.optim.Adam), ("adamax", torch.optim.Adamax), ("adamw", torch.optim.AdamW),
     ("sgd", torch.optim.SGD), (torch.optim.RMSprop, torch.optim.RMSprop)],
)
def test_optimizers(images, optimizer, cls):
    X, y = images
    net = fit(X, y, optimizer=optimizer, lr=1e-3, max_epochs=1).net_
    assert type(net.optimizer_) is cls
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-3)
    if optimizer == "sgd":
        assert net.optimizer_.param_groups[0]["momentum"] == 0.9


def _lrs_used(clf, kind):
    """Learning rates that skorch's LRScheduler recorded as used, per batch or per epoch."""
    history = clf.net_.history
    if kind == "epoch":
        return np.array(history[:, "event_lr"])
    return np.array([b["event_lr"] for epoch in history for b in epoch["batches"] if "event_lr" in b])


def test_lr_schedules(images):
    X, y = images  # 24 samples, batch 16: 2 batches per epoch
    lr = 1e-2
    clf = fit(X, y, lr=lr, lr_schedule=None, max_epochs=4)
    assert clf.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(lr)
    # Cosine annealing over max_epochs, stepped per epoch.
    lrs = _lrs_used(fit(X, y, lr=lr, lr_schedule="cosine", max_epochs=4), "epoch")
    np.testing.assert_allclose(lrs, lr * (1 + np.cos(np.pi * np.arange(4) / 4)) / 2)
    # Cyclic: triangle between lr/10 and lr, 2 epochs (4 batches) up, 2 down.
    lrs = _lrs_used(fit(X, y, lr=lr, lr_schedule="cyclic", max_epochs=4), "batch")
    triangle = np.array([0, 0.25, 0.5, 0.75, 1, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(lrs, lr / 10 + (lr - lr / 10) * triangle)
    # One cycle: from lr/25 up to lr and down to lr/25/1e4 at the last batch.
    lrs = _lrs_used(fit(X, y, lr=lr, lr_schedule="onecycle", max_epochs=4), "batch")
    assert len(lrs) == 8
    assert lrs[0] == pytest.approx(lr / 25)
    assert lrs.max() == pytest.approx(lr, rel=0.1)
    assert lrs[-1] == pytest.approx(lr / 25 / 1e4)


def test_early_stopping_restores_best_weights(images):
    X, y = images
    rng = np.random.RandomState(1)
    y_noise = rng.permutation(y)  # nothing to learn: validation loss soon stops improving
    clf = fit(X, y_noise, max_epochs=60, lr=0.05, early_stopping=2, validation_fraction=0.25)
    history = clf.history_
    assert len(history) < 60
    stopper = dict(clf.net_.callbacks_)["early_stopping"]
    best = int(np.argmin([h["valid_loss"] for h in history])) + 1
    assert stopper.best_epoch_ == best
    # Weights are the best epoch's; BatchNorm statistics are re-estimated after it.
    for name, value in clf.net_.module_.named_parameters():
        torch.testing.assert_close(value, stopper.best_model_weights_[name])


@pytest.mark.filterwarnings("ignore:freeze=2 keeps randomly initialised")
@pytest.mark.parametrize("freeze", ["none", 2])
def test_batchnorm_statistics_reestimated_on_training_images(images, freeze):
    X, y = images
    clf = fit(X, y, freeze=freeze, batch_size=12, max_epochs=2)
    module = clf.net_.module_
    # The first trained layer holds the mean of its inputs (its convolution's
    # outputs) over the 24 training images (later ones see batch-normalised
    # inputs while they are estimated).
    first_trained = "block1" if freeze == "none" else "block3"
    inputs = feature_maps(clf, X, layer=f"{first_trained}.0")
    bn = module.features.get_submodule(first_trained)[1]
    torch.testing.assert_close(bn.running_mean, torch.from_numpy(inputs.mean(axis=(0, 2, 3))),
                               atol=1e-5, rtol=1e-4)
    if freeze != "none":  # frozen layers keep the statistics they came with
        frozen = module.features.block1[1]
        torch.testing.assert_close(frozen.running_mean, torch.zeros_like(frozen.running_mean))
    assert bn.momentum == 0.1 and not module.training


def test_validation_fraction_and_history(images):
    X, y = images
    clf = fit(X, y, validation_fraction=0.25, max_epochs=3)
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3]
    assert set(clf.history_[0]) == {"epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "dur"}
    batches = clf.net_.history[-1]["batches"]
    assert sum(b["valid_batch_size"] for b in batches if "valid_batch_size" in b) == 6
    assert sum(b["train_batch_size"] for b in batches if "train_batch_size" in b) == 18
    assert "valid_loss" not in fit(X, y, max_epochs=1).history_[0]


@pytest.mark.filterwarnings("ignore:freeze='backbone' keeps randomly initialised")
@pytest.mark.parametrize("params", [{"freeze": "none", "augment": "flip"}, {"freeze": "backbone"}])
def test_train_acc_is_skorchs_training_accuracy(images, params):
    # train_acc counts batch by batch; skorch's EpochScoring keeps the batches' predictions.
    X, y = images
    skorch_scoring = ("skorch_train_acc", EpochScoring("accuracy", on_train=True,
                                                       name="skorch_train_acc"))
    clf = fit(X, y, max_epochs=4, batch_size=5, callbacks=[skorch_scoring], **params)
    ours = [row["train_acc"] for row in clf.net_.history]
    assert ours == [row["skorch_train_acc"] for row in clf.net_.history]
    assert len(set(ours)) > 1  # it changes as the network learns


@pytest.mark.parametrize("class_weight", ["balanced", {"COVID": 3.0, "non-COVID": 1.0}])
def test_class_weight(images, class_weight):
    X, y = images
    X, y = X[:-6], y[:-6]  # imbalanced: 12 COVID, 6 non-COVID
    clf = fit(X, y, class_weight=class_weight, max_epochs=1)
    expected = compute_class_weight(class_weight, classes=clf.classes_, y=y)
    np.testing.assert_allclose(clf.net_.criterion_.weight.numpy(), expected)
    assert fit(X, y, max_epochs=1).net_.criterion_.weight is None


def test_device_auto_picks_available(images):
    X, y = images
    clf = fit(X, y, device="auto", max_epochs=1)
    assert clf.net_.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert clf.device == "auto"


def test_verbose(images, capsys):
    X, y = images
    fit(X, y, verbose=0, max_epochs=2)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    fit(X, y, verbose=1, max_epochs=2)
    out = capsys.readouterr()
    assert "train_loss" in out.out and "epoch" in out.out


class _CountEpochs(Callback):
    def __init__(self):
        self.epochs = 0

    def on_epoch_end(self, net, **kwargs):
        self.epochs += 1


def test_user_callbacks_run_on_a_copy(images):
    X, y = images
    counter = _CountEpochs()
    clf = fit(X, y, callbacks=[counter], max_epochs=3)
    assert counter.epochs == 0  # the estimator's parameter is not mutated
    assert next(cb for _, cb in clf.net_.callbacks_ if isinstance(cb, _CountEpochs)).epochs == 3


def test_random_state_reproducible(images):
    X, y = images
    params = dict(dropout=0.3, augment="ct", max_epochs=3)
    state = torch.get_rng_state()
    first = fit(X, y, random_state=3, **params)
    assert torch.equal(torch.get_rng_state(), state)  # fit leaves the global torch RNG as it was
    a = first.predict_proba(X)
    b = fit(X, y, random_state=3, **params).predict_proba(X)
    c = fit(X, y, random_state=4, **params).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ------------------------------------------------------------- freezing

@pytest.mark.parametrize("freeze, n_frozen", [("backbone", 4), ("none", 0), (1, 3), (3, 1), (0, 4)])
def test_freeze(simple_cnn_weights, images, freeze, n_frozen):
    X, y = images
    initial = torch.load(simple_cnn_weights, weights_only=True)
    clf = fit(X, y, weights=simple_cnn_weights, freeze=freeze, max_epochs=2)
    features = clf.net_.module_.features
    for i, (name, stage) in enumerate(features.named_children()):
        frozen = i < n_frozen
        for key, value in stage.state_dict().items():
            unchanged = torch.equal(value, initial[f"{name}.{key}"])
            if key.endswith("num_batches_tracked"):
                continue
            assert unchanged == frozen, (name, key)  # weights and BatchNorm statistics
        assert all(p.requires_grad != frozen for p in stage.parameters())
    head = clf.net_.module_.head
    assert all(p.requires_grad for p in head.parameters())
    trained = {id(p) for group in clf.net_.optimizer_.param_groups for p in group["params"]}
    assert all((id(p) in trained) == p.requires_grad for p in clf.net_.module_.parameters())


def test_freezing_random_weights_warns(images):
    X, y = images
    with pytest.warns(UserWarning, match="randomly initialised"):
        fit(X, y, freeze="backbone", max_epochs=1)


# ----------------------------------------------------------- persistence

def test_pickle_and_joblib_round_trip(tmp_path, image_folder):
    X, y = image_folder
    clf = fit(X, y, hidden_units=(16,), dropout=0.2)
    expected = clf.predict_proba(X)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), expected)
    joblib.dump(clf, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict_proba(X), expected)
    np.testing.assert_array_equal(copy.deepcopy(clf).predict_proba(X), expected)


def test_label_smoothing_reaches_the_criterion(image_folder):
    X, y = image_folder
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}, label_smoothing=0.1).fit(X, y)
    assert clf.net_.criterion_.label_smoothing == 0.1
    assert TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y).net_.criterion_.label_smoothing == 0.0
