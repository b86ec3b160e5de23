"""The fast paths: precomputed and cached backbone features, the data pipeline, Dask scale-out.

Most of these tests are about private pieces: they count the images that go through
the backbone (``skcovid._engine.features.backbone_features``, as ``skcovid._engine.fit`` calls it)
and read images through the data pipeline's own classes (``skcovid._engine.data``) to get
what the whole network predicts, bypassing the feature cache they test.
"""

import numpy as np
import pytest
import torch
from joblib import Memory
from PIL import Image
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skcovid import TransferCNNClassifier  # private: the backbone pass the caches save
from skcovid._engine import features as _features
from skcovid._engine import fit as _engine
from skcovid._engine.data import DecodedCache, ImageDataset, PathImages  # private: the data pipeline

from conftest import FAST, ConvOutputDtypes

# Among the slowest tests: `pytest -m "not slow"` leaves them out of the quick development loop.
pytestmark = pytest.mark.slow

#: A frozen pretrained backbone and a head with every source of randomness:
#: dropout, a validation split, shuffling, a cyclic schedule, early stopping.
HEAD = {**FAST, "backbone": "efficientnet_lite0", "weights": "DEFAULT", "freeze": "backbone",
        "image_size": 32, "hidden_units": (16,), "dropout": 0.3, "lr_schedule": "cyclic",
        "batch_size": 8, "max_epochs": 6, "early_stopping": 3, "validation_fraction": 0.25}


@pytest.fixture
def count_backbone_images(monkeypatch):
    """How many images went through the backbone in precomputed-feature calls."""
    counted = []
    original = _features.backbone_features

    def counting(module, images, image_size, *, indices=None, **kwargs):
        counted.append(len(images) if indices is None else len(indices))
        return original(module, images, image_size, indices=indices, **kwargs)

    monkeypatch.setattr(_features, "backbone_features", counting)  # what FeatureCache calls
    monkeypatch.setattr(_engine, "backbone_features", counting)  # what fit calls without memory
    return counted


def test_precomputed_features_give_the_same_model(image_folder):
    X, y = image_folder
    state = torch.get_rng_state()
    fast = TransferCNNClassifier(**HEAD, precompute_features=True).fit(X, y)
    assert torch.equal(torch.get_rng_state(), state)
    slow = TransferCNNClassifier(**HEAD, precompute_features=False).fit(X, y)
    np.testing.assert_allclose(fast.predict_proba(X), slow.predict_proba(X), atol=1e-5)
    for a, b in zip(fast.history_, slow.history_):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], abs=1e-5)
    assert len(fast.history_) == len(slow.history_)
    # The fitted net holds the whole network and predicts on images.
    assert fast.net_.module_ is fast.net_.module and hasattr(fast.net_.module_, "features")


def test_auto_precomputes_only_when_the_backbone_output_is_fixed(image_folder, count_backbone_images):
    X, y = image_folder
    TransferCNNClassifier(**HEAD).fit(X, y)
    assert count_backbone_images == [len(X)]  # once per fit, not once per epoch
    TransferCNNClassifier(**{**HEAD, "augment": "flip"}).fit(X, y)
    TransferCNNClassifier(**{**HEAD, "freeze": 2}).fit(X, y)
    assert count_backbone_images == [len(X)]
    with pytest.raises(ValueError, match="precompute_features=True needs freeze='backbone' and augment=None"):
        TransferCNNClassifier(**{**HEAD, "augment": "flip", "precompute_features": True}).fit(X, y)


def test_memory_caches_features_per_image_content(image_folder, tmp_path, count_backbone_images):
    X, y = image_folder
    reference = TransferCNNClassifier(**HEAD).fit(X, y).predict_proba(X)
    count_backbone_images.clear()
    memory = Memory(str(tmp_path / "cache"), verbose=0)
    first = TransferCNNClassifier(**HEAD, memory=memory).fit(X, y)
    np.testing.assert_allclose(first.predict_proba(X), reference, atol=1e-6)
    # Another head, a subset, the folder as a path: nothing recomputed.
    other = TransferCNNClassifier(**{**HEAD, "hidden_units": (), "lr": 1e-3},
                                  memory=tmp_path / "cache").fit(X[::2], y[::2])
    assert count_backbone_images == [len(X)]
    # Predictions look the features up too, and equal the whole network's.
    proba = other.predict_proba(X)
    assert count_backbone_images == [len(X)]
    whole = other.net_.predict_proba(ImageDataset(PathImages(list(X)), None, other.image_size))
    np.testing.assert_allclose(proba, whole, atol=1e-6)
    # What the features depend on changes the key.
    TransferCNNClassifier(**{**HEAD, "image_size": 40}, memory=memory).fit(X, y)
    TransferCNNClassifier(**{**HEAD, "pooling": "max"}, memory=memory).fit(X, y)
    assert count_backbone_images == [len(X)] * 3


def test_memory_keys_on_content_not_on_path(image_folder, tmp_path, count_backbone_images):
    import shutil
    from pathlib import Path

    X, y = image_folder
    copies = []
    for path in X:
        target = tmp_path / "copy" / Path(path).parent.name / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        copies.append(str(shutil.copy(path, target)))
    memory = Memory(tmp_path / "cache", verbose=0)
    TransferCNNClassifier(**HEAD, memory=memory).fit(X, y)
    TransferCNNClassifier(**HEAD, memory=memory).fit(np.asarray(copies, dtype=object), y)
    assert count_backbone_images == [len(X)]
    # Arrays are keyed by their pixels.
    images = np.stack([np.asarray(Image.open(p)) for p in X])
    TransferCNNClassifier(**HEAD, memory=memory).fit(images, y)
    TransferCNNClassifier(**HEAD, memory=memory).fit(images.copy(), y)
    assert count_backbone_images == [len(X), len(X)]


def test_grid_search_runs_the_backbone_once_per_image(image_folder, tmp_path, count_backbone_images):
    X, y = image_folder
    clf = TransferCNNClassifier(**{**HEAD, "max_epochs": 2}, memory=tmp_path)
    search = GridSearchCV(clf, {"lr": [1e-2, 1e-3], "hidden_units": [(), (8,)]},
                          cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)
    assert sum(count_backbone_images) == len(X)  # 12 fits, their scoring and the refit
    plain = GridSearchCV(TransferCNNClassifier(**{**HEAD, "max_epochs": 2}),
                         {"lr": [1e-2, 1e-3], "hidden_units": [(), (8,)]},
                         cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)
    assert search.best_params_ == plain.best_params_
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               plain.cv_results_["mean_test_score"])


def test_decoded_images_are_kept_within_the_budget(image_folder, monkeypatch):
    X, _ = image_folder
    reads = []
    original = PathImages.__getitem__
    monkeypatch.setattr(PathImages, "__getitem__", lambda self, i: reads.append(i) or original(self, i))
    images = PathImages(list(X))
    cache = DecodedCache(max_bytes=10 * 16 * 16 * 4)  # room for 10 images of 16x16 float32
    dataset = ImageDataset(images, None, 16, cache=cache)
    first = [dataset[i][0] for i in range(len(dataset))]
    second = [dataset[i][0] for i in range(len(dataset))]
    assert len(reads) == len(X) + (len(X) - 10)  # the first 10 are decoded once
    assert cache.n_bytes == 10 * 16 * 16 * 4 and len(cache) == 10
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_image_cache_and_workers_do_not_change_the_model(image_folder):
    X, y = image_folder
    params = {**FAST, "max_epochs": 3}
    reference = TransferCNNClassifier(**params, image_cache_mb=0).fit(X, y).predict_proba(X)
    cached = TransferCNNClassifier(**params).fit(X, y).predict_proba(X)
    workers = TransferCNNClassifier(**params, num_workers=2).fit(X, y)
    np.testing.assert_allclose(cached, reference, atol=1e-6)
    np.testing.assert_allclose(workers.predict_proba(X), reference, atol=1e-6)


#: Machine epsilon of each mixed-precision format: how far one rounding may move a number.
EPSILON = {"bf16": 2.0 ** -7, "fp16": 2.0 ** -10}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(images, precision):
    X, y = images
    params = {**FAST, "max_epochs": 10}
    clf = TransferCNNClassifier(**params, precision=precision,
                                callbacks=[("dtypes", ConvOutputDtypes())]).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    assert np.mean(clf.predict(X) == y) > 0.8
    if precision == "fp16":
        assert clf.net_.grad_scaler_ is not None
    # The convolutions ran in the low precision, on float32 weights.
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert dict(clf.net_.callbacks_)["dtypes"].dtypes == {low}
    assert {p.dtype for p in clf.net_.module_.parameters()} == {torch.float32}
    # Not the same numbers as in float32, but the same training: from the same
    # network, on the same first batch, the first epoch's loss differs by a few
    # roundings; and training ends at the float32 model's predictions.
    reference = TransferCNNClassifier(**params).fit(X, y)
    assert clf.history_[0]["train_loss"] == pytest.approx(reference.history_[0]["train_loss"],
                                                          rel=2 * EPSILON[precision])
    np.testing.assert_array_equal(clf.predict(X), reference.predict(X))
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=1e-3)


def test_bad_speed_options(images):
    X, y = images
    for params, match in (({"precision": "fp8"}, "'precision' parameter .*Got 'fp8'"),
                          ({"num_workers": -1}, r"'num_workers' parameter .*\[0, inf\)\. Got -1"),
                          ({"image_cache_mb": -5}, "'image_cache_mb' parameter .*Got -5"),
                          ({"precompute_features": "yes"}, "'precompute_features' parameter .*Got 'yes'"),
                          ({"memory": 3}, "'memory' parameter .*implementing 'cache'. Got 3")):
        with pytest.raises(ValueError, match=match):
            TransferCNNClassifier(**{**FAST, **params}).fit(X, y)


def test_grid_search_on_a_dask_cluster(images):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    X, y = images
    grid = {"lr": [1e-2, 3e-3], "max_epochs": [2, 4]}
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    local = GridSearchCV(TransferCNNClassifier(**FAST), grid, cv=cv).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, parallel_config("dask"):
        remote = GridSearchCV(TransferCNNClassifier(**FAST), grid, cv=cv, n_jobs=-1).fit(X, y)
        ran_on = client.run(lambda: True)
    assert len(ran_on) == 2
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"])


def test_pruned_model_does_not_use_the_unpruned_features(image_folder, tmp_path):
    from skcovid import PrunedCNNClassifier
    from skcovid.pruning import StructuredPruner

    X, y = image_folder
    base = TransferCNNClassifier(**HEAD, memory=tmp_path).fit(X, y)
    pruned = PrunedCNNClassifier(base, StructuredPruner(ratio=0.5), finetune_epochs=0,
                                 unfreeze=False, prefit=True).fit(X, y)
    whole = pruned.estimator_.net_.predict_proba(ImageDataset(PathImages(list(X)), None, 32))
    np.testing.assert_allclose(pruned.predict_proba(X), whole, atol=1e-6)
    assert base.precomputed_features_  # the prefit model is left as it was
