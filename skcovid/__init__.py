"""skcovid: scikit-learn estimators for COVID-19 CT-slice classification.

Transfer-learned CNNs (torchvision, EfficientNet-Lite, timm) trained with
skorch, as scikit-learn classifiers that GridSearchCV, cross_validate,
Pipeline and joblib understand.

The names below are imported when first used, so ``from skcovid import
load_onnx`` on a point-of-care device imports neither PyTorch nor
scikit-learn.
"""

import importlib

from ._version import __version__

#: Public name -> the module that defines it.
_LOCATIONS = {
    "BACKBONES": "._backbones",
    "RECIPES": "._recipes",
    "OnnxClassifier": "._onnx",
    "PrunedCNNClassifier": "._pruned",
    "TransferCNNClassifier": "._classifier",
    "UntrustedModelError": "._persistence",
    "export": "._export",
    "load_model": "._persistence",
    "load_onnx": "._onnx",
    "recipe": "._recipes",
    "save_model": "._persistence",
}

__all__ = [
    "BACKBONES",
    "OnnxClassifier",
    "PrunedCNNClassifier",
    "RECIPES",
    "TransferCNNClassifier",
    "UntrustedModelError",
    "__version__",
    "export",
    "load_model",
    "load_onnx",
    "recipe",
    "save_model",
]


def __getattr__(name):
    if name in _LOCATIONS:
        value = getattr(importlib.import_module(_LOCATIONS[name], __name__), name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LOCATIONS))
