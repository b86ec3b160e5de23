"""The command line's model options, generated from the estimators' parameters.

Each option's help is the parameter's description in the estimator's
docstring and its default the estimator's; ``skcovid._cli.main`` adds them to its
``train`` and ``demo`` commands and builds the estimator from the parsed values.
"""

import argparse
import functools
import importlib
import inspect
import re
from typing import Any, Callable, NamedTuple

from skcovid._estimators.recipes import DEFAULT_RECIPE, RECIPES


# ---------------------------------------------------------------- converters
def _value(kind, **words):
    """A converter of text to ``kind`` that also takes the given words (any case).

    ``words`` maps each word to the value it stands for, e.g. ``none=None``.
    Only the conversion is checked: the estimator validates the value.
    """
    def parse(text):
        if text.lower() in words:
            return words[text.lower()]
        try:
            return kind(text)
        except ValueError:
            expected = ", ".join([kind.__name__, *map(repr, words)])
            raise argparse.ArgumentTypeError(f"expected one of {expected}; got {text!r}") from None
    return parse


def _hidden_units(text):
    """``512,256`` (or ``(512, 256)``) as a tuple of ints; ``none`` or ``()`` for no hidden layer."""
    text = text.strip("() ")
    if text.lower() in ("", "none"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths such as 512,256; got {text!r}") from None


def _window(text):
    """``lung``, ``mediastinal``, ``multi``, ``none`` or ``LEVEL,WIDTH`` (HU)."""
    if text.lower() in ("lung", "mediastinal", "multi"):
        return text.lower()
    if text.lower() == "none":
        return None
    try:
        level, width = (float(part) for part in text.strip("() ").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected lung, mediastinal, multi, none or LEVEL,WIDTH in HU (e.g. -600,1500); got {text!r}"
        ) from None
    return (level, width)


def _prune_spec(text):
    """``structured:RATIO`` or ``magnitude:SPARSITY``."""
    method, _, amount = text.partition(":")
    if method not in ("structured", "magnitude") or not amount:
        raise argparse.ArgumentTypeError(
            f"expected structured:RATIO or magnitude:SPARSITY (e.g. structured:0.5), got {text!r}")
    try:
        value = float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{amount!r} in {text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"the fraction to prune must be in [0, 1), got {value}")
    return method, value


def _backbone_names():
    from skcovid._nets.backbones import BACKBONES  # PyTorch: only the model options' help lists them

    return f"Names: {', '.join(BACKBONES)}."


# ------------------------------------------------------------------- options
class _Option(NamedTuple):
    """A command-line option that sets a parameter of an estimator.

    Its help is the parameter's description in the estimator's docstring
    (then ``note``, what only the command line does) and its default the
    estimator's (``get_params()``), unless ``default`` is set.
    """

    param: str
    flag: str
    parse: Callable[[str], Any]
    group: str
    #: Shown for the value; a docstring's choices ``{"a", "b"}`` are shown too.
    metavar: str | None = None
    estimator: str = "TransferCNNClassifier"
    default: Any = inspect.Parameter.empty
    #: A string, or a function that returns it.
    note: str | Callable[[], str] = ""


#: The estimators' parameters the command line sets.
MODEL_OPTIONS = (
    _Option("backbone", "--backbone", str, "model", "NAME", note=_backbone_names),
    _Option("weights", "--weights", _value(str, none=None), "model"),
    _Option("freeze", "--freeze", _value(int, backbone="backbone", none="none"), "model", "K"),
    _Option("pooling", "--pooling", str, "model"),
    _Option("hidden_units", "--hidden-units", _hidden_units, "model", "W1,W2"),
    _Option("dropout", "--dropout", float, "model"),
    _Option("image_size", "--image-size", int, "model", "PX"),
    _Option("window", "--window", _window, "model", "LEVEL,WIDTH"),
    _Option("crop", "--crop", _value(str, none=None), "model"),
    _Option("intensity", "--intensity", _value(str, none=None), "model"),
    _Option("max_epochs", "--epochs", int, "training"),
    _Option("lr", "--lr", float, "training"),
    _Option("batch_size", "--batch-size", int, "training"),
    _Option("optimizer", "--optimizer", str, "training"),
    _Option("lr_schedule", "--lr-schedule", _value(str, none=None), "training"),
    _Option("head_epochs", "--head-epochs", int, "training"),
    _Option("layer_decay", "--layer-decay", float, "training"),
    _Option("augment", "--augment", _value(str, none=None), "training"),
    _Option("tta", "--tta", _value(str, none=None), "training"),
    _Option("label_smoothing", "--label-smoothing", float, "training"),
    _Option("class_weight", "--class-weight", _value(str, none=None), "training",
            "{none,balanced}"),
    _Option("early_stopping", "--early-stopping", _value(int, none=None, auto="auto"), "training",
            "PATIENCE"),
    _Option("validation_fraction", "--validation-fraction", _value(float, none=None, auto="auto"),
            "training", "FRACTION"),
    _Option("device", "--device", str, "training"),
    _Option("num_workers", "--num-workers", int, "training"),
    _Option("precision", "--precision", str, "training"),
    _Option("random_state", "--random-state", int, "training", default=0,
            note="Also seeds the held-out split or the cross-validation folds."),
    _Option("patient_aggregation", "--patient-aggregation", str, "patients"),
    _Option("patient_top_k", "--patient-top-k", int, "patients", "K"),
    _Option("patient_threshold", "--patient-threshold", float, "patients"),
    _Option("calibration", "--calibration", _value(str, none=None), "decision"),
    _Option("target_sensitivity", "--target-sensitivity", _value(float, none=None), "decision",
            "SENSITIVITY", note="predict and evaluate then use the stored threshold."),
    _Option("finetune_epochs", "--finetune-epochs", int, "pruning",
            estimator="PrunedCNNClassifier"),
    _Option("finetune_lr", "--finetune-lr", float, "pruning", estimator="PrunedCNNClassifier"),
    _Option("cycles", "--cycles", int, "pruning", estimator="PrunedCNNClassifier"),
    _Option("distillation_alpha", "--distillation-alpha", float, "pruning", estimator="PrunedCNNClassifier"),
    _Option("distillation_temperature", "--distillation-temperature", float, "pruning",
            estimator="PrunedCNNClassifier"),
)


@functools.lru_cache
def docstring_parameters(cls):
    """The Parameters section of a numpydoc docstring: ``{name: (type, description)}``.

    The description is joined into one line; names documented together
    (``a, b : int``) each get the entry.
    """
    lines = inspect.getdoc(cls).splitlines()
    start = next(i for i, (line, rule) in enumerate(zip(lines, lines[1:]))
                 if line.strip() == "Parameters" and set(rule.strip()) == {"-"}) + 2
    params, names = {}, []
    for line, following in zip(lines[start:], [*lines[start + 1:], ""]):
        if set(following.strip()) == {"-"} and not line.startswith(" "):
            break  # the next section's title
        if line and not line.startswith(" "):
            names, _, spec = line.partition(" : ")
            names = [name.strip() for name in names.split(",")]
            params.update((name, (spec.strip(), "")) for name in names)
        elif names and line.strip():
            for name in names:
                spec, description = params[name]
                params[name] = (spec, f"{description} {line.strip()}".lstrip())
    return params


def plain(text):
    """reStructuredText roles and literals as plain text, ``%`` escaped for argparse."""
    text = re.sub(r":[\w:]+:`(~?)([^`]+)`",
                  lambda match: match[2].rsplit(".", 1)[-1] if match[1] else match[2], text)
    return text.replace("``", "").replace("%", "%%")


#: Where the estimators whose parameters the options set are defined.
_ESTIMATOR_MODULES = {"TransferCNNClassifier": "skcovid._estimators.classifier",
                      "PrunedCNNClassifier": "skcovid._estimators.pruned"}


def _estimator_class(option):
    # Imported by name, when the options' help is built: the estimators import PyTorch.
    return getattr(importlib.import_module(_ESTIMATOR_MODULES[option.estimator]), option.estimator)


class _FromRecipe:
    """The default of an option that a recipe sets: ``--recipe`` decides it."""

    def __repr__(self):
        return "FROM_RECIPE"


FROM_RECIPE = _FromRecipe()


def _recipe_defaults(option):
    """``"finetune: X; frozen: Y"``: what each recipe gives ``option``'s parameter."""
    defaults = _estimator_class(option)().get_params(deep=False)
    return "; ".join(f"{name}: {params.get(option.param, defaults[option.param])}"
                     for name, params in RECIPES.items())


def _set_by_recipes(option):
    return option.estimator == "TransferCNNClassifier" and any(
        option.param in params for params in RECIPES.values())


def add_option(container, option, default=inspect.Parameter.empty, recipes=False):
    """Add ``option`` to an argument parser or group.

    The help is the parameter's description in its estimator's docstring and
    the option's note; choices the docstring lists as ``{"a", "b"}`` are
    shown in the metavar.
    The default is ``default`` when given, else ``option.default`` when set,
    else, with ``recipes``, :data:`FROM_RECIPE` for a parameter that a recipe
    sets, else the estimator's.
    """
    cls = _estimator_class(option)
    spec, description = docstring_parameters(cls)[option.param]
    metavar = option.metavar
    choices = re.match(r"\{(.*?)\}", spec)
    if choices:
        values = [value.strip().strip("\"'") for value in choices[1].split(",")]
        values = ["none" if value == "None" else value for value in values]
        metavar = "{" + ",".join(values + ([metavar] if metavar else [])) + "}"
    if default is inspect.Parameter.empty:
        default = option.default
    shown = "%(default)s"
    if default is inspect.Parameter.empty and recipes and _set_by_recipes(option):
        default, shown = FROM_RECIPE, f"from --recipe, {plain(_recipe_defaults(option))}"
    if default is inspect.Parameter.empty:
        default = cls().get_params(deep=False)[option.param]
    note = option.note() if callable(option.note) else option.note
    help_text = " ".join(filter(None, [plain(description), note, f"(default: {shown})"]))
    container.add_argument(option.flag, dest=option.param, type=option.parse, default=default,
                           metavar=metavar or option.flag.lstrip("-").upper().replace("-", "_"),
                           help=help_text)


def add_model_options(parser):
    """Add ``--prune`` and every option of ``MODEL_OPTIONS`` to ``parser``, in their groups."""
    groups = {name: parser.add_argument_group(name)
              for name in ("model", "training", "patients", "decision", "pruning")}
    groups["pruning"].add_argument(
        "--prune", default=None, type=_prune_spec, metavar="METHOD:AMOUNT",
        help="structured:RATIO (channels removed, torch-pruning) or magnitude:SPARSITY (weights "
             "zeroed on a polynomial-decay schedule); fine-tuned as the options below set")
    groups["model"].add_argument(
        "--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
        help="the preset the other options start from (skcovid.recipe): 'frozen-lite2' trains a linear "
             "head on the frozen EfficientNet-Lite2 at 260 px, slices cut down to the body, flip test-time "
             "augmentation; 'finetune' trains the new head of a Lite0 alone for 2 epochs, then the whole "
             "network with per-stage learning rates on one-cycle schedules, CT augmentation and label "
             "smoothing, about ten times as long; 'frozen' is a linear head on the frozen Lite0 at 224 px, "
             "the baseline (default: %(default)s)")
    for option in MODEL_OPTIONS:
        add_option(groups[option.group], option, recipes=True)


