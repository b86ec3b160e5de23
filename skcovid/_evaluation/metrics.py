"""Diagnostic metrics, their bootstrap, computed on the labels and probabilities of binary predictions.

The public face is :mod:`skcovid.metrics`, which documents the module.
"""

import numpy as np
from imblearn.metrics import sensitivity_specificity_support
from sklearn.metrics import f1_score, make_scorer, precision_score
from sklearn.utils.multiclass import unique_labels

from skcovid._core.labels import resolve_pos_label
from skcovid._evaluation.resample import bootstrap, check_bootstrap, estimate
from skcovid._evaluation.scoring import METRICS, binary_predictions, binary_scores


def _sensitivity_specificity(y_true, y_pred, pos_label, average):
    """Sensitivity and specificity from :func:`imblearn.metrics.sensitivity_specificity_support`.

    Undefined values (no sample of a class) are 0, without a warning. For
    ``average="binary"`` imblearn is asked for the scores of ``labels=[pos_label]``
    rather than for ``pos_label=``: that accepts any label type (imblearn takes
    only str and int for ``pos_label``), and with only negative samples gives
    specificity 1 when they are all predicted negative (imblearn's binary
    average returns 0 when ``pos_label`` is absent from the labels).
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
        sensitivity, specificity, _ = sensitivity_specificity_support(
            y_true, y_pred, labels=[pos_label], average=None, warn_for=()
        )
        return float(sensitivity[0]), float(specificity[0])
    sensitivity, specificity, _ = sensitivity_specificity_support(
        y_true, y_pred, average=average, warn_for=()
    )
    if average is None:
        return sensitivity, specificity
    return float(sensitivity), float(specificity)


def sensitivity_score(y_true, y_pred, *, pos_label=None, average="binary"):
    """Sensitivity (true positive rate, recall of the positive class).

    Computed by :func:`imblearn.metrics.sensitivity_specificity_support`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    pos_label : label or None, default=None
        The positive class; ``None`` finds it as :func:`resolve_pos_label` does.
    average : {"binary", "micro", "macro", "weighted"} or None, default="binary"
        As in :func:`sklearn.metrics.recall_score`, for multi-class labels.

    Returns
    -------
    score : float or ndarray
        0 where there is no positive sample. With ``average=None``, the recall
        of each class, in sorted label order.
    """
    return _sensitivity_specificity(y_true, y_pred, pos_label, average)[0]


def specificity_score(y_true, y_pred, *, pos_label=None, average="binary"):
    """Specificity (true negative rate, recall of the negative class).

    Computed by :func:`imblearn.metrics.sensitivity_specificity_support`.

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
        0 where there is no negative sample. With ``average=None``, the
        one-vs-rest specificity of each class, in sorted label order.
    """
    if average not in ("binary", None, "macro", "weighted"):
        raise ValueError(f"average={average!r} is not one of 'binary', 'macro', 'weighted', None.")
    return _sensitivity_specificity(y_true, y_pred, pos_label, average)[1]


def _precision(y_true, y_pred, *, pos_label=None):
    pos_label = resolve_pos_label(y_true, y_pred, pos_label)
    return precision_score(y_true, y_pred, pos_label=pos_label, zero_division=0.0)


def _f1(y_true, y_pred, *, pos_label=None):
    pos_label = resolve_pos_label(y_true, y_pred, pos_label)
    return f1_score(y_true, y_pred, pos_label=pos_label, zero_division=0.0)


# Scorer functions of the metrics that depend on which class is positive; the
# others are scikit-learn's scorers of the same name ("accuracy", "roc_auc").
_SCORE_FUNCTIONS = {
    "sensitivity": sensitivity_score,
    "specificity": specificity_score,
    "precision": _precision,
    "f1": _f1,
}


def make_scoring(pos_label=None):
    """Make the scorers for binary COVID-19 classification.

    Parameters
    ----------
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it from the labels as
        :func:`resolve_pos_label` does.

    Returns
    -------
    scoring : dict of str to scorer
        One scorer for each name in :data:`METRICS` (``accuracy``,
        ``sensitivity``, ``specificity``, ``precision``, ``f1`` and
        ``roc_auc``), for ``cross_validate(scoring=...)`` and
        ``GridSearchCV(scoring=..., refit="f1")``. The scorers share one call
        to ``predict`` and one to ``predict_proba`` per evaluation.
    """
    kwargs = {} if pos_label is None else {"pos_label": pos_label}
    # Accuracy and ROC-AUC do not depend on which class is called positive.
    return {
        name: make_scorer(_SCORE_FUNCTIONS[name], **kwargs) if name in _SCORE_FUNCTIONS else name
        for name in METRICS
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
        The metrics of :data:`METRICS`: sensitivity and specificity are 0 (as
        :func:`sensitivity_score` and :func:`specificity_score` give them) and
        ROC-AUC is NaN when ``y`` lacks a class. Also ``pos_label``, the class
        taken as positive.
    """
    proba = estimator.predict_proba(X)
    pos_label, is_pos, pred_pos, score = binary_predictions(
        np.asarray(y, dtype=object), proba, np.asarray(estimator.classes_, dtype=object), pos_label
    )
    scores = {name: float(value) for name, value in binary_scores(is_pos, pred_pos, score).items()}
    for name in ("sensitivity", "specificity"):
        if np.isnan(scores[name]):
            scores[name] = 0.0
    return {**scores, "pos_label": pos_label}


def bootstrap_scores(y_true, proba, classes, *, pos_label=None, n_bootstraps=1000,
                     confidence_level=0.95, random_state=0, groups=None, threshold=None):
    """The metrics of held-out predictions, with percentile-bootstrap confidence intervals.

    The evaluated samples are resampled with replacement ``n_bootstraps``
    times; each metric's interval is the central ``confidence_level`` share of
    its values over the resamples where it is defined (sensitivity, specificity
    and ROC-AUC need both classes). Samples from one patient are not
    independent: with ``groups``, whole patients are resampled (a cluster
    bootstrap); without, the intervals of slice-level test sets are optimistic.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, 2)
        Predicted class probabilities, columns in the order of ``classes``;
        the prediction is the most probable class (the first on a tie).
    classes : array-like of shape (2,)
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it as
        :func:`resolve_pos_label` does.
    n_bootstraps : int, default=1000
        Number of resamples; 0 for point estimates only.
    confidence_level : float, default=0.95
        In (0, 1).
    random_state : int, RandomState instance or None, default=0
        Seeds the resampling.
    groups : array-like of shape (n_samples,) or None, default=None
        The patient of each sample: resample patients, not samples.
    threshold : float or None, default=None
        Predict the positive class where its probability is at least this
        (a classifier's ``threshold_``) instead of the most probable class.

    Returns
    -------
    scores : dict
        For each name in :data:`METRICS`, a dict with ``value`` (the point
        estimate; NaN for sensitivity, specificity and ROC-AUC when a class is
        absent from ``y_true``), ``ci_low`` and ``ci_high`` (None when
        ``n_bootstraps`` is 0, NaN when no resample defines the metric). Also
        ``pos_label``, the class taken as positive, as
        :func:`resolve_pos_label` returns it.

    Raises
    ------
    ValueError
        For non-binary ``classes`` or ``proba``, labels of ``y_true`` not in
        ``classes``, a ``pos_label`` not in ``classes``, or an out-of-range
        ``n_bootstraps`` or ``confidence_level``.

    Examples
    --------
    >>> from skcovid.metrics import bootstrap_scores
    >>> y = ["COVID", "COVID", "non-COVID", "non-COVID", "non-COVID"]
    >>> proba = [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]]
    >>> scores = bootstrap_scores(y, proba, ["COVID", "non-COVID"], n_bootstraps=200)
    >>> print(scores["pos_label"], scores["sensitivity"]["value"], scores["roc_auc"]["value"])
    COVID 0.5 0.8333333333333334
    >>> 0 <= scores["roc_auc"]["ci_low"] <= scores["roc_auc"]["ci_high"] <= 1
    True
    """
    check_bootstrap(n_bootstraps, confidence_level)
    pos_label, is_pos, pred_pos, score = binary_predictions(y_true, proba, classes, pos_label, threshold)
    point = binary_scores(is_pos, pred_pos, score)
    intervals = bootstrap(lambda idx: binary_scores(is_pos[idx], pred_pos[idx], score[idx]), len(is_pos),
                          n_bootstraps=n_bootstraps, confidence_level=confidence_level,
                          random_state=random_state, groups=groups)
    scores = {name: estimate(point[name], intervals, name) for name in METRICS}
    return {**scores, "pos_label": pos_label}


#: Default scorers (see :func:`make_scoring`).
SCORING = make_scoring()



def scores_by_group(y_true, proba, classes, groups, *, pos_label=None, threshold=None):
    """The metrics of :data:`METRICS` within each group (a source, a hospital) of a labelled set.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
    classes : array-like of shape (n_classes,)
    groups : array-like of shape (n_samples,)
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it among ``classes``.
    threshold : float or None, default=None
        Predict the positive class where its probability is at least this
        (the model's decision threshold); ``None`` takes the most probable class.

    Returns
    -------
    scores : dict
        ``{group: {metric: value, ..., "n": slices}}`` in sorted group order;
        ROC-AUC, sensitivity and specificity are NaN in a group that lacks a class.
    """
    y_true, proba, groups = np.asarray(y_true, dtype=object), np.asarray(proba), np.asarray(groups, dtype=object)
    classes = np.asarray(classes, dtype=object)
    pos_label = resolve_pos_label(classes, classes, pos_label)
    scores = {}
    for group in sorted(set(groups.tolist()), key=str):
        where = groups == group
        _, is_pos, pred_pos, score = binary_predictions(y_true[where], proba[where], classes, pos_label,
                                                        threshold)
        values = {name: float(value) for name, value in binary_scores(is_pos, pred_pos, score).items()}
        scores[group] = {**values, "n": int(where.sum())}
    return scores
