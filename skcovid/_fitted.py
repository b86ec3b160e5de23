"""Reach the fitted network inside a skcovid classifier (or a Pipeline or search around one)."""

from sklearn.utils.validation import check_is_fitted


def final_estimator(estimator):
    """The classifier at the end of a Pipeline, or the best one of a fitted search."""
    estimator = getattr(estimator, "best_estimator_", estimator)
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def fitted_network(estimator):
    """The fitted classifier that owns the network, the network, and its input size.

    Parameters
    ----------
    estimator : TransferCNNClassifier or PrunedCNNClassifier (or a Pipeline or search ending in one)

    Returns
    -------
    classifier : TransferCNNClassifier
    module : skcovid._network.TransferNet
    image_size : int
    """
    estimator = final_estimator(estimator)
    check_is_fitted(estimator)
    classifier = getattr(estimator, "estimator_", estimator)
    net = getattr(classifier, "net_", None)
    if net is None:
        raise TypeError(
            f"{type(estimator).__name__} is not a skcovid classifier: expected a fitted "
            "TransferCNNClassifier or PrunedCNNClassifier."
        )
    return classifier, net.module_, classifier.image_size
