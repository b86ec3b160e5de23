"""Grad-CAM and feature maps."""

import numpy as np
import pytest
import torch

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.explain import (
    feature_maps,
    grad_cam,
    layer_names,
    overlay,
    plot_feature_maps,
    plot_grad_cam,
)
from skcovid.pruning import StructuredPruner

from conftest import FAST, make_images


@pytest.fixture(scope="module")
def localiser():
    """A CNN that tells the classes apart by where a bright blob is (upper vs lower half)."""
    X, y = make_images(n_per_class=40, size=32, seed=3)
    clf = TransferCNNClassifier(**{**FAST, "image_size": 32, "max_epochs": 25}).fit(X, y)
    return clf, X, y


def test_grad_cam_points_at_the_evidence(localiser):
    clf, X, y = localiser
    assert np.mean(clf.predict(X) == y) > 0.9
    heatmaps = grad_cam(clf, X, layer="block2")  # 8x8 map at 32 px
    assert heatmaps.shape == (len(X), 32, 32) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0 and np.isclose(heatmaps.max(), 1)
    # On COVID slices the evidence is the blob: the heatmap's peak lies within
    # 6 px of the blob's centre far more often than chance (a 6 px disc is 11%
    # of the slice).
    assert X.shape[1:] == (clf.image_size,) * 2  # the network sees the slices as they are
    near = []
    for image, heatmap in zip(X[y == "COVID"], heatmaps[y == "COVID"]):
        centre = np.argwhere(image > 150).mean(axis=0)
        peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        near.append(np.hypot(*(np.asarray(peak) - centre)) < 6)
    assert np.mean(near) > 0.8


def test_grad_cam_probabilities_are_predict_proba(localiser):
    clf, X, _ = localiser
    state = torch.get_rng_state()
    heatmaps, proba = grad_cam(clf, X[:10], return_proba=True)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_allclose(proba, clf.predict_proba(X[:10]), atol=1e-6)
    assert not clf.net_.module_.training


def test_target_class_changes_the_map(localiser):
    clf, X, _ = localiser
    covid = grad_cam(clf, X[:5], layer="block2", target="COVID")
    other = grad_cam(clf, X[:5], layer="block2", target="non-COVID")
    assert not np.allclose(covid, other)
    with pytest.raises(ValueError, match=r"target 'flu' is not one of the classes"):
        grad_cam(clf, X[:1], target="flu")


@pytest.mark.filterwarnings("ignore:freeze=2 keeps randomly initialised")
def test_frozen_stages_still_get_gradients(images):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "freeze": 2, "image_size": 32, "max_epochs": 4}).fit(X, y)
    # Without a gradient through the frozen stages autograd would raise here.
    heatmaps = grad_cam(clf, X, layer="block1")
    assert heatmaps.max() > 0
    assert not any(p.requires_grad for p in clf.net_.module_.features.block1.parameters())


def test_layers_and_feature_maps(localiser):
    clf, X, _ = localiser
    assert layer_names(clf) == ["block1", "block2", "block3", "block4"]
    maps = feature_maps(clf, X[:3], layer="block1")
    assert maps.shape == (3, 16, 16, 16)
    assert feature_maps(clf, X[:3], layer="block1.0").shape == (3, 16, 32, 32)  # a conv inside
    with pytest.raises(ValueError, match=r"Unknown layer 'layer9'.*block1, block2, block3, block4"):
        grad_cam(clf, X[:1], layer="layer9")


def test_pruned_model_and_figures(localiser):
    clf, X, y = localiser
    pruned = PrunedCNNClassifier(clf, StructuredPruner(ratio=0.3), finetune_epochs=1,
                                 finetune_lr=1e-2, prefit=True).fit(X, y)
    assert grad_cam(pruned, X[:2]).shape == (2, 32, 32)
    figures = plot_grad_cam(pruned, X[:2], titles=["a", "b"])
    assert len(figures) == 2 and figures[0].axes[0].get_title() == "a"
    assert "Predicted" in figures[0].get_suptitle()
    figure = plot_feature_maps(pruned, X[0], layer="block2", n_maps=9)
    assert sum(bool(ax.images) for ax in figure.axes) == 9


def test_overlay():
    image = np.linspace(0, 1, 64).reshape(8, 8)
    heat = np.zeros((8, 8))
    heat[2, 3] = 1.0
    rgb = overlay(image, heat)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    cold = np.round(255 * image).astype(np.uint8)
    np.testing.assert_array_equal(rgb[0, 0], [cold[0, 0]] * 3)  # no heat: the slice itself
    assert len(set(rgb[2, 3])) > 1  # heat: coloured
    with pytest.raises(ValueError, match="differ in shape"):
        overlay(image, heat[:4])


def test_unfitted_and_foreign_estimators():
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(NotFittedError):
        grad_cam(TransferCNNClassifier(), np.zeros((1, 8, 8)))
    X, y = np.random.rand(10, 4), np.arange(10) % 2
    with pytest.raises(TypeError, match="not a skcovid classifier"):
        grad_cam(LogisticRegression().fit(X, y), X)
