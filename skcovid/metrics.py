"""Diagnostic metrics and scorers for COVID-19 vs non-COVID classification.

Sensitivity is the recall of the positive (COVID) class; specificity is the
recall of the negative class. With string labels the positive class is found
from the label names unless ``pos_label`` is given, so that ``"COVID"`` vs
``"non-COVID"`` (where ``"COVID"`` sorts first) scores the right way round.
"""

import re

import numpy as np
from sklearn.metrics import (
    f1_score,
    make_scorer,
    multilabel_confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.utils.multiclass import unique_labels

_NEGATION = re.compile(r"(non|no|not|neg|negative)[^a-z0-9]*covid")


def _is_positive_name(label):
    name = str(label).lower()
    if "covid" in name:
        return not _NEGATION.search(name)
    return name in ("positive", "pos")


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
    candidates = [label for label in labels if _is_positive_name(label)]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(
        f"Cannot tell which of the labels {labels.tolist()} is the positive (COVID) class; "
        "pass pos_label=..., e.g. skcovid.metrics.make_scoring(pos_label=...)."
    )


def sensitivity_score(y_true, y_pred, *, pos_label=None, average="binary"):
    """Sensitivity (true positive rate, recall of the positive class).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    pos_label : label or None, default=None
        The positive class; ``None`` finds it as :func:`resolve_pos_label` does.
    average : {"binary", "macro", "weighted"} or None, default="binary"
        As in :func:`sklearn.metrics.recall_score`, for multi-class labels.

    Returns
    -------
    score : float or ndarray
    """
    if average == "binary":
        pos_label = resolve_pos_label(y_true, y_pred, pos_label)
        return recall_score(y_true, y_pred, pos_label=pos_label, average="binary", zero_division=0.0)
    return recall_score(y_true, y_pred, average=average, zero_division=0.0)


def specificity_score(y_true, y_pred, *, pos_label=None, average="binary"):
    """Specificity (true negative rate, recall of the negative class).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    pos_label : label or None, default=None
        The positive class; ``None`` finds it as :func:`resolve_pos_label` does.
    average : {"binary", "macro", "weighted"} or None, default="binary"
        For multi-class labels, the one-vs-rest specificity of each class,
        averaged like :func:`sklearn.metrics.recall_score` averages recalls.

    Returns
    -------
    score : float or ndarray
    """
    if average == "binary":
        pos_label = resolve_pos_label(y_true, y_pred, pos_label)
        labels = unique_labels(y_true, y_pred)
        if len(labels) > 2:
            raise ValueError(
                f"Target is multiclass ({len(labels)} labels) but average='binary'; "
                "choose another average."
            )
        if len(labels) == 2 and pos_label not in labels.tolist():
            raise ValueError(
                f"pos_label={pos_label!r} is not a valid label. It should be one of {labels.tolist()}."
            )
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        negatives = y_true != pos_label
        if not negatives.any():
            return 0.0
        return float(np.mean(y_pred[negatives] != pos_label))
    if average not in (None, "macro", "weighted"):
        raise ValueError(f"average={average!r} is not one of 'binary', 'macro', 'weighted', None.")
    mcm = multilabel_confusion_matrix(y_true, y_pred)
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    per_class = np.divide(tn, tn + fp, out=np.zeros(len(tn)), where=(tn + fp) > 0)
    if average is None:
        return per_class
    weights = mcm[:, 1, 0] + mcm[:, 1, 1] if average == "weighted" else None
    return float(np.average(per_class, weights=weights))


def _precision(y_true, y_pred, *, pos_label=None):
    pos_label = resolve_pos_label(y_true, y_pred, pos_label)
    return precision_score(y_true, y_pred, pos_label=pos_label, zero_division=0.0)


def _f1(y_true, y_pred, *, pos_label=None):
    pos_label = resolve_pos_label(y_true, y_pred, pos_label)
    return f1_score(y_true, y_pred, pos_label=pos_label, zero_division=0.0)


def make_scoring(pos_label=None):
    """Scorers for binary COVID-19 classification.

    Parameters
    ----------
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it from the labels as
        :func:`resolve_pos_label` does.

    Returns
    -------
    scoring : dict of str to scorer
        ``accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1``
        and ``roc_auc``, for ``cross_validate(scoring=...)`` and
        ``GridSearchCV(scoring=..., refit="f1")``. The scorers share one call
        to ``predict`` and one to ``predict_proba`` per evaluation.
    """
    kwargs = {} if pos_label is None else {"pos_label": pos_label}
    return {
        "accuracy": "accuracy",
        "sensitivity": make_scorer(sensitivity_score, **kwargs),
        "specificity": make_scorer(specificity_score, **kwargs),
        "precision": make_scorer(_precision, **kwargs),
        "f1": make_scorer(_f1, **kwargs),
        # ROC-AUC does not depend on which class is called positive.
        "roc_auc": "roc_auc",
    }


def diagnostic_scores(estimator, X, y, *, pos_label=None):
    """Accuracy, sensitivity, specificity, precision, F1 and ROC-AUC of a fitted classifier.

    Calls ``predict_proba`` once (a CNN forward pass is the costly part) and
    derives the predictions from it.

    Parameters
    ----------
    estimator : fitted binary classifier with ``predict_proba`` and ``classes_``
    X : array-like
    y : array-like of shape (n_samples,)
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it from the labels as
        :func:`resolve_pos_label` does.

    Returns
    -------
    scores : dict of str to float
        Also ``pos_label``, the class taken as positive.
    """
    proba = estimator.predict_proba(X)
    classes = list(estimator.classes_)
    y_pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    y = np.asarray(y, dtype=object)
    pos_label = resolve_pos_label(y, y_pred, pos_label)
    return {
        "accuracy": float(np.mean(y_pred == y)),
        "sensitivity": float(sensitivity_score(y, y_pred, pos_label=pos_label)),
        "specificity": float(specificity_score(y, y_pred, pos_label=pos_label)),
        "precision": float(_precision(y, y_pred, pos_label=pos_label)),
        "f1": float(_f1(y, y_pred, pos_label=pos_label)),
        "roc_auc": float(roc_auc_score(y == pos_label, proba[:, classes.index(pos_label)])),
        "pos_label": pos_label,
    }


#: Default scorers (see :func:`make_scoring`).
SCORING = make_scoring()

__all__ = [
    "SCORING",
    "diagnostic_scores",
    "make_scoring",
    "resolve_pos_label",
    "sensitivity_score",
    "specificity_score",
]
