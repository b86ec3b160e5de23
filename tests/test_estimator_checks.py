"""scikit-learn's estimator checks on both classifiers, with their default validation settings.

Only the backbone, its weights, the image size and the epochs are changed, for
speed: ``validation_fraction`` and ``early_stopping`` stay ``"auto"``, which
trains on everything when the checks' small data cannot give a validation set.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skcovid import PrunedCNNClassifier, TransferCNNClassifier

EXPECTED_FAILED_CHECKS = {
    "check_methods_subset_invariance": (
        "float32 convolutions give results that depend on the batch a sample is in "
        "at the 1e-7 level, above the check's atol=1e-7 on probabilities"
    ),
}


def _small_classifier():
    return TransferCNNClassifier(backbone="simple_cnn", weights=None, image_size=16, max_epochs=3)


@parametrize_with_checks(
    [_small_classifier(), PrunedCNNClassifier(_small_classifier(), finetune_epochs=1)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
