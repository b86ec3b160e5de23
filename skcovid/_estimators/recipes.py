"""Named presets of :class:`skcovid.TransferCNNClassifier`'s parameters.

A recipe is only parameter values: :func:`recipe` returns an ordinary
classifier whose ``get_params`` shows every one of them, so that a search,
a clone or a saved model sees nothing hidden.
"""

from types import MappingProxyType

#: The recipes, by name: the parameters each sets (the others keep the classifier's defaults).
#: ``"frozen-lite2"``, the default (:data:`DEFAULT_RECIPE`), sets none: it is what
#: ``TransferCNNClassifier()`` is; the figures that chose it are in docs/benchmarks.md
#: ("Choosing the default recipe").
RECIPES = MappingProxyType({
    "frozen-lite2": MappingProxyType({}),  # the classifier's own defaults
    "finetune": MappingProxyType({
        "backbone": "efficientnet_lite0",
        "image_size": 224,
        "crop": None,
        "intensity": None,
        "freeze": "none",
        "head_epochs": 2,
        "layer_decay": 0.8,
        "optimizer": "adamw",
        "lr": 1e-3,
        "lr_schedule": "onecycle",
        "max_epochs": 10,
        "augment": "ct",
        "label_smoothing": 0.1,
    }),
    "frozen": MappingProxyType({
        "backbone": "efficientnet_lite0",
        "image_size": 224,
        "crop": None,
        "intensity": None,
        "tta": None,
        "calibration": None,
    }),
})


#: The recipe of :func:`recipe` and of ``skcovid train`` when none is named.
DEFAULT_RECIPE = "frozen-lite2"


def recipe(name=DEFAULT_RECIPE, **params):
    """A :class:`~skcovid.TransferCNNClassifier` set up by a named recipe.

    ``"frozen-lite2"`` is the default, ``TransferCNNClassifier()`` itself and
    ``skcovid train``'s: the ImageNet
    EfficientNet-Lite2 at its native 260 px, frozen, with a linear head
    trained on its features (computed once per fit); every slice cut down to
    its lung fields first (``crop="lungs"``), raster slices' grey levels
    mapped back to the lung window (``intensity="auto"``), predictions
    averaged over each slice and its mirror image (``tta="flip"``), and a
    temperature where the validation split is large enough to trust
    (``calibration="auto"``). Its whole-slice settings were chosen as the
    candidate whose worst ROC-AUC over three kinds of new data was best; the
    lung crop and harmonisation raised the worst source left out of training
    (of SARS-CoV-2, COVID-CT and COVID-CT-MD) from 0.51 to 0.56 without a
    significant loss within COVID-CT (docs/benchmarks.md, "Several
    sources"). It trains 550 slices in minutes on a CPU.

    ``"finetune"`` is fastai's ``fine_tune`` on an ImageNet
    EfficientNet-Lite0. The new head trains alone for 2 epochs, then the
    whole network for 10 more (``head_epochs``), each phase on its own
    one-cycle schedule (AdamW, peak ``lr=1e-3``), every backbone stage at
    0.8 times the rate of the stage above it (``layer_decay``). Training
    uses the CT augmentations and label smoothing 0.1; BatchNorm statistics
    are re-estimated after training, predictions average each slice and its
    mirror image (``tta="flip"``), and a temperature fitted on the
    validation split calibrates the probabilities where that split is large
    enough to trust (``calibration="auto"``: 100 slices, 30 a class). On
    fewer slices than that gives (about 1000), the whole schedule trains on
    all of them and the final weights are kept: early stopping and a
    temperature chosen on a few dozen slices follow chance (see
    ``validation_fraction``). It scores higher than the default on
    COVID-CT's patients, lower on another hospital's, and takes about ten
    times as long.

    ``"frozen"`` trains a linear head on the frozen EfficientNet-Lite0 at
    224 px, without crop, test-time augmentation or temperature: the
    fastest, and the baseline.

    Parameters
    ----------
    name : {"frozen-lite2", "finetune", "frozen"}, default="frozen-lite2"
    **params
        Parameters of :class:`~skcovid.TransferCNNClassifier` that override
        the recipe's (``random_state``, ``image_size``, ...).

    Returns
    -------
    classifier : TransferCNNClassifier
        Not fitted.

    Examples
    --------
    >>> from skcovid import TransferCNNClassifier, recipe
    >>> clf = recipe(random_state=0)
    >>> clf.backbone, clf.image_size, clf.crop, clf.tta
    ('efficientnet_lite2', 260, 'body', 'flip')
    >>> recipe().get_params() == TransferCNNClassifier().get_params()
    True
    >>> recipe("finetune").head_epochs
    2
    """
    from skcovid._estimators.classifier import TransferCNNClassifier  # PyTorch: the command's help reads RECIPES

    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is not one of {sorted(RECIPES)}.")
    return TransferCNNClassifier(**{**RECIPES[name], **params})
