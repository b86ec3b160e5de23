"""scikit-learn's estimator checks on both classifiers, with their default validation settings.

Only the backbone, its weights, the image size and the epochs are changed, for
speed (and, for the pruned classifier, the inner estimator's seed, which
scikit-learn's checks cannot reach): ``validation_fraction`` and
``early_stopping`` stay ``"auto"``, which trains on everything when the
checks' small data cannot give a validation set. A randomly initialised
backbone that stays frozen has the ``poor_score`` tag, so the accuracy part of
``check_classifiers_train`` runs separately on a network that trains whole.
"""

import pytest
from sklearn.utils.estimator_checks import (
    check_classifiers_train,
    check_param_validation,
    parametrize_with_checks,
)

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.pruning import MagnitudePruner, StructuredPruner

from conftest import FAST

EXPECTED_FAILED_CHECKS = {
    "check_methods_subset_invariance": (
        "float32 convolutions give results that depend on the batch a sample is in "
        "at the 1e-7 level, above the check's atol=1e-7 on probabilities"
    ),
}


def _small_classifier(**params):
    return TransferCNNClassifier(backbone="simple_cnn", weights=None, image_size=16, max_epochs=3,
                                 **params)


@parametrize_with_checks(
    [_small_classifier(),
     PrunedCNNClassifier(_small_classifier(random_state=0), finetune_epochs=1)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_poor_score_only_for_frozen_random_stages():
    assert _small_classifier().__sklearn_tags__().classifier_tags.poor_score
    assert not _small_classifier(freeze="none").__sklearn_tags__().classifier_tags.poor_score
    assert not TransferCNNClassifier().__sklearn_tags__().classifier_tags.poor_score
    assert not PrunedCNNClassifier().__sklearn_tags__().classifier_tags.poor_score


def test_a_network_that_trains_whole_scores_well_on_the_check_data():
    """The accuracy part of check_classifiers_train (> 0.83 on the training blobs)."""
    params = {**FAST, "image_size": 8, "max_epochs": 20, "batch_size": 32}
    check_classifiers_train("TransferCNNClassifier", TransferCNNClassifier(**params))
    check_classifiers_train("PrunedCNNClassifier", PrunedCNNClassifier(
        TransferCNNClassifier(**params), finetune_epochs=5, finetune_lr=1e-2))


@pytest.mark.parametrize("estimator", [
    _small_classifier(), PrunedCNNClassifier(_small_classifier()), StructuredPruner(), MagnitudePruner(),
], ids=lambda estimator: type(estimator).__name__)
def test_param_validation(estimator):
    """Every parameter has constraints, and a value outside them fails in fit, before anything else."""
    check_param_validation(type(estimator).__name__, estimator)
