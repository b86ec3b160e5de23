"""skcovid: scikit-learn estimators for COVID-19 CT-slice classification.

Transfer-learned CNNs (torchvision, EfficientNet-Lite, timm) trained with
skorch, as scikit-learn classifiers that GridSearchCV, cross_validate,
Pipeline and joblib understand.

The names below are imported when first used, so ``from skcovid import
load_onnx`` on a point-of-care device imports neither PyTorch nor
scikit-learn.
"""

import importlib

from skcovid._version import __version__

#: Public name -> the module that defines it.
_LOCATIONS = {
    "BACKBONES": "skcovid._nets.backbones",
    "RECIPES": "skcovid._estimators.recipes",
    "OnnxClassifier": "skcovid._deploy.onnx_runtime",
    "PrunedCNNClassifier": "skcovid._estimators.pruned",
    "TransferCNNClassifier": "skcovid._estimators.classifier",
    "UntrustedModelError": "skcovid._deploy.persistence",
    "export": "skcovid._deploy.export",
    "load_model": "skcovid._deploy.persistence",
    "load_onnx": "skcovid._deploy.onnx_runtime",
    "recipe": "skcovid._estimators.recipes",
    "save_model": "skcovid._deploy.persistence",
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
        value = getattr(importlib.import_module(_LOCATIONS[name]), name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LOCATIONS))
