"""The checks of a TransferCNNClassifier's parameters that involve several of them."""

from skcovid._engine.accelerated import check_accelerator


def check_joint_params(clf):
    """Raise a ValueError naming the training parameters that do not go together.

    Each parameter alone is checked by ``_parameter_constraints``;
    ``precompute_features`` against the others by the classifier itself.

    Parameters
    ----------
    clf : TransferCNNClassifier
    """
    if clf.validation_fraction is None and clf.early_stopping not in ("auto", None):
        raise ValueError(
            f"early_stopping={clf.early_stopping} monitors the validation loss and needs "
            "validation_fraction; set validation_fraction (e.g. 0.1 or 'auto') or "
            "early_stopping=None."
        )
    if clf.head_epochs and clf.freeze == "backbone":
        raise ValueError(
            f"head_epochs={clf.head_epochs} trains the head alone before the backbone joins in, "
            "but freeze='backbone' never lets it: set freeze='none' (or a number of stages), or "
            "head_epochs=0."
        )
    if clf.warm_start and clf.checkpoint_dir is None:
        raise ValueError("warm_start=True resumes from a checkpoint and needs checkpoint_dir.")
    if clf.accelerator is not None:
        check_accelerator(clf)
