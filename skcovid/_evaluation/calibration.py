"""Calibration (Brier score, expected calibration error) and bootstrapped operating points of binary predictions.

The public functions are those of :mod:`skcovid.metrics`, which documents them.
"""

import numbers

import numpy as np

from skcovid._decision.operating_points import check_target, operating_point_rows, operating_points, positive_scores
from skcovid._evaluation.resample import bootstrap, check_bootstrap, estimate
from skcovid._evaluation.scoring import binary_predictions


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
    check_bootstrap(n_bootstraps, confidence_level)
    specificities = [check_target(s, "specificity") for s in specificities]
    sensitivities = [check_target(s, "sensitivity") for s in sensitivities]
    targets = [("specificity", s) for s in specificities] + [("sensitivity", s) for s in sensitivities]
    _, is_pos, _, score = binary_predictions(y_true, proba, classes, pos_label)

    def statistic(idx):  # resamples without a class give NaN, and are left out
        rows = operating_point_rows(is_pos[idx], score[idx], specificities, sensitivities)
        return {f"{k}:{name}": values for k, (sens, spec, _) in enumerate(rows)
                for name, values in (("sensitivity", sens), ("specificity", spec))}

    point = operating_points(is_pos, score, specificities, sensitivities)
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
