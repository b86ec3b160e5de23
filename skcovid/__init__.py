"""skcovid: scikit-learn estimators for COVID-19 CT-slice classification.

Transfer-learned CNNs (torchvision, EfficientNet-Lite, timm) trained with
skorch, as scikit-learn classifiers that GridSearchCV, cross_validate,
Pipeline and joblib understand.
"""

from ._backbones import BACKBONES
from ._classifier import TransferCNNClassifier
from ._export import export
from ._persistence import UntrustedModelError, load_model, save_model
from ._pruned import PrunedCNNClassifier
from ._version import __version__

__all__ = [
    "BACKBONES",
    "PrunedCNNClassifier",
    "TransferCNNClassifier",
    "UntrustedModelError",
    "__version__",
    "export",
    "load_model",
    "save_model",
]
