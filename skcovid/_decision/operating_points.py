"""Operating points: the threshold on the positive class's probability that meets a target sensitivity or specificity.

The public functions are those of :mod:`skcovid.metrics`, which documents them;
``target_sensitivity`` chooses its threshold with them.
"""

from collections import namedtuple

import numpy as np

from skcovid._core.labels import resolve_pos_label

#: A point of the ROC curve: predicting the positive class when its score is at
#: least ``threshold`` gives this sensitivity and specificity.
OperatingPoint = namedtuple("OperatingPoint", ["sensitivity", "specificity", "threshold"])


#: Tolerance of the comparisons with a target, so that 9 of 10 negatives reads as 0.9.
_TOLERANCE = 1e-9


def positive_scores(y_true, y_score, pos_label):
    """Check labels and 1-d scores of the positive class; return (is_pos, score, pos_label)."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 1 or y_score.ndim != 1 or len(y_true) != len(y_score) or len(y_true) == 0:
        raise ValueError(f"y_true and the scores must be 1-d, of one length and not empty; got shapes "
                         f"{y_true.shape} and {y_score.shape}.")
    if len(np.unique(y_true)) > 2:
        raise ValueError(f"Only binary labels are supported; y_true has {len(np.unique(y_true))}.")
    pos_label = resolve_pos_label(y_true, y_true, pos_label)
    return y_true == pos_label, y_score, pos_label


def operating_point_rows(is_pos, score, specificities, sensitivities):
    """The operating points of the targets along the last axis (rows are resamples).

    Each row's ROC curve is that of :func:`sklearn.metrics.roc_curve` with
    ``drop_intermediate=False``: the point of threshold ``inf`` (nothing called
    positive), then one point per distinct score, from the highest (a sample is
    called positive when its score is at least the threshold).

    Returns
    -------
    points : list of (sensitivity, specificity, threshold), each an array of shape (n_rows,)
        For each target specificity, then each target sensitivity; NaN in the
        rows that lack a class.
    """
    is_pos, score = np.atleast_2d(is_pos), np.atleast_2d(score)
    n_rows = len(score)
    order = np.argsort(-score, axis=-1, kind="stable")
    score = np.take_along_axis(score, order, axis=-1)
    pos = np.take_along_axis(is_pos, order, axis=-1)
    n_pos = pos.sum(axis=-1, keepdims=True)
    n_neg = pos.shape[-1] - n_pos
    start = np.zeros((n_rows, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.concatenate([start, np.cumsum(pos, axis=-1)], axis=-1) / n_pos
        spec = (n_neg - np.concatenate([start, np.cumsum(~pos, axis=-1)], axis=-1)) / n_neg
    last = np.ones((n_rows, 1), dtype=bool)
    # A threshold ends a run of equal scores: the point after the last sample of each score.
    valid = np.concatenate([last, score[:, :-1] != score[:, 1:], last], axis=-1)
    thresholds = np.concatenate([np.full((n_rows, 1), np.inf), score], axis=-1)
    rows = np.arange(n_rows)
    defined = ((n_pos > 0) & (n_neg > 0))[:, 0]
    points = []
    for targets, found, other in ((specificities, tpr, spec), (sensitivities, spec, tpr)):
        for target in targets:
            # The highest value of `found` among the thresholds whose `other` reaches the target;
            # on a tie, the highest `other`: the first such point for sensitivity at specificity
            # (specificity falls along the curve), the last for specificity at sensitivity.
            feasible = valid & (other >= target - _TOLERANCE)
            best = np.where(feasible, found, -np.inf).max(axis=-1)
            tie = feasible & (found == best[:, None])
            i = tie.argmax(axis=-1) if found is tpr else tie.shape[-1] - 1 - tie[:, ::-1].argmax(axis=-1)
            point = [tpr[rows, i], spec[rows, i], thresholds[rows, i]]
            points.append([np.where(defined, value, np.nan) for value in point])
    return points


def operating_points(is_pos, score, specificities, sensitivities):
    """The :class:`OperatingPoint` of each target (specificities first) on one set of predictions."""
    rows = operating_point_rows(is_pos, score, specificities, sensitivities)
    return [OperatingPoint(*(float(value[0]) for value in point)) for point in rows]


def check_target(value, name):
    if not 0 <= value <= 1:
        raise ValueError(f"The target {name} must be in [0, 1]; got {value}.")
    return float(value)


def sensitivity_at_specificity(y_true, y_score, specificity, *, pos_label=None):
    """The highest sensitivity at a specificity of at least ``specificity``.

    Over the thresholds of the ROC curve (:func:`sklearn.metrics.roc_curve`
    with ``drop_intermediate=False``; a sample is called positive when its
    score is at least the threshold), the rule is: among the thresholds whose
    specificity is at least the target, the one with the highest sensitivity;
    on a tie, the one of these with the highest specificity. The threshold
    ``inf`` (nothing positive: specificity 1, sensitivity 0) is a candidate,
    so there is always one.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, of two classes.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class (e.g. its predicted probability).
    specificity : float
        The target specificity, in [0, 1] (e.g. 0.90 or 0.95).
    pos_label : label or None, default=None
        The positive class; ``None`` finds it as :func:`resolve_pos_label` does.

    Returns
    -------
    point : OperatingPoint
        A named tuple ``(sensitivity, specificity, threshold)``: the
        sensitivity found, the specificity it comes with (at least the
        target) and the threshold that gives both. NaN values when ``y_true``
        lacks a class.

    Examples
    --------
    >>> from skcovid.metrics import sensitivity_at_specificity
    >>> y = [1, 1, 1, 1, 0, 0, 0, 0]
    >>> sensitivity_at_specificity(y, [0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1], 0.9)
    OperatingPoint(sensitivity=0.5, specificity=1.0, threshold=0.8)
    """
    is_pos, score, _ = positive_scores(y_true, y_score, pos_label)
    return operating_points(is_pos, score, [check_target(specificity, "specificity")], [])[0]


def specificity_at_sensitivity(y_true, y_score, sensitivity, *, pos_label=None):
    """The highest specificity at a sensitivity of at least ``sensitivity``.

    Over the thresholds of the ROC curve (:func:`sklearn.metrics.roc_curve`
    with ``drop_intermediate=False``; a sample is called positive when its
    score is at least the threshold), the rule is: among the thresholds whose
    sensitivity is at least the target, the one with the highest specificity;
    on a tie, the one of these with the highest sensitivity. The lowest score
    as threshold (everything positive: sensitivity 1) is a candidate, so there
    is always one.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, of two classes.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class (e.g. its predicted probability).
    sensitivity : float
        The target sensitivity, in [0, 1] (e.g. 0.90 or 0.95 for screening).
    pos_label : label or None, default=None
        The positive class; ``None`` finds it as :func:`resolve_pos_label` does.

    Returns
    -------
    point : OperatingPoint
        A named tuple ``(sensitivity, specificity, threshold)``: the
        sensitivity it comes with (at least the target), the specificity
        found and the threshold that gives both. NaN values when ``y_true``
        lacks a class.

    Examples
    --------
    >>> from skcovid.metrics import specificity_at_sensitivity
    >>> y = [1, 1, 1, 1, 0, 0, 0, 0]
    >>> specificity_at_sensitivity(y, [0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1], 0.9)
    OperatingPoint(sensitivity=1.0, specificity=0.5, threshold=0.3)
    """
    is_pos, score, _ = positive_scores(y_true, y_score, pos_label)
    return operating_points(is_pos, score, [], [check_target(sensitivity, "sensitivity")])[0]
