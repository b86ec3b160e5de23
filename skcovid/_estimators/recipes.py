"""Named presets of :class:`skcovid.TransferCNNClassifier`'s parameters.

A recipe is only parameter values: :func:`recipe` returns an ordinary
classifier whose ``get_params`` shows every one of them, so that a search,
a clone or a saved model sees nothing hidden.
"""

from types import MappingProxyType

#: The recipes, by name: the parameters each sets (the others keep the classifier's defaults).
#: ``"finetune"`` is the command line's default; its figures are in docs/benchmarks.md.
RECIPES = MappingProxyType({
    "finetune": MappingProxyType({
        "freeze": "none",
        "head_epochs": 2,
        "layer_decay": 0.8,
        "optimizer": "adamw",
        "lr": 1e-3,
        "lr_schedule": "onecycle",
        "max_epochs": 10,
        "augment": "ct",
        "label_smoothing": 0.1,
        "tta": "flip",
        "calibration": "auto",
    }),
    "frozen": MappingProxyType({
        "freeze": "backbone",
    }),
})


#: The recipe of :func:`recipe` and of ``skcovid train`` when none is named.
DEFAULT_RECIPE = "finetune"


def recipe(name=DEFAULT_RECIPE, **params):
    """A :class:`~skcovid.TransferCNNClassifier` set up by a named recipe.

    ``"finetune"`` is the recommended recipe, and ``skcovid train``'s
    default: fastai's ``fine_tune`` on an ImageNet EfficientNet-Lite0. The
    new head trains alone for 2 epochs, then the whole network for 10 more
    (``head_epochs``), each phase on its own one-cycle schedule (AdamW,
    peak ``lr=1e-3``), every backbone stage at 0.8 times the rate of the
    stage above it (``layer_decay``). Training uses the CT augmentations and
    label smoothing 0.1; BatchNorm statistics are re-estimated after
    training, predictions average each slice and its mirror image
    (``tta="flip"``), and a temperature fitted on the validation split
    calibrates the probabilities where that split is large enough to trust
    (``calibration="auto"``: 100 slices, 30 a class). On fewer slices than
    that gives (about 1000), the whole schedule trains on all of them and
    the final weights are kept: early stopping and a temperature chosen on a
    few dozen slices follow chance (see ``validation_fraction``).

    ``"frozen"`` trains a linear head on the frozen backbone (features
    computed once): the fastest, and a baseline.

    Parameters
    ----------
    name : {"finetune", "frozen"}, default="finetune"
    **params
        Parameters of :class:`~skcovid.TransferCNNClassifier` that override
        the recipe's (``random_state``, ``image_size``, ...).

    Returns
    -------
    classifier : TransferCNNClassifier
        Not fitted.

    Examples
    --------
    >>> from skcovid import recipe
    >>> clf = recipe("finetune", random_state=0)
    >>> clf.head_epochs, clf.tta
    (2, 'flip')
    """
    from skcovid._estimators.classifier import TransferCNNClassifier  # PyTorch: the command's help reads RECIPES

    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is not one of {sorted(RECIPES)}.")
    return TransferCNNClassifier(**{**RECIPES[name], **params})
