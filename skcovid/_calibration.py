"""Calibration (Brier score, expected calibration error) and operating points of binary predictions.

The public functions are those of :mod:`skcovid.metrics`, which documents them.
"""

import numbers
from collections import namedtuple

import numpy as np

from ._resample import bootstrap, check_bootstrap, estimate

#: A point of the ROC curve: predicting the positive class when its score is at
#: least ``threshold`` gives this sensitivity and specificity.
OperatingPoint = namedtuple("OperatingPoint", ["sensitivity", "specificity", "threshold"])

#: Tolerance of the comparisons with a target, so that 9 of 10 negatives reads as 0.9.
_TOLERANCE = 1e-9


def _check_n_bins(n_bins):
    if not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}.")


def _calibration_rows(is_pos, score, n_bins):
    """Brier score and expected calibration error along the last axis (rows are resamples).

    The bins are those of :func:`sklearn.calibration.calibration_curve` with
    ``strategy="uniform"``: bin ``k`` holds the probabilities in
    ``(k / n_bins, (k + 1) / n_bins]``, the first one also 0. The ECE,
    ``sum_k n_k / n * |mean(y in k) - mean(p in k)|``, is ``sum_k |sum_{i in k} (y_i - p_i)| / n``.
    """
    is_pos, score = np.atleast_2d(is_pos).astype(float), np.atleast_2d(score)
    n_rows, n = score.shape
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], score)
    bins += n_bins * np.arange(n_rows)[:, None]
    gaps = np.bincount(bins.ravel(), weights=(is_pos - score).ravel(), minlength=n_rows * n_bins)
    return {
        "brier": np.mean((score - is_pos) ** 2, axis=-1),
        "ece": np.abs(gaps.reshape(n_rows, n_bins)).sum(axis=1) / n,
    }


def positive_scores(y_true, y_score, pos_label):
    """Check labels and 1-d scores of the positive class; return (is_pos, score, pos_label)."""
    from .metrics import resolve_pos_label

    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 1 or y_score.ndim != 1 or len(y_true) != len(y_score) or len(y_true) == 0:
        raise ValueError(f"y_true and the scores must be 1-d, of one length and not empty; got shapes "
                         f"{y_true.shape} and {y_score.shape}.")
    if len(np.unique(y_true)) > 2:
        raise ValueError(f"Only binary labels are supported; y_true has {len(np.unique(y_true))}.")
    pos_label = resolve_pos_label(y_true, y_true, pos_label)
    return y_true == pos_label, y_score, pos_label


def expected_calibration_error(y_true, y_proba, *, n_bins=10, pos_label=None):
    """Expected calibration error (ECE) of the probabilities of the positive class.

    The probabilities are put in ``n_bins`` bins of equal width; in each, the
    share of positive samples (the "accuracy" of the probability) is compared
    with the mean predicted probability (its "confidence"), and the absolute
    differences are averaged, weighted by the bins' sizes::

        ECE = sum over bins k of  n_k / n * | mean(y_i == pos_label in k) - mean(y_proba_i in k) |

    Empty bins count for nothing. Bin ``k`` holds the probabilities in
    ``(k / n_bins, (k + 1) / n_bins]``, the first one also 0: the bins of
    :func:`sklearn.calibration.calibration_curve` with ``strategy="uniform"``,
    which :meth:`skcovid.report.EvaluationReport.plot_reliability_diagram` draws.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, of at most two classes.
    y_proba : array-like of shape (n_samples,)
        Predicted probabilities of the positive class, in [0, 1].
    n_bins : int, default=10
        Number of bins of equal width in [0, 1].
    pos_label : label or None, default=None
        The positive class; ``None`` finds it as :func:`resolve_pos_label` does.

    Returns
    -------
    ece : float
        In [0, 1]; 0 for probabilities that match the observed frequencies in
        every bin.

    Examples
    --------
    >>> from skcovid.metrics import expected_calibration_error
    >>> y = ["COVID", "COVID", "non-COVID", "non-COVID"]
    >>> round(expected_calibration_error(y, [0.95, 0.75, 0.75, 0.05]), 4)
    0.15
    """
    _check_n_bins(n_bins)
    is_pos, score, _ = positive_scores(y_true, y_proba, pos_label)
    if np.any((score < 0) | (score > 1)):
        raise ValueError("y_proba must be probabilities, in [0, 1].")
    return float(_calibration_rows(is_pos, score, n_bins)["ece"][0])


def _operating_point_rows(is_pos, score, specificities, sensitivities):
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


def _operating_points(is_pos, score, specificities, sensitivities):
    """The :class:`OperatingPoint` of each target (specificities first) on one set of predictions."""
    rows = _operating_point_rows(is_pos, score, specificities, sensitivities)
    return [OperatingPoint(*(float(value[0]) for value in point)) for point in rows]


def _check_target(value, name):
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
    return _operating_points(is_pos, score, [_check_target(specificity, "specificity")], [])[0]


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
    return _operating_points(is_pos, score, [], [_check_target(sensitivity, "sensitivity")])[0]


def bootstrap_calibration(y_true, proba, classes, *, pos_label=None, n_bins=10, n_bootstraps=1000,
                          confidence_level=0.95, random_state=0, groups=None):
    """Brier score and expected calibration error, with percentile-bootstrap confidence intervals.

    Both score the predicted probability of the positive class: the Brier
    score is its mean squared difference from the outcome (1 for the positive
    class, 0 otherwise; :func:`sklearn.metrics.brier_score_loss`), the
    expected calibration error is that of :func:`expected_calibration_error`.
    Lower is better for both. The resamples are those of
    :func:`bootstrap_scores` (the same ones, for the same ``random_state``
    int and ``groups``).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
        Predicted class probabilities, columns in the order of ``classes``;
        more than two classes are scored as the positive class against the
        rest (:func:`one_vs_rest`).
    classes : array-like of shape (n_classes,)
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it as
        :func:`resolve_pos_label` does.
    n_bins : int, default=10
        Bins of the expected calibration error.
    n_bootstraps : int, default=1000
        Number of resamples; 0 for point estimates only.
    confidence_level : float, default=0.95
        In (0, 1).
    random_state : int, RandomState instance or None, default=0
        Seeds the resampling.
    groups : array-like of shape (n_samples,) or None, default=None
        The patient of each sample: resample patients, not samples.

    Returns
    -------
    scores : dict
        ``brier`` and ``ece``, each a dict with ``value``, ``ci_low`` and
        ``ci_high`` (None when ``n_bootstraps`` is 0); ``n_bins``; and
        ``pos_label``.
    """
    from ._scoring import binary_predictions

    check_bootstrap(n_bootstraps, confidence_level)
    _check_n_bins(n_bins)
    pos_label, is_pos, _, score = binary_predictions(y_true, proba, classes, pos_label)
    point = _calibration_rows(is_pos, score, n_bins)
    intervals = bootstrap(lambda idx: _calibration_rows(is_pos[idx], score[idx], n_bins), len(is_pos),
                          n_bootstraps=n_bootstraps, confidence_level=confidence_level,
                          random_state=random_state, groups=groups)
    return {**{name: estimate(point[name][0], intervals, name) for name in ("brier", "ece")},
            "n_bins": int(n_bins), "pos_label": pos_label}


def bootstrap_operating_points(y_true, proba, classes, *, pos_label=None, specificities=(0.9, 0.95),
                               sensitivities=(0.9, 0.95), n_bootstraps=1000, confidence_level=0.95,
                               random_state=0, groups=None):
    """Sensitivity at target specificities and specificity at target sensitivities, with intervals.

    Each operating point follows the rule of :func:`sensitivity_at_specificity`
    or :func:`specificity_at_sensitivity`, on the predicted probability of the
    positive class. The intervals are percentile-bootstrap intervals: the
    operating point is chosen again on each resample (the resamples of
    :func:`bootstrap_scores`), so they include the uncertainty of the
    threshold.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
        Predicted class probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,)
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it as
        :func:`resolve_pos_label` does.
    specificities : sequence of float, default=(0.9, 0.95)
        Target specificities, each giving the highest sensitivity reached there.
    sensitivities : sequence of float, default=(0.9, 0.95)
        Target sensitivities, each giving the highest specificity reached there.
    n_bootstraps : int, default=1000
        Number of resamples; 0 for point estimates only.
    confidence_level : float, default=0.95
        In (0, 1).
    random_state : int, RandomState instance or None, default=0
        Seeds the resampling.
    groups : array-like of shape (n_samples,) or None, default=None
        The patient of each sample: resample patients, not samples.

    Returns
    -------
    points : list of dict
        One per target, specificities first: ``name`` (e.g. ``"sensitivity at
        specificity >= 0.9"``), ``target`` (``"specificity"`` or
        ``"sensitivity"``), ``level`` (the target value), ``sensitivity`` and
        ``specificity`` (each a dict with ``value``, ``ci_low`` and
        ``ci_high``) and ``threshold`` (the probability of the positive class
        from which a sample is called positive; ``inf`` when none is).
    """
    from ._scoring import binary_predictions

    check_bootstrap(n_bootstraps, confidence_level)
    specificities = [_check_target(s, "specificity") for s in specificities]
    sensitivities = [_check_target(s, "sensitivity") for s in sensitivities]
    targets = [("specificity", s) for s in specificities] + [("sensitivity", s) for s in sensitivities]
    _, is_pos, _, score = binary_predictions(y_true, proba, classes, pos_label)

    def statistic(idx):  # resamples without a class give NaN, and are left out
        rows = _operating_point_rows(is_pos[idx], score[idx], specificities, sensitivities)
        return {f"{k}:{name}": values for k, (sens, spec, _) in enumerate(rows)
                for name, values in (("sensitivity", sens), ("specificity", spec))}

    point = _operating_points(is_pos, score, specificities, sensitivities)
    intervals = bootstrap(statistic, len(is_pos), n_bootstraps=n_bootstraps,
                          confidence_level=confidence_level, random_state=random_state, groups=groups)
    points = []
    for k, ((target, level), found) in enumerate(zip(targets, point)):
        other = "sensitivity" if target == "specificity" else "specificity"
        points.append({
            "name": f"{other} at {target} >= {level:g}", "target": target, "level": level,
            "sensitivity": estimate(found.sensitivity, intervals, f"{k}:sensitivity"),
            "specificity": estimate(found.specificity, intervals, f"{k}:specificity"),
            "threshold": found.threshold,
        })
    return points
