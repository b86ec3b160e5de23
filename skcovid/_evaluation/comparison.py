"""Two models on one test set: DeLong's test, McNemar's test, paired bootstrap differences.

:func:`compare` is public as :func:`skcovid.metrics.compare`; :func:`format_comparison`
is the table that ``skcovid compare`` prints.
"""

import math

import numpy as np
from scipy.stats import binomtest, chi2, norm, rankdata
from sklearn.utils.multiclass import unique_labels

from skcovid._core.files import jsonable
from skcovid._decision.operating_points import positive_scores
from skcovid._evaluation.resample import bootstrap, check_bootstrap
from skcovid._evaluation.scoring import METRICS, binary_predictions, binary_scores

#: Below this many discordant pairs McNemar's test is the exact binomial test.
_EXACT_BELOW = 25


def _delong(is_pos, scores, confidence_level):
    """DeLong's test of the difference of two correlated ROC-AUCs, by Sun and Xu's fast algorithm.

    ``scores`` has shape (2, n_samples). Midranks among the positives (``tx``),
    the negatives (``ty``) and all samples (``tz``) give the AUCs and the
    structural components of DeLong, DeLong and Clarke-Pearson (1988): for each
    positive the share of negatives it outscores, for each negative the share of
    positives that outscore it (ties counting 1/2). Their covariances give the
    AUCs' covariance matrix ``S10 / m + S01 / n``.
    """
    pos, neg = scores[:, is_pos], scores[:, ~is_pos]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least two samples of each class; got {m} positive "
                         f"and {n} negative.")
    tx, ty = rankdata(pos, axis=1), rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1 - (tz[:, m:] - ty) / m
    cov = np.cov(v10) / m + np.cov(v01) / n
    difference = float(auc[0] - auc[1])
    se = math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))
    if se > 0:
        z = difference / se
        p_value = float(2 * norm.sf(abs(z)))
    else:  # identical rankings, or a perfect and a constant model
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
        p_value = 1.0 if difference == 0 else 0.0
    half = float(norm.ppf(0.5 + confidence_level / 2)) * se
    return {
        "auc_a": float(auc[0]), "auc_b": float(auc[1]),
        "se_a": math.sqrt(cov[0, 0]), "se_b": math.sqrt(cov[1, 1]),
        "difference": difference, "se": se, "z": float(z), "p_value": p_value,
        "ci_low": difference - half, "ci_high": difference + half,
    }


def _mcnemar(correct_a, correct_b):
    """McNemar's test of paired accuracies: exact binomial below 25 discordant pairs, else chi-square."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant < _EXACT_BELOW:
        method = "exact binomial"
        statistic = float(min(only_a, only_b))
        p_value = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    else:
        method = "chi-square with continuity correction"
        statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
        p_value = float(chi2.sf(statistic, df=1))
    accuracy_a, accuracy_b = float(np.mean(correct_a)), float(np.mean(correct_b))
    return {
        "accuracy_a": accuracy_a, "accuracy_b": accuracy_b, "difference": accuracy_a - accuracy_b,
        "n_only_a_correct": only_a, "n_only_b_correct": only_b, "statistic": statistic,
        "p_value": p_value, "method": method,
    }


def _paired_predictions(y_true, proba_a, proba_b, classes, pos_label, thresholds):
    """The positive class, truth, both models' positive predictions and scores."""

    proba_a, proba_b = np.asarray(proba_a, dtype=np.float64), np.asarray(proba_b, dtype=np.float64)
    if proba_a.shape != proba_b.shape or proba_a.ndim not in (1, 2):
        raise ValueError(f"proba_a and proba_b must be of one shape, (n_samples,) or (n_samples, n_classes); "
                         f"got {proba_a.shape} and {proba_b.shape}.")
    if proba_a.ndim == 1:
        is_pos, score_a, pos_label = positive_scores(y_true, proba_a, pos_label)
        _, score_b, _ = positive_scores(y_true, proba_b, pos_label)
        (threshold_a, threshold_b) = (0.5 if t is None else t for t in thresholds)
        return pos_label, is_pos, (score_a >= threshold_a, score_b >= threshold_b), (score_a, score_b)
    if classes is None:
        classes = unique_labels(y_true)
        if len(classes) != proba_a.shape[1]:
            raise ValueError(f"y_true has {len(classes)} labels and proba {proba_a.shape[1]} columns: pass "
                             "classes=..., the labels of the columns (the models' classes_).")
    pos_label, is_pos, pred_a, score_a = binary_predictions(y_true, proba_a, classes, pos_label, thresholds[0])
    _, _, pred_b, score_b = binary_predictions(y_true, proba_b, classes, pos_label, thresholds[1])
    return pos_label, is_pos, (pred_a, pred_b), (score_a, score_b)


def compare(y_true, proba_a, proba_b, *, pos_label=None, classes=None, n_bootstraps=1000,
            random_state=0, confidence_level=0.95, groups=None, threshold_a=None, threshold_b=None):
    """Compare two models' predictions on one test set: ROC-AUC, accuracy and paired differences.

    Three analyses of model A minus model B:

    - DeLong's test for the difference of the two ROC-AUCs, which are
      correlated because they are measured on the same samples (DeLong,
      DeLong and Clarke-Pearson 1988, computed by the fast algorithm of Sun
      and Xu 2014): the difference, its standard error, ``z``, the two-sided
      p-value and the normal confidence interval of the difference. It gives
      what R's ``pROC::roc.test(method="delong")`` gives.
    - McNemar's test for the difference of the accuracies, from the samples
      that one model classifies correctly and the other not: with fewer than
      25 such discordant samples the exact binomial test
      (:func:`scipy.stats.binomtest`), else the chi-square test with
      continuity correction (:data:`scipy.stats.chi2`), ``(|b - c| - 1)^2 /
      (b + c)`` on one degree of freedom. ``method`` says which.
    - Paired percentile-bootstrap intervals of the differences of every
      metric of :data:`METRICS`: each resample draws the same samples (or,
      with ``groups``, the same patients) for both models, the resampling of
      :func:`bootstrap_scores`.

    DeLong's and McNemar's tests treat the samples as independent: with
    several slices per patient they are optimistic, so compare patients (one
    probability per patient) or read the bootstrap with ``groups``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba_a, proba_b : array-like of shape (n_samples, n_classes) or (n_samples,)
        The two models' predicted probabilities: class probabilities with
        columns in the order of ``classes`` (the prediction is the most
        probable class; more than two classes are scored as the positive class
        against the rest), or the probability of the positive class (the
        prediction is positive from 0.5).
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it as
        :func:`resolve_pos_label` does.
    classes : array-like of shape (n_classes,) or None, default=None
        The labels of the columns of 2-d probabilities (a classifier's
        ``classes_``); ``None`` takes the sorted labels of ``y_true``.
    n_bootstraps : int, default=1000
        Number of paired resamples; 0 for no intervals.
    random_state : int, RandomState instance or None, default=0
        Seeds the resampling.
    confidence_level : float, default=0.95
        Of DeLong's and the bootstrap's intervals, in (0, 1).
    groups : array-like of shape (n_samples,) or None, default=None
        The patient of each sample: the bootstrap resamples patients.
    threshold_a, threshold_b : float or None, default=None
        Each model's decision: the positive class where its probability is
        at least this (a classifier's ``threshold_`` for a target
        sensitivity); ``None`` as described under ``proba_a``. The accuracy,
        McNemar's test and the thresholded metrics follow the decisions;
        ROC-AUC does not depend on them.

    Returns
    -------
    result : dict
        JSON-ready: ``delong`` (``auc_a``, ``auc_b``, their standard errors
        ``se_a`` and ``se_b``, ``difference``, ``se``, ``z``, ``p_value``,
        ``ci_low``, ``ci_high``); ``mcnemar`` (``accuracy_a``,
        ``accuracy_b``, ``difference``, ``n_only_a_correct``,
        ``n_only_b_correct``, ``statistic``, ``p_value``, ``method``);
        ``differences``, for each name in :data:`METRICS`, a dict with ``a``,
        ``b``, ``difference``, ``ci_low`` and ``ci_high`` (None without
        resamples; NaN when no resample defines the metric); and
        ``pos_label``, ``n_samples``, ``n_positive``, ``n_bootstraps``,
        ``confidence_level``, ``threshold_a``, ``threshold_b``.

    Raises
    ------
    ValueError
        For probabilities of different shapes, labels of ``y_true`` not in
        ``classes``, fewer than two samples of a class, or an out-of-range
        ``n_bootstraps`` or ``confidence_level``.

    Examples
    --------
    >>> from skcovid.metrics import compare
    >>> y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    >>> a = [0.9, 0.8, 0.7, 0.6, 0.4, 0.5, 0.3, 0.2, 0.2, 0.1]
    >>> b = [0.6, 0.4, 0.7, 0.3, 0.45, 0.5, 0.55, 0.2, 0.35, 0.1]
    >>> result = compare(y, a, b, n_bootstraps=200)
    >>> round(result["delong"]["auc_a"], 2), round(result["delong"]["auc_b"], 2)
    (0.96, 0.72)
    >>> result["mcnemar"]["method"], result["mcnemar"]["n_only_a_correct"]
    ('exact binomial', 3)
    """

    check_bootstrap(n_bootstraps, confidence_level)
    pos_label, is_pos, (pred_a, pred_b), (score_a, score_b) = _paired_predictions(
        y_true, proba_a, proba_b, classes, pos_label, (threshold_a, threshold_b))
    delong = _delong(is_pos, np.stack([score_a, score_b]), confidence_level)
    mcnemar = _mcnemar(pred_a == is_pos, pred_b == is_pos)
    point_a = binary_scores(is_pos, pred_a, score_a)
    point_b = binary_scores(is_pos, pred_b, score_b)

    def statistic(idx):
        a = binary_scores(is_pos[idx], pred_a[idx], score_a[idx])
        b = binary_scores(is_pos[idx], pred_b[idx], score_b[idx])
        return {name: a[name] - b[name] for name in METRICS}

    intervals = bootstrap(statistic, len(is_pos), n_bootstraps=n_bootstraps,
                          confidence_level=confidence_level, random_state=random_state, groups=groups)
    differences = {}
    for name in METRICS:
        low, high = intervals.get(name, (None, None))
        a, b = float(point_a[name]), float(point_b[name])
        differences[name] = {"a": a, "b": b, "difference": a - b, "ci_low": low, "ci_high": high}
    return {
        "pos_label": jsonable(pos_label), "n_samples": int(len(is_pos)), "n_positive": int(np.sum(is_pos)),
        "n_bootstraps": int(n_bootstraps), "confidence_level": float(confidence_level),
        "threshold_a": None if threshold_a is None else float(threshold_a),
        "threshold_b": None if threshold_b is None else float(threshold_b),
        "delong": delong, "mcnemar": mcnemar, "differences": differences,
    }


def _p(value):
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _decisions_line(result):
    """``["decisions: A ..., B ..."]`` when a model decides by a threshold, else ``[]``."""
    thresholds = {"A": result.get("threshold_a"), "B": result.get("threshold_b")}
    if all(t is None for t in thresholds.values()):
        return []
    said = [f"{name} the most probable class" if t is None else f"{name} P({result['pos_label']}) >= {t:.4f}"
            for name, t in thresholds.items()]
    return ["decisions: " + ", ".join(said)]


def format_comparison(result, name_a="A", name_b="B", unit="samples"):
    """The comparison of :func:`compare` as a table of text lines."""
    d, m = result["delong"], result["mcnemar"]
    pct = round(100 * result["confidence_level"])
    lines = [
        f"{result['n_samples']} {unit} ({result['n_positive']} of the positive class "
        f"{result['pos_label']}); A = {name_a}, B = {name_b}",
        *_decisions_line(result),
        f"{'':>12}  {'A':>7}  {'B':>7}  {'A - B':>8}",
        f"{'ROC-AUC':>12}  {d['auc_a']:7.4f}  {d['auc_b']:7.4f}  {d['difference']:+8.4f}  DeLong: SE "
        f"{d['se']:.4f}, z {d['z']:.3f}, p {_p(d['p_value'])}, {pct}% CI "
        f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]",
        f"{'accuracy':>12}  {m['accuracy_a']:7.4f}  {m['accuracy_b']:7.4f}  {m['difference']:+8.4f}  McNemar "
        f"({m['method']}; only A right {m['n_only_a_correct']}, only B right {m['n_only_b_correct']}): "
        f"p {_p(m['p_value'])}",
    ]
    if result["n_bootstraps"]:
        lines.append(f"paired bootstrap ({result['n_bootstraps']} resamples), {pct}% CI of A - B:")
        for name, diff in result["differences"].items():
            interval = ("n/a" if diff["ci_low"] is None or np.isnan(diff["ci_low"])
                        else f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]")
            lines.append(f"{name:>12}  {diff['a']:7.4f}  {diff['b']:7.4f}  {diff['difference']:+8.4f}  {interval}")
    return "\n".join(lines)
