"""The training engine's hand-over between nets: cached features never outlive the backbone they describe."""

import numpy as np
import pytest
import torch
from joblib import Memory

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.pruning import StructuredPruner

from conftest import FAST, make_images

# Frozen backbone, no augmentation: the head trains on precomputed, cached features.
FROZEN = {**FAST, "freeze": "backbone", "max_epochs": 3}


def _whole_network_proba(net, X):
    """Probabilities of the net's module run whole on the images, no skcovid inference path."""
    module = net.module_.eval()
    x = torch.nn.functional.interpolate(torch.as_tensor(X, dtype=torch.float32)[:, None] / 255,
                                        size=(FAST["image_size"],) * 2, mode="bilinear",
                                        antialias=True, align_corners=False)
    with torch.no_grad():
        return torch.softmax(module(x), dim=1).double().numpy()


@pytest.mark.filterwarnings("ignore:freeze=.* keeps randomly initialised:UserWarning")
def test_cached_features_are_used_only_by_the_net_they_describe(tmp_path):
    X, y = make_images(n_per_class=16)
    memory = Memory(str(tmp_path), verbose=0)
    base = TransferCNNClassifier(**FROZEN, memory=memory).fit(X, y)
    assert base.precomputed_features_ and base.net_.feature_cache is not None
    np.testing.assert_allclose(base.predict_proba(X), _whole_network_proba(base.net_, X), atol=1e-5)
    for finetune_epochs in (0, 2):
        pruned = PrunedCNNClassifier(TransferCNNClassifier(**FROZEN, memory=memory), StructuredPruner(0.5),
                                     finetune_epochs=finetune_epochs).fit(X, y)
        net = pruned.estimator_.net_
        assert net.feature_cache is None  # the pruned backbone's features are not the cached ones
        assert pruned.flops_ < pruned.flops_before_
        np.testing.assert_allclose(pruned.predict_proba(X), _whole_network_proba(net, X), atol=1e-5)
        np.testing.assert_allclose(pruned.estimator_.predict_proba(X), pruned.predict_proba(X))
