"""Label names: which class is COVID (positive) and which is the patient without disease (negative).

One rule for both: a name that mentions COVID is negative when a negation
stands before it ("non-COVID", "CT_NonCOVID", "no_covid", "not covid") and
positive otherwise; a name without COVID is positive when it reads
"positive" or "pos", negative when it reads "negative", "neg", "normal" or
"healthy". Case, spaces, "-" and "_" do not matter.
"""

import re

import numpy as np
from sklearn.utils.multiclass import unique_labels

_NEGATION = re.compile(r"(non|no|not|neg|negative)[^a-z0-9]*covid")
_POSITIVE_WORDS = ("positive", "pos")
_NEGATIVE_WORDS = ("negative", "neg", "normal", "healthy")


def _name(label):
    return str(label).strip().lower()


def is_positive_name(label):
    """Whether a label's name reads as the positive (COVID) class."""
    name = _name(label)
    if "covid" in name:
        return not _NEGATION.search(name)
    return name in _POSITIVE_WORDS


def is_negative_name(label):
    """Whether a label's name reads as the negative (without disease) class."""
    name = _name(label)
    if "covid" in name:
        return bool(_NEGATION.search(name))
    return name in _NEGATIVE_WORDS


def resolve_pos_label(y_true, y_pred, pos_label=None):
    """The positive class of a binary problem.

    Parameters
    ----------
    y_true, y_pred : array-like
    pos_label : label or None, default=None
        Returned unchanged when given. Otherwise: ``1`` (or ``True``) for
        labels in ``{0, 1}``, ``{-1, 1}`` or ``{False, True}``; for string
        labels, the one label that names COVID without a negation ("COVID",
        "CT_COVID", "covid-19", but not "non-COVID", "CT_NonCOVID" or
        "no_covid") or that reads "positive".

    Returns
    -------
    pos_label : label

    Raises
    ------
    ValueError
        When no single label can be told to be the positive one.
    """
    if pos_label is not None:
        return pos_label
    labels = unique_labels(y_true, y_pred)
    values = set(labels.tolist())
    if values <= {0, 1} or values <= {-1, 1}:
        return True if labels.dtype == bool else 1
    candidates = [label for label in labels if is_positive_name(label)]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(
        f"Cannot tell which of the labels {labels.tolist()} is the positive (COVID) class; "
        "pass pos_label=..., e.g. skcovid.metrics.make_scoring(pos_label=...)."
    )


def negative_class(classes):
    """The class a patient without disease gets: the one that is not positive.

    Two classes: the one :func:`resolve_pos_label` does not pick. More
    classes: the one whose name reads as negative (:func:`is_negative_name`:
    ``"normal"``, ``"negative"``, ``"non-COVID"``, ``"healthy"``).

    Raises
    ------
    ValueError
        When no class can be told to be the negative one.
    """
    classes = np.asarray(classes)
    if len(classes) == 2:
        try:
            positive = resolve_pos_label(classes, classes)
        except ValueError:
            positive = None
        if positive is not None:
            return classes[classes != positive][0]
    named = [c for c in classes if is_negative_name(c)]
    if len(named) == 1:
        return named[0]
    raise ValueError(
        f"Cannot tell which of the classes {classes.tolist()} is the negative (normal) one, which "
        "patient_aggregation='max', 'topk' and 'fraction' rank slices by; name it 'normal' or "
        "'non-COVID', or use patient_aggregation='mean'."
    )
